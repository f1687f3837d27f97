//! `mugge setup`: the CLI face of [`mugge_controller::setup`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use mugge_controller::setup::{self, assets::Paths, runner::SystemRunner, Options};

/// Set this box up for headless user-session audio (run as root): the audio user, its groups,
/// realtime limits and lingering, mugge's PipeWire/WirePlumber fragments and user units, system-mode
/// audio units disabled. Prints one PASS/FAIL line per gate (0)-(5) and a summary; exits non-zero
/// when a gate fails. Running it again changes nothing.
#[derive(Args, Debug)]
pub struct SetupArgs {
    /// The audio user that runs PipeWire, WirePlumber and mugge.
    #[arg(long, default_value = "mugge")]
    user: String,
    /// Act on this directory tree instead of the running system (image preparation, tests):
    /// files only, no activation, no gates.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restore exactly the state recorded before the first change, then forget it.
    #[arg(long)]
    rollback: bool,
    /// Where the installed units find the `mugge` binary (default: this binary's directory).
    #[arg(long)]
    bindir: Option<PathBuf>,
}

pub fn run(args: SetupArgs) -> anyhow::Result<()> {
    let bindir = match args.bindir {
        Some(b) => b,
        None => std::env::current_exe()
            .context("locating the mugge binary")?
            .parent()
            .map(PathBuf::from)
            .context("the mugge binary has no directory")?,
    };
    let opts = Options {
        live: args.root == std::path::Path::new("/"),
        user: args.user,
        root: args.root,
        dry_run: args.dry_run,
        paths: Paths {
            bindir,
            ..Paths::default()
        },
    };
    if opts.live && !opts.dry_run && !running_as_root() {
        bail!("mugge setup changes system accounts and units: run it as root (or with --dry-run)");
    }
    let mut out = std::io::stdout().lock();
    if args.rollback {
        setup::rollback(&opts, &SystemRunner, &mut out).map_err(anyhow::Error::msg)?;
        return Ok(());
    }
    let outcome = setup::setup(&opts, &SystemRunner, &mut out).map_err(anyhow::Error::msg)?;
    if !opts.dry_run && !outcome.all_passed() {
        bail!("some gates failed; see the FAIL lines above and docs/deployment.md");
    }
    Ok(())
}

/// Effective UID 0, read from /proc (no libc call needed).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

//! `mugge measure`: runs the measurement loop in the controller (StartMeasurement), shows its
//! progress and prints the summary (or the result JSON), then optionally plots it. Ctrl-C or
//! SIGTERM aborts the loop (the controller mutes at once) and still prints how it ended; a
//! second Ctrl-C quits without waiting. `mugge measure --abort` stops a run from elsewhere.

use std::path::{Path, PathBuf};

use mugge_controller::client;
use mugge_filter_chain::measure::preset;

pub use super::follow::{follow, FollowOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Speaker channels to measure, one-based, comma-separated (default: every speaker channel
    /// of the active set).
    #[arg(long, value_delimiter = ',')]
    channels: Vec<u32>,
    /// Mic positions per channel (position 1 is the listening position); between positions
    /// you are asked to move the mic.
    #[arg(long, default_value_t = 1)]
    positions: u32,
    /// Capture and analyse only: no design, no deploy, no verification.
    #[arg(long)]
    dry_run: bool,
    /// Target SPL for the level finding (default from the controller config, 75 dB SPL).
    #[arg(long)]
    target_spl: Option<f64>,
    /// Sweep length in seconds (default from the config).
    #[arg(long)]
    sweep_seconds: Option<f64>,
    /// Print the result as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// Abort the running measurement (mutes at once).
    #[arg(long)]
    abort: bool,
    /// Also in DJ/Live mode (the program stops for the whole measurement).
    #[arg(long)]
    force: bool,
    /// After the run, write one PNG per measured channel here: the response, and after a full
    /// loop the correction and before/after (predicted and verified).
    #[arg(long, conflicts_with = "abort")]
    plots: Option<PathBuf>,
    /// A fixed installation: store the verified result as preset NAME (`mugge preset recall
    /// NAME` deploys and checks it later). The name is checked before anything plays.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["abort", "dry_run"])]
    save_preset: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let proxy = client::connect_uncached()?;
    if args.abort {
        outln!("{}", proxy.abort_measurement().map_err(client::explain)?);
        return Ok(());
    }
    let mut opts = serde_json::json!({
        "positions": args.positions,
        "dry_run": args.dry_run,
        "force": args.force,
    });
    if let Some(t) = args.target_spl {
        opts["target_spl_db"] = t.into();
    }
    if let Some(s) = args.sweep_seconds {
        opts["sweep_s"] = s.into();
    }
    if let Some(name) = &args.save_preset {
        // Minutes of sweeps must not end in "that name is taken".
        if !preset::valid_name(name) {
            anyhow::bail!("preset name {name:?}: letters, digits, '-', '_' and '.' (not first)");
        }
        if proxy
            .presets()
            .map_err(client::explain)?
            .iter()
            .any(|n| n == name)
        {
            anyhow::bail!("preset \"{name}\" exists: nothing measured (choose another name)");
        }
    }
    let run = follow(
        &proxy,
        || {
            proxy
                .start_measurement(&args.channels, &opts.to_string())
                .map_err(client::explain)
        },
        &FollowOptions {
            progress: !args.json,
        },
    )?;
    // The result first: a failed plot must not hide what the measurement did.
    run.print(args.json);
    let mut status = run.status();
    if let Some(out) = &args.plots {
        if let Err(e) = plot(Path::new(&run.report.dir), out, args.json) {
            eprintln!("Error: plots: {e:#}");
            if status == 0 {
                status = 1;
            }
        }
    }
    if let Some(name) = args.save_preset.as_deref().filter(|_| status == 0) {
        // Only a verified set is worth keeping for the installation.
        if run.report.verify_pass == Some(true) {
            match proxy.store_preset(name, &run.report.dir) {
                Ok(d) => note(args.json, format_args!("preset \"{name}\" stored in {d}")),
                Err(e) => {
                    eprintln!("Error: preset not stored: {:#}", client::explain(e));
                    status = 1;
                }
            }
        } else {
            eprintln!("Error: preset \"{name}\" not stored: the verification did not pass");
            status = 1;
        }
    }
    if status != 0 {
        std::process::exit(status);
    }
    Ok(())
}

/// A line after the result: on stdout with the summary, on stderr with `--json` (stdout stays
/// one JSON document).
fn note(json: bool, line: std::fmt::Arguments) {
    if json {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
}

/// Plots of the saved run, listed as [`note`]s.
fn plot(dir: &Path, out: &Path, json: bool) -> anyhow::Result<()> {
    if !dir.join("measurement.json").exists() {
        anyhow::bail!("the run saved no measurement in {}", dir.display());
    }
    for file in super::plots::saved_measurement(dir, out)? {
        note(json, format_args!("plot {}", file.display()));
    }
    Ok(())
}

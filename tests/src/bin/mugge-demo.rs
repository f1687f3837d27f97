//! The demo: mugge on a private headless PipeWire, the interface and mic mocked by null devices.
//!
//! It starts what a box runs: the controller daemon, the default profile's filter-chain (its
//! placeholder set: crossover + protection high-pass, gated), the standing meters, and the
//! signal generator playing pink noise at a safe level into the program sink. It prints what it
//! started and how to look at it, runs until Ctrl-C (or `--seconds N`), then stops everything.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::Parser;
use mugge_testkit::{Stack, HW_IN, HW_OUT, MIC};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Run the mugge demo stack on mocked hardware")]
struct Args {
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
    /// Speaker profile whose placeholder filters the chain runs.
    #[arg(long, default_value = "conf/profiles/2way-80hz-sealed-subs.toml")]
    profile: PathBuf,
    /// Pink-noise level at the generator, dBFS peak (the generator caps it at -20).
    #[arg(long, default_value_t = -30.0)]
    level: f64,
}

const T: Duration = Duration::from_secs(15);

fn main() -> Result<()> {
    let args = Args::parse();
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;
    let mugge = sibling_binary("mugge")?;
    let ws = mugge_testkit::stack::workspace_root();

    let stack = Stack::start()?;
    println!(
        "mugge demo: private PipeWire stack in {}",
        stack.root().display()
    );

    // Filters: the profile's placeholder set, generated and gated by the real CLI.
    let set = stack.root().join("sets/main");
    let out = stack.run(
        mugge.to_str().unwrap_or("mugge"),
        &[
            "filters",
            "generate",
            "--profile",
            &ws.join(&args.profile).to_string_lossy(),
            "--out",
            &set.to_string_lossy(),
        ],
    )?;
    print!("{out}");
    let mut chain = stack.command("pipewire");
    chain.arg("-c").arg(set.join("filter-chain.conf"));
    let _chain = stack.spawn("filter-chain", &chain)?;
    stack.wait_for_node("mugge-filters-out.main", T)?;

    // The controller: links everything for Measurement mode, which creates the generator.
    let config = stack.root().join("controller.toml");
    std::fs::copy(ws.join("conf/controller.toml"), &config)?;
    let mut daemon = stack.command(&mugge);
    daemon
        .arg("daemon")
        .arg("--config")
        .arg(&config)
        .arg("--mode")
        .arg("measurement");
    let _daemon = stack.spawn("controller", &daemon)?;
    let siggen = stack
        .wait_for_node("mugge-siggen", T)
        .context("the controller did not create the generator")?;
    let level = format!("{:.1}", args.level);
    stack.pw_cli(&[
        "set-param",
        &siggen.id.to_string(),
        "Props",
        &format!("{{ params = [ \"siggen.signal\" \"pink\" \"siggen.level\" {level} \"siggen.running\" true ] }}"),
    ])?;

    let g = stack.dump()?;
    println!();
    println!("Started (stopped on exit): dbus-daemon, pipewire, wireplumber, the filter-chain");
    println!(
        "(pipewire -c {}), mugge daemon (Measurement mode).",
        set.join("filter-chain.conf").display()
    );
    println!("Hardware mock:");
    for name in [HW_OUT, HW_IN, MIC] {
        if let Some(n) = g.node(name) {
            println!(
                "  {:<16} {:<22} {} ports",
                n.name,
                n.media_class,
                g.ports_of(n.id).len()
            );
        }
    }
    println!("mugge nodes:");
    for n in g.nodes.iter().filter(|n| n.name.starts_with("mugge")) {
        println!("  {:<24} {}", n.name, n.media_class);
    }
    println!("Generator: pink noise at {level} dBFS peak into mugge-program, through the filters.");
    println!("{} links, all made by the controller.", g.links.len());
    println!();
    println!("Look at it from another terminal:");
    println!("  export XDG_RUNTIME_DIR={}", stack.runtime_dir().display());
    println!("  export DBUS_SESSION_BUS_ADDRESS={}", stack.bus_address());
    println!(
        "  {} meters          # live levels of the three meter points",
        mugge.display()
    );
    println!(
        "  {} status; {} links; {} mode dj",
        mugge.display(),
        mugge.display(),
        mugge.display()
    );
    println!("  pw-dump | less      pw-top      pw-link -l");
    println!();
    print_levels(&stack, &mugge);
    match args.seconds {
        Some(s) => {
            println!("Running for {s} s.");
            let _ = stop_rx.recv_timeout(Duration::from_secs(s));
        }
        None => {
            println!("Running. Ctrl-C stops it.");
            let _ = stop_rx.recv();
        }
    }
    println!("Stopping.");
    Ok(())
}

/// One reading of the meters once the generator's level has reached them.
fn print_levels(stack: &Stack, mugge: &Path) {
    let bin = mugge.to_string_lossy();
    for _ in 0..50 {
        if let Ok(out) = stack.run(&bin, &["meters", "--once"]) {
            if out.contains("dB") && !out.contains("-inf") {
                println!("{out}");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(out) = stack.run(&bin, &["meters", "--once"]) {
        println!("{out}");
    }
}

/// A binary built next to this one (`target/<profile>/mugge`).
fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!("{} not built: cargo build --workspace --bins", p.display());
    }
    Ok(p)
}

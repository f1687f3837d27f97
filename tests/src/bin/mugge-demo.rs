//! The demo: mugge on a private headless PipeWire, the interface and mic mocked by null devices.
//!
//! It starts what a box runs: the controller daemon, which at first start generates the default
//! profile's placeholder filters (crossover + protection high-pass, gated), runs that
//! filter-chain muted and ramps it up on request; the standing meters; and the signal generator
//! playing pink noise at a safe level into the program sink. It prints what it started and how
//! to look at it, runs until Ctrl-C (or `--seconds N`), then stops everything it started.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::Parser;
use mugge_testkit::{Stack, HW_IN, HW_OUT, MIC};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Run the mugge demo stack on mocked hardware")]
struct Args {
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
    /// Default speaker profile (a name in conf/profiles) whose placeholder filters run.
    #[arg(long, default_value = "2way-80hz-sealed-subs")]
    profile: String,
    /// Pink-noise level at the generator, dBFS peak (the generator caps it at -20).
    #[arg(long, default_value_t = -30.0)]
    level: f64,
}

const T: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let args = Args::parse();
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;
    let mugge = sibling_binary("mugge")?;
    let bin = mugge.to_string_lossy().into_owned();
    let ws = mugge_testkit::stack::workspace_root();

    let stack = Stack::start()?;
    println!(
        "mugge demo: private PipeWire stack in {}",
        stack.root().display()
    );

    // The controller with activation on, in Measurement mode (which creates the generator).
    let sets = stack.root().join("sets");
    let config = stack.root().join("controller.toml");
    let base = std::fs::read_to_string(ws.join("conf/controller.toml"))?;
    std::fs::write(
        &config,
        format!(
            "{base}\n[activation]\ndefault_profile = {:?}\nprofiles_dir = {:?}\nsets_dir = {:?}\n",
            args.profile,
            ws.join("conf/profiles").to_string_lossy(),
            sets.to_string_lossy()
        ),
    )?;
    let mut daemon = stack.command(&mugge);
    daemon
        .arg("daemon")
        .arg("--config")
        .arg(&config)
        .arg("--mode")
        .arg("measurement");
    let daemon = stack.spawn("controller", &daemon)?;
    let result = run(&stack, &args, &bin, &sets, &stop_rx);
    println!("Stopping.");
    drop(daemon);
    // Chains run in their own session so that audio survives a controller crash: stop them here.
    stop_chains(&stack);
    result
}

fn run(
    stack: &Stack,
    args: &Args,
    bin: &str,
    sets: &Path,
    stop_rx: &mpsc::Receiver<()>,
) -> Result<()> {
    let siggen = stack
        .wait_for_node("mugge-siggen", T)
        .context("the controller did not create the generator")?;
    stack
        .wait_until("the filter-chain", T, |g| {
            g.nodes
                .iter()
                .any(|n| n.name.starts_with("mugge-filters-out."))
        })
        .context("the controller did not start the default profile's filter-chain")?;
    let level = format!("{:.1}", args.level);
    stack.pw_cli(&[
        "set-param",
        &siggen.id.to_string(),
        "Props",
        &format!("{{ params = [ \"siggen.signal\" \"pink\" \"siggen.level\" {level} \"siggen.running\" true ] }}"),
    ])?;
    // The safety flow's last step: ramp the muted chain up to the profile's trims.
    print!("{}", stack.run(bin, &["profile", "unmute"])?);

    let g = stack.dump()?;
    println!();
    println!("Started (stopped on exit): dbus-daemon, pipewire, wireplumber, mugge daemon");
    println!(
        "(Measurement mode), which runs the {} filter-chain (sets in {}).",
        args.profile,
        sets.display()
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
    println!("  {bin} meters          # live levels of the three meter points");
    println!("  {bin} status; {bin} links; {bin} mode dj");
    println!("  {bin} profile activate 3way-mono-sub --force   # the safety flow");
    println!("  pw-dump | less      pw-top      pw-link -l");
    println!();
    print_levels(stack, bin);
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
    Ok(())
}

/// One reading of the meters once the generator's level has reached the hardware.
fn print_levels(stack: &Stack, bin: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        if let Ok(out) = stack.run(bin, &["meters", "--once"]) {
            let reached_hw = out
                .split("mugge-meter-hw-out")
                .nth(1)
                .is_some_and(|hw| hw.lines().nth(1).is_some_and(|ch1| !ch1.contains("-200.0")));
            last = out;
            if reached_hw {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("{last}");
}

/// Stops the filter-chain processes the controller started: the clients that own
/// `mugge-filters-*` nodes, by the PID PipeWire recorded for them.
fn stop_chains(stack: &Stack) {
    let Ok(out) = stack.run("pw-dump", &[]) else {
        return;
    };
    let Ok(all) = serde_json::from_str::<Vec<Value>>(&out) else {
        return;
    };
    let chain_clients: Vec<&Value> = all
        .iter()
        .filter(|o| o["type"] == "PipeWire:Interface:Node")
        .filter(|n| {
            n["info"]["props"]["node.name"]
                .as_str()
                .is_some_and(|s| s.starts_with("mugge-filters-"))
        })
        .map(|n| &n["info"]["props"]["client.id"])
        .collect();
    for c in all
        .iter()
        .filter(|o| o["type"] == "PipeWire:Interface:Client")
    {
        if !chain_clients
            .iter()
            .any(|id| id.as_u64() == c["id"].as_u64())
        {
            continue;
        }
        if let Some(pid) = c["info"]["props"]["pipewire.sec.pid"].as_u64() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
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

//! The demo: mugge on a private headless PipeWire, the interface and mic mocked by null devices.
//!
//! It starts what exists of the system, prints what it started and how to look at it, and runs
//! until Ctrl-C (or `--seconds N`), then stops everything it started.
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::Parser;
use mugge_testkit::{Stack, HW_IN, HW_OUT, MIC};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Run the mugge demo stack on mocked hardware")]
struct Args {
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
    /// Graph quantum to force.
    #[arg(long, default_value_t = 1024)]
    quantum: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;

    let stack = Stack::builder().quantum(args.quantum).start()?;
    let g = stack.dump()?;
    println!(
        "mugge demo: private PipeWire stack in {}",
        stack.root().display()
    );
    println!();
    println!("Started (by PID, stopped on exit): dbus-daemon, pipewire, wireplumber");
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
    match mugge_testkit::stack::built_plugin() {
        Some(p) => println!("Plugin on the daemon's SPA_PLUGIN_DIR: {}", p.display()),
        None => println!("Plugin not built yet (cargo build -p mugge-spa)"),
    }
    println!("Quantum: {}", stack.profile(8)?.quantum);
    println!();
    println!("Look at it from another terminal:");
    println!("  export XDG_RUNTIME_DIR={}", stack.runtime_dir().display());
    println!("  export DBUS_SESSION_BUS_ADDRESS={}", stack.bus_address());
    println!("  pw-dump | less      pw-top      pw-link -l      pw-cli ls Node");
    println!();
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
    drop(stack);
    Ok(())
}

//! `mugge measure`: runs the measurement loop in the controller (StartMeasurement), shows its
//! progress and prints the summary (or the result JSON). Ctrl-C or
//! SIGTERM aborts the loop (the controller mutes at once) and still prints how it ended; a
//! second Ctrl-C quits without waiting. `mugge measure --abort` stops a run from elsewhere.

use mugge_controller::client;

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
    run.print(args.json);
    match run.status() {
        0 => Ok(()),
        status => std::process::exit(status),
    }
}

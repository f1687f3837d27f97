//! `mugge measure`: runs the measurement loop in the controller (StartMeasurement), shows its
//! progress and prints the summary (or the result JSON). Ctrl-C does not stop the loop: use
//! `busctl --user call ... AbortMeasurement` or `mugge measure --abort`.

use std::io::BufRead;

use mugge_controller::client;
use mugge_controller::daemon::measure::report::Report;

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
    // Subscribe before starting: no signal of a short run is missed.
    let progress = proxy.receive_measurement_progress()?;
    let mut finished = proxy.receive_measurement_finished()?;
    let dir = proxy
        .start_measurement(&args.channels, &opts.to_string())
        .map_err(client::explain)?;
    if !args.json {
        eprintln!("measuring into {dir}");
    }
    let quiet = args.json;
    let continuer = client::connect()?;
    std::thread::spawn(move || {
        let mut last = String::new();
        for sig in progress {
            let Ok(a) = sig.args() else { continue };
            if a.phase == "move-mic" {
                eprintln!(
                    "move the mic to position {:.0} and press Enter (mugge measure --abort stops)",
                    a.level_db
                );
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                let _ = continuer.continue_measurement();
                continue;
            }
            if quiet {
                continue;
            }
            let ch = if a.channel > 0 {
                format!("ch {}", a.channel)
            } else {
                "    ".into()
            };
            let level = if a.level_db != 0.0 {
                format!("  {:.1} dB SPL", a.level_db)
            } else {
                String::new()
            };
            let line = format!("{ch} {:<13} {:>5.0} %{level}", a.phase, a.percent);
            if line != last {
                eprintln!("{line}");
                last = line;
            }
        }
    });
    loop {
        let Some(sig) = finished.next() else {
            anyhow::bail!("the controller went away during the measurement");
        };
        let a = sig.args()?;
        if a.dir == dir {
            break;
        }
    }
    let json = proxy.measurement_result().map_err(client::explain)?;
    let report: Report = serde_json::from_str(&json)?;
    if args.json {
        outln!("{json}");
    } else {
        print!("{}", report.summary());
    }
    if !report.ok {
        std::process::exit(2);
    }
    Ok(())
}

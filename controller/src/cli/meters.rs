//! `mugge meters`: a live terminal view of the three meter points (from LevelsChanged), or one
//! snapshot (`--once`), or a clip reset (`--reset-clip METER`).

use std::collections::BTreeMap;

use mugge_controller::client;
use mugge_controller::daemon::levels::Levels;
use mugge_controller::daemon::routing::{METER_HW_IN, METER_HW_OUT, METER_PROGRAM};

#[derive(clap::Args)]
pub struct Args {
    /// Print the current snapshot of each meter and exit.
    #[arg(long)]
    once: bool,
    /// Reset the clip latches of this meter and exit.
    #[arg(long, value_name = "METER")]
    reset_clip: Option<String>,
    /// JSON (one object per snapshot).
    #[arg(long)]
    json: bool,
    /// Live view: stop after this many seconds (default: until interrupted).
    #[arg(long)]
    seconds: Option<f64>,
}

fn bar(db: f64) -> String {
    // -60..0 dBFS over 30 cells.
    let cells = (((db + 60.0) / 2.0).clamp(0.0, 30.0)) as usize;
    format!("{:<30}", "#".repeat(cells))
}

fn render(meter: &str, l: &Levels) -> String {
    let mut out = format!("{meter} (graph clock {}):\n", l.position);
    for (i, peak) in l.peak.iter().enumerate() {
        let rms = l.rms.get(i).copied().unwrap_or(f64::NEG_INFINITY);
        let clip = if l.clip.get(i) == Some(&true) {
            " CLIP"
        } else {
            ""
        };
        out.push_str(&format!(
            "  ch{:<2} {} peak {:>6.1} rms {:>6.1} dBFS{clip}\n",
            i + 1,
            bar(l.display.get(i).copied().unwrap_or(*peak)),
            peak,
            rms
        ));
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let proxy = client::connect()?;
    if let Some(m) = args.reset_clip {
        proxy.reset_clip(&m).map_err(client::explain)?;
        outln!("clip latches of {m} reset");
        return Ok(());
    }
    let meters = [METER_PROGRAM, METER_HW_OUT, METER_HW_IN];
    // Snapshots flow only while a reader holds the lease.
    proxy.watch_levels(5).map_err(client::explain)?;
    if args.once {
        // The first snapshot follows the subscription within a few graph cycles.
        let start = std::time::Instant::now();
        while meters.iter().any(|m| proxy.get_levels(m).is_err())
            && start.elapsed().as_secs_f64() < 2.0
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for m in meters {
            match proxy.get_levels(m) {
                Ok(l) if args.json => outln!("{}", serde_json::json!({"meter": m, "levels": l})),
                Ok(l) => out!("{}", render(m, &l)),
                Err(e) => eprintln!("{m}: {}", client::explain(e)),
            }
        }
        return Ok(());
    }
    let renew = proxy.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        if renew.watch_levels(5).is_err() {
            break;
        }
    });
    let deadline = match args.seconds {
        Some(s) if s.is_finite() && s > 0.0 => {
            let d = std::time::Duration::from_secs_f64(s);
            // Signals may stop (no meters): the view ends on time anyway.
            std::thread::spawn(move || {
                std::thread::sleep(d + std::time::Duration::from_millis(500));
                std::process::exit(0);
            });
            Some(std::time::Instant::now() + d)
        }
        Some(s) => anyhow::bail!("--seconds must be a positive number, not {s}"),
        None => None,
    };
    let mut latest: BTreeMap<String, Levels> = BTreeMap::new();
    for sig in proxy.receive_levels_signal()? {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        let a = sig.args()?;
        if args.json {
            outln!(
                "{}",
                serde_json::json!({"meter": a.meter, "levels": a.levels})
            );
            continue;
        }
        latest.insert(a.meter.to_string(), a.levels);
        // Redraw in place.
        out!("\x1b[H\x1b[2J");
        for (m, l) in &latest {
            out!("{}", render(m, l));
        }
    }
    Ok(())
}

//! `mugge mode MODE`: sets the mode and prints the readiness report.

use mugge_controller::client;

#[derive(clap::Args)]
pub struct Args {
    /// standby, dj, live or measurement
    mode: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let proxy = client::connect()?;
    let r = proxy.set_mode(&args.mode).map_err(client::explain)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!(
            "mode {}: ready in {:.1} ms, quantum {}",
            r.mode,
            r.elapsed_us as f64 / 1000.0,
            r.quantum
        );
        for n in &r.notes {
            outln!("  note: {n}");
        }
    }
    Ok(())
}

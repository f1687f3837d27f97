//! `mugge links`: desired links and whether each exists.

use mugge_controller::client;

#[derive(clap::Args)]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let proxy = client::connect()?;
    let links = proxy.links().map_err(client::explain)?;
    if args.json {
        let v: Vec<_> = links
            .iter()
            .map(
                |(f, t, o, p)| serde_json::json!({"from": f, "to": t, "optional": o, "present": p}),
            )
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (from, to, optional, present) in links {
        let state = if present {
            "ok"
        } else if optional {
            "absent (optional)"
        } else {
            "MISSING"
        };
        outln!("{from:<36} -> {to:<36} {state}");
    }
    Ok(())
}

//! `mugge status`: mode, quantum, profile, readiness and health.

use mugge_controller::client;

#[derive(clap::Args)]
pub struct Args {
    /// Print the full status as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let proxy = client::connect()?;
    let text = proxy.get_status().map_err(client::explain)?;
    if args.json {
        outln!("{text}");
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let st = &v["status"];
    outln!("mode:    {}", v["mode"].as_str().unwrap_or(""));
    outln!("profile: {}", proxy.profile().map_err(client::explain)?);
    outln!(
        "quantum: {} (wanted {})",
        st["quantum"]
            .as_u64()
            .map(|q| q.to_string())
            .unwrap_or_else(|| "-".into()),
        v["quantum_wanted"]
    );
    outln!(
        "ready:   {}",
        if st["ready"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    );
    for m in st["missing"].as_array().into_iter().flatten() {
        outln!("  missing: {}", m.as_str().unwrap_or(""));
    }
    for m in st["optional_missing"].as_array().into_iter().flatten() {
        outln!("  optional: {}", m.as_str().unwrap_or(""));
    }
    outln!("health:");
    let mut h: Vec<_> = proxy
        .health()
        .map_err(client::explain)?
        .into_iter()
        .collect();
    h.sort();
    for (k, v) in h {
        outln!("  {k:<28} {v}");
    }
    Ok(())
}

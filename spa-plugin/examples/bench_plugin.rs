//! Benchmark of the plugin's nodes against references measured in the same graph and cycles.
//!
//! ```text
//! cargo build --release -p mugge-spa
//! MUGGE_SPA_PLUGIN=target/release/libspa_mugge.so \
//!     cargo run --release -p mugge-spa --example bench_plugin -- [--reps 3] [--soak-minutes 10]
//! ```
//!
//! One private stack (mugge-testkit) runs, all at once, each plugin node in both ways of
//! creating it: bare (`spa-node-factory`, `mugge.ports=dsp`: one DSP port per channel) and
//! under the `adapter` (one planar port behind PipeWire's converter). The nodes: a 24-channel
//! meter (PPM on), an 8-channel tap with one socket reader each, the signal generator (each
//! plays pink noise into one hardware channel; a third, unmeasured one feeds every input);
//! references: a filter-chain with 4 x 16,384-tap convolvers
//! (reference 1, its in + out nodes summed), three out-of-process `pw-record` clients of 8
//! channels each (reference 2, the old design of 24-channel metering), and a floor: a
//! 24-channel null sink behind the adapter with the same links (what 24 adapter inputs cost
//! doing nothing). For each quantum (1024, 256, 128) it records every cycle with `pw-profiler`
//! and prints median and p99 of busy time (finish - awake) and of graph time (finish - signal,
//! which includes a client's wake-up) per node, and each node's ratios to both references.
//! `--soak-minutes N` then runs N minutes at quantum 128 with all three node types active and
//! reports the xruns the driver counted.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use mugge_testkit::{Stack, HW_OUT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);

#[derive(Default, Clone, Copy)]
struct Cost {
    busy_med: f64,
    busy_p99: f64,
    graph_med: f64,
    graph_p99: f64,
    /// Sum of per-node percentiles rather than percentiles of per-cycle sums.
    summed: bool,
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Per node busy and graph time, summed over `names` per cycle, from `pw-profiler -J`.
fn profile(
    stack: &Stack,
    cycles: usize,
    groups: &[(&str, &[&str])],
) -> Result<(BTreeMap<String, Cost>, u64)> {
    let out = stack.run("pw-profiler", &["-J", "-n", &cycles.to_string()])?;
    let all: Vec<Value> = serde_json::from_str(&out).context("profiler JSON")?;
    // cycle index -> node -> (busy, graph)
    let mut per_cycle: Vec<BTreeMap<String, (f64, f64)>> = Vec::new();
    let (mut x0, mut x1) = (None, 0u64);
    for e in &all {
        match e.get("type").and_then(Value::as_str) {
            Some("clock") => {
                per_cycle.push(BTreeMap::new());
                let x = e.get("xrun").and_then(Value::as_u64).unwrap_or(0);
                x0.get_or_insert(x);
                x1 = x;
            }
            Some("driver") | Some("follower") => {
                let (Some(cur), Some("finished")) = (
                    per_cycle.last_mut(),
                    e.get("status").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let g = |k: &str| e.get(k).and_then(Value::as_i64).unwrap_or(0);
                let (signal, awake, finish) = (g("signal"), g("awake"), g("finish"));
                if awake <= 0 || finish < awake || signal <= 0 || awake < signal {
                    continue;
                }
                let name = e
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                cur.insert(
                    name,
                    (
                        (finish - awake) as f64 / 1e3,
                        (finish - signal) as f64 / 1e3,
                    ),
                );
            }
            _ => {}
        }
    }
    let mut res = BTreeMap::new();
    for (label, names) in groups {
        let (mut busy, mut graph) = (Vec::new(), Vec::new());
        for c in &per_cycle {
            let parts: Vec<_> = names.iter().filter_map(|n| c.get(*n)).collect();
            if parts.len() == names.len() {
                busy.push(parts.iter().map(|p| p.0).sum());
                graph.push(parts.iter().map(|p| p.1).sum());
            }
        }
        let cost = if busy.len() >= cycles / 2 {
            Cost {
                busy_med: pct(&mut busy, 0.5),
                busy_p99: pct(&mut busy, 0.99),
                graph_med: pct(&mut graph, 0.5),
                graph_p99: pct(&mut graph, 0.99),
                summed: false,
            }
        } else {
            // Asynchronous clients finish after the profiler reports the cycle: most cycles have
            // no "finished" entry for all of them at once, so sum each node's own percentiles.
            let mut c = Cost {
                summed: true,
                ..Cost::default()
            };
            for n in names.iter() {
                let mut b: Vec<f64> = per_cycle
                    .iter()
                    .filter_map(|c| c.get(*n))
                    .map(|p| p.0)
                    .collect();
                let mut g: Vec<f64> = per_cycle
                    .iter()
                    .filter_map(|c| c.get(*n))
                    .map(|p| p.1)
                    .collect();
                if b.len() < 50 {
                    bail!(
                        "{label}: {n} finished in only {} of {cycles} cycles",
                        b.len()
                    );
                }
                c.busy_med += pct(&mut b, 0.5);
                c.busy_p99 += pct(&mut b, 0.99);
                c.graph_med += pct(&mut g, 0.5);
                c.graph_p99 += pct(&mut g, 0.99);
            }
            c
        };
        res.insert(label.to_string(), cost);
    }
    Ok((res, x1.saturating_sub(x0.unwrap_or(0))))
}

fn write_ir(path: &std::path::Path) -> Result<()> {
    // A decaying noise IR of 16,384 taps: the convolver's cost does not depend on the values.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let mut x = 1u32;
    for i in 0..16384 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let v = ((x >> 8) as f32 / 8_388_608.0 - 1.0) * (-(i as f32) / 2000.0).exp() * 0.05;
        w.write_sample(v)?;
    }
    w.finalize()?;
    Ok(())
}

fn filter_chain_conf(ir: &std::path::Path) -> String {
    let nodes: String = (1..=4)
        .map(|i| format!("{{ type = builtin name = conv{i} label = convolver config = {{ filename = \"{}\" }} }}\n", ir.display()))
        .collect();
    let ins: String = (1..=4).map(|i| format!("\"conv{i}:In\" ")).collect();
    let outs: String = (1..=4).map(|i| format!("\"conv{i}:Out\" ")).collect();
    format!(
        r#"context.properties = {{ log.level = 2 }}
context.spa-libs = {{ audio.convert.* = audioconvert/libspa-audioconvert support.* = support/libspa-support }}
context.modules = [
  {{ name = libpipewire-module-rt args = {{ nice.level = -11 rt.prio = 88 }} flags = [ ifexists nofail ] }}
  {{ name = libpipewire-module-protocol-native }}
  {{ name = libpipewire-module-client-node }}
  {{ name = libpipewire-module-adapter }}
  {{ name = libpipewire-module-filter-chain
    args = {{
      node.description = "bench 4 x 16k convolver"
      audio.channels = 4
      audio.position = [ AUX0 AUX1 AUX2 AUX3 ]
      filter.graph = {{ nodes = [ {nodes} ] inputs = [ {ins} ] outputs = [ {outs} ] }}
      capture.props = {{ node.name = bench-fc-in media.class = Audio/Sink node.autoconnect = false }}
      playback.props = {{ node.name = bench-fc-out node.autoconnect = false }}
    }}
  }}
]
"#
    )
}

fn create(stack: &Stack, factory: &str, name: &str, class: &str, extra: &str) -> Result<()> {
    stack.pw_cli(&[
        "create-node",
        "adapter",
        &format!("{{ factory.name={factory} library.name=mugge/libspa-mugge node.name={name} media.class={class} object.linger=true {extra} }}"),
    ])?;
    Ok(())
}

/// The same node created bare, with one DSP port per channel.
fn create_bare(stack: &Stack, factory: &str, name: &str, class: &str, extra: &str) -> Result<()> {
    stack.pw_cli(&[
        "create-node",
        "spa-node-factory",
        &format!("{{ factory.name={factory} library.name=mugge/libspa-mugge mugge.ports=dsp node.name={name} media.class={class} object.linger=true {extra} }}"),
    ])?;
    Ok(())
}

/// A reader that drains a tap's socket as fast as frames come.
fn tap_reader(stack: &Stack, node: &str) -> Result<()> {
    let path = {
        let g = stack.dump()?;
        let n = g.node(node).context("tap")?;
        n.props
            .get("mugge.tap.socket")
            .and_then(Value::as_str)
            .context("tap socket")?
            .to_string()
    };
    let mut sock = std::os::unix::net::UnixStream::connect(&path)?;
    std::thread::spawn(move || {
        let mut b = vec![0u8; 1 << 16];
        while let Ok(n) = sock.read(&mut b) {
            if n == 0 {
                break;
            }
        }
    });
    Ok(())
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let reps = arg("--reps", 1).max(1);
    let soak = arg("--soak-minutes", 0);
    let plugin = mugge_testkit::stack::built_plugin().context("build the plugin first")?;
    println!("plugin: {}", plugin.display());
    let stack = Stack::builder().quantum(1024).start()?;

    create(
        &stack,
        "mugge.siggen",
        "bench-gen",
        "Stream/Output/Audio",
        "audio.channels=1",
    )?;
    create_bare(
        &stack,
        "mugge.siggen",
        "bench-gen-bare",
        "Stream/Output/Audio",
        "",
    )?;
    // The source of every measured input: a generator of its own, so that neither measured
    // generator carries the cost of waking some 60 peers.
    create_bare(
        &stack,
        "mugge.siggen",
        "bench-src",
        "Stream/Output/Audio",
        "",
    )?;
    create_bare(
        &stack,
        "mugge.meter",
        "bench-meter24-bare",
        "Stream/Input/Audio",
        "audio.channels=24 meter.ppm=II",
    )?;
    create_bare(
        &stack,
        "mugge.tap",
        "bench-tap8-bare",
        "Stream/Input/Audio",
        "audio.channels=8",
    )?;
    create(
        &stack,
        "mugge.meter",
        "bench-meter24",
        "Stream/Input/Audio",
        "audio.channels=24 meter.ppm=II",
    )?;
    create(
        &stack,
        "mugge.tap",
        "bench-tap8",
        "Stream/Input/Audio",
        "audio.channels=8",
    )?;
    // Floor reference: a 24-channel null sink behind the same adapter, linked the same way: what
    // 24 adapter DSP inputs cost with no processing at all.
    let pos: Vec<String> = (0..24).map(|c| format!("AUX{c}")).collect();
    stack.pw_cli(&[
        "create-node",
        "adapter",
        &format!(
            "{{ factory.name=support.null-audio-sink node.name=bench-null24 media.class=Audio/Sink audio.channels=24 audio.position=[ {} ] monitor.channel-volumes=false object.linger=true }}",
            pos.join(" ")
        ),
    ])?;
    stack.wait_for_port("bench-gen", "output_AUX0", T)?;
    stack.wait_for_port("bench-null24", "playback_AUX23", T)?;
    stack.wait_for_port("bench-meter24", "input_AUX23", T)?;
    stack.wait_for_port("bench-tap8", "input_AUX7", T)?;
    stack.wait_for_port("bench-gen-bare", "output_1", T)?;
    stack.wait_for_port("bench-meter24-bare", "input_24", T)?;
    stack.wait_for_port("bench-tap8-bare", "input_8", T)?;
    // Each measured generator plays into one hardware channel; `bench-src` feeds the rest.
    let gen = "bench-src:output_1";
    stack.wait_for_port("bench-src", "output_1", T)?;
    stack.link("bench-gen:output_AUX0", &format!("{HW_OUT}:playback_AUX0"))?;
    stack.link(
        "bench-gen-bare:output_1",
        &format!("{HW_OUT}:playback_AUX6"),
    )?;
    stack.link(gen, &format!("{HW_OUT}:playback_AUX7"))?;
    for c in 0..24 {
        stack.link(gen, &format!("bench-meter24:input_AUX{c}"))?;
        stack.link(gen, &format!("bench-meter24-bare:input_{}", c + 1))?;
    }
    for c in 0..8 {
        stack.link(gen, &format!("bench-tap8:input_AUX{c}"))?;
        stack.link(gen, &format!("bench-tap8-bare:input_{}", c + 1))?;
    }
    for c in 0..24 {
        stack.link(gen, &format!("bench-null24:playback_AUX{c}"))?;
    }
    for g in ["bench-gen", "bench-gen-bare", "bench-src"] {
        let id = stack.dump()?.node(g).context("gen")?.id.to_string();
        stack.pw_cli(&[
            "set-param",
            &id,
            "Props",
            r#"{ params = [ "siggen.signal" "pink" "siggen.running" true ] }"#,
        ])?;
    }

    // One reader per tap.
    tap_reader(&stack, "bench-tap8")?;
    tap_reader(&stack, "bench-tap8-bare")?;

    // Reference 1: 4 x 16k convolvers in a filter-chain (a separate pipewire -c process).
    let ir = stack.root().join("bench-ir.wav");
    write_ir(&ir)?;
    let conf = stack.root().join("bench-fc.conf");
    std::fs::write(&conf, filter_chain_conf(&ir))?;
    let mut fc = stack.command("pipewire");
    fc.arg("-c").arg(&conf);
    let _fc = stack.spawn("bench-fc", &fc)?;
    stack
        .wait_for_port("bench-fc-in", "playback_AUX3", T)
        .with_context(|| format!("filter-chain log:\n{}", stack.log("bench-fc")))?;
    stack.wait_for_port("bench-fc-out", "output_AUX3", T)?;
    for c in 0..4 {
        stack.link(gen, &format!("bench-fc-in:playback_AUX{c}"))?;
        stack.link(
            &format!("bench-fc-out:output_AUX{c}"),
            &format!("{HW_OUT}:playback_AUX{}", c + 1),
        )?;
    }

    // Reference 2: three 8-channel out-of-process clients (pw_stream, like the old meters).
    let mut clients = Vec::new();
    for k in 0..3 {
        let name = format!("bench-client{k}");
        let mut c = stack.command("pw-record");
        c.args([
            "--raw",
            "--format",
            "f32",
            "--rate",
            "48000",
            "--channels",
            "8",
        ])
        .args(["--channel-map", "AUX0,AUX1,AUX2,AUX3,AUX4,AUX5,AUX6,AUX7"])
        .arg("-P")
        .arg(format!("{{ node.name={name} node.autoconnect=false }}"))
        .arg("/dev/null");
        clients.push(stack.spawn(&name, &c)?);
        stack.wait_for_port(&name, "input_AUX7", T)?;
        for ch in 0..8 {
            stack.link(gen, &format!("{name}:input_AUX{ch}"))?;
        }
    }
    let settle = Instant::now();
    stack
        .wait_until("everything running", T, |g| {
            [
                "bench-gen",
                "bench-gen-bare",
                "bench-meter24",
                "bench-meter24-bare",
                "bench-tap8",
                "bench-tap8-bare",
                "bench-fc-out",
                "bench-client2",
            ]
            .iter()
            .all(|n| g.node(n).is_some_and(|n| n.state == "running"))
        })
        .context("nodes running")?;
    println!("graph up in {:?}", settle.elapsed());

    let groups: &[(&str, &[&str])] = &[
        ("meter24", &["bench-meter24-bare"]),
        ("tap8", &["bench-tap8-bare"]),
        ("siggen", &["bench-gen-bare"]),
        ("meter24-a", &["bench-meter24"]),
        ("tap8-a", &["bench-tap8"]),
        ("siggen-a", &["bench-gen"]),
        ("null24-a", &["bench-null24"]),
        ("fc4x16k", &["bench-fc-in", "bench-fc-out"]),
        (
            "clients3",
            &["bench-client0", "bench-client1", "bench-client2"],
        ),
    ];
    println!();
    println!(
        "quantum rep | node      busy med  busy p99 | graph med graph p99   (us, every cycle)"
    );
    let mut summary = Vec::new();
    for rep in 0..reps {
        for q in [1024u32, 256, 128] {
            stack.set_quantum(q)?;
            std::thread::sleep(Duration::from_secs(1));
            let cycles = (48000 * 12 / q as usize).clamp(500, 4000);
            // On a loaded machine an out-of-process client can miss most cycles' "finished"
            // marks: measure again (a measurement retried, nothing judged on the failed one).
            let mut attempt = 0;
            let (c, xruns) = loop {
                attempt += 1;
                match profile(&stack, cycles, groups) {
                    Ok(r) => break r,
                    Err(e) if attempt < 5 => println!("q{q} rep {rep}: measuring again ({e})"),
                    Err(e) => {
                        // The references stay unmeasured this time; the soak still runs.
                        println!("q{q} rep {rep}: not measured ({e})");
                        break (BTreeMap::new(), 0);
                    }
                }
            };
            if c.is_empty() {
                continue;
            }
            for (label, v) in &c {
                println!(
                    "{q:>7} {rep:>3} | {label:<9} {:>8.1}  {:>8.1} | {:>8.1}  {:>8.1}{}",
                    v.busy_med,
                    v.busy_p99,
                    v.graph_med,
                    v.graph_p99,
                    if v.summed {
                        "   (sum of per-node percentiles)"
                    } else {
                        ""
                    }
                );
            }
            let fc = c["fc4x16k"];
            let cl = c["clients3"];
            for label in [
                "meter24",
                "tap8",
                "siggen",
                "meter24-a",
                "tap8-a",
                "siggen-a",
            ] {
                let m = c[label];
                let target = if label == "meter24" {
                    " (targets: fc ratio <= 0.100, clients >= 5x)"
                } else {
                    ""
                };
                let line = format!(
                    "q{q:<4} rep {rep}: {label:<9} busy/fc4x16k median {:.3} p99 {:.3} | clients3/{label} graph median {:5.1}x busy {:5.1}x{target}",
                    m.busy_med / fc.busy_med,
                    m.busy_p99 / fc.busy_p99,
                    cl.graph_med / m.graph_med,
                    cl.busy_med / m.busy_med
                );
                println!("{line}");
                summary.push(line);
            }
            let line = format!("q{q:<4} rep {rep}: xruns {xruns} in {cycles} cycles");
            println!("{line}");
            summary.push(line);
        }
    }
    println!();
    for l in &summary {
        println!("{l}");
    }
    if soak > 0 {
        drop(clients);
        stack.set_quantum(128)?;
        println!();
        println!(
            "soak: {soak} min at quantum 128 with all meters, taps (1 reader each) and generators"
        );
        let end = Instant::now() + Duration::from_secs(soak * 60);
        let mut xruns = 0;
        let mut cycles = 0;
        while Instant::now() < end {
            let p = stack.profile(20000)?;
            xruns += p.xruns;
            cycles += p.cycles;
            if p.quantum != 128 {
                bail!("quantum drifted to {}", p.quantum);
            }
        }
        println!("soak: {cycles} cycles at q128, xruns {xruns}");
    }
    Ok(())
}

//! With the real mugge plugin (`libspa-mugge.so`, built by `cargo build -p mugge-spa` or given
//! with MUGGE_SPA_PLUGIN): the controller creates the meters, the generator and the mic tap
//! bare (`spa-node-factory`, one DSP port per channel), resolves their ports from the registry
//! and links them; levels
//! come from the meters' Props; clip reset and taps work. Build the plugin first
//! (`cargo build --workspace`, as scripts/test.sh does).

mod common;
use common::*;
use std::time::{Duration, Instant};

fn need_plugin() {
    assert!(
        mugge_testkit::stack::built_plugin().is_some(),
        "no libspa_mugge.so: build mugge-spa or set MUGGE_SPA_PLUGIN"
    );
}

#[test]
fn plugin_nodes_are_created_linked_and_read() {
    need_plugin();
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(
        &stack,
        "require_plugins = true\nready_timeout_ms = 5000\n",
        "controller",
    );
    let p = proxy(&stack).unwrap();
    let r = p
        .set_mode("measurement")
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.log("controller")));
    assert!(r.ready, "{:?}", r.missing);
    let g = stack.dump().unwrap();
    // Every plugin node exists once, with the channel count of the topology.
    for (name, ins) in [
        ("mugge-meter-program", 2usize),
        ("mugge-meter-hw-out", 8),
        ("mugge-meter-hw-in", 8),
        ("mugge-tap-umik1-in", 1),
    ] {
        assert_eq!(g.nodes_named(name).len(), 1, "{name}");
        let n = g.node(name).unwrap();
        let inputs: Vec<_> = g
            .ports_of(n.id)
            .into_iter()
            .filter(|p| p.direction == "input")
            .collect();
        assert_eq!(inputs.len(), ins, "{name} inputs");
        // Bare DSP ports: named for people (channel 1 is input_1), positions AUX0.. .
        let mut names: Vec<_> = inputs.iter().map(|p| p.name.clone()).collect();
        names.sort();
        let mut want: Vec<_> = (1..=ins).map(|c| format!("input_{c}")).collect();
        want.sort();
        assert_eq!(names, want, "{name} port names");
        // Each input is linked (the table's routes for it all resolved).
        for port in inputs {
            assert!(
                g.links.iter().any(|l| l.input_port == port.id),
                "{name}:{} unlinked",
                port.name
            );
        }
    }
    let gen = g.node("mugge-siggen").expect("generator");
    let out: Vec<_> = g
        .ports_of(gen.id)
        .into_iter()
        .filter(|p| p.direction == "output")
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        g.links
            .iter()
            .filter(|l| l.output_port == out[0].id)
            .count(),
        3,
        "siggen -> program FL, FR and the measurement's reference tap"
    );
    assert!(g.node("mugge-tap-mugge-siggen").is_some());
    assert!(g.node("mugge-meter-mic").is_some());
    // Levels arrive (graph clock advancing) and the clip reset is accepted.
    let start = Instant::now();
    let first = loop {
        if let Ok(l) = p.get_levels("mugge-meter-hw-in") {
            break l;
        }
        assert!(start.elapsed() < T, "no levels");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(first.peak.len(), 8);
    std::thread::sleep(Duration::from_millis(300));
    let later = p.get_levels("mugge-meter-hw-in").unwrap();
    assert!(
        later.position > first.position,
        "graph clock did not advance"
    );
    p.reset_clip("mugge-meter-hw-out").unwrap();
    // Without a reader the lease runs out: the subscription is dropped and stale snapshots go.
    p.watch_levels(1).unwrap();
    std::thread::sleep(Duration::from_millis(5500));
    let e = p.get_levels("mugge-meter-hw-in").unwrap_err();
    assert!(e.to_string().contains("no snapshot"), "{e}");
    // The meters were idle (unbound) until that call: the clip reset, queued right behind
    // their binding, reaches them.
    p.reset_clip("mugge-meter-hw-out").unwrap();
    p.watch_levels(5).unwrap();
    // LevelsChanged, rate-limited (default 10 Hz per meter: ~1 s gives <= ~11 per meter).
    let mut sigs = p.receive_levels_signal().unwrap();
    let t0 = Instant::now();
    let mut n_hw_in = 0;
    while t0.elapsed() < Duration::from_secs(1) {
        let s = sigs.next().expect("LevelsChanged");
        let a = s.args().unwrap();
        if a.meter == "mugge-meter-hw-in" {
            assert_eq!(a.levels.peak.len(), 8);
            n_hw_in += 1;
        }
    }
    assert!(
        (3..=12).contains(&n_hw_in),
        "{n_hw_in} LevelsChanged in 1 s for one meter"
    );
    // Leaving measurement removes the generator and the mic tap, keeps the meters.
    assert!(p.set_mode("dj").unwrap().ready);
    let g = stack
        .wait_until("generator and mic tap gone", T, |g| {
            g.node("mugge-siggen").is_none() && g.node("mugge-tap-umik1-in").is_none()
        })
        .unwrap();
    assert!(g.node("mugge-meter-hw-in").is_some());
    // A tap on request.
    let path = p.start_tap("usbstreamer-in", 8).unwrap();
    assert!(std::path::Path::new(&path).exists(), "{path}");
    p.stop_tap("usbstreamer-in").unwrap();
}

/// Zero crossings per second / 2 of one channel: its frequency.
fn frequency(x: &[f32], rate: f64) -> f64 {
    let ups = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    ups as f64 * rate / x.len() as f64
}

fn peak_db(x: &[f32]) -> f64 {
    20.0 * f64::from(x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12)).log10()
}

/// `mugge tap` writes a WAV (and the raw frames) and `mugge meters` prints the levels of a
/// known tone: channel 1 is 1 kHz at -6 dBFS, channel 2 250 Hz at -18 dBFS, played into
/// `mugge-program` and read from its monitor side.
#[test]
fn cli_tap_writes_a_wav_and_meters_print_a_known_tone() {
    need_plugin();
    let stack = stack();
    let _fc = filter_chain(&stack);
    let config = "require_plugins = true\nready_timeout_ms = 5000\n\
        [[extra.standby]]\nfrom = \"tone:1\"\nto = \"mugge-program:1\"\noptional = true\n\
        [[extra.standby]]\nfrom = \"tone:2\"\nto = \"mugge-program:2\"\noptional = true\n";
    let _ctl = controller(&stack, config, "controller");
    let p = proxy(&stack).unwrap();
    let rate = 48_000usize;
    let tone: Vec<f32> = (0..rate * 60)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            [
                0.5 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin(),
                0.125 * (2.0 * std::f32::consts::PI * 250.0 * t).sin(),
            ]
        })
        .collect();
    let _tone = stack.play("tone", 2, tone).unwrap();
    assert!(p.set_mode("standby").unwrap().ready);
    let start = Instant::now();
    while !p
        .links()
        .unwrap()
        .iter()
        .filter(|l| l.0.starts_with("tone:") && l.3)
        .count()
        == 2
    {
        assert!(start.elapsed() < T, "tone not linked: {:?}", p.links());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mugge = env!("CARGO_BIN_EXE_mugge");

    // WAV: rate, channels, format and content read back.
    let wav = stack.root().join("program.wav");
    let out = stack
        .command(mugge)
        .args([
            "tap",
            "mugge-program",
            "--channels",
            "2",
            "--seconds",
            "2.5",
        ])
        .arg("--out")
        .arg(&wav)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("channels 1..2"), "{err}");
    let mut r = hound::WavReader::open(&wav).unwrap();
    let spec = r.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, 48_000);
    assert_eq!(spec.bits_per_sample, 32);
    assert_eq!(spec.sample_format, hound::SampleFormat::Float);
    let s: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
    let frames = s.len() / 2;
    eprintln!("{err}WAV: {frames} frames");
    assert!(
        (96_000..=130_000).contains(&frames),
        "2.5 s at 48 kHz: {frames} frames"
    );
    // The file starts when the tap's socket does; the tone arrives once its link is up. From
    // 10 ms after the onset on, each channel must be the tone without a gap.
    let onset = s
        .iter()
        .position(|v| v.abs() > 1e-3)
        .expect("the tone in the file")
        / 2;
    eprintln!("tone onset at frame {onset}");
    assert!(frames - onset > 48_000, "at least 1 s of tone");
    let ch = |c: usize| -> Vec<f32> {
        s.iter()
            .skip(c)
            .step_by(2)
            .skip(onset + 480)
            .copied()
            .collect()
    };
    for (c, hz, db) in [(0, 1000.0, -6.02), (1, 250.0, -18.06)] {
        let x = ch(c);
        let (f, pk) = (frequency(&x, 48_000.0), peak_db(&x));
        eprintln!("channel {}: {f:.1} Hz, peak {pk:.2} dBFS", c + 1);
        assert!((f - hz).abs() < hz * 0.01, "channel {}: {f} Hz", c + 1);
        assert!((pk - db).abs() < 0.2, "channel {}: {pk} dBFS", c + 1);
        let gap = x.windows(48).position(|w| w.iter().all(|v| v.abs() < 1e-4));
        assert_eq!(gap, None, "channel {}: a 1 ms gap", c + 1);
    }

    // Raw: the plugin's frames as they come ("MUGT", version 1, 2 channels, 48 kHz).
    let raw = stack.root().join("program.raw");
    let out = stack
        .command(mugge)
        .args(["tap", "mugge-program", "--seconds", "0.3", "--out"])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = std::fs::read(&raw).unwrap();
    assert!(b.len() > 48 && &b[0..4] == b"MUGT", "{} bytes", b.len());
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 48_000);
    // A WAV needs a file; a bad channel count is refused and no tap is left behind.
    let out = stack
        .command(mugge)
        .args(["tap", "mugge-program", "--format", "wav"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --out"));
    let out = stack
        .command(mugge)
        .args(["tap", "mugge-program", "--channels", "0", "--out"])
        .arg(stack.root().join("x.wav"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("channels must be 1..32"));
    let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    assert_eq!(st["taps"], serde_json::json!([]), "{}", st["taps"]);

    // Meters: one snapshot (JSON and human) and a bounded live view.
    let out = stack
        .command(mugge)
        .args(["meters", "--once", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let program = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["meter"] == "mugge-meter-program")
        .unwrap_or_else(|| panic!("no program meter in {text}"));
    let peaks: Vec<f64> = program["levels"]["peak"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    eprintln!("mugge meters --once --json: program peaks {peaks:?}");
    assert!((peaks[0] + 6.02).abs() < 0.3, "{peaks:?}");
    assert!((peaks[1] + 18.06).abs() < 0.3, "{peaks:?}");
    let out = stack
        .command(mugge)
        .args(["meters", "--once"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |n: u32| {
        text.lines()
            .skip_while(|l| !l.starts_with("mugge-meter-program"))
            .find(|l| l.trim_start().starts_with(&format!("ch{n} ")))
            .unwrap_or_else(|| panic!("no ch{n} line in {text}"))
            .to_string()
    };
    assert!(line(1).contains("peak   -6.0"), "{}", line(1));
    assert!(line(2).contains("peak  -18.1"), "{}", line(2));
    let t0 = Instant::now();
    let out = stack
        .command(mugge)
        .args(["meters", "--json", "--seconds", "1"])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["meter"] == "mugge-meter-program")
        .collect();
    eprintln!("live view: {} program snapshots in {took:?}", live.len());
    assert!(took < Duration::from_secs(4), "bounded: {took:?}");
    assert!(live.len() >= 3, "{} program snapshots in 1 s", live.len());
    for v in &live {
        let pk = v["levels"]["peak"][0].as_f64().unwrap();
        assert!((pk + 6.02).abs() < 0.3, "live peak {pk}");
    }
}

//! The plugin on the real stack: a private PipeWire daemon with WirePlumber and the mocked
//! hardware (mugge-testkit), `libspa-mugge.so` loaded by the daemon. The nodes are created bare
//! (`spa-node-factory`, one DSP port per channel: the controller's way); the loading test also
//! covers the `adapter` factory and conf fragments.
//!
//! Build the cdylib first (`cargo build -p mugge-spa`): the stack loads
//! `target/debug/libspa_mugge.so` (or `$MUGGE_SPA_PLUGIN`).

use anyhow::{anyhow, bail, Context, Result};
use mugge_dsp::siggen::{Generator, Signal, SweepParams, MAX_PEAK_LIN};
use mugge_dsp::snapshot::Snapshot;
use mugge_dsp::tapframe::{decode_frame, TapHeader};
use mugge_testkit::{Stack, HW_OUT};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const LIB: &str = "library.name=mugge/libspa-mugge";

/// The stack loads the built cdylib, which `cargo test` does not rebuild: refuse to test a
/// stale one.
fn start(builder: mugge_testkit::StackBuilder) -> Stack {
    let so = mugge_testkit::stack::built_plugin()
        .expect("build the plugin first: cargo build -p mugge-spa");
    let built = std::fs::metadata(&so).and_then(|m| m.modified()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for dir in ["src", "dsp/src"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            newest = newest.max(e.metadata().and_then(|m| m.modified()).unwrap());
        }
    }
    assert!(
        built >= newest,
        "{} is older than the sources: run cargo build -p mugge-spa",
        so.display()
    );
    builder.start().unwrap()
}

/// How a node is created: bare through `spa-node-factory` (DSP ports `input_1`.., the
/// controller's way) or through the `adapter` factory (its converter's ports `input_AUX0`..).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    Bare,
    Adapter,
}

impl Via {
    /// The name of the port of one-based `channel`.
    fn port(self, input: bool, channel: usize) -> String {
        let dir = if input { "input" } else { "output" };
        match self {
            Via::Bare => format!("{dir}_{channel}"),
            Via::Adapter => format!("{dir}_AUX{}", channel - 1),
        }
    }
}

fn create_via(
    stack: &Stack,
    via: Via,
    factory: &str,
    name: &str,
    class: &str,
    extra: &str,
) -> Result<()> {
    let (f, ports) = match via {
        Via::Bare => ("spa-node-factory", "mugge.ports=dsp"),
        Via::Adapter => ("adapter", ""),
    };
    stack.pw_cli(&[
        "create-node",
        f,
        &format!("{{ factory.name={factory} {LIB} {ports} node.name={name} media.class={class} object.linger=true {extra} }}"),
    ])?;
    Ok(())
}

fn meter_via(stack: &Stack, via: Via, name: &str, channels: usize, extra: &str) -> Result<()> {
    create_via(
        stack,
        via,
        "mugge.meter",
        name,
        "Stream/Input/Audio",
        &format!("audio.channels={channels} {extra}"),
    )?;
    stack.wait_for_port(name, &via.port(true, channels), T)?;
    Ok(())
}

fn tap_via(stack: &Stack, via: Via, name: &str, channels: usize) -> Result<()> {
    create_via(
        stack,
        via,
        "mugge.tap",
        name,
        "Stream/Input/Audio",
        &format!("audio.channels={channels}"),
    )?;
    stack.wait_for_port(name, &via.port(true, channels), T)?;
    Ok(())
}

fn siggen_via(stack: &Stack, via: Via, name: &str) -> Result<()> {
    create_via(
        stack,
        via,
        "mugge.siggen",
        name,
        "Stream/Output/Audio",
        "audio.channels=1",
    )?;
    stack.wait_for_port(name, &via.port(false, 1), T)?;
    Ok(())
}

fn meter(stack: &Stack, name: &str, channels: usize, extra: &str) -> Result<()> {
    meter_via(stack, Via::Bare, name, channels, extra)
}

fn tap(stack: &Stack, name: &str, channels: usize) -> Result<()> {
    tap_via(stack, Via::Bare, name, channels)
}

fn siggen(stack: &Stack, name: &str) -> Result<()> {
    siggen_via(stack, Via::Bare, name)
}

fn node_prop(stack: &Stack, node: &str, key: &str) -> Result<String> {
    let g = stack.dump()?;
    let n = g.node(node).ok_or_else(|| anyhow!("no node {node}"))?;
    match n.props.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
        None => bail!(
            "{node} has no property {key}: {:?}",
            n.props.keys().collect::<Vec<_>>()
        ),
    }
}

/// The node's custom `Props` params (key -> value) as pw-dump shows them.
fn params(stack: &Stack, node: &str) -> Result<HashMap<String, Value>> {
    let g = stack.dump()?;
    let n = g.node(node).ok_or_else(|| anyhow!("no node {node}"))?;
    let mut out = HashMap::new();
    for obj in n
        .params
        .get("Props")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = obj.get("params").and_then(Value::as_array) {
            for kv in p.chunks(2) {
                if let [Value::String(k), v] = kv {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(out)
}

fn set_params(stack: &Stack, node: &str, pairs: &str) -> Result<()> {
    let id = stack
        .dump()?
        .node(node)
        .ok_or_else(|| anyhow!("no node {node}"))?
        .id
        .to_string();
    stack.pw_cli(&[
        "set-param",
        &id,
        "Props",
        &format!("{{ params = [ {pairs} ] }}"),
    ])?;
    Ok(())
}

fn f64_at(v: &Value, i: usize) -> f64 {
    v.as_array()
        .and_then(|a| a.get(i))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// Reads whole records from a socket until `done` or the deadline.
struct Reader {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Reader {
    fn connect(path: &str) -> Result<Reader> {
        let s = UnixStream::connect(path).with_context(|| format!("connecting {path}"))?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(Reader { s, buf: Vec::new() })
    }

    fn fill(&mut self) {
        let mut b = [0u8; 65536];
        // A timeout just means nothing arrived yet.
        if let Ok(n) = self.s.read(&mut b) {
            self.buf.extend_from_slice(&b[..n]);
        }
    }

    fn tap_frames(&mut self, dur: Duration) -> Vec<(TapHeader, Vec<f32>)> {
        let end = Instant::now() + dur;
        let mut out = Vec::new();
        while Instant::now() < end {
            self.fill();
            while let Some((h, s, used)) = decode_frame(&self.buf) {
                out.push((h, s));
                self.buf.drain(..used);
            }
        }
        out
    }

    fn snapshots(&mut self, dur: Duration) -> Vec<Snapshot> {
        let end = Instant::now() + dur;
        let mut out = Vec::new();
        while Instant::now() < end {
            self.fill();
            while let Some((s, used)) = Snapshot::decode(&self.buf) {
                out.push(s);
                self.buf.drain(..used);
            }
        }
        out
    }
}

fn socket_mode(path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

fn assert_contiguous(frames: &[(TapHeader, Vec<f32>)]) {
    for w in frames.windows(2) {
        assert_eq!(
            w[1].0.position,
            w[0].0.position + u64::from(w[0].0.frames),
            "gap in {:?} -> {:?}",
            w[0].0,
            w[1].0
        );
        assert!(w[1].0.nsec > w[0].0.nsec);
    }
}

#[test]
fn each_node_type_loads_from_a_conf_fragment_and_from_pw_cli_and_runs() {
    let frag = r#"
context.objects = [
    { factory = spa-node-factory args = { factory.name = mugge.meter library.name = mugge/libspa-mugge
        mugge.ports = dsp node.name = conf-bare-meter media.class = Stream/Input/Audio audio.channels = 3 object.linger = true } }
    { factory = spa-node-factory args = { factory.name = mugge.tap library.name = mugge/libspa-mugge
        mugge.ports = dsp node.name = conf-bare-tap media.class = Stream/Input/Audio audio.channels = 2 object.linger = true } }
    { factory = spa-node-factory args = { factory.name = mugge.siggen library.name = mugge/libspa-mugge
        mugge.ports = dsp node.name = conf-bare-gen media.class = Stream/Output/Audio audio.channels = 1 object.linger = true } }
    { factory = adapter args = { factory.name = mugge.meter library.name = mugge/libspa-mugge
        node.name = conf-adapter-meter media.class = Stream/Input/Audio audio.channels = 3 object.linger = true } }
    { factory = adapter args = { factory.name = mugge.tap library.name = mugge/libspa-mugge
        node.name = conf-adapter-tap media.class = Stream/Input/Audio audio.channels = 2 object.linger = true } }
    { factory = adapter args = { factory.name = mugge.siggen library.name = mugge/libspa-mugge
        node.name = conf-adapter-gen media.class = Stream/Output/Audio audio.channels = 1 object.linger = true } }
]
"#;
    let stack = start(Stack::builder().pipewire_fragment("60-mugge-plugin-test.conf", frag));
    for via in [Via::Bare, Via::Adapter] {
        let p = format!("cli-{via:?}").to_lowercase();
        meter_via(&stack, via, &format!("{p}-meter"), 2, "").unwrap();
        tap_via(&stack, via, &format!("{p}-tap"), 2).unwrap();
        siggen_via(&stack, via, &format!("{p}-gen")).unwrap();
    }
    let mut names = Vec::new();
    for (p, via) in [
        ("conf-bare", Via::Bare),
        ("conf-adapter", Via::Adapter),
        ("cli-bare", Via::Bare),
        ("cli-adapter", Via::Adapter),
    ] {
        let (m, t, g) = (format!("{p}-meter"), format!("{p}-tap"), format!("{p}-gen"));
        stack.wait_for_port(&t, &via.port(true, 2), T).unwrap();
        stack.wait_for_port(&g, &via.port(false, 1), T).unwrap();
        stack.wait_for_port(&m, &via.port(true, 2), T).unwrap();
        assert!(node_prop(&stack, &m, "mugge.meter.socket")
            .unwrap()
            .ends_with(&format!("mugge/meter-{m}.sock")));
        assert_eq!(node_prop(&stack, &m, "mugge.meter.ppm").unwrap(), "I");
        assert!(node_prop(&stack, &t, "mugge.tap.socket")
            .unwrap()
            .ends_with(&format!("mugge/tap-{t}.sock")));
        assert_eq!(
            node_prop(&stack, &g, "mugge.siggen.max-peak-dbfs").unwrap(),
            "-20"
        );
        assert_eq!(
            node_prop(&stack, &m, "media.class").unwrap(),
            "Stream/Input/Audio"
        );
        assert!(!node_prop(&stack, &m, "node.description")
            .unwrap()
            .is_empty());
        assert_eq!(
            params(&stack, &g).unwrap()["siggen.max-peak"].as_f64(),
            Some(-20.0)
        );
        if via == Via::Bare {
            // Ports named for people, positions AUX0.., as PipeWire's DSP ports say them.
            let gr = stack.dump().unwrap();
            let node = gr.node(&m).unwrap();
            let mut ports: Vec<(String, String, String)> = gr
                .ports_of(node.id)
                .into_iter()
                .map(|p| {
                    let dsp = p.props.get("format.dsp").and_then(Value::as_str);
                    (p.name.clone(), p.channel.clone(), dsp.unwrap_or("").into())
                })
                .collect();
            ports.sort();
            let want: Vec<(String, String, String)> = (1..=3)
                .map(|c| {
                    (
                        format!("input_{c}"),
                        format!("AUX{}", c - 1),
                        "32 bit float mono audio".into(),
                    )
                })
                .collect();
            if p == "conf-bare" {
                assert_eq!(ports, want, "{m} ports");
            }
            assert_eq!(
                node_prop(&stack, &m, "audio.position").unwrap(),
                if p == "conf-bare" {
                    "[ AUX0 AUX1 AUX2 ]"
                } else {
                    "[ AUX0 AUX1 ]"
                }
            );
        }
        let out = format!("{g}:{}", via.port(false, 1));
        stack
            .link(&out, &format!("{m}:{}", via.port(true, 1)))
            .unwrap();
        stack
            .link(&out, &format!("{t}:{}", via.port(true, 1)))
            .unwrap();
        stack
            .link(&out, &format!("{HW_OUT}:playback_AUX0"))
            .unwrap();
        names.extend([m, t, g]);
    }
    stack
        .wait_until("all twelve plugin nodes running", T, |g| {
            names
                .iter()
                .all(|n| g.node(n).is_some_and(|n| n.state == "running"))
        })
        .unwrap();
    // pw-top's last snapshot: every plugin node running (R) with no errors (ERR column).
    let top = stack.run("pw-top", &["-b", "-n", "3"]).unwrap();
    let last = top.rsplit("NAME").next().unwrap();
    for n in &names {
        let line = last
            .lines()
            .find(|l| l.split_whitespace().last() == Some(n.as_str()))
            .unwrap_or_else(|| panic!("{n} not in pw-top:\n{top}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cols[0], cols[8]), ("R", "0"), "pw-top: {line}");
    }
    // Behind the adapter, `node.channel-names` makes its port names one-based too.
    create_via(
        &stack,
        Via::Adapter,
        "mugge.meter",
        "cli-adapter-named",
        "Stream/Input/Audio",
        "audio.channels=3 node.channel-names=[ 1 2 3 ]",
    )
    .unwrap();
    stack
        .wait_for_port("cli-adapter-named", "input_3", T)
        .unwrap();
    let gr = stack.dump().unwrap();
    let node = gr.node("cli-adapter-named").unwrap();
    let port = gr
        .ports_of(node.id)
        .into_iter()
        .find(|p| p.name == "input_3")
        .unwrap();
    assert_eq!(port.channel, "AUX2");
    let p = stack.profile(200).unwrap();
    assert_eq!(p.xruns, 0);
    for n in [
        "conf-bare-meter",
        "cli-bare-tap",
        "cli-bare-gen",
        "conf-adapter-meter",
    ] {
        assert!(
            p.node(n).is_some_and(|c| c.cycles > 100),
            "{n} is scheduled every cycle"
        );
    }
}

#[test]
fn meter_reads_a_known_sine_within_0_05_db_with_increasing_graph_clock_stamps() {
    let stack = start(Stack::builder());
    siggen(&stack, "gen").unwrap();
    meter(&stack, "meter", 2, "").unwrap();
    // The same meter behind the adapter reads the same.
    meter_via(&stack, Via::Adapter, "meter-a", 2, "").unwrap();
    stack.link("gen:output_1", "meter:input_1").unwrap();
    stack.link("gen:output_1", "meter-a:input_AUX0").unwrap();
    stack
        .link("gen:output_1", &format!("{HW_OUT}:playback_AUX0"))
        .unwrap();
    let path = node_prop(&stack, "meter", "mugge.meter.socket").unwrap();
    assert_eq!(socket_mode(&path), 0o600);
    let mut r = Reader::connect(&path).unwrap();
    set_params(&stack, "gen", r#""siggen.signal" "sine" "siggen.frequency" 997.0 "siggen.level" -26.0 "siggen.running" true"#).unwrap();
    // Let the ramp and the RMS window settle, then judge a second of snapshots.
    r.snapshots(Duration::from_millis(1200));
    let snaps = r.snapshots(Duration::from_secs(1));
    assert!(snaps.len() >= 20, "~30 Hz snapshots, got {}", snaps.len());
    for w in snaps.windows(2) {
        assert!(
            w[1].position > w[0].position && w[1].nsec > w[0].nsec && w[1].seq == w[0].seq + 1,
            "{w:?}"
        );
    }
    let rms_ref = -26.0 + db(std::f64::consts::FRAC_1_SQRT_2);
    for s in &snaps {
        let c = s.channels();
        assert!(
            (c[0].peak_db as f64 + 26.0).abs() < 0.05,
            "peak {}",
            c[0].peak_db
        );
        assert!(
            (c[0].rms_db as f64 - rms_ref).abs() < 0.05,
            "rms {} vs {rms_ref}",
            c[0].rms_db
        );
        assert!(c[1].peak_db < -150.0, "channel 2 is silent");
    }
    // The same readings reach pw-dump, refreshed (param change events at the snapshot rate).
    let a = params(&stack, "meter").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = params(&stack, "meter").unwrap();
    assert!(
        b["meter.seq"].as_i64() > a["meter.seq"].as_i64(),
        "Props are live: {:?} {:?}",
        a["meter.seq"],
        b["meter.seq"]
    );
    assert!(
        (f64_at(&b["meter.peak"], 0) + 26.0).abs() < 0.05,
        "{:?}",
        b["meter.peak"]
    );
    let a = params(&stack, "meter-a").unwrap();
    assert!(
        (f64_at(&a["meter.peak"], 0) + 26.0).abs() < 0.05
            && (f64_at(&a["meter.rms"], 0) - rms_ref).abs() < 0.05
            && f64_at(&a["meter.peak"], 1) < -150.0,
        "adapter meter: {:?} {:?}",
        a["meter.peak"],
        a["meter.rms"]
    );
}

fn burst(freq: f64, amp: f32, secs: f64) -> Vec<f32> {
    let n = (secs * 48000.0).round() as usize;
    (0..n)
        .map(|i| amp * (std::f64::consts::TAU * freq * i as f64 / 48000.0).sin() as f32)
        .collect()
}

#[test]
fn ppm_bursts_read_as_iec_60268_10_says() {
    let stack = start(Stack::builder());
    meter(&stack, "ppm1", 1, "meter.ppm=I").unwrap();
    meter(&stack, "ppm2", 1, "meter.ppm=II").unwrap();
    // Steady 5 kHz, silence, a 5 ms burst, silence, a 10 ms burst, silence.
    let mut sig = burst(5000.0, 0.5, 1.0);
    for part in [
        burst(0.0, 0.0, 2.0),
        burst(5000.0, 0.5, 0.005),
        burst(0.0, 0.0, 2.0),
        burst(5000.0, 0.5, 0.010),
    ] {
        sig.extend(part);
    }
    sig.extend(burst(0.0, 0.0, 1.0));
    let mut r1 =
        Reader::connect(&node_prop(&stack, "ppm1", "mugge.meter.socket").unwrap()).unwrap();
    let mut r2 =
        Reader::connect(&node_prop(&stack, "ppm2", "mugge.meter.socket").unwrap()).unwrap();
    let player = stack.play("bursts", 1, sig).unwrap();
    stack
        .link(
            &format!("{}:output_AUX0", player.node_name()),
            "ppm1:input_1",
        )
        .unwrap();
    stack
        .link(
            &format!("{}:output_AUX0", player.node_name()),
            "ppm2:input_1",
        )
        .unwrap();
    stack
        .link(
            &format!("{}:output_AUX0", player.node_name()),
            &format!("{HW_OUT}:playback_AUX0"),
        )
        .unwrap();
    let (s1, s2) = std::thread::scope(|sc| {
        let a = sc.spawn(|| r1.snapshots(Duration::from_secs(8)));
        let b = sc.spawn(|| r2.snapshots(Duration::from_secs(8)));
        (a.join().unwrap(), b.join().unwrap())
    });
    // Split each meter's PPM trace at the silences: steady, first burst, second burst.
    let peaks = |s: &[Snapshot]| -> Vec<f32> {
        let mut out = Vec::new();
        let mut cur: Option<f32> = None;
        for r in s.iter().map(|s| s.channels()[0]) {
            if r.peak_db > -60.0 {
                cur = Some(cur.map_or(r.ppm_db, |c: f32| c.max(r.ppm_db)));
            } else if let Some(c) = cur.take() {
                out.push(c);
            }
        }
        out
    };
    let (p1, p2) = (peaks(&s1), peaks(&s2));
    assert_eq!(p1.len(), 3, "steady + 2 bursts seen by type I: {p1:?}");
    assert_eq!(p2.len(), 3, "steady + 2 bursts seen by type II: {p2:?}");
    assert!(
        (p1[1] - p1[0] + 2.0).abs() < 0.25,
        "type I 5 ms burst: {p1:?}"
    );
    assert!(
        (p2[2] - p2[0] + 2.0).abs() < 0.25,
        "type II 10 ms burst: {p2:?}"
    );
}

#[test]
fn clip_latch_holds_until_reset() {
    let stack = start(Stack::builder());
    meter(&stack, "clipm", 1, "").unwrap();
    let mut sig = burst(1000.0, 0.5, 0.5);
    sig.extend(burst(1000.0, 1.2, 0.01));
    let player = stack.play("hot", 1, sig).unwrap();
    stack
        .link(
            &format!("{}:output_AUX0", player.node_name()),
            "clipm:input_1",
        )
        .unwrap();
    stack
        .link(
            &format!("{}:output_AUX0", player.node_name()),
            &format!("{HW_OUT}:playback_AUX0"),
        )
        .unwrap();
    let start = Instant::now();
    let clipped = loop {
        let p = params(&stack, "clipm").unwrap();
        if f64_at(&p["meter.clip"], 0) == 1.0 {
            break p;
        }
        assert!(start.elapsed() < T, "no clip seen: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = f64_at(&clipped["meter.clip-count"], 0);
    assert!(
        count > 50.0,
        "a 10 ms 1.2-amplitude 1 kHz burst clips many samples: {count}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let held = params(&stack, "clipm").unwrap();
    assert_eq!(f64_at(&held["meter.clip"], 0), 1.0, "the latch holds");
    assert!(
        f64_at(&held["meter.peak"], 0) < -100.0,
        "the signal is long gone"
    );
    set_params(&stack, "clipm", r#""meter.reset-clip" true"#).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let reset = params(&stack, "clipm").unwrap();
    assert_eq!(f64_at(&reset["meter.clip"], 0), 0.0);
    assert_eq!(f64_at(&reset["meter.clip-count"], 0), 0.0);
}

#[test]
fn tap_delivers_bit_exact_generator_samples_with_correct_headers() {
    let stack = start(Stack::builder());
    siggen(&stack, "gen").unwrap();
    tap(&stack, "tap", 1).unwrap();
    stack.link("gen:output_1", "tap:input_1").unwrap();
    stack
        .link("gen:output_1", &format!("{HW_OUT}:playback_AUX0"))
        .unwrap();
    let mut r = Reader::connect(&node_prop(&stack, "tap", "mugge.tap.socket").unwrap()).unwrap();
    r.tap_frames(Duration::from_millis(300));
    set_params(
        &stack,
        "gen",
        r#""siggen.signal" "white" "siggen.seed" 4242 "siggen.level" -20.0 "siggen.running" true"#,
    )
    .unwrap();
    let frames = r.tap_frames(Duration::from_secs(2));
    assert!(frames.len() > 50);
    for (h, s) in &frames {
        assert_eq!((h.channels, h.rate, h.lost), (1, 48000, 0));
        assert_eq!(s.len(), h.frames as usize);
    }
    assert_contiguous(&frames);
    let got: Vec<f32> = frames.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let first = got
        .iter()
        .position(|x| *x != 0.0)
        .expect("the generator started");
    let mut g = Generator::new(48000);
    g.set_seed(4242);
    g.set_signal(Signal::White);
    g.set_level_db(-20.0);
    g.start();
    let mut want = vec![0.0f32; got.len() - first];
    g.fill(&mut want);
    let n = want.len();
    assert!(n > 48000, "a second of audio compared");
    let diff = got[first..]
        .iter()
        .zip(&want)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(
        diff, None,
        "tap output differs from the generator's known signal"
    );
}

#[test]
fn tap_serves_three_readers_and_a_stalled_one_costs_the_others_nothing() {
    let stack = start(Stack::builder());
    siggen(&stack, "gen").unwrap();
    tap(&stack, "tap8", 8).unwrap();
    for c in 0..8 {
        stack
            .link("gen:output_1", &format!("tap8:input_{}", c + 1))
            .unwrap();
    }
    stack
        .link("gen:output_1", &format!("{HW_OUT}:playback_AUX0"))
        .unwrap();
    set_params(
        &stack,
        "gen",
        r#""siggen.signal" "pink" "siggen.running" true"#,
    )
    .unwrap();
    let path = node_prop(&stack, "tap8", "mugge.tap.socket").unwrap();
    assert_eq!(socket_mode(&path), 0o600);
    let _stalled = UnixStream::connect(&path).unwrap();
    let mut a = Reader::connect(&path).unwrap();
    let mut b = Reader::connect(&path).unwrap();
    // 8 ch at 48 kHz is 1.5 MB/s: the stalled reader's queue (4 MB) overflows after ~3 s.
    // Meanwhile readers come and go (some read a little, some nothing).
    let (fa, fb) = std::thread::scope(|sc| {
        let ta = sc.spawn(|| a.tap_frames(Duration::from_secs(7)));
        let tb = sc.spawn(|| b.tap_frames(Duration::from_secs(7)));
        sc.spawn(|| {
            for i in 0..20 {
                let mut r = Reader::connect(&path).unwrap();
                if i % 2 == 0 {
                    r.tap_frames(Duration::from_millis(150));
                }
                drop(r);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for f in [&fa, &fb] {
        assert!(f.len() > 250, "{} frames", f.len());
        assert!(f
            .iter()
            .all(|(h, s)| h.lost == 0 && h.channels == 8 && s.len() == 8 * h.frames as usize));
        assert_contiguous(f);
    }
    let p = params(&stack, "tap8").unwrap();
    assert!(
        p["tap.reader-drops"].as_i64().unwrap_or(0) > 0,
        "the stalled reader lost frames: {p:?}"
    );
    assert_eq!(
        p["tap.lost"].as_i64(),
        Some(0),
        "the graph side lost nothing"
    );
    let prof = stack.profile(300).unwrap();
    assert_eq!(prof.xruns, 0);
}

#[test]
fn siggen_property_fuzz_never_exceeds_minus_20_dbfs() {
    let stack = start(Stack::builder());
    siggen(&stack, "gen").unwrap();
    tap(&stack, "tap", 1).unwrap();
    stack.link("gen:output_1", "tap:input_1").unwrap();
    stack
        .link("gen:output_1", &format!("{HW_OUT}:playback_AUX0"))
        .unwrap();
    let path = node_prop(&stack, "tap", "mugge.tap.socket").unwrap();
    let mut x = 0x9e37_79b9u32;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let reader = std::thread::spawn(move || {
        let mut r = Reader::connect(&path).unwrap();
        r.tap_frames(Duration::from_secs(14))
    });
    let signals = ["sine", "white", "pink", "sweep", "silence", "brown"];
    let t0 = Instant::now();
    let mut writes = 0;
    while t0.elapsed() < Duration::from_secs(12) {
        let level = (rnd() % 200) as f64 / 2.0 - 60.0; // -60 .. +40 dBFS
        let freq = (rnd() % 40000) as f64 - 1000.0;
        let sig = signals[rnd() as usize % signals.len()];
        let run = rnd() % 4 != 0;
        let dur = (rnd() % 50) as f64 / 10.0;
        let pairs = format!(
            r#""siggen.level" {level:.1} "siggen.frequency" {freq:.1} "siggen.signal" "{sig}" "siggen.sweep.duration" {dur:.1} "siggen.sweep.start" {freq:.1} "siggen.running" {run}"#
        );
        set_params(&stack, "gen", &pairs).unwrap();
        writes += 1;
        std::thread::sleep(Duration::from_millis((rnd() % 150) as u64));
    }
    let frames = reader.join().unwrap();
    let samples: Vec<f32> = frames.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(samples.len() > 48000 * 10, "{} samples", samples.len());
    assert!(writes > 50);
    assert!(peak <= MAX_PEAK_LIN, "peak {peak} above the -20 dBFS cap");
    assert!(
        peak > MAX_PEAK_LIN * 0.9,
        "the fuzz did drive the generator to the cap: {peak}"
    );
}

fn octave_bands_db(s: &[f32]) -> Vec<f64> {
    let n = 1 << 15;
    let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut spec = fft.make_output_vec();
    let mut acc = vec![0f64; n / 2 + 1];
    let win: Vec<f64> = (0..n)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos())
        .collect();
    let mut start = 0;
    while start + n <= s.len() {
        let mut buf: Vec<f64> = s[start..start + n]
            .iter()
            .zip(&win)
            .map(|(x, w)| *x as f64 * w)
            .collect();
        fft.process(&mut buf, &mut spec).unwrap();
        for (a, c) in acc.iter_mut().zip(&spec) {
            *a += c.norm_sqr();
        }
        start += n / 2;
    }
    let bin = 48000.0 / n as f64;
    (0..10)
        .map(|k| {
            let lo = 20.0 * 2f64.powi(k);
            let p: f64 = acc
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as f64 * bin >= lo && (*i as f64 * bin) < 2.0 * lo)
                .map(|(_, a)| a)
                .sum();
            10.0 * p.log10()
        })
        .collect()
}

#[test]
fn tapped_pink_noise_slope_and_sweep_frequency_law() {
    let stack = start(Stack::builder());
    siggen(&stack, "gen").unwrap();
    tap(&stack, "tap", 1).unwrap();
    stack.link("gen:output_1", "tap:input_1").unwrap();
    stack
        .link("gen:output_1", &format!("{HW_OUT}:playback_AUX0"))
        .unwrap();
    let mut r = Reader::connect(&node_prop(&stack, "tap", "mugge.tap.socket").unwrap()).unwrap();
    set_params(
        &stack,
        "gen",
        r#""siggen.signal" "pink" "siggen.running" true"#,
    )
    .unwrap();
    r.tap_frames(Duration::from_millis(300));
    let pink: Vec<f32> = r
        .tap_frames(Duration::from_secs(25))
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect();
    assert!(pink.len() > 20 * 48000);
    let bands = octave_bands_db(&pink);
    let mean = bands.iter().sum::<f64>() / bands.len() as f64;
    for (k, b) in bands.iter().enumerate() {
        assert!(
            (b - mean).abs() < 0.5,
            "octave from {} Hz: {b:.2} dB vs mean {mean:.2}: {bands:?}",
            20 << k
        );
    }

    // A one-shot 20 Hz -> 20 kHz sweep over 3 s, without fade-in so its start is sharp.
    set_params(&stack, "gen", r#""siggen.running" false"#).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    set_params(
        &stack,
        "gen",
        r#""siggen.signal" "sweep" "siggen.sweep.start" 20.0 "siggen.sweep.end" 20000.0 "siggen.sweep.duration" 3.0 "siggen.sweep.fade-in" 0.0 "siggen.sweep.fade-out" 0.01 "siggen.repeat" false "siggen.running" true"#,
    )
    .unwrap();
    let frames = r.tap_frames(Duration::from_secs(4));
    let mut pos = Vec::new();
    let mut x = Vec::new();
    for (h, s) in &frames {
        for (i, v) in s.iter().enumerate() {
            pos.push(h.position + i as u64);
            x.push(*v);
        }
    }
    // The sweep is the first non-zero sample after the 200 ms of silence (the tail of the pink
    // noise may still be in the first frames read).
    let mut zeros = 0;
    let first = (0..x.len())
        .find(|&i| {
            let hit = x[i] != 0.0 && zeros >= 2400;
            zeros = if x[i] == 0.0 { zeros + 1 } else { 0 };
            hit
        })
        .expect("sweep seen");
    // Sample 0 of the sweep is sin(0) = 0: the sweep started one sample before the first non-zero.
    let p = params(&stack, "gen").unwrap();
    let started = p["siggen.sweep.started-position"].as_i64().unwrap();
    assert_eq!(
        started as u64,
        pos[first] - 1,
        "sweep start stamped with the graph clock"
    );
    let sw = SweepParams {
        start_hz: 20.0,
        end_hz: 20000.0,
        duration_s: 3.0,
        fade_in_s: 0.0,
        fade_out_s: 0.01,
    };
    let l = p["siggen.sweep.rate-constant"].as_f64().unwrap();
    assert!((l - sw.rate_constant_l()).abs() < 1e-4, "published L {l}");
    let s0 = first - 1;
    for t in [0.5f64, 1.0, 1.5, 2.0, 2.5] {
        let i0 = s0 + (t * 48000.0) as usize;
        let zc: Vec<f64> = (i0..i0 + 2400)
            .filter(|&i| x[i] <= 0.0 && x[i + 1] > 0.0)
            .map(|i| i as f64 + x[i] as f64 / (x[i] as f64 - x[i + 1] as f64))
            .collect();
        let n = zc.len() - 1;
        let f = n as f64 * 48000.0 / (zc[n] - zc[0]);
        let tc = ((zc[0] + zc[n]) / 2.0 - s0 as f64) / 48000.0;
        assert!(
            (f / sw.frequency_at(tc) - 1.0).abs() < 0.01,
            "t={t}: {f} Hz vs {}",
            sw.frequency_at(tc)
        );
    }
}

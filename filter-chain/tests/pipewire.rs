//! Generated sets on the real stack (PipeWire + WirePlumber + D-Bus, hardware mocked): configs load
//! with the expected nodes and ports per topology (standalone and as a fragment); a known signal
//! through the chain, captured at the mock hardware, matches an offline convolution with the same
//! WAVs; the mute control silences a channel; a configured delay shows up as exactly that many
//! samples.

use mugge_filter_chain::set::{self, Manifest};
use mugge_filter_chain::validate::load_rig;
use mugge_testkit::{ChildGuard, Graph, Stack, HW_OUT};
use realfft::RealFftPlanner;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// One stack at a time: two cores, and parallel stacks with 16k-tap convolvers drop samples.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn profile_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conf/profiles")
        .join(name)
}

fn make_set(profile: &str, tag: &str, root: &Path) -> (PathBuf, Manifest) {
    let p = profile_path(profile);
    let rig = load_rig(&p, None).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let dir = root.join(tag);
    let m = set::write_set(&rig, &text, &dir, tag, None, &|_| {}).unwrap();
    (dir, m)
}

fn run_chain(stack: &Stack, dir: &Path) -> ChildGuard {
    let mut cmd = stack.command("pipewire");
    cmd.arg("-c").arg(dir.join(set::CONFIG));
    stack.spawn("filter-chain", &cmd).unwrap()
}

fn node_names(tag: &str) -> (String, String) {
    (
        format!("mugge-filters-in.{tag}"),
        format!("mugge-filters-out.{tag}"),
    )
}

/// "node:port" of `node`'s non-monitor port in `dir` ("input"/"output") whose audio.channel is `ch`.
fn port_by_channel(g: &Graph, node: &str, dir: &str, ch: &str) -> String {
    let n = g.node(node).unwrap_or_else(|| panic!("no node {node}"));
    let p = g
        .ports_of(n.id)
        .into_iter()
        .find(|p| p.direction == dir && !p.is_monitor && p.channel == ch)
        .unwrap_or_else(|| panic!("{node}: no {dir} port for channel {ch}"));
    format!("{node}:{}", p.name)
}

fn count_ports(g: &Graph, node: &str, dir: &str) -> usize {
    let n = g.node(node).unwrap();
    g.ports_of(n.id)
        .into_iter()
        .filter(|p| p.direction == dir && !p.is_monitor)
        .count()
}

/// Names of the `Props` params (`<block>:<control>`) a node exposes.
fn prop_controls(g: &Graph, node: &str) -> Vec<String> {
    let n = g.node(node).unwrap();
    let mut out: Vec<String> = Vec::new();
    if let Some(serde_json::Value::Array(props)) = n.params.get("Props") {
        for p in props {
            if let Some(serde_json::Value::Array(kv)) = p.get("params") {
                for k in kv.iter().step_by(2) {
                    if let Some(s) = k.as_str() {
                        // both Props objects list the controls: keep one of each
                        if !out.iter().any(|o| o == s) {
                            out.push(s.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

fn wait_chain(stack: &Stack, tag: &str, ports_in: usize) -> Graph {
    let (cin, cout) = node_names(tag);
    stack
        .wait_until("the filter-chain nodes and their ports", T, |g| {
            let has_props = |n: &str| g.node(n).is_some_and(|n| n.props.contains_key("mugge.set"));
            has_props(&cin)
                && has_props(&cout)
                && count_ports(g, &cin, "input") == ports_in
                && count_ports(g, &cout, "output") == 8
        })
        .unwrap()
}

#[test]
fn every_shipped_topology_loads_with_the_expected_nodes_ports_and_controls() {
    let _serial = serial();
    let stack = Stack::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    for (i, profile) in [
        "2way-80hz-sealed-subs.toml",
        "2way-80hz-ported-subs.toml",
        "2way-80hz-small-boosted-subs.toml",
        "3way-stereo.toml",
        "3way-mono-sub.toml",
        "4way-stereo.toml",
    ]
    .iter()
    .enumerate()
    {
        let tag = format!("t{i}");
        let (dir, m) = make_set(profile, &tag, root.path());
        let chain = run_chain(&stack, &dir);
        let ports_in = 2 + m.monitors.len();
        let g = wait_chain(&stack, &tag, ports_in);
        let (cin, cout) = node_names(&tag);
        for name in [&cin, &cout] {
            let n = g.node(name).unwrap();
            assert_eq!(
                n.props.get("mugge.set").and_then(|v| v.as_str()),
                Some(m.set_id.as_str())
            );
            assert_eq!(
                n.props.get("mugge.profile").and_then(|v| v.as_str()),
                Some(m.profile_name.as_str()),
                "{profile}: {:?}",
                n.props
            );
        }
        // exactly the topology's channels: 8 outputs, program + monitors in
        assert_eq!(count_ports(&g, &cin, "input"), ports_in, "{profile}");
        assert_eq!(count_ports(&g, &cout, "output"), 8, "{profile}");
        // WirePlumber linked nothing: the controller is the only link manager
        let n_in = g.node(&cin).unwrap().id;
        let n_out = g.node(&cout).unwrap().id;
        assert!(
            g.links_of(n_in).is_empty() && g.links_of(n_out).is_empty(),
            "{profile}"
        );
        // every speaker channel's controls are there, with their real names
        let mut controls = prop_controls(&g, &cin);
        controls.extend(prop_controls(&g, &cout));
        controls.sort();
        controls.dedup();
        for c in &m.channels {
            let want = format!("ch{}_gain:Mult", c.channel);
            assert!(
                controls.contains(&want),
                "{profile}: {want} not in {controls:?}"
            );
            if c.delay_samples > 0 {
                let want = format!("ch{}_delay:Delay (s)", c.channel);
                assert!(
                    controls.contains(&want),
                    "{profile}: {want} not in {controls:?}"
                );
            }
        }
        let gains = controls
            .iter()
            .filter(|c| c.ends_with("_gain:Mult"))
            .count();
        assert_eq!(gains, m.channels.len(), "{profile}: {controls:?}");
        drop(chain);
        stack
            .wait_until("the chain gone", T, |g| g.node(&cin).is_none())
            .unwrap();
    }
}

#[test]
fn the_config_also_loads_as_a_daemon_fragment() {
    let _serial = serial();
    // The fragment goes into the project daemon's own `pipewire.conf.d/`, as on the box.
    let root = tempfile::tempdir().unwrap();
    let (dir, m) = make_set("3way-mono-sub.toml", "frag", root.path());
    let fragment = std::fs::read_to_string(dir.join(set::FRAGMENT)).unwrap();
    let stack = Stack::builder()
        .pipewire_fragment("70-mugge-filters.conf", &fragment)
        .start()
        .unwrap();
    let g = wait_chain(&stack, "frag", 2 + m.monitors.len());
    assert!(g.node("mugge-filters-out.frag").is_some());
}

/// Linear convolution (FFT), `x * h`, length x.len() + h.len() - 1.
fn convolve(x: &[f32], h: &[f32]) -> Vec<f64> {
    let n = (x.len() + h.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let spec = |v: &[f32]| {
        let mut t = vec![0.0; n];
        for (a, b) in t.iter_mut().zip(v) {
            *a = f64::from(*b);
        }
        let mut s = fwd.make_output_vec();
        fwd.process(&mut t, &mut s).unwrap();
        s
    };
    let (a, b) = (spec(x), spec(h));
    let mut prod: Vec<_> = a.iter().zip(&b).map(|(p, q)| p * q).collect();
    let mut out = vec![0.0; n];
    inv.process(&mut prod, &mut out).unwrap();
    out.truncate(x.len() + h.len() - 1);
    out.iter().map(|v| v / n as f64).collect()
}

fn noise(seed: u32, len: usize, amp: f32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            amp * ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0)
        })
        .collect()
}

struct Run {
    /// Captured at the mock hardware, per output channel (1..=8 -> index 0..8), aligned so that
    /// index 0 is the first sample of the played signal.
    captured: Vec<Vec<f32>>,
    left: Vec<f32>,
    right: Vec<f32>,
}

/// Plays L, R and four monitor signals through the chain of `dir` into the mock hardware and
/// records the hardware's monitor ports. `before_play` runs once everything is linked.
///
/// A loaded machine can drop a cycle somewhere in player -> chain -> recorder; the bit-exact
/// monitor passthrough detects it, and the run is measured again (at most three times) rather
/// than blamed on the filters.
fn play_through(stack: &Stack, tag: &str, m: &Manifest, before_play: impl Fn(&Graph)) -> Run {
    let (_, cout) = node_names(tag);
    let g = wait_chain(stack, tag, 2 + m.monitors.len());
    for n in 1..=8 {
        stack
            .link(
                &port_by_channel(&g, &cout, "output", &format!("AUX{}", n - 1)),
                &format!("{HW_OUT}:playback_AUX{}", n - 1),
            )
            .unwrap();
    }
    let mut last = String::new();
    for attempt in 1..=3 {
        match play_once(stack, tag, m, &before_play, attempt) {
            Ok(run) => return run,
            Err(e) => {
                eprintln!("attempt {attempt}: {e}; measuring again");
                last = e;
            }
        }
    }
    panic!("{last}");
}

fn play_once(
    stack: &Stack,
    tag: &str,
    m: &Manifest,
    before_play: &impl Fn(&Graph),
    attempt: u32,
) -> Result<Run, String> {
    let len = 24_000;
    // noise for the tops, low sines for the subs
    let tone = |hz: f32, ph: f32| {
        (0..len).map(move |i| 0.2 * (std::f32::consts::TAU * hz * i as f32 / 48_000.0 + ph).sin())
    };
    let left: Vec<f32> = noise(1, len, 0.15)
        .iter()
        .zip(tone(60.0, 0.0))
        .map(|(a, b)| a + b)
        .collect();
    let right: Vec<f32> = noise(2, len, 0.15)
        .iter()
        .zip(tone(45.0, 1.0))
        .map(|(a, b)| a + b)
        .collect();
    let mons: Vec<Vec<f32>> = (0..m.monitors.len())
        .map(|i| noise(10 + i as u32, len, 0.25))
        .collect();
    let (cin, _) = node_names(tag);
    let g = wait_chain(stack, tag, 2 + m.monitors.len());
    let rec = stack.record(&format!("rec-{tag}-{attempt}"), 8).unwrap();
    for n in 1..=8 {
        stack
            .link(&format!("{HW_OUT}:monitor_AUX{}", n - 1), &rec.port(n))
            .unwrap();
    }
    before_play(&g);
    // Two seconds of silence first: pw-link links one port at a time and the stream runs from
    // the first link on, so the signal must start only once every port is linked.
    let lead = 96_000;
    // ... and a second of silence after it: pw-play holds back a partial last block.
    let pad = |v: &Vec<f32>| {
        let mut p = vec![0.0f32; lead];
        p.extend_from_slice(v);
        p.extend(std::iter::repeat_n(0.0f32, 48_000));
        p
    };
    let mut chans = vec![pad(&left), pad(&right)];
    chans.extend(mons.iter().map(pad));
    let player = stack
        .play(
            &format!("play-{tag}-{attempt}"),
            chans.len(),
            mugge_testkit::audio::interleave(&chans),
        )
        .unwrap();
    let in_ch: Vec<String> = (0..2 + m.monitors.len())
        .map(|i| format!("AUX{i}"))
        .collect();
    for (i, ch) in in_ch.iter().enumerate() {
        stack
            .link(&player.port(i + 1), &port_by_channel(&g, &cin, "input", ch))
            .unwrap();
    }
    rec.wait_frames(lead + len + 16_384 + 48_000, Duration::from_secs(30))
        .unwrap();
    let mut got = rec.stop();
    drop(player);
    // Align on the first monitor channel: a passthrough, so its samples arrive bit-exact.
    let mon_ch = m.monitors[0] as usize;
    let mon = &got[mon_ch - 1];
    let Some(start) = (0..mon.len() - 1000).find(|&o| mon[o..o + 1000] == mons[0][..1000]) else {
        let nz = mon.iter().position(|v| *v != 0.0);
        return Err(format!(
            "the monitor passthrough never arrived bit-exact: {} frames, first non-zero at {nz:?}: {:?}, want {:?}; other channels first non-zero: {:?}",
            mon.len(),
            nz.map(|i| &mon[i..i + 4]),
            &mons[0][..4],
            got.iter().map(|c| c.iter().position(|v| *v != 0.0)).collect::<Vec<_>>()
        ));
    };
    for (i, &c) in m.monitors.iter().enumerate() {
        let g = &got[c as usize - 1][start..start + len];
        if let Some(k) = (0..len).find(|&k| g[k] != mons[i][k]) {
            let j = (0..len - 8).find(|&j| mons[i][j..j + 8] == g[k..k + 8]);
            return Err(format!("monitor channel {c} is not a bit-exact passthrough: differs from sample {k} on; that audio is the signal's sample {j:?}"));
        }
    }
    for ch in got.iter_mut() {
        ch.drain(..start);
    }
    Ok(Run {
        captured: got,
        left,
        right,
    })
}

fn expected(run: &Run, m: &Manifest, dir: &Path, channel: u32, delay: usize) -> Vec<f64> {
    let c = m.channels.iter().find(|c| c.channel == channel).unwrap();
    let (taps, _) = set::read_wav(&dir.join(&c.file)).unwrap();
    let src: Vec<f32> = match c.role {
        mugge_filter_chain::profile::Role::Left => run.left.clone(),
        mugge_filter_chain::profile::Role::Right => run.right.clone(),
        mugge_filter_chain::profile::Role::Sum => run
            .left
            .iter()
            .zip(&run.right)
            .map(|(l, r)| 0.5 * l + 0.5 * r)
            .collect(),
    };
    let mult = 10f64.powf(c.trim_db / 20.0);
    let mut y: Vec<f64> = vec![0.0; delay];
    y.extend(convolve(&src, &taps).iter().map(|v| v * mult));
    y
}

fn max_error(got: &[f32], want: &[f64], n: usize) -> f64 {
    got.iter()
        .zip(want)
        .take(n)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_known_signal_matches_offline_convolution_and_delays_are_exact() {
    let _serial = serial();
    let stack = Stack::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (dir, m) = make_set("2way-80hz-sealed-subs.toml", "sig", root.path());
    let _chain = run_chain(&stack, &dir);
    let run = play_through(&stack, "sig", &m, |_| {});
    let n = 24_000 + 16_383;
    let mut worst: f64 = 0.0;
    for c in &m.channels {
        let got = &run.captured[c.channel as usize - 1];
        let want = expected(&run, &m, &dir, c.channel, c.delay_samples as usize);
        let peak = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let err = max_error(got, &want, n);
        eprintln!(
            "channel {}: max |captured - offline| = {err:.3e} (signal peak {peak:.3}, {:.1} dB below)",
            c.channel,
            20.0 * (peak / err).log10()
        );
        assert!(peak > 0.05, "channel {} carries no signal", c.channel);
        // float32 partitioned FFT convolution in PipeWire vs float64 here: -60 dB is above its
        // rounding noise (measured -76..-94 dB) and far below any wrong tap, gain or delay.
        assert!(err < peak * 1e-3, "channel {}: max error {err}", c.channel);
        worst = worst.max(err);

        // The configured delay is exactly that many samples: the best alignment of the captured
        // channel against the undelayed offline result is at the manifest's delay.
        let undelayed = expected(&run, &m, &dir, c.channel, 0);
        let lag = (0..400)
            .min_by(|&a, &b| {
                let e = |l: usize| max_error(&got[l..], &undelayed, 4000);
                e(a).total_cmp(&e(b))
            })
            .unwrap();
        assert_eq!(lag as u32, c.delay_samples, "channel {}", c.channel);
    }
    assert!(
        m.channels.iter().any(|c| c.delay_samples == 120),
        "the profile has a 2.5 ms delay"
    );
    eprintln!("worst max error over all channels: {worst:.3e}");
}

#[test]
fn the_mute_control_silences_exactly_its_channel() {
    let _serial = serial();
    let stack = Stack::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (dir, m) = make_set("2way-80hz-sealed-subs.toml", "mute", root.path());
    let _chain = run_chain(&stack, &dir);
    let run = play_through(&stack, "mute", &m, |g| {
        // The controls live on the filter-chain node that exposes them in Props.
        let (cin, cout) = node_names("mute");
        let node = [cin, cout]
            .into_iter()
            .find(|n| prop_controls(g, n).iter().any(|c| c == "ch3_gain:Mult"))
            .expect("no node exposes ch3_gain:Mult");
        let id = g.node(&node).unwrap().id.to_string();
        stack
            .pw_cli(&[
                "set-param",
                &id,
                "Props",
                "{ params = [ \"ch3_gain:Mult\" 0.0 ] }",
            ])
            .unwrap();
        stack
            .wait_until("ch3_gain:Mult = 0", T, |g| {
                let n = g.node(&node).unwrap();
                n.params
                    .get("Props")
                    .map(|p| p.to_string().contains("\"ch3_gain:Mult\",0.0"))
                    .unwrap_or(false)
            })
            .unwrap();
    });
    let n = 24_000 + 16_383;
    let ch3 = &run.captured[2][..n];
    assert!(
        ch3.iter().all(|v| *v == 0.0),
        "muted channel 3 carries signal"
    );
    // channel 4 (same filter, same input) still plays, as do the tops
    for ch in [1u32, 2, 4] {
        let want = expected(
            &run,
            &m,
            &dir,
            ch,
            m.channels[ch as usize - 1].delay_samples as usize,
        );
        let err = max_error(&run.captured[ch as usize - 1], &want, n);
        assert!(
            err < 1e-4,
            "channel {ch} changed by the mute of channel 3: {err}"
        );
    }
}

//! Profile activation on the real stack (issue 7): the controller runs real generated
//! filter-chains (16,384-tap convolvers), a sine plays into mugge-program and the mock
//! hardware's monitor outputs are recorded. Checks the safety flow (silence from the mute until
//! the ramp, monotonic steps, no overshoot), a gate failure that changes nothing, an abort
//! mid-ramp that leaves silence, and adoption of the running chain by a restarted controller.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mugge_testkit::Stack;

const RATE: usize = 48_000;
/// 10 ms blocks: exactly 10 periods of the 1 kHz test sine, so block peaks are steady.
const BLOCK: usize = 480;
const SILENT: f32 = 3.162e-5; // -90 dBFS
const RAMP_STEPS: usize = 6;
const RAMP_MS: u64 = 1500;

/// Shipped profiles and speakers, plus `3way-lr8` that the phase gate refuses.
fn profiles(root: &Path) -> PathBuf {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let dst = root.join("conf");
    copy_dir(&conf.join("profiles"), &dst.join("profiles"));
    copy_dir(&conf.join("speakers"), &dst.join("speakers"));
    let lr8 = std::fs::read_to_string(dst.join("profiles/3way-stereo.toml"))
        .unwrap()
        .replace("slope_db_per_oct = 24", "slope_db_per_oct = 48");
    std::fs::write(dst.join("profiles/3way-lr8.toml"), lr8).unwrap();
    dst.join("profiles")
}

fn config(profiles: &Path, sets: &Path) -> String {
    let mut c = format!(
        "{BASE_CONFIG}{APPS}\n[activation]\ndefault_profile = \"2way-80hz-sealed-subs\"\n\
         profiles_dir = \"{}\"\nsets_dir = \"{}\"\nramp_ms = {RAMP_MS}\nramp_steps = {RAMP_STEPS}\n",
        profiles.display(),
        sets.display()
    );
    c.push_str("\n[[extra.dj]]\nfrom = \"sine:1\"\nto = \"mugge-program:1\"\noptional = true\n");
    c.push_str("\n[[extra.dj]]\nfrom = \"sine:2\"\nto = \"mugge-program:2\"\noptional = true\n");
    for n in 1..=4 {
        c.push_str(&format!(
            "\n[[extra.dj]]\nfrom = \"usbstreamer-out:monitor:{n}\"\nto = \"rec:{n}\"\noptional = true\n"
        ));
    }
    c
}

fn chain(p: &mugge_controller::client::ControllerProxyBlocking<'_>) -> serde_json::Value {
    let s: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    s["chain"].clone()
}

fn peaks(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(BLOCK)
        .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect()
}

fn db(x: f32) -> f32 {
    20.0 * x.max(1e-12).log10()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < T, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn safety_flow_gate_failure_abort_and_restart_on_the_real_stack() {
    let _heavy = heavy();
    let stack: Stack = stack();
    let sets = stack.root().join("sets");
    let _chains = Chains(stack.root().to_path_buf());
    let prof = profiles(stack.root());
    let ctl = controller(&stack, &config(&prof, &sets), "controller");
    let p = proxy(&stack).unwrap();

    // First start: the default profile's chain comes up muted.
    wait("the default chain", || chain(&p)["tag"] == "a");
    assert_eq!(chain(&p)["gain_factor"], 0.0);

    let sine: Vec<f32> = (0..RATE * 60)
        .flat_map(|i| {
            let v = 0.25 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / RATE as f32).sin();
            [v, v]
        })
        .collect();
    let _player = stack.play("sine", 2, sine).unwrap();
    let rec = stack.record("rec", 4).unwrap();
    p.set_mode("dj").expect("dj ready");

    // Muted start: silence at the hardware although the sine plays.
    let mark = rec.frames();
    rec.wait_frames(mark + RATE / 2, T).unwrap();
    let ch = rec.snapshot();
    for (n, c) in ch.iter().enumerate() {
        let pk = c[mark..].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            pk < SILENT,
            "channel {} not muted at start: {} dB",
            n + 1,
            db(pk)
        );
    }
    p.unmute().expect("unmute");
    let mark = rec.frames();
    rec.wait_frames(mark + RATE / 2, T).unwrap();
    let old_level = *peaks(&rec.snapshot()[0][mark..]).last().unwrap();
    assert!(
        db(old_level) > -30.0,
        "default chain plays: {} dB",
        db(old_level)
    );

    // The safety flow to another profile.
    let mark = rec.frames();
    let t0 = Instant::now();
    let timings = p
        .activate_profile("2way-80hz-ported-subs", true)
        .expect("activation");
    let total = t0.elapsed();
    eprintln!(
        "activation phases (ms): {timings:?}, call {} ms",
        total.as_millis()
    );
    assert_eq!(chain(&p)["tag"], "b");
    let end = rec.frames();
    rec.wait_frames(end + RATE / 2, T).unwrap();
    let pk = peaks(&rec.snapshot()[0][mark..]);
    let steady = *pk.last().unwrap();
    assert!(db(steady) > -30.0, "new chain plays: {} dB", db(steady));
    // The mute is the silent run the ramp ends (an earlier one would be a dropout of the old
    // chain, e.g. under load while the new set is designed; counted and reported).
    let rise = pk
        .iter()
        .rposition(|&v| v < SILENT)
        .expect("a muted stretch")
        + 1;
    let mute = pk[..rise]
        .iter()
        .rposition(|&v| v >= SILENT)
        .map_or(0, |k| k + 1);
    let dropouts = pk[..mute].iter().filter(|&&v| v < SILENT).count();
    eprintln!("old chain: {dropouts} silent 10 ms blocks before the mute");
    eprintln!(
        "silent {} ms from mute to ramp; old level {:.2} dB, new steady {:.2} dB",
        (rise - mute) * 10,
        db(old_level),
        db(steady)
    );
    // Silent from the mute until the ramp, then never silent again, never falling (0.3 dB for
    // block jitter; steps are >= 1.5 dB apart), never above the new steady level (+0.05 dB).
    for k in rise + 1..pk.len() {
        assert!(
            pk[k] >= SILENT,
            "silence again at block {k} after the ramp started (mute {mute}, rise {rise}): {:?}",
            pk[mute.saturating_sub(3)..(k + 3).min(pk.len())]
                .iter()
                .map(|v| db(*v).round())
                .collect::<Vec<_>>()
        );
        assert!(
            db(pk[k]) >= db(pk[k - 1]) - 0.3,
            "ramp falls at block {k}: {} -> {} dB",
            db(pk[k - 1]),
            db(pk[k])
        );
    }
    for (k, &v) in pk.iter().enumerate().skip(mute) {
        assert!(
            db(v) <= db(steady) + 0.05,
            "block {k} at {} dB exceeds the steady {} dB",
            db(v),
            db(steady)
        );
    }
    // The ramp's plateaus: runs of >= 5 blocks at one level (0.1 dB), one per step.
    let mut plateaus: Vec<f32> = Vec::new();
    let mut run = 1;
    for k in rise + 1..pk.len() {
        if (db(pk[k]) - db(pk[k - 1])).abs() < 0.1 {
            run += 1;
            if run == 5
                && plateaus
                    .last()
                    .is_none_or(|l| (db(*l) - db(pk[k])).abs() >= 0.1)
            {
                plateaus.push(pk[k]);
            }
        } else {
            run = 1;
        }
    }
    eprintln!(
        "plateaus (dB): {:?}",
        plateaus.iter().map(|v| db(*v)).collect::<Vec<_>>()
    );
    assert_eq!(plateaus.len(), RAMP_STEPS, "one plateau per ramp step");

    // A profile refused by a gate changes nothing: same chain, same process, same level.
    let before = chain(&p);
    let e = p
        .activate_profile("3way-lr8", true)
        .expect_err("the phase gate refuses LR8");
    assert!(error_name(&e).ends_with("InvalidArgs"), "{e}");
    assert!(e.to_string().contains("nothing changed"), "{e}");
    assert_eq!(chain(&p), before);
    let pid = before["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let mark = rec.frames();
    rec.wait_frames(mark + RATE / 2, T).unwrap();
    for v in peaks(&rec.snapshot()[0][mark..]) {
        assert!(
            (db(v) - db(steady)).abs() < 0.1,
            "level changed: {} dB",
            db(v)
        );
    }

    // Refused in DJ without force, nothing changes.
    let e = p
        .activate_profile("2way-80hz-sealed-subs", false)
        .expect_err("refused in dj");
    assert!(error_name(&e).ends_with("Refused"), "{e}");
    assert_eq!(chain(&p), before);

    // Abort mid-ramp: silence on every speaker channel.
    let addr = stack.bus_address().to_string();
    let flow = std::thread::spawn(move || {
        let conn = zbus::blocking::connection::Builder::address(addr.as_str())
            .unwrap()
            .build()
            .unwrap();
        let p = mugge_controller::client::ControllerProxyBlocking::new(&conn).unwrap();
        p.activate_profile("2way-80hz-sealed-subs", true)
    });
    wait("the ramp to start", || {
        let c = chain(&p);
        c["tag"] == "a" && c["gain_factor"].as_f64().unwrap_or(0.0) > 0.0
    });
    let msg = p.abort_activation().expect("abort");
    assert!(msg.contains("muted"), "{msg}");
    let e = flow
        .join()
        .unwrap()
        .expect_err("the aborted activation fails");
    assert!(e.to_string().contains("aborted"), "{e}");
    std::thread::sleep(Duration::from_millis(100));
    let mark = rec.frames();
    rec.wait_frames(mark + RATE, T).unwrap();
    for (n, c) in rec.snapshot().iter().enumerate() {
        let pk = c[mark..].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(pk < SILENT, "channel {} after abort: {} dB", n + 1, db(pk));
    }

    // A controller killed (SIGKILL) and restarted adopts the running chain (one chain, same
    // process) and reads the gain it plays at back from its controls.
    p.unmute().expect("unmute");
    let before = chain(&p);
    assert_eq!(before["gain_factor"], 1.0);
    drop(ctl); // SIGKILL
    let _ctl = spawn_controller(&stack, &stack.root().join("controller.toml"), "controller2");
    let p = proxy(&stack).unwrap();
    wait("adoption", || chain(&p)["set"] == before["set"]);
    let f = chain(&p)["gain_factor"].as_f64();
    assert!(
        f.is_some_and(|f| (f - 1.0).abs() < 1e-4),
        "adopted chain's gain read back: {f:?}"
    );
    let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    let chains = st["status"]["chains"].as_array().unwrap().clone();
    assert_eq!(chains.len(), 1, "{chains:?}");
    assert_eq!(chains[0]["pid"], before["pid"]);
}

/// Pink-ish noise (Paul Kellet's economy filter on xorshift white noise), about -20 dBFS RMS.
fn pink(frames: usize) -> Vec<f32> {
    let mut s: u32 = 0x1234_5678;
    let (mut b0, mut b1, mut b2) = (0f32, 0f32, 0f32);
    (0..frames)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let w = s as f32 / u32::MAX as f32 * 2.0 - 1.0;
            b0 = 0.99765 * b0 + w * 0.099_046;
            b1 = 0.963 * b1 + w * 0.296_516_4;
            b2 = 0.57 * b2 + w * 1.052_691_3;
            (b0 + b1 + b2 + w * 0.1848) * 0.05
        })
        .collect()
}

/// RMS over 1 ms windows.
fn envelope(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(48)
        .map(|b| (b.iter().map(|v| v * v).sum::<f32>() / b.len() as f32).sqrt())
        .collect()
}

/// Plots the 1 ms RMS envelopes (dB re the level before) of the reload capture.
fn plot_envelopes(out: &Path, series: &[(String, Vec<f32>)], reload_at_ms: f64) {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").unwrap();
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, font);
    let root = BitMapBackend::new(out, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let len = series.iter().map(|s| s.1.len()).max().unwrap_or(1) as f64;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            "ReloadFilters under pink noise: 1 ms RMS envelope at the hardware (dB re before)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0f64..len, -70f64..10f64)
        .unwrap();
    ch.configure_mesh()
        .x_desc("ms")
        .y_desc("dB")
        .draw()
        .unwrap();
    for (i, (name, env)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        ch.draw_series(LineSeries::new(
            env.iter()
                .enumerate()
                .map(|(k, v)| (k as f64, f64::from(*v))),
            color,
        ))
        .unwrap()
        .label(name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    ch.draw_series(LineSeries::new([(0.0, -60.0), (len, -60.0)], RED.mix(0.6)))
        .unwrap()
        .label("gap threshold -60 dB")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    ch.draw_series(LineSeries::new(
        [(reload_at_ms, -70.0), (reload_at_ms, 10.0)],
        BLACK.mix(0.4),
    ))
    .unwrap();
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

#[test]
fn reload_crossfades_without_a_dropout_and_a_bad_set_changes_nothing() {
    let _heavy = heavy();
    let stack: Stack = stack();
    let sets = stack.root().join("sets");
    let _chains = Chains(stack.root().to_path_buf());
    let prof = profiles(stack.root());
    let _ctl = controller(&stack, &config(&prof, &sets), "controller");
    let p = proxy(&stack).unwrap();
    wait("the default chain", || chain(&p)["tag"] == "a");

    // The same profile with channel 1 trimmed by -3 dB: the only level change a reload may cause.
    let text = std::fs::read_to_string(prof.join("2way-80hz-sealed-subs.toml")).unwrap();
    let trimmed = text.replacen("channel = 1\n", "channel = 1\ntrim_db = -3.0\n", 1);
    assert_ne!(text, trimmed);
    let tprof = prof.join("sealed-trimmed.toml");
    std::fs::write(&tprof, trimmed).unwrap();
    let newset = stack.root().join("newset");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mugge"))
        .args(["filters", "generate", "--profile"])
        .arg(&tprof)
        .arg("--out")
        .arg(&newset)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let noise = pink(RATE * 60);
    let _player = stack
        .play("sine", 2, noise.iter().flat_map(|&v| [v, v]).collect())
        .unwrap();
    let rec = stack.record("rec", 4).unwrap();
    p.set_mode("dj").expect("dj ready");
    p.unmute().expect("unmute");
    let before = chain(&p);

    // A set that does not exist: refused, the old chain keeps playing.
    let e = p
        .reload_filters(&stack.root().join("nope").display().to_string())
        .expect_err("no such set");
    assert!(error_name(&e).ends_with("InvalidArgs"), "{e}");
    assert_eq!(chain(&p), before);

    // A set copy whose config still names the original's WAVs, which are gone: its files verify,
    // but PipeWire would start a chain that says "running" and plays nothing (convolver files
    // load only when the graph starts). Refused before anything starts; the old keeps playing.
    let orphan_src = stack.root().join("orphan-src");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mugge"))
        .args(["filters", "generate", "--profile"])
        .arg(&tprof)
        .arg("--out")
        .arg(&orphan_src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orphan = stack.root().join("orphan");
    copy_dir(&orphan_src, &orphan);
    std::fs::remove_dir_all(&orphan_src).unwrap();
    let mark = rec.frames();
    let e = p
        .reload_filters(&orphan.display().to_string())
        .expect_err("the chain could not load its filters");
    eprintln!("refused reload: {e}");
    assert!(error_name(&e).ends_with("InvalidArgs"), "{e}");
    assert!(e.to_string().contains("orphan-src/ch1.wav"), "{e}");
    assert_eq!(chain(&p), before);
    let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    assert_eq!(st["status"]["chains"].as_array().unwrap().len(), 1);
    let end = rec.frames();
    rec.wait_frames(end + RATE / 4, T).unwrap();
    let x = &rec.snapshot()[0][mark..];
    let steady = rms(&x[..RATE / 8]);
    let floor = steady * 1e-3;
    assert!(
        envelope(x).iter().all(|&v| v >= floor),
        "the old chain kept playing through the failed reload"
    );

    let mark = rec.frames();
    rec.wait_frames(mark + RATE / 2, T).unwrap();
    let called = rec.frames();
    let t0 = Instant::now();
    let timings = p
        .reload_filters(&newset.display().to_string())
        .expect("reload");
    eprintln!(
        "reload phases (ms): {timings:?}, call {} ms",
        t0.elapsed().as_millis()
    );
    let end = rec.frames();
    rec.wait_frames(end + RATE / 2, T).unwrap();
    let after = chain(&p);
    assert_eq!(after["tag"], "b");
    assert_ne!(after["set"], before["set"]);
    let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    assert_eq!(
        st["status"]["chains"].as_array().unwrap().len(),
        1,
        "one chain left"
    );

    let ch = rec.snapshot();
    let mut curves = Vec::new();
    for (n, want_db) in [(0usize, -3.0f32), (1, 0.0)] {
        let x = &ch[n][mark..];
        let steady_before = rms(&x[..RATE / 2]);
        let steady_after = rms(&x[x.len() - RATE / 2..]);
        let change = db(steady_after) - db(steady_before);
        // Gap: a run of 1 ms windows below -60 dB relative to the steady level.
        let env = envelope(x);
        let floor = steady_before.min(steady_after) * 1e-3;
        let (mut run, mut longest) = (0usize, 0usize);
        for &v in &env {
            run = if v < floor { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        let lowest = env.iter().fold(f32::MAX, |m, &v| m.min(v));
        curves.push((
            format!("channel {} (set: {want_db} dB)", n + 1),
            env.iter().map(|v| db(*v) - db(steady_before)).collect(),
        ));
        eprintln!(
            "channel {}: level change {change:.2} dB (set difference {want_db} dB), lowest 1 ms window {:.1} dB re steady, longest run below -60 dB {} ms",
            n + 1,
            db(lowest) - db(steady_before),
            longest
        );
        assert!(
            (change - want_db).abs() < 0.5,
            "channel {}: {change} dB",
            n + 1
        );
        // One quantum (1024 frames) is 21 ms; 1 ms windows entirely below the floor.
        assert!(longest * 48 <= 1024, "channel {}: {longest} ms gap", n + 1);
        assert!(longest == 0, "channel {}: {longest} ms below -60 dB", n + 1);
    }
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reload-envelope.png");
    plot_envelopes(&png, &curves, ((called - mark) / 48) as f64);
    eprintln!("envelope plot: {}", png.display());
}

#[test]
fn controller_killed_during_a_reload_converges_to_one_chain_on_restart() {
    let _heavy = heavy();
    let stack: Stack = stack();
    let sets = stack.root().join("sets");
    let _chains = Chains(stack.root().to_path_buf());
    let prof = profiles(stack.root());
    // A slow crossfade so that the kill lands in the middle of it.
    let cfg = config(&prof, &sets).replace("ramp_ms", "crossfade_ms = 4000\nramp_ms");
    let ctl = controller(&stack, &cfg, "controller");
    let p = proxy(&stack).unwrap();
    wait("the default chain", || chain(&p)["tag"] == "a");
    let newset = stack.root().join("newset");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mugge"))
        .args(["filters", "generate", "--profile"])
        .arg(prof.join("2way-80hz-sealed-subs.toml"))
        .arg("--out")
        .arg(&newset)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.set_mode("dj").expect("dj ready");
    p.unmute().expect("unmute");

    let addr = stack.bus_address().to_string();
    let set = newset.display().to_string();
    let reload = std::thread::spawn(move || {
        let conn = zbus::blocking::connection::Builder::address(addr.as_str())
            .unwrap()
            .build()
            .unwrap();
        let p = mugge_controller::client::ControllerProxyBlocking::new(&conn).unwrap();
        p.reload_filters(&set)
    });
    let chains = |p: &mugge_controller::client::ControllerProxyBlocking<'_>| {
        let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
        st["status"]["chains"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait("two chains", || {
        chains(&p).iter().filter(|c| c["complete"] == true).count() == 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    drop(ctl); // SIGKILL mid-crossfade
    assert!(
        reload.join().unwrap().is_err(),
        "the reload cannot have finished"
    );
    // Both chains outlive the controller (their own sessions, lingering links).
    let g = stack.dump().unwrap();
    for n in ["mugge-filters-in.a", "mugge-filters-in.b"] {
        assert!(g.node(n).is_some(), "{n} gone with the controller");
    }

    let _ctl = spawn_controller(&stack, &stack.root().join("controller.toml"), "controller2");
    let p = proxy(&stack).unwrap();
    wait("one chain", || {
        chains(&p).len() == 1 && !chain(&p).is_null()
    });
    let left = chains(&p);
    assert_eq!(left[0]["tag"], "b", "the newer chain is kept: {left:?}");
    assert_eq!(chain(&p)["tag"], "b");
    // It plays at the gain the cut crossfade had reached: read back, neither 0 nor 1.
    let f = chain(&p)["gain_factor"].as_f64();
    eprintln!("kept chain's gain read back after the restart: {f:?}");
    assert!(
        f.is_some_and(|f| f > 0.01 && f < 0.99),
        "mid-crossfade gain read back: {f:?}"
    );
    // Its links: the speakers are fed by the kept chain only.
    let g = stack.dump().unwrap();
    for l in &g.links {
        let from = g.describe_port(l.output_port);
        if g.describe_port(l.input_port)
            .starts_with("usbstreamer-out:playback_AUX0")
        {
            assert!(from.starts_with("mugge-filters-out.b:"), "{from}");
        }
    }
}

/// The mic interlock (safety flow step 5): the mock mic hears the hardware's channel 1 (a
/// route from its monitor to the mic's input) plus a little noise. A limit below the
/// profile's full level stops the ramp part way and leaves every speaker silent; a mic that
/// reads digital silence, or that disappears mid-ramp, stops it too.
#[test]
fn mic_interlock_stops_the_ramp_and_leaves_the_speakers_silent() {
    assert!(
        mugge_testkit::stack::built_plugin().is_some(),
        "no libspa_mugge.so (the mic meter): build mugge-spa or set MUGGE_SPA_PLUGIN"
    );
    let _heavy = heavy();
    let stack: Stack = stack();
    let sets = stack.root().join("sets");
    let _chains = Chains(stack.root().to_path_buf());
    let prof = profiles(stack.root());
    let mic_routes = "\n[[extra.dj]]\nfrom = \"usbstreamer-out:monitor:1\"\nto = \"umik1-in:1\"\n\
                      \n[[extra.dj]]\nfrom = \"mic-noise:1\"\nto = \"umik1-in:1\"\noptional = true\n";
    let with_limit = |spl: f64| {
        config(&prof, &sets).replace(
            "ramp_ms",
            &format!("mic_spl_limit_db = {spl:.2}\nmic_dbfs_at_94_db_spl = -18\nramp_ms"),
        ) + mic_routes
    };
    // First a limit nothing reaches: the ramp completes and gives the full level.
    let ctl = controller(&stack, &with_limit(140.0), "controller");
    let p = proxy(&stack).unwrap();
    wait("the default chain", || chain(&p)["tag"] == "a");
    let sine: Vec<f32> = (0..RATE * 60)
        .flat_map(|i| {
            let v = 0.25 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / RATE as f32).sin();
            [v, v]
        })
        .collect();
    let _player = stack.play("sine", 2, sine).unwrap();
    // Room noise at the mic, about -60 dBFS.
    let mut x = 0x2545_f491_u32;
    let noise: Vec<f32> = (0..RATE * 60)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            0.001 * ((x as f32 / u32::MAX as f32) * 2.0 - 1.0)
        })
        .collect();
    let noise_player = stack.play("mic-noise", 1, noise).unwrap();
    let rec = stack.record("rec", 4).unwrap();
    p.set_mode("dj").expect("dj ready");
    wait("the mic meter linked", || {
        p.links()
            .unwrap()
            .iter()
            .any(|l| l.0 == "umik1-in:1" && l.1 == "mugge-meter-mic:1" && l.3)
    });
    let t0 = Instant::now();
    while !p
        .get_levels("mugge-meter-mic")
        .is_ok_and(|l| l.peak[0] > -70.0)
    {
        assert!(
            t0.elapsed() < T,
            "the mic meter does not hear the noise: {:?}\n{:?}",
            p.get_levels("mugge-meter-mic"),
            p.links().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.unmute().expect("a ramp below the limit completes");
    let mark = rec.frames();
    rec.wait_frames(mark + RATE / 2, T).unwrap();
    let full = db(*peaks(&rec.snapshot()[0][mark..]).last().unwrap());
    let mic = p.get_levels("mugge-meter-mic").expect("mic levels");
    eprintln!(
        "full level at hardware channel 1: {full:.2} dBFS; the mic meter reads {:?} dBFS peak",
        mic.peak
    );
    assert!(full > -30.0, "the chain plays: {full} dB");
    assert!(
        (mic.peak[0] - f64::from(full)).abs() < 1.0,
        "the mic hears channel 1: {:?} vs {full}",
        mic.peak
    );
    p.abort_activation().expect("mute");

    // A limit 4.5 dB below the full level (-18 dBFS = 94 dB SPL): the ramp (6 linear steps:
    // -15.6, -9.5, -6.0, -3.5, -1.6, 0 dB re full) stops at the step that exceeds it.
    let limit = f64::from(full) - 4.5 + 18.0 + 94.0;
    drop(ctl); // SIGKILL; the restarted controller adopts the muted chain
    std::fs::write(stack.root().join("controller.toml"), with_limit(limit)).unwrap();
    let ctl = spawn_controller(&stack, &stack.root().join("controller.toml"), "controller2");
    let p = proxy(&stack).unwrap();
    let t0 = Instant::now();
    while chain(&p)["gain_factor"] != 0.0 {
        assert!(
            t0.elapsed() < T,
            "no adoption of the muted chain: {}\n{}",
            chain(&p),
            stack.log("controller2")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait("the mic meter linked again", || {
        p.links()
            .unwrap()
            .iter()
            .any(|l| l.0 == "umik1-in:1" && l.1 == "mugge-meter-mic:1" && l.3)
    });
    let mugge = env!("CARGO_BIN_EXE_mugge");
    let mark = rec.frames();
    let out = stack
        .command(mugge)
        .args(["profile", "unmute"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("mugge profile unmute with a {limit:.1} dB SPL limit:\n{stdout}{stderr}");
    assert!(!out.status.success());
    assert!(stdout.contains("mic-interlock"), "{stdout}");
    assert!(
        stderr.contains("mic interlock") && stderr.contains("above the limit"),
        "{stderr}"
    );
    assert_eq!(chain(&p)["gain_factor"], 0.0);
    let stop = rec.frames();
    std::thread::sleep(Duration::from_millis(100));
    let after = rec.frames();
    rec.wait_frames(after + RATE, T).unwrap();
    let snap = rec.snapshot();
    let ramp = peaks(&snap[0][mark..stop]);
    let top = ramp.iter().fold(0f32, |m, v| m.max(*v));
    eprintln!(
        "ramp stopped at {:.2} dB re full (limit -4.5 dB)",
        db(top) - full
    );
    assert!(
        db(top) > full - 10.0 && db(top) < full - 2.0,
        "the ramp rose and stopped part way: {} dB re full",
        db(top) - full
    );
    for (n, c) in snap.iter().enumerate() {
        let pk = c[after..].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            pk < SILENT,
            "channel {} after the interlock: {} dB",
            n + 1,
            db(pk)
        );
    }

    // The mic's signal vanishes (no noise, speakers muted: digital silence): no ramp at all.
    drop(noise_player);
    std::thread::sleep(Duration::from_millis(200));
    let e = p.unmute().expect_err("a silent mic stops the ramp");
    assert!(e.to_string().contains("vanished"), "{e}");
    assert_eq!(chain(&p)["gain_factor"], 0.0);

    // The mic disappears mid-ramp (noise back, limit out of reach for the first steps).
    let _noise = stack
        .play(
            "mic-noise",
            1,
            (0..RATE * 60)
                .map(|i| 0.001 * (i as f32 * 0.37).sin())
                .collect(),
        )
        .unwrap();
    let t0 = Instant::now();
    while !p
        .get_levels("mugge-meter-mic")
        .is_ok_and(|l| l.peak[0] > -70.0)
    {
        assert!(
            t0.elapsed() < T,
            "the mic meter does not hear the noise again: {:?}\n{:?}\n{}",
            p.get_levels("mugge-meter-mic"),
            p.links().unwrap(),
            stack.log("controller2")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = stack.bus_address().to_string();
    let flow = std::thread::spawn(move || {
        let conn = zbus::blocking::connection::Builder::address(addr.as_str())
            .unwrap()
            .build()
            .unwrap();
        mugge_controller::client::ControllerProxyBlocking::new(&conn)
            .unwrap()
            .unmute()
    });
    wait("the ramp to start", || {
        chain(&p)["gain_factor"].as_f64().unwrap_or(0.0) > 0.0
    });
    let mic_id = stack.dump().unwrap().node("umik1-in").unwrap().id;
    stack
        .pw_cli(&["destroy", &mic_id.to_string()])
        .expect("destroy the mic node");
    let e = flow.join().unwrap().expect_err("the mic vanished mid-ramp");
    eprintln!("mic gone mid-ramp: {e}");
    assert!(e.to_string().contains("vanished"), "{e}");
    assert_eq!(chain(&p)["gain_factor"], 0.0);
    std::thread::sleep(Duration::from_millis(100));
    let mark = rec.frames();
    rec.wait_frames(mark + RATE / 2, T).unwrap();
    for (n, c) in rec.snapshot().iter().enumerate() {
        let pk = c[mark..].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            pk < SILENT,
            "channel {} after the mic vanished: {} dB",
            n + 1,
            db(pk)
        );
    }
    drop(ctl);
}

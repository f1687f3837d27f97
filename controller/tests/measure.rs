//! The online measurement loop on the real stack (issue 8): the controller runs the default
//! profile's real filter-chain (16,384-tap FIRs), the simulated room (testkit `room.rs`, a
//! filter-chain convolver from the mock speaker monitors to the mock mic) closes the loop, and
//! the mugge plugin provides the generator, the mic meter and both taps.
//!
//! Checked: arrivals and responses against the simulated truth (the channel's deployed FIR x
//! its trim and delay x the room's impulse response), the safety aborts (a +20 dB jump in the
//! room during level finding and during the sweep, the mic's signal disappearing) with a
//! recording of the speaker outputs and the mic in the same graph cycles, and the full loop
//! (design, deploy, verify). One heavy stack at a time.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mugge_controller::daemon::measure::report::Report;
use mugge_filter_chain::measure::arrival::arrival;
use mugge_filter_chain::measure::deconvolve::{deconvolve, ImpulseResponse};
use mugge_filter_chain::measure::record::Recording;
use mugge_filter_chain::measure::response::{log_frequencies, windowed, WindowSpec};
use mugge_testkit::room::{Room, RoomSpec};
use mugge_testkit::{Recorder, Stack};

const RATE: f64 = 48_000.0;
/// Mic sensitivity for the simulated room: the generator's cap reaches the 75 dB SPL target
/// on every channel (the subs' band is a small part of pink noise's power).
const SENSITIVITY: f64 = -40.0;
const SWEEP_S: f64 = 3.0;
/// The room's noise plays for 60 s, after which the simulated mic is digitally silent (and
/// its link change drops a few cycles): every run must end before that.
const QUICK: &str = "sweep_s = 3.0";
/// The full loop measures twice: shorter sweeps, fewer snapshots per level step.
const FULL: &str =
    "sweep_s = 2.0\nsettle_snapshots = 6\naverage_snapshots = 4\nstart_level_dbfs = -50.0";
/// A whole measurement may take this long on a loaded machine (bounded wait, debug build).
const RUN_TIMEOUT: Duration = Duration::from_secs(400);

struct Fixture {
    // Drop order: the controller and chains before the stack.
    p: mugge_controller::client::ControllerProxyBlocking<'static>,
    rec: Option<Recorder>,
    room: Option<Room>,
    _ctl: Controller,
    _chains: Chains,
    stack: Stack,
}

/// The room, then the controller (it adopts the room's links: they are desired in every mode
/// the test uses), the default profile's chain muted, a recorder of the four speaker outputs
/// and the mic (channel 5) in the same cycles.
/// `measurement`: extra `[measurement]` keys.
fn fixture(spec: &RoomSpec, measurement: &str) -> Fixture {
    let stack = stack();
    let chains = Chains(stack.root().to_path_buf());
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let prof = stack.root().join("conf");
    copy_dir(&conf.join("profiles"), &prof.join("profiles"));
    copy_dir(&conf.join("speakers"), &prof.join("speakers"));
    let room = stack.room(spec).expect("room");
    // pw-record takes no 5-channel AUX map: 6 channels, the 6th unused.
    let rec = stack.record("rec", 6).expect("recorder");
    let mut c = format!(
        "{BASE_CONFIG}\n[activation]\ndefault_profile = \"2way-80hz-sealed-subs\"\n\
         profiles_dir = \"{}\"\nsets_dir = \"{}\"\nramp_ms = 300\nramp_steps = 3\n\
         \n[measurement]\nmic_sensitivity_dbfs = {SENSITIVITY}\nloopback_quanta = 1\n\
         measurements_dir = \"{}\"\npresets_dir = \"{}\"\n{measurement}\n",
        prof.join("profiles").display(),
        stack.root().join("sets").display(),
        stack.root().join("measurements").display(),
        stack.root().join("presets").display(),
    );
    for mode in ["standby", "measurement"] {
        let mut route = |from: String, to: String| {
            c.push_str(&format!(
                "\n[[extra.{mode}]]\nfrom = \"{from}\"\nto = \"{to}\"\noptional = true\n"
            ))
        };
        for n in 1..=spec.speakers.len() {
            route(
                format!("usbstreamer-out:monitor:{}", spec.speakers[n - 1].channel),
                format!("mugge-room-in:{n}"),
            );
        }
        route("mugge-room-out:1".into(), "umik1-in:1".into());
        route("mugge-room-noise:1".into(), "umik1-in:1".into());
        for n in 1..=4 {
            route(format!("usbstreamer-out:monitor:{n}"), format!("rec:{n}"));
        }
        route("umik1-in:1".into(), "rec:5".into());
    }
    let ctl = controller(&stack, &c, "controller");
    let p = proxy(&stack).unwrap();
    let t0 = Instant::now();
    loop {
        let s: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
        if s["chain"]["tag"] == "a" && s["chain"]["pid"].is_number() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the default chain did not start:\n{}",
            stack.log("controller")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Fixture {
        p,
        rec: Some(rec),
        room: Some(room),
        _ctl: ctl,
        _chains: chains,
        stack,
    }
}

/// A progress signal as the test sees it.
#[derive(Debug, Clone)]
struct Progress {
    phase: String,
    channel: u32,
    percent: f64,
    level_db: f64,
}

/// Starts a measurement and waits for its result; `on` sees every progress signal (and may
/// act on the room, once).
fn measure(f: &Fixture, channels: &[u32], options: &str, on: impl FnMut(&Progress)) -> Report {
    follow(f, |p| p.start_measurement(channels, options), on)
}

/// Runs what `start` starts (StartMeasurement, RecallPreset) and waits for its result.
fn follow(
    f: &Fixture,
    start: impl FnOnce(&mugge_controller::client::ControllerProxyBlocking) -> zbus::Result<String>,
    mut on: impl FnMut(&Progress),
) -> Report {
    let (tx, rx) = mpsc::channel();
    let conn = bus(&f.stack);
    let listener = mugge_controller::client::ControllerProxyBlocking::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .unwrap();
    let signals = listener.receive_measurement_progress().unwrap();
    std::thread::spawn(move || {
        for s in signals {
            let Ok(a) = s.args() else { continue };
            let p = Progress {
                phase: a.phase.to_string(),
                channel: a.channel,
                percent: a.percent,
                level_db: a.level_db,
            };
            if tx.send(p).is_err() {
                break;
            }
        }
    });
    let dir = start(&f.p).unwrap_or_else(|e| panic!("{e}\n{}", f.stack.log("controller")));
    let t0 = Instant::now();
    loop {
        while let Ok(p) = rx.recv_timeout(Duration::from_millis(50)) {
            on(&p);
        }
        let json = f.p.measurement_result().unwrap();
        if !json.is_empty() {
            let r: Report = serde_json::from_str(&json).unwrap();
            if r.dir == dir {
                return r;
            }
        }
        assert!(
            t0.elapsed() < RUN_TIMEOUT,
            "no result after {RUN_TIMEOUT:?}:\n{}",
            f.stack.log("controller")
        );
    }
}

fn spec() -> RoomSpec {
    let mut s = RoomSpec::example(4);
    // A quiet room (a live mic is never digitally silent); the noise plays for 60 s.
    s.noise_dbfs = Some(-100.0);
    s
}

fn fft_convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    use realfft::RealFftPlanner;
    let n = (a.len() + b.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let spec = |x: &[f64]| {
        let mut buf = x.to_vec();
        buf.resize(n, 0.0);
        let mut out = fwd.make_output_vec();
        fwd.process(&mut buf, &mut out).unwrap();
        out
    };
    let (fa, fb) = (spec(a), spec(b));
    let mut prod: Vec<_> = fa.iter().zip(&fb).map(|(x, y)| x * y).collect();
    let mut out = inv.make_output_vec();
    inv.process(&mut prod, &mut out).unwrap();
    out.truncate(a.len() + b.len() - 1);
    out.iter_mut().for_each(|v| *v /= n as f64);
    out
}

/// Channel `ch`'s true impulse response from the generator to the mic: the active set's FIR,
/// its trim and delay, then the room.
fn truth(f: &Fixture, set_dir: &Path, ch: u32) -> ImpulseResponse {
    let m = mugge_filter_chain::set::read_manifest(set_dir).unwrap();
    let c = m.channels.iter().find(|c| c.channel == ch).unwrap();
    let fir: Vec<f64> = hound::WavReader::open(set_dir.join(&c.file))
        .unwrap()
        .into_samples::<f32>()
        .map(|s| f64::from(s.unwrap()))
        .collect();
    let room = f.room.as_ref().unwrap();
    let i = room
        .spec
        .speakers
        .iter()
        .position(|s| s.channel == ch as usize)
        .unwrap();
    let rir: Vec<f64> = room.irs[i].iter().map(|&v| f64::from(v)).collect();
    let trim = 10f64.powf(c.trim_db / 20.0);
    let mut h = vec![0.0; c.delay_samples as usize];
    h.extend(fft_convolve(&fir, &rir).iter().map(|v| v * trim));
    ImpulseResponse {
        samples: h,
        rate: RATE,
    }
}

fn set_dir(f: &Fixture) -> PathBuf {
    let s: serde_json::Value = serde_json::from_str(&f.p.get_status().unwrap()).unwrap();
    let id = s["chain"]["set"].as_str().unwrap().to_string();
    std::fs::read_dir(f.stack.root().join("sets"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| mugge_filter_chain::set::read_manifest(p).is_ok_and(|m| m.set_id == id))
        .unwrap()
}

#[test]
fn arrivals_and_responses_match_the_simulated_room() {
    let _h = heavy();
    let f = fixture(&spec(), QUICK);
    let set = set_dir(&f);
    let mut phases = Vec::new();
    let r = measure(&f, &[], r#"{"dry_run": true}"#, |p| {
        if phases.last() != Some(&(p.phase.clone(), p.channel)) {
            phases.push((p.phase.clone(), p.channel));
        }
    });
    assert!(r.ok, "{r:?}\n{}", f.stack.log("controller"));
    eprintln!("{}", r.summary());
    eprintln!("phases: {phases:?}");
    assert_eq!(
        r.channels.iter().map(|c| c.channel).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Levels: found within +-1 dB of the target, under the generator's cap.
    for c in &r.channels {
        assert!((c.spl_db - 75.0).abs() <= 1.0, "{c:?}");
        assert!(
            c.noise_level_dbfs <= -20.0 && c.sweep_level_dbfs <= -20.0,
            "{c:?}"
        );
        assert_eq!(c.lost_frames, 0);
    }
    let results = Recording::load(Path::new(&r.dir))
        .unwrap()
        .analyse()
        .unwrap();
    let freqs = log_frequencies(20.0, 20_000.0, 48);
    let rec = Recording::load(Path::new(&r.dir)).unwrap();
    for (c, res) in r.channels.iter().zip(&results) {
        // The simulated system measured ideally: the reference that played, convolved with
        // the true response, through the same deconvolution (its band limits included).
        let cap = rec
            .captures
            .iter()
            .find(|x| x.channel == c.channel as usize)
            .unwrap();
        let reference: Vec<f64> = cap.reference.iter().map(|&v| f64::from(v)).collect();
        let ideal = fft_convolve(&reference, &truth(&f, &set, c.channel).samples);
        let t = deconvolve(
            &ideal[..reference.len()],
            &reference,
            RATE,
            (rec.sweep.start_hz, rec.sweep.end_hz),
        )
        .unwrap();
        let search = ((0.5 * RATE) as usize).min(t.len() / 2) as isize;
        let want = arrival(&t, 0, search).unwrap();
        // The timing of the whole response: the lag that best aligns the measured impulse
        // response with the ideal one (the loopback removed), refined by a parabola.
        let m = &res.positions[0].ir.samples;
        let lb = r.loopback_samples.round() as isize;
        let xc = |lag: isize| -> f64 {
            (0..24_000)
                .filter_map(|n| {
                    let i = n as isize + lag;
                    (i >= 0).then(|| m.get(i as usize).map(|v| v * t.samples[n]))?
                })
                .sum()
        };
        let lags: Vec<(isize, f64)> = (lb - 48..=lb + 48).map(|l| (l, xc(l))).collect();
        let k = (1..lags.len() - 1)
            .max_by(|a, b| lags[*a].1.total_cmp(&lags[*b].1))
            .unwrap();
        let (y0, y1, y2) = (lags[k - 1].1, lags[k].1, lags[k + 1].1);
        let lag = lags[k].0 as f64 + 0.5 * (y0 - y2) / (y0 - 2.0 * y1 + y2) - r.loopback_samples;
        eprintln!(
            "channel {}: arrival (peak) measured {:.4} samples, simulated {:.4} (error {:+.4}); \
             whole-response timing error {lag:+.4} samples",
            c.channel,
            c.arrival_samples,
            want.samples,
            c.arrival_samples - want.samples
        );
        assert!(
            lag.abs() < 1.0,
            "channel {}: timing off by {lag} samples",
            c.channel
        );
        // A sub's band-limited response has two near-equal peaks that noise chooses between:
        // its peak arrival is no sample-accurate quantity; the broadband channels' is.
        if res.response.band_level(2_000.0, 8_000.0).unwrap()
            > res.response.band_level(40.0, 80.0).unwrap() - 20.0
        {
            assert!(
                (c.arrival_samples - want.samples).abs() < 1.0,
                "channel {}: arrival {} vs {}",
                c.channel,
                c.arrival_samples,
                want.samples
            );
        }
        // The same window placement as the measurement's (its own peak).
        let sim = windowed(&t, c.arrival_samples, &freqs, &WindowSpec::default()).unwrap();
        let got = &res.positions[0].response;
        let top = sim.db.iter().cloned().fold(f64::MIN, f64::max);
        // Where the channel plays at all: a sub's band ends ~40 dB down by 300 Hz.
        let (mut worst, mut worst_f, mut n) = (0.0f64, 0.0, 0);
        for ((fr, m), s) in freqs.iter().zip(&got.db).zip(&sim.db) {
            if !(30.0..=16_000.0).contains(fr) || *s < top - 40.0 {
                continue;
            }
            n += 1;
            if (m - s).abs() > worst.abs() {
                (worst, worst_f) = (m - s, *fr);
            }
        }
        eprintln!(
            "channel {}: response vs simulated, {n} points 30 Hz-16 kHz within 40 dB of the \
             top: worst {worst:+.3} dB at {worst_f:.0} Hz",
            c.channel
        );
        assert!(n > 50, "channel {}: too few points compared", c.channel);
        assert!(
            worst.abs() <= 0.5,
            "channel {}: {worst} dB at {worst_f} Hz",
            c.channel
        );
    }
}

/// 10 ms block peaks of one recorded channel.
fn block_peaks(x: &[f32]) -> Vec<f32> {
    x.chunks(480)
        .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect()
}

/// After an abort: the speaker outputs are silent from the mute to the end, and the mute
/// came within `bound_ms` of the jump seen at the mic (same recording, same cycles).
/// `jump_from`: the recorder's frame count when the jump was requested (the mic is searched
/// from there).
fn check_silence_after(f: &mut Fixture, jump_from: Option<usize>, bound_ms: f64) -> Option<f64> {
    let rec = f.rec.take().unwrap();
    let mark = rec.frames();
    rec.wait_frames(mark + RATE as usize, T).unwrap();
    let ch = rec.stop();
    let n = ch[0].len();
    // The mute: the last sample any speaker output carried sound (exact zeros after it).
    let last = (0..4)
        .filter_map(|k| ch[k].iter().rposition(|v| *v != 0.0))
        .max()
        .unwrap_or(0);
    assert!(
        n - last > RATE as usize / 2,
        "the speakers were not silent for the last 0.5 s (last sound at {last} of {n})"
    );
    let from = jump_from? / 480;
    // The jump: the first 10 ms block at the mic 11 dB above every block of the 200 ms before
    // (a level step just before it doubles the level; pink noise's block peaks stay well under
    // 11 dB over their recent maximum).
    let mic = block_peaks(&ch[4]);
    let jump = (from.max(20)..mic.len())
        .find(|&i| {
            let before = mic[i - 20..i].iter().cloned().fold(0f32, f32::max);
            before > 0.0 && mic[i] > 3.5 * before
        })
        .expect("the jump is in the mic recording") as f64
        * 480.0;
    let latency_ms = (last as f64 - jump) / RATE * 1000.0;
    eprintln!("mute {latency_ms:.1} ms after the jump reached the mic (bound {bound_ms:.1} ms)");
    assert!(
        latency_ms <= bound_ms,
        "muted {latency_ms:.1} ms after the jump (bound {bound_ms:.1} ms)"
    );
    Some(latency_ms)
}

/// The bound for jump -> silence at quantum 1024 (the safe table): the first snapshot after
/// the jump completes within one snapshot period (2 cycles = 42.7 ms at q1024 and 30 Hz), the
/// plugin publishes it within half a period (its timer), the mute reaches the output in the
/// next cycle (21.3 ms), plus the 10 ms block resolution of the jump detection.
const MUTE_BOUND_MS: f64 = 42.7 + 21.3 + 21.3 + 10.0;

fn gain_jump(during: &'static str) {
    let _h = heavy();
    let mut f = fixture(
        &spec(),
        &format!("sweep_s = {SWEEP_S}\nsettle_snapshots = 30"),
    );
    let room_jump = std::cell::Cell::new(false);
    let jump_mark = std::cell::Cell::new(0usize);
    let f_ref = &f;
    let r = measure(f_ref, &[1], r#"{"dry_run": true}"#, |p| {
        let now = match during {
            // Near the target: +20 dB puts the mic far past target + 9 dB.
            // A level step (not the last reading) within 12 dB of the target: the finder holds
            // it for 30 snapshots, so the jump lands while pink noise plays.
            "level" => p.phase == "level" && p.percent < 100.0 && p.level_db >= 63.0,
            // Past the room's low-frequency slopes and modes: the mic level changes slowly.
            _ => p.phase == "sweep" && p.percent >= 50.0,
        };
        if now && !room_jump.get() {
            room_jump.set(true);
            jump_mark.set(f_ref.rec.as_ref().unwrap().frames());
            f_ref
                .room
                .as_ref()
                .unwrap()
                .set_gain(&f_ref.stack, 10.0)
                .unwrap();
        }
    });
    assert!(
        room_jump.get(),
        "the {during} phase was never reached: {r:?}"
    );
    eprintln!("{}", r.summary());
    let abort = serde_json::to_value(r.abort.as_ref().expect("aborted")).unwrap();
    assert_eq!(abort["reason"], "too-loud", "{abort}");
    assert!(!r.ok);
    // Back in the previous mode, chain muted.
    let s: serde_json::Value = serde_json::from_str(&f.p.get_status().unwrap()).unwrap();
    assert_eq!(s["mode"], "standby");
    assert_eq!(s["chain"]["gain_factor"], 0.0);
    check_silence_after(&mut f, Some(jump_mark.get()), MUTE_BOUND_MS);
}

#[test]
fn a_gain_jump_during_level_finding_aborts_and_mutes() {
    gain_jump("level");
}

#[test]
fn a_gain_jump_during_the_sweep_aborts_and_mutes() {
    gain_jump("sweep");
}

#[test]
fn losing_the_mic_during_the_sweep_aborts_and_mutes() {
    let _h = heavy();
    let mut f = fixture(&spec(), QUICK);
    let room = std::cell::RefCell::new(f.room.take());
    let r = measure(&f, &[2], r#"{"dry_run": true}"#, |p| {
        if p.phase == "sweep" && p.percent >= 20.0 {
            // The room and its link to the mic vanish: the mic hears digital silence.
            room.borrow_mut().take();
        }
    });
    assert!(
        room.borrow().is_none(),
        "the sweep was never reached: {r:?}"
    );
    eprintln!("{}", r.summary());
    let abort = serde_json::to_value(r.abort.as_ref().expect("aborted")).unwrap();
    assert_eq!(abort["reason"], "mic-lost", "{abort}");
    check_silence_after(&mut f, None, 0.0);
}

#[test]
fn full_loop_deploys_a_gated_correction_and_verifies_it() {
    let _h = heavy();
    let f = fixture(&spec(), FULL);
    let before = set_dir(&f);
    let r = measure(&f, &[], "{}", |_| {});
    eprintln!("{}", r.summary());
    eprintln!("timings: {:?}", r.timings);
    eprintln!(
        "benchmark: whole {}-channel loop {:.1} s wall, {:.1} s of it sweeps, {:.1} s without \
         the sweeps",
        r.channels.len(),
        r.total_ms as f64 / 1000.0,
        r.sweeps_ms as f64 / 1000.0,
        (r.total_ms - r.sweeps_ms) as f64 / 1000.0
    );
    assert!(r.ok, "{r:?}\n{}", f.stack.log("controller"));
    let deployed = PathBuf::from(r.deployed_set.as_ref().expect("deployed"));
    assert_ne!(deployed, before);
    // The chain now runs the corrected set, and every filter of it passes the gates.
    let after = set_dir(&f);
    assert_eq!(after, deployed);
    mugge_filter_chain::set::verify(&deployed).expect("gates");
    let v = r.verify.as_ref().expect("verification");
    for c in v["channels"].as_array().unwrap() {
        assert_eq!(c["boosted"], false, "{c}");
    }
    for c in &r.channels {
        assert!(c.max_cut_db.unwrap() <= 0.0);
    }
    for c in v["channels"].as_array().unwrap() {
        let bad: Vec<String> = c["bands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["reachable"] == true && b["deviation_db"].as_f64().unwrap().abs() > 1.5)
            .map(|b| {
                format!(
                    "{:.0}-{:.0} Hz {:+.2} dB",
                    b["lo_hz"].as_f64().unwrap(),
                    b["hi_hz"].as_f64().unwrap(),
                    b["deviation_db"].as_f64().unwrap()
                )
            })
            .collect();
        eprintln!(
            "verify channel {}: pass {} max {:.2} dB; out of tolerance where reachable: {bad:?}",
            c["channel"],
            c["pass"],
            c["max_abs_db"].as_f64().unwrap()
        );
    }
    assert_eq!(r.verify_pass, Some(true));
}

fn set_id(dir: &Path) -> String {
    mugge_filter_chain::set::read_manifest(dir).unwrap().set_id
}

fn active_set_id(f: &Fixture) -> String {
    let s: serde_json::Value = serde_json::from_str(&f.p.get_status().unwrap()).unwrap();
    s["chain"]["set"].as_str().unwrap().to_string()
}

fn print_drift(what: &str, r: &Report) {
    for c in &r.preset.as_ref().unwrap().channels {
        eprintln!(
            "{what}: channel {} max drift {:.3} dB over {} bands",
            c.channel,
            c.max_abs_db,
            c.bands.len()
        );
    }
}

#[test]
fn presets_are_stored_recalled_verified_and_warn_when_the_room_drifts() {
    let _h = heavy();
    let mut s = spec();
    // A full loop and three recalls in one room: the noise must outlast them all.
    s.noise_s = 240.0;
    let mut f = fixture(&s, FULL);
    let own = set_dir(&f);
    let mugge = |args: &[&str]| {
        let out = f
            .stack
            .command(env!("CARGO_BIN_EXE_mugge"))
            .args(args)
            .output()
            .unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        (out.status.code(), o, e)
    };
    // An installation measured and stored in one command.
    let (code, stdout, stderr) = mugge(&[
        "measure",
        "--channels",
        "1,3",
        "--json",
        "--save-preset",
        "hall",
    ]);
    assert_eq!(code, Some(0), "{stderr}\n{}", f.stack.log("controller"));
    let r: Report = serde_json::from_str(&stdout).unwrap();
    assert!(r.ok && r.verify_pass == Some(true), "{r:?}");
    assert!(stderr.contains("preset \"hall\" stored in"), "{stderr}");
    let corrected = set_id(Path::new(r.deployed_set.as_ref().unwrap()));
    let stored = f.stack.root().join("presets/installations/hall");
    assert!(stored.join("preset.json").is_file());
    assert!(stored.join("measurement/report.json").is_file());
    assert_eq!(f.p.presets().unwrap(), vec!["hall".to_string()]);

    // A taken name is refused before anything plays.
    let last = f.p.measurement_result().unwrap();
    let (code, _, stderr) = mugge(&["measure", "--channels", "1", "--save-preset", "hall"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("exists: nothing measured"), "{stderr}");
    assert_eq!(f.p.measurement_result().unwrap(), last);

    // Bad stores: a clear error, nothing stored.
    let e = f.p.store_preset("../hall", &r.dir).unwrap_err();
    assert_eq!(error_name(&e), "org.mugge.Controller1.Error.InvalidArgs");
    let e = f.p.store_preset("hall2", "/nonexistent").unwrap_err();
    assert_eq!(error_name(&e), "org.mugge.Controller1.Error.InvalidArgs");
    assert!(e.to_string().contains("report.json"), "{e}");
    let before = std::fs::read(stored.join("preset.json")).unwrap();
    let e = f.p.store_preset("hall", &r.dir).unwrap_err();
    assert_eq!(error_name(&e), "org.mugge.Controller1.Error.Refused");
    assert_eq!(std::fs::read(stored.join("preset.json")).unwrap(), before);
    assert_eq!(f.p.presets().unwrap(), vec!["hall".to_string()]);
    // `mugge preset save` stores the controller's last run by default.
    let (code, stdout, stderr) = mugge(&["preset", "save", "hall2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&r.dir), "{stdout}");
    assert_eq!(f.p.presets().unwrap(), vec!["hall", "hall2"]);

    // Bad recalls change nothing.
    f.p.reload_filters(&own.display().to_string()).unwrap();
    let own_id = set_id(&own);
    assert_eq!(active_set_id(&f), own_id);
    for (name, opts, want) in [
        ("nope", "{}", "stored: hall, hall2"),
        ("hall", r#"{"loud": 1}"#, "unknown field"),
        ("hall", r#"{"drift_threshold_db": 0}"#, "drift_threshold_db"),
    ] {
        let e = f.p.recall_preset(name, opts).unwrap_err();
        assert_eq!(
            error_name(&e),
            "org.mugge.Controller1.Error.InvalidArgs",
            "{e}"
        );
        assert!(e.to_string().contains(want), "{e}");
    }
    assert_eq!(active_set_id(&f), own_id);
    assert_eq!(f.p.mode().unwrap(), "standby");

    // Recall: the preset's set is deployed and verified against the stored measurement.
    let mut phases = Vec::new();
    let a = follow(
        &f,
        |p| p.recall_preset("hall", "{}"),
        |p| phases.push(p.phase.clone()),
    );
    eprintln!("{}", a.summary());
    assert!(a.ok, "{a:?}\n{}", f.stack.log("controller"));
    assert!(phases.iter().any(|p| p == "deploy"), "{phases:?}");
    assert_eq!(
        set_id(Path::new(a.deployed_set.as_ref().unwrap())),
        corrected
    );
    assert_eq!(active_set_id(&f), corrected);
    let check = a.preset.as_ref().expect("preset check");
    print_drift("same room", &a);
    assert_eq!(check.name, "hall");
    assert_eq!(check.channels.len(), 2);
    assert!(!check.warn, "{check:?}");
    for c in &check.channels {
        // The sub plays 18-140 Hz: 9 bands.
        assert!(c.bands.len() >= 8, "{c:?}");
        assert!(c.max_abs_db < 1.0, "{c:?}");
    }
    assert_eq!(f.p.mode().unwrap(), "standby");

    // The room changed (+4 dB on every path): the next verification warns, on both channels.
    let room = f.room.take().unwrap();
    room.set_gain(&f.stack, 10f64.powf(4.0 / 20.0)).unwrap();
    // Through the CLI: the warning is its exit status 3.
    let out = f
        .stack
        .command(env!("CARGO_BIN_EXE_mugge"))
        .args(["preset", "recall", "hall", "--json"])
        .output()
        .unwrap();
    let b: Report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(3), "{b:?}");
    eprintln!("{}", b.summary());
    assert!(b.ok, "{b:?}\n{}", f.stack.log("controller"));
    // Already active: nothing deployed again.
    assert_eq!(b.deployed_set, None);
    print_drift("room +4 dB", &b);
    let check = b.preset.as_ref().unwrap();
    assert!(check.warn, "{check:?}");
    for c in &check.channels {
        assert!(c.warn && (c.max_abs_db - 4.0).abs() < 0.5, "{c:?}");
    }
    assert!(b.summary().contains("WARNING"), "{}", b.summary());
    f.room = Some(room);

    // An aborted recall puts the set that played before back (muted).
    f.p.reload_filters(&own.display().to_string()).unwrap();
    let ctl = proxy(&f.stack).unwrap();
    let mut aborted = false;
    let c = follow(
        &f,
        |p| p.recall_preset("hall", "{}"),
        |p| {
            if p.phase == "level" && !aborted {
                aborted = true;
                ctl.abort_measurement().unwrap();
            }
        },
    );
    let abort = serde_json::to_value(c.abort.as_ref().expect("aborted")).unwrap();
    assert_eq!(abort["reason"], "stopped", "{abort}");
    assert_eq!(active_set_id(&f), own_id);
    assert_eq!(f.p.mode().unwrap(), "standby");
}

#[test]
fn bad_requests_change_nothing_and_positions_wait_for_the_operator() {
    let _h = heavy();
    let f = fixture(&spec(), QUICK);
    // Bad input: a clear error, nothing started.
    for (chans, opts, want) in [
        (vec![9u32], "{}", "not a speaker channel"),
        (vec![1, 1], "{}", "twice"),
        (vec![1], r#"{"loud": true}"#, "unknown field"),
        (vec![1], r#"{"target_spl_db": 300}"#, "out of range"),
        (vec![1], r#"{"positions": 0}"#, "positions"),
    ] {
        let e = f.p.start_measurement(&chans, opts).unwrap_err();
        assert_eq!(
            error_name(&e),
            "org.mugge.Controller1.Error.InvalidArgs",
            "{e}"
        );
        assert!(e.to_string().contains(want), "{e}");
    }
    assert_eq!(f.p.measurement_result().unwrap(), "");
    assert_eq!(f.p.mode().unwrap(), "standby");
    // Not in the middle of a show unless forced.
    f.p.set_mode("dj").unwrap();
    let e = f.p.start_measurement(&[1], "{}").unwrap_err();
    assert_eq!(error_name(&e), "org.mugge.Controller1.Error.Refused", "{e}");
    assert!(e.to_string().contains("force"), "{e}");
    assert_eq!(f.p.mode().unwrap(), "dj");
    f.p.set_mode("standby").unwrap();

    // Two positions: the loop waits at "move-mic" until ContinueMeasurement; meanwhile the
    // controller refuses what would disturb it.
    let cont = proxy(&f.stack).unwrap();
    let mut checked = false;
    let r = measure(&f, &[1], r#"{"dry_run": true, "positions": 2}"#, |p| {
        if p.phase == "move-mic" && !checked {
            checked = true;
            let e = cont.set_mode("dj").unwrap_err();
            assert_eq!(error_name(&e), "org.mugge.Controller1.Error.Refused", "{e}");
            let e = cont.start_measurement(&[1], "{}").unwrap_err();
            assert_eq!(error_name(&e), "org.mugge.Controller1.Error.Refused", "{e}");
            assert_eq!(cont.mode().unwrap(), "measurement");
            cont.continue_measurement().unwrap();
        }
    });
    assert!(checked, "no move-mic phase: {r:?}");
    assert!(r.ok, "{r:?}");
    let rec = Recording::load(Path::new(&r.dir)).unwrap();
    let mut got: Vec<(usize, usize)> = rec
        .captures
        .iter()
        .map(|c| (c.channel, c.position))
        .collect();
    got.sort();
    assert_eq!(got, vec![(1, 1), (1, 2)]);
    assert!(rec
        .captures
        .iter()
        .all(|c| c.lost_frames == 0 && c.clock.is_some()));
    // Back where it was.
    assert_eq!(f.p.mode().unwrap(), "standby");
}

/// A PNG's size, decoding the whole image (a truncated or corrupt file fails).
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    (frame.width, frame.height)
}

/// Waits for a child with a bound; its output as `Output`.
fn wait_bounded(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    use std::io::Read;
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            panic!("the CLI did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).unwrap();
    }
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// The CLI: the whole loop on one channel at two mic positions with plots, `--abort` from a second CLI (plots of
/// a run that saved nothing), SIGTERM and Ctrl-C (one fixture: the room's noise plays 60 s).
#[test]
fn the_cli_measures_and_aborts() {
    let _h = heavy();
    let mut s = spec();
    // Six runs in one room: the noise must outlast them.
    s.noise_s = 150.0;
    let mut f = fixture(&s, QUICK);
    let plots = f.stack.root().join("plots");
    // Two positions: the CLI asks to move the mic and continues on Enter.
    let mut child = f
        .stack
        .command(env!("CARGO_BIN_EXE_mugge"))
        .args(["measure", "--channels", "2", "--positions", "2", "--plots"])
        .arg(&plots)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let stderr = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let mut all = String::new();
        for l in err.lines().map_while(Result::ok) {
            if l.starts_with("move the mic to position 2") {
                stdin.write_all(b"\n").unwrap();
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let out = wait_bounded(child, RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = stderr.join().unwrap();
    eprintln!("{stderr}{stdout}");
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(": done"), "{stdout}");
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("measurement ")?.strip_suffix(": done"))
        .unwrap();
    let mut got: Vec<(usize, usize)> = Recording::load(Path::new(dir))
        .unwrap()
        .captures
        .iter()
        .map(|c| (c.channel, c.position))
        .collect();
    got.sort();
    assert_eq!(got, vec![(2, 1), (2, 2)]);
    assert!(stdout.contains("verification: PASS"), "{stdout}");
    assert!(stderr.contains("ch 2 sweep"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap();
    assert!(line.contains("/"), "{line}");
    // The summary, then the plot of the one measured channel, after the run: response,
    // correction, before/after (3 panels of 1200 x 330).
    let png = plots.join("ch2.png");
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("plot "))
        .collect();
    assert_eq!(listed, vec![png.to_str().unwrap()], "{stdout}");
    assert!(stdout.find("plot ") > stdout.find("wall time"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(&plots).unwrap().count(),
        1,
        "only the measured channel is plotted"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(png_size(&png), (1200, 3 * 330));

    // --abort while one runs: muted at once, the run ends as stopped. It saved no
    // measurement: the plots fail after the result, the status stays the run's.
    let child = f
        .stack
        .command(env!("CARGO_BIN_EXE_mugge"))
        .args([
            "measure",
            "--channels",
            "1",
            "--dry-run",
            "--json",
            "--plots",
        ])
        .arg(f.stack.root().join("no-plots"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while f.p.mode().unwrap() != "measurement" {
        assert!(t0.elapsed() < T, "the measurement did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = f
        .stack
        .command(env!("CARGO_BIN_EXE_mugge"))
        .args(["measure", "--abort"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let done = wait_bounded(child, RUN_TIMEOUT);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(2), "{stderr}");
    let r: Report = serde_json::from_slice(&done.stdout).unwrap();
    let abort = serde_json::to_value(r.abort.as_ref().unwrap()).unwrap();
    assert_eq!(abort["reason"], "stopped", "{abort}");
    assert!(
        stderr.contains("plots: the run saved no measurement"),
        "{stderr}"
    );
    assert!(!f.stack.root().join("no-plots").exists());

    // SIGTERM during level finding, Ctrl-C during the sweep: the CLI aborts the run (muted
    // at once), still waits for its end, prints the result and exits with 130; the previous
    // mode is back, the chain muted, the speakers silent.
    for (signal, phase) in [("-TERM", "level"), ("-INT", "sweep")] {
        let out = interrupted_run(&f, &[signal], phase);
        let r: Report = serde_json::from_slice(&out.stdout).unwrap();
        let abort = serde_json::to_value(r.abort.as_ref().expect("aborted")).unwrap();
        assert_eq!(abort["reason"], "stopped", "{signal}: {abort}");
        assert!(!r.ok);
        let s: serde_json::Value = serde_json::from_str(&f.p.get_status().unwrap()).unwrap();
        assert_eq!(s["mode"], "standby", "{signal}");
        assert_eq!(s["chain"]["gain_factor"], 0.0, "{signal}");
    }
    check_silence_after(&mut f, None, 0.0);

    // Ctrl-C twice: the first aborts, the second quits without waiting for the result; the
    // run still ends as stopped in the controller.
    let out = interrupted_run(&f, &["-INT", "-INT"], "level");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("quitting without the result"), "{stderr}");
    let t0 = Instant::now();
    while f.p.mode().unwrap() != "standby" {
        assert!(t0.elapsed() < T, "the aborted run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r: Report = serde_json::from_str(&f.p.measurement_result().unwrap()).unwrap();
    let abort = serde_json::to_value(r.abort.as_ref().expect("aborted")).unwrap();
    assert_eq!(abort["reason"], "stopped", "{abort}");
    let s: serde_json::Value = serde_json::from_str(&f.p.get_status().unwrap()).unwrap();
    assert_eq!(s["chain"]["gain_factor"], 0.0);

    // On a terminal (script(1) gives it one) the progress is bars, one per channel and phase,
    // each left drawn at its end.
    let out = f
        .stack
        .command("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} measure --channels 2 --dry-run --sweep-seconds 1",
            env!("CARGO_BIN_EXE_mugge")
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains(": done"), "{tty}");
    let full = format!("[{}] 100 % sweep", "=".repeat(32));
    assert!(tty.contains(&full), "no finished sweep bar in:\n{tty}");
    assert!(tty.contains("ch 2"), "{tty}");
}

/// `mugge measure --channels 1 --dry-run --json`, sent `signals` (`kill` syntax, one after
/// the other) once the controller reports `phase`; asserts status 130 and that the first
/// interrupt was acknowledged.
fn interrupted_run(f: &Fixture, signals: &[&str], phase: &str) -> std::process::Output {
    // Each run starts from a settled graph (Ready in standby), as an operator would see it in
    // `mugge status`.
    let t0 = Instant::now();
    while !(f.p.ready().unwrap() && f.p.mode().unwrap() == "standby") {
        assert!(
            t0.elapsed() < T,
            "not ready after the last run: {:?}",
            f.p.missing()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (tx, rx) = mpsc::channel();
    let conn = bus(&f.stack);
    let listener = mugge_controller::client::ControllerProxyBlocking::builder(&conn)
        .build()
        .unwrap();
    let progress = listener.receive_measurement_progress().unwrap();
    std::thread::spawn(move || {
        for s in progress {
            let Ok(a) = s.args() else { continue };
            if tx.send(a.phase.to_string()).is_err() {
                break;
            }
        }
    });
    let mut child = f
        .stack
        .command(env!("CARGO_BIN_EXE_mugge"))
        .args(["measure", "--channels", "1", "--dry-run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(p) if p == phase => break,
            _ => {
                if child.try_wait().unwrap().is_some() {
                    let out = wait_bounded(child, T);
                    panic!(
                        "the run ended before {phase}: {}{}",
                        String::from_utf8_lossy(&out.stderr),
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
                assert!(
                    t0.elapsed() < RUN_TIMEOUT,
                    "no {phase} phase:\n{}",
                    f.stack.log("controller")
                );
            }
        }
    }
    assert_eq!(f.p.mode().unwrap(), "measurement");
    // stderr line by line: a further signal goes once the first was acknowledged (two
    // signals sent at once may reach the process as one).
    let (line_tx, lines) = mpsc::channel();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in err.lines().map_while(Result::ok) {
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut stderr = String::new();
    let mut acknowledged = None;
    for (k, &signal) in signals.iter().enumerate() {
        if k > 0 {
            while acknowledged.is_none() {
                let l = lines
                    .recv_timeout(T)
                    .expect("the interrupt was acknowledged");
                if l.starts_with("interrupted") {
                    acknowledged = Some(Instant::now());
                }
                stderr.push_str(&l);
                stderr.push('\n');
            }
        }
        let kill = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }
    let mut done = wait_bounded(child, T);
    for l in lines.iter() {
        if acknowledged.is_none() && l.starts_with("interrupted") {
            acknowledged = Some(Instant::now());
        }
        stderr.push_str(&l);
        stderr.push('\n');
    }
    eprintln!("{signals:?}: {stderr}");
    assert_eq!(done.status.code(), Some(130), "{signals:?}: {stderr}");
    assert!(acknowledged.is_some(), "{stderr}");
    done.stderr = stderr.into_bytes();
    done
}

/// 1/3-octave power of `h`'s spectrum around `f` (the band harmonic levels average over).
fn band_power(h: &[f64], f: f64) -> f64 {
    let n = (h.len().max(1 << 16)).next_power_of_two();
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let mut a = vec![0.0; n];
    a[..h.len()].copy_from_slice(h);
    let mut s = fft.make_output_vec();
    fft.process(&mut a, &mut s).unwrap();
    let bin = RATE / n as f64;
    let lo = (f * 2f64.powf(-1.0 / 6.0) / bin).ceil() as usize;
    let hi = (f * 2f64.powf(1.0 / 6.0) / bin).floor() as usize;
    s[lo..=hi].iter().map(|c| c.norm_sqr()).sum::<f64>() / (hi - lo + 1) as f64
}

#[test]
fn a_speakers_distortion_is_reported_per_harmonic() {
    let _h = heavy();
    let mut spec = spec();
    // Channel 1 dry (no modes, no reflections) with a strong static nonlinearity at the
    // speaker, after its filters: the sweep plays some 50 dB under full scale.
    spec.speakers[0].modes.clear();
    spec.speakers[0].reflections.clear();
    let nl = mugge_testkit::room::Nonlinearity {
        a2: 30.0,
        a3: 8000.0,
    };
    spec.speakers[0].nonlinearity = Some(nl);
    let f = fixture(&spec, "sweep_s = 5.0");
    let set = set_dir(&f);
    let r = measure(&f, &[1], r#"{"dry_run": true}"#, |_| {});
    assert!(r.ok, "{r:?}");
    eprintln!("{}", r.summary());
    let res = Recording::load(Path::new(&r.dir))
        .unwrap()
        .analyse()
        .unwrap();
    let a = &res[0].positions[0];
    // The level at the nonlinearity: the sweep's peak through the channel's filters and trim.
    let m = mugge_filter_chain::set::read_manifest(&set).unwrap();
    let c = m.channels.iter().find(|c| c.channel == 1).unwrap();
    let fir: Vec<f64> = hound::WavReader::open(set.join(&c.file))
        .unwrap()
        .into_samples::<f32>()
        .map(|s| f64::from(s.unwrap()))
        .collect();
    let trim = 10f64.powf(c.trim_db / 20.0);
    let amp_gen = 10f64.powf(r.channels[0].sweep_level_dbfs / 20.0);
    let room: Vec<f64> = f.room.as_ref().unwrap().irs[0]
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let fir_power: Vec<(f64, f64)> = log_frequencies(50.0, 16_000.0, 24)
        .into_iter()
        .map(|fr| (fr, band_power(&fir, fr)))
        .collect();
    let top = fir_power.iter().map(|p| p.1).fold(0.0, f64::max);
    let (mut worst, mut n) = (0.0f64, 0);
    for lv in &a.harmonics {
        for &(f0, got) in &lv.points {
            let k = lv.order as f64;
            let chain = band_power(&fir, f0);
            // Where the channel plays fully and the harmonic stands well above the noise (the
            // undistorted channels report -51 dB: the floor of this measurement).
            if chain < top * 0.5 || k * f0 > 16_000.0 {
                continue;
            }
            let amp = amp_gen * chain.sqrt() * trim;
            let path = 10.0 * (band_power(&room, k * f0) / band_power(&room, f0)).log10();
            let want = nl.harmonic_db(lv.order, amp) + path;
            if want < -45.0 {
                continue;
            }
            n += 1;
            eprintln!(
                "H{} at {f0:.0} Hz: reported {got:.2} dB, injected {want:.2} dB",
                lv.order
            );
            worst = worst.max((got - want).abs());
        }
    }
    eprintln!("distortion through the loop: {n} points, worst error {worst:.3} dB");
    assert!(n >= 6, "too few harmonic points compared");
    assert!(worst < 1.0, "worst {worst} dB");
}

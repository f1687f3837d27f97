//! The simulated room on the real stack: a sweep played into a speaker channel of the mock
//! interface, convolved by the room's filter-chain, captured from the mock mic together with the
//! speaker's monitor as the timing reference, deconvolved and analysed with `mugge-filter-chain`'s
//! measure module, and checked against the room's known impulse responses.

use mugge_filter_chain::measure::alignment::{align, ChannelMeasurement};
use mugge_filter_chain::measure::analysis::AnalysisOptions;
use mugge_filter_chain::measure::arrival::arrival;
use mugge_filter_chain::measure::correction::{cut_only, CorrectionParams};
use mugge_filter_chain::measure::deconvolve::{deconvolve, ImpulseResponse};
use mugge_filter_chain::measure::distortion::harmonic_levels;
use mugge_filter_chain::measure::record::{self, Recording};
use mugge_filter_chain::measure::response::{log_frequencies, windowed, WindowSpec};
use mugge_filter_chain::measure::sweep::SweepParams;
use mugge_testkit::room::{Nonlinearity, RoomSpec};
use mugge_testkit::{Stack, HW_OUT, MIC};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const QUANTUM: u32 = 1024;

struct Capture {
    mic: Vec<f64>,
    reference: Vec<f64>,
}

/// Plays `sweep` into speaker channel `ch` and records the mic and that channel's monitor in one
/// stream, so both share every graph cycle.
fn measure_channel(stack: &Stack, sweep: &SweepParams, ch: usize, tail: usize) -> Capture {
    let rec = stack.record(&format!("measure-rec-{ch}"), 2).unwrap();
    stack
        .link(&format!("{MIC}:capture_MONO"), &rec.port(1))
        .unwrap();
    stack
        .link(&format!("{HW_OUT}:monitor_AUX{}", ch - 1), &rec.port(2))
        .unwrap();
    stack
        .wait_for_link(&format!("{MIC}:capture_MONO"), &rec.port(1), T)
        .unwrap();
    // pw-play holds back the last partial block of its input while the pipe stays open, so
    // the sweep is followed by silence (as the generator's would be).
    let samples: Vec<f32> = sweep
        .generate()
        .unwrap()
        .iter()
        .map(|&v| v as f32)
        .chain(std::iter::repeat_n(0.0, 4_800))
        .collect();
    let player = stack
        .play(&format!("measure-sweep-{ch}"), 1, samples)
        .unwrap();
    let start = rec.frames();
    stack
        .link(&player.port(1), &format!("{HW_OUT}:playback_AUX{}", ch - 1))
        .unwrap();
    // Sweep + room tail + a second of slack for link set-up; bounded by the timeout.
    rec.wait_frames(
        start + sweep.len() + tail + 48_000,
        Duration::from_secs_f64(sweep.duration_s + 20.0),
    )
    .unwrap();
    drop(player);
    let mut ch = rec.stop();
    let reference = ch.pop().unwrap().iter().map(|&v| f64::from(v)).collect();
    let mic = ch.pop().unwrap().iter().map(|&v| f64::from(v)).collect();
    Capture { mic, reference }
}

/// Checks that the recorded reference holds every sample of the sweep in order. Blocks of
/// zeros inserted by a late player are fine (the mic heard the same gap: what played is what is
/// deconvolved), but a block the recorder dropped under CPU load is not: reference and mic no
/// longer describe the same signal. Returns the reason when the capture is unusable.
fn reference_intact(reference: &[f64], sweep: &SweepParams) -> Result<(), String> {
    let want = sweep.generate().unwrap();
    let nz = reference
        .iter()
        .position(|v| *v != 0.0)
        .ok_or("the reference stayed silent: the sweep never played")?;
    // The sweep fades in from exactly 0: its first non-zero sample is its second.
    let mut off = nz - 1;
    let mut i = 0;
    while i < want.len() {
        let Some(&got) = reference.get(i + off) else {
            return Err(format!("the reference ends at sweep sample {i}"));
        };
        if (got - want[i]).abs() <= 1e-7 {
            i += 1;
            continue;
        }
        // Only a run of zeros may sit between two parts of the sweep.
        let gap = reference[i + off..]
            .iter()
            .take_while(|v| **v == 0.0)
            .count();
        let resumes = reference
            .get(i + off + gap)
            .is_some_and(|v| (v - want[i]).abs() <= 1e-7);
        if gap == 0 || !resumes {
            return Err(format!(
                "the reference lost samples at sweep sample {i} (recorder overrun?)"
            ));
        }
        eprintln!("note: the player inserted {gap} samples of silence at sweep sample {i}");
        off += gap;
    }
    Ok(())
}

/// `measure_channel` until the capture is intact (at most 6 tries): the capture streams are
/// ordinary clients, and a loaded machine can make the recorder drop a block.
fn measure_intact(stack: &Stack, sweep: &SweepParams, ch: usize, tail: usize) -> Capture {
    let mut why = String::new();
    for attempt in 1..=6 {
        let cap = measure_channel(stack, sweep, ch, tail);
        match reference_intact(&cap.reference, sweep) {
            Ok(()) => return cap,
            Err(e) => {
                eprintln!("note: channel {ch} attempt {attempt}: {e}; measuring again");
                why = e;
            }
        }
    }
    panic!("channel {ch}: no intact capture in 6 attempts: {why}");
}

/// The mock hardware's own loopback latency (speaker monitor -> mic input -> mic capture),
/// measured the same way through speaker channel 8, which the room does not use. A real
/// interface has converter latency in the same place; the loop measures it once per session.
fn loopback_latency(stack: &Stack, sweep: &SweepParams) -> f64 {
    stack
        .link(
            &format!("{HW_OUT}:monitor_AUX7"),
            &format!("{MIC}:input_MONO"),
        )
        .unwrap();
    let cap = measure_intact(stack, sweep, 8, 4_800);
    let ir = deconvolve(
        &cap.mic,
        &cap.reference,
        48_000.0,
        (sweep.start_hz, sweep.end_hz),
    )
    .unwrap();
    let a = arrival(&ir, 0, 48_000).unwrap();
    // Whole cycles of the graph: an integer number of samples, gain 1 (a band-limited impulse
    // of the sweep's 22 kHz bandwidth peaks at 22/24; a block the recorder dropped inside a gap
    // the player left cannot be seen in the reference and lowers it a little).
    assert!(
        (a.samples - a.samples.round()).abs() < 0.01 && (a.peak - 22.0 / 24.0).abs() < 0.05,
        "loopback {a:?}"
    );
    a.samples.round()
}

#[test]
fn simulated_room_measures_back_its_delays_and_responses() {
    // A long quantum gives the capture clients slack on a loaded machine.
    let stack = Stack::builder().quantum(QUANTUM).start().unwrap();
    let mut spec = RoomSpec::example(2);
    spec.noise_dbfs = Some(-80.0);
    let sweep = SweepParams {
        start_hz: 10.0,
        end_hz: 22_000.0,
        duration_s: 5.0,
        ..SweepParams::default()
    };
    let loopback = loopback_latency(&stack, &sweep);
    eprintln!("mock hardware loopback latency: {loopback} samples (quantum {QUANTUM})");
    let room = stack.room(&spec).unwrap();
    let freqs = log_frequencies(30.0, 16_000.0, 24);
    let window = WindowSpec::default();
    let mut channels = Vec::new();
    let mut responses = Vec::new();
    let mut saved = Vec::new();
    for (i, speaker) in spec.speakers.iter().enumerate() {
        let cap = measure_intact(&stack, &sweep, speaker.channel, spec.ir_len);
        saved.push(record::Capture {
            channel: speaker.channel,
            position: 1,
            clock: None,
            lost_frames: 0,
            mic: cap.mic.iter().map(|&v| v as f32).collect(),
            reference: cap.reference.iter().map(|&v| v as f32).collect(),
        });
        assert!(
            cap.mic.iter().any(|v| v.abs() > 1e-3),
            "the mic heard nothing; room log:\n{}",
            stack.log("room")
        );
        let ir = deconvolve(
            &cap.mic,
            &cap.reference,
            48_000.0,
            (sweep.start_hz, sweep.end_hz),
        )
        .unwrap();
        let mut got = arrival(&ir, 0, 48_000).unwrap();
        got.samples -= loopback;
        got.seconds = got.samples / 48_000.0;
        let truth = ImpulseResponse {
            samples: room.irs[i].iter().map(|&v| f64::from(v)).collect(),
            rate: 48_000.0,
        };
        let want = arrival(&truth, 0, spec.ir_len as isize).unwrap();
        eprintln!(
            "channel {}: arrival measured {:.4} samples, simulated delay {:.4}, peak of the \
             simulated IR {:.4} (error {:+.4} / {:+.4} samples)",
            speaker.channel,
            got.samples,
            speaker.delay_samples,
            want.samples,
            got.samples - speaker.delay_samples,
            got.samples - want.samples
        );
        assert!(
            (got.samples - speaker.delay_samples).abs() < 1.0,
            "channel {}: {} vs {}",
            speaker.channel,
            got.samples,
            speaker.delay_samples
        );
        let measured = windowed(&ir, got.samples + loopback, &freqs, &window).unwrap();
        let simulated = windowed(&truth, want.samples, &freqs, &window).unwrap();
        let (worst_f, worst) = freqs
            .iter()
            .zip(measured.db.iter().zip(&simulated.db))
            .map(|(f, (m, s))| (*f, m - s))
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        eprintln!(
            "channel {}: response 30 Hz..16 kHz ({} points, 1/24 octave, {}-cycle window) \
             worst deviation {worst:+.3} dB at {worst_f:.0} Hz",
            speaker.channel,
            freqs.len(),
            window.cycles
        );
        assert!(worst.abs() <= 0.5, "{worst} dB at {worst_f} Hz");
        channels.push(ChannelMeasurement {
            channel: speaker.channel,
            arrival_s: got.seconds,
            level_db: measured.band_level(500.0, 2_000.0).unwrap(),
        });
        responses.push(measured);
    }
    // The measured set turns into delays that align both speakers and a cut-only correction.
    let a = align(&channels).unwrap();
    let aligned: Vec<f64> = a
        .iter()
        .zip(&channels)
        .map(|(x, c)| (c.arrival_s + x.delay_s) * 48_000.0)
        .collect();
    assert!((aligned[0] - aligned[1]).abs() < 1e-6, "{aligned:?}");
    let true_gap = spec.speakers[1].delay_samples - spec.speakers[0].delay_samples;
    assert!(
        (a[0].delay_s * 48_000.0 - true_gap).abs() < 0.1,
        "delay {} samples vs {true_gap}",
        a[0].delay_s * 48_000.0
    );
    for r in &responses {
        let c = cut_only(r, &|_f: f64| 0.0, &CorrectionParams::default()).unwrap();
        assert!(c.max_gain() <= 1.0);
        // The simulated 67-68 Hz mode (+9 dB) is cut.
        assert!(c.gain_at(68.0) < 0.7, "68 Hz gain {}", c.gain_at(68.0));
    }
    // Saved and analysed again offline, the captures give the same arrivals.
    let rec = Recording {
        sweep: sweep.clone(),
        options: AnalysisOptions {
            loopback_samples: loopback,
            ..AnalysisOptions::default()
        },
        calibration: None,
        captures: saved,
    };
    let dir = stack.root().join("measurement");
    rec.save(&dir).unwrap();
    let offline = Recording::load(&dir).unwrap().analyse().unwrap();
    for (r, c) in offline.iter().zip(&channels) {
        assert_eq!(r.channel, c.channel);
        assert!(
            (r.arrival_s - c.arrival_s).abs() * 48_000.0 < 1e-6,
            "channel {}: offline {} vs {}",
            c.channel,
            r.arrival_s,
            c.arrival_s
        );
    }
}

/// RMS level in dBFS of the last `n` samples.
fn tail_dbfs(x: &[f32], n: usize) -> f64 {
    let t = &x[x.len().saturating_sub(n)..];
    let p = t.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / t.len().max(1) as f64;
    10.0 * p.max(1e-30).log10()
}

/// The room's run-time controls the safety tests need: a +20 dB jump shows at the mic as
/// +20 dB, and pulling the mic leaves silence.
#[test]
fn simulated_room_gain_jump_and_mic_disconnect_reach_the_mic() {
    let stack = Stack::builder().quantum(QUANTUM).start().unwrap();
    let mut spec = RoomSpec::example(1);
    spec.speakers[0].modes.clear();
    let room = stack.room(&spec).unwrap();
    let rec = stack.record("room-level", 1).unwrap();
    stack
        .link(&format!("{MIC}:capture_MONO"), &rec.port(1))
        .unwrap();
    // 1 kHz at -20 dBFS for 30 s into speaker 1.
    let tone: Vec<f32> = (0..30 * 48_000)
        .map(|i| (0.1 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin()) as f32)
        .collect();
    let player = stack.play("room-tone", 1, tone).unwrap();
    stack
        .link(&player.port(1), &format!("{HW_OUT}:playback_AUX0"))
        .unwrap();
    let block = 9_600;
    // A steady level: two consecutive blocks within 0.1 dB inside the range (bounded wait).
    let steady = |min_db: f64, max_db: f64, what: &str| -> f64 {
        let start = std::time::Instant::now();
        let mut last = f64::NAN;
        loop {
            let n = rec.frames();
            rec.wait_frames(n + block, T).unwrap();
            let l = tail_dbfs(&rec.snapshot()[0], block);
            if (min_db..=max_db).contains(&l) && (l - last).abs() < 0.1 {
                return l;
            }
            last = l;
            assert!(start.elapsed() < T, "{what}: level at {l:.1} dBFS");
        }
    };
    let before = steady(-60.0, -10.0, "the tone through the room");
    room.set_gain(&stack, 10.0).unwrap();
    let after = steady(before + 15.0, 0.0, "the +20 dB jump");
    eprintln!("room gain jump: {before:.2} dBFS -> {after:.2} dBFS");
    assert!((after - before - 20.0).abs() < 0.1, "{before} -> {after}");
    room.disconnect_mic(&stack).unwrap();
    let silent = steady(-400.0, -200.0, "silence after the mic was unlinked");
    eprintln!("mic unlinked: {silent:.0} dBFS");
}

/// Band power of `h` over a third of an octave around `f` (the bands `harmonic_levels` uses).
fn band_power(h: &[f64], f: f64) -> f64 {
    let n = 1 << 16;
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let mut a = vec![0.0; n];
    a[..h.len()].copy_from_slice(h);
    let mut s = fft.make_output_vec();
    fft.process(&mut a, &mut s).unwrap();
    let bin = 48_000.0 / n as f64;
    let lo = (f * 2f64.powf(-1.0 / 6.0) / bin).ceil() as usize;
    let hi = (f * 2f64.powf(1.0 / 6.0) / bin).floor() as usize;
    s[lo..=hi].iter().map(|c| c.norm_sqr()).sum::<f64>() / (hi - lo + 1) as f64
}

/// A driver's 2nd and 3rd harmonic distortion, computed in the graph (`mult` + `mixer` before
/// the convolver), is reported within 1 dB by the harmonic separation of one sweep.
#[test]
fn simulated_room_distortion_is_reported_per_harmonic() {
    let stack = Stack::builder().quantum(QUANTUM).start().unwrap();
    let mut spec = RoomSpec::example(1);
    spec.speakers[0].modes.clear();
    spec.speakers[0].reflections.clear();
    let nl = Nonlinearity { a2: 0.2, a3: 1.2 };
    spec.speakers[0].nonlinearity = Some(nl);
    let room = stack.room(&spec).unwrap();
    let sweep = SweepParams {
        start_hz: 10.0,
        end_hz: 22_000.0,
        duration_s: 5.0,
        ..SweepParams::default()
    };
    let amp = 10f64.powf(sweep.level_dbfs / 20.0);
    let cap = measure_intact(&stack, &sweep, 1, spec.ir_len);
    let ir = deconvolve(
        &cap.mic,
        &cap.reference,
        48_000.0,
        (sweep.start_hz, sweep.end_hz),
    )
    .unwrap();
    let a = arrival(&ir, 0, 48_000).unwrap();
    let fundamentals = log_frequencies(50.0, 5_000.0, 3);
    let levels = harmonic_levels(&ir, &sweep, a.index, 3, &fundamentals).unwrap();
    let truth: Vec<f64> = room.irs[0].iter().map(|&v| f64::from(v)).collect();
    let mut worst: f64 = 0.0;
    for lv in &levels {
        assert!(lv.points.len() >= 10, "{lv:?}");
        for &(f, got) in &lv.points {
            let k = lv.order as f64;
            // The harmonic passes the speaker's path at k f, the fundamental at f.
            let path = 10.0 * (band_power(&truth, k * f) / band_power(&truth, f)).log10();
            let want = nl.harmonic_db(lv.order, amp) + path;
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() < 1.0,
                "H{} at {f:.0} Hz: {got:.2} dB, injected {want:.2} dB",
                lv.order
            );
        }
        eprintln!(
            "H{}: injected {:.2} dB re fundamental, reported {}",
            lv.order,
            nl.harmonic_db(lv.order, amp),
            lv.points
                .iter()
                .map(|(f, d)| format!("{f:.0} Hz {d:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!("distortion: worst error {worst:.3} dB");
}

//! `mugge analyse DIR` on a saved measurement made here (no stack needed: the command works on
//! files): the summary, the JSON, the plots, the verification's exit status, and bad input.

use mugge_filter_chain::measure::analysis::AnalysisOptions;
use mugge_filter_chain::measure::arrival::fractional_impulse;
use mugge_filter_chain::measure::record::{Capture, Recording};
use mugge_filter_chain::measure::sweep::SweepParams;
use std::path::{Path, PathBuf};
use std::process::Command;

fn conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

fn convolve(x: &[f64], h: &[f64]) -> Vec<f64> {
    // Short enough for a direct convolution of the sparse parts: `h` is mostly zeros.
    let taps: Vec<(usize, f64)> = h
        .iter()
        .enumerate()
        .filter(|(_, v)| v.abs() > 1e-9)
        .map(|(i, v)| (i, *v))
        .collect();
    let mut y = vec![0.0; x.len() + h.len()];
    for (i, v) in taps {
        for (j, s) in x.iter().enumerate() {
            y[i + j] += v * s;
        }
    }
    y
}

/// Four channels, each a delayed impulse; channel 1 has a 60 Hz mode on top (+8 dB).
fn measurement(dir: &Path) {
    let sweep = SweepParams {
        start_hz: 10.0,
        end_hz: 20_000.0,
        duration_s: 1.0,
        ..SweepParams::default()
    };
    let x = sweep.generate().unwrap();
    let captures = (1..=4)
        .map(|ch| {
            let d = 200.0 + 10.25 * ch as f64;
            let mut h = fractional_impulse(12_000, d, 0.3, 32);
            if ch == 1 {
                let a = 0.3 * 10f64.powf(8.0 / 20.0) * 2.0 / (0.08 * 48_000.0);
                for (i, v) in h.iter_mut().enumerate().skip(d as usize) {
                    let t = (i - d as usize) as f64 / 48_000.0;
                    *v += a * (-t / 0.08).exp() * (2.0 * std::f64::consts::PI * 60.0 * t).sin();
                }
            }
            let mic = convolve(&x, &h);
            let mut reference = x.clone();
            reference.resize(mic.len(), 0.0);
            Capture {
                channel: ch,
                position: 1,
                clock: None,
                lost_frames: 0,
                mic: mic.iter().map(|&v| v as f32).collect(),
                reference: reference.iter().map(|&v| v as f32).collect(),
            }
        })
        .collect();
    Recording {
        sweep,
        options: AnalysisOptions {
            max_harmonic: 3,
            ..AnalysisOptions::default()
        },
        calibration: None,
        captures,
    }
    .save(dir)
    .unwrap();
}

fn mugge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mugge"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn analyse_summarises_designs_plots_and_verifies_a_saved_measurement() {
    let tmp = tempfile::tempdir().unwrap();
    let meas = tmp.path().join("m");
    measurement(&meas);
    let profile = conf().join("profiles/2way-80hz-sealed-subs.toml");
    let (m, p) = (meas.to_str().unwrap(), profile.to_str().unwrap());

    let out = mugge(&["analyse", m]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ch in 1..=4 {
        assert!(text.contains(&format!("channel {ch}: arrival")), "{text}");
    }
    assert!(
        text.contains("H2 max") && !text.contains("proposed"),
        "{text}"
    );

    let plots = tmp.path().join("plots");
    let sets = tmp.path().join("sets");
    let out = mugge(&[
        "analyse",
        m,
        "--profile",
        p,
        "--json",
        "--plots",
        plots.to_str().unwrap(),
        "--write-set",
        sets.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chans = j["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 4);
    // Arrivals as made: 200 + 10.25 N samples.
    for (i, c) in chans.iter().enumerate() {
        let want = (200.0 + 10.25 * (i + 1) as f64) / 48.0;
        assert!(
            (c["arrival_ms"].as_f64().unwrap() - want).abs() < 0.001,
            "{c}"
        );
    }
    let design = &j["design"]["channels"];
    assert_eq!(design.as_array().unwrap().len(), 4);
    // The mode on channel 1 is cut, nothing anywhere is boosted.
    let gains = |c: &serde_json::Value| -> Vec<f64> {
        c["correction"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .collect()
    };
    assert!(gains(&design[0]).iter().cloned().fold(1.0, f64::min) < 0.5);
    assert!(design
        .as_array()
        .unwrap()
        .iter()
        .all(|c| gains(c).iter().all(|g| *g <= 1.0)));
    let set_dir = PathBuf::from(j["set"]["dir"].as_str().unwrap());
    mugge_filter_chain::set::verify(&set_dir).unwrap();
    for ch in 1..=4 {
        let png = std::fs::read(plots.join(format!("ch{ch}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    // The same (uncorrected) measurement as the "after": the mode is still there, so the
    // verification fails and so does the command.
    let out = mugge(&["analyse", m, "--profile", p, "--after", m]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("verify channel 1") && text.contains("FAIL"),
        "{text}"
    );

    // Bad input: a clear error, nothing written.
    let out = mugge(&["analyse", tmp.path().join("nothing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("measurement.json"));
    let before = std::fs::read_dir(&sets).unwrap().count();
    let out = mugge(&[
        "analyse",
        m,
        "--profile",
        conf().join("profiles/nope.toml").to_str().unwrap(),
        "--write-set",
        sets.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&sets).unwrap().count(), before);
}

#[test]
fn presets_store_recall_and_warn_on_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let meas = tmp.path().join("m");
    measurement(&meas);
    let profile = conf().join("profiles/2way-80hz-sealed-subs.toml");
    let presets = tmp.path().join("presets");
    let sets = tmp.path().join("sets");
    let (m, p, pr, st) = (
        meas.to_str().unwrap(),
        profile.to_str().unwrap(),
        presets.to_str().unwrap(),
        sets.to_str().unwrap(),
    );
    let store = |name: &str| {
        mugge(&[
            "preset",
            "--presets",
            pr,
            "store",
            name,
            "--profile",
            p,
            "--measurement",
            m,
            "--sets",
            st,
        ])
    };
    let out = store("home");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Storing the name again is refused before anything is written.
    let n_sets = std::fs::read_dir(&sets).unwrap().count();
    let out = store("home");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert_eq!(std::fs::read_dir(&sets).unwrap().count(), n_sets);
    assert!(!store("../escape").status.success());

    let out = mugge(&["preset", "--presets", pr, "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("home: profile"));
    let out = mugge(&["preset", "--presets", pr, "write", "home", "--sets", st]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let (recalled, _) = mugge_filter_chain::set::verify(&dir).unwrap();
    let stored = mugge_filter_chain::measure::preset::load(&presets, "home").unwrap();
    assert_eq!(recalled.set_id, stored.set_id);

    // The same measurement again: no drift. A room that changed (louder by 3 dB): a warning.
    let out = mugge(&["preset", "--presets", pr, "drift", "home", m]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("within 1.5 dB") && !text.contains("WARNING"),
        "{text}"
    );
    let mut rec = Recording::load(&meas).unwrap();
    for c in &mut rec.captures {
        c.mic.iter_mut().for_each(|v| *v *= 1.41);
    }
    let louder = tmp.path().join("louder");
    rec.save(&louder).unwrap();
    let out = mugge(&[
        "preset",
        "--presets",
        pr,
        "drift",
        "home",
        louder.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WARNING") && text.contains("+2.98 dB"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(3));
}

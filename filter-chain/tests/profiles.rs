//! Shipped profiles, every validation refusal with its message, and the filter traps of the
//! previous implementation (shared/notes/traps.md).

use mugge_filter_chain::gates::{Analyzer, Gate};
use mugge_filter_chain::generate::generate;
use mugge_filter_chain::minphase::MinPhase;
use mugge_filter_chain::profile::Polarity;
use mugge_filter_chain::set::{self, SetError};
use mugge_filter_chain::validate::{check_rig, load_rig, Problems, Rig};
use mugge_filter_chain::{config, profile::Identity};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

fn shipped_profiles() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(conf().join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

const SUB: &str = r#"
name = "test sub"
mandatory_hpf_hz = 10.0
[enclosure]
type = "sealed"
"#;
const TOP: &str = r#"
name = "test top"
mandatory_hpf_hz = 60.0
[enclosure]
type = "sealed"
"#;

fn ids(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [("sub", SUB), ("top", TOP)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// A valid 2-way profile; `patch` edits its text.
fn two_way(slope: u32) -> String {
    format!(
        r#"
name = "test 2-way"
topology = "2-way"
taps = 16384
[[crossover]]
freq_hz = 80.0
slope_db_per_oct = {slope}
[[speaker]]
name = "L"
identity = "top"
role = "left"
channel = 1
band = 2
[[speaker]]
name = "R"
identity = "top"
role = "right"
channel = 2
band = 2
[[speaker]]
name = "S1"
identity = "sub"
role = "sum"
channel = 3
band = 1
[[speaker]]
name = "S2"
identity = "sub"
role = "sum"
channel = 4
band = 1
delay_ms = 1.0
[monitors]
headphones = [5, 6]
in_ears = [7, 8]
"#
    )
}

fn check(text: &str, ids: &BTreeMap<String, String>) -> Result<Rig, Problems> {
    let src = |id: &str| {
        ids.get(id)
            .map(|t| (format!("speakers/{id}.toml"), t.clone()))
    };
    check_rig("profiles/test.toml", text, &src)
}

fn refusal(text: &str, ids: &BTreeMap<String, String>) -> String {
    match check(text, ids) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(p) => p.to_string(),
    }
}

#[test]
fn shipped_profiles_all_validate_and_generate() {
    let profiles = shipped_profiles();
    assert!(profiles.len() >= 6, "{profiles:?}");
    let mut topologies = std::collections::BTreeSet::new();
    for p in profiles {
        let rig = load_rig(&p, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        topologies.insert(rig.profile.topology.label());
        let filters =
            generate(&rig, None, &|_| {}).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
        assert_eq!(filters.len(), rig.profile.topology.speaker_count());
        for f in &filters {
            assert!(
                f.report.gain_max_db <= -0.5,
                "{}: {:?}",
                p.display(),
                f.report
            );
        }
    }
    assert_eq!(topologies.len(), 4, "{topologies:?}");
}

#[test]
fn every_shipped_identity_parses() {
    for e in std::fs::read_dir(conf().join("speakers")).unwrap() {
        let p = e.unwrap().path();
        let t = std::fs::read_to_string(&p).unwrap();
        let id: Identity = toml::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(id.mandatory_hpf_hz.is_some(), "{}", p.display());
    }
}

#[test]
fn four_way_warns_loudly_and_three_way_stereo_has_no_live_mode() {
    let rig = load_rig(&conf().join("profiles/4way-stereo.toml"), None).unwrap();
    assert!(rig
        .warnings
        .iter()
        .any(|w| w.contains("NO headphone or in-ear")));
    let rig = load_rig(&conf().join("profiles/3way-stereo.toml"), None).unwrap();
    assert!(!rig.live_mode_available);
    assert!(rig
        .warnings
        .iter()
        .any(|w| w.contains("Live mode unavailable")));
    let rig = load_rig(&conf().join("profiles/2way-80hz-sealed-subs.toml"), None).unwrap();
    assert!(rig.live_mode_available && rig.warnings.is_empty());
}

#[test]
fn refuses_duplicate_channel() {
    let t = two_way(24).replace("channel = 4", "channel = 3");
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("profiles/test.toml: speaker[4].channel (channel 3): duplicate channel: already used by speaker[3].channel"),
        "{m}"
    );
}

#[test]
fn refuses_monitor_on_a_speaker_channel() {
    let t = two_way(24).replace("in_ears = [7, 8]", "in_ears = [7, 2]");
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("monitors.in_ears[2] (channel 2): duplicate channel"),
        "{m}"
    );
}

#[test]
fn refuses_out_of_range_channels() {
    for bad in ["channel = 9", "channel = 0"] {
        let t = two_way(24).replace("channel = 4", bad);
        let m = refusal(&t, &ids(&[]));
        assert!(m.contains("speaker[4].channel"), "{m}");
        assert!(m.contains("channel out of range: outputs are 1..=8"), "{m}");
    }
}

#[test]
fn refuses_missing_mandatory_hpf() {
    let no_hpf = "name = \"bare sub\"\n[enclosure]\ntype = \"sealed\"\n";
    let m = refusal(&two_way(24), &ids(&[("sub", no_hpf)]));
    assert!(
        m.contains("speakers/sub.toml: mandatory_hpf_hz (channel 3): missing: speaker identity `bare sub` must declare"),
        "{m}"
    );
}

#[test]
fn refuses_crossover_list_that_does_not_fit_the_topology() {
    let t = two_way(24).replace(
        "[[speaker]]",
        "[[crossover]]\nfreq_hz = 2000.0\n[[speaker]]",
    );
    // only the first replacement matters; later ones add more, which is also wrong
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("profiles/test.toml: crossover: topology 2-way needs 1 crossover point(s)"),
        "{m}"
    );
    let m = refusal(&two_way(36), &ids(&[]));
    assert!(
        m.contains("crossover[1].slope_db_per_oct: Linkwitz-Riley slopes are 24 (LR4) or 48 (LR8)"),
        "{m}"
    );
}

#[test]
fn refuses_boost_without_a_high_pass() {
    let boost_no_hpf = r#"
name = "boosted"
max_boost_db = 6.0
[enclosure]
type = "sealed"
[[eq]]
type = "low-shelf"
freq_hz = 60.0
gain_db = 6.0
"#;
    let m = refusal(&two_way(24), &ids(&[("sub", boost_no_hpf)]));
    assert!(
        m.contains("speakers/sub.toml: max_boost_db (channel 3): boost without a high-pass"),
        "{m}"
    );
    let boost_below_hpf = r#"
name = "boosted"
max_boost_db = 6.0
mandatory_hpf_hz = 40.0
[enclosure]
type = "sealed"
[[eq]]
type = "peak"
freq_hz = 30.0
gain_db = 6.0
"#;
    let m = refusal(&two_way(24), &ids(&[("sub", boost_below_hpf)]));
    assert!(
        m.contains("eq[1].freq_hz (channel 3): boost at 30 Hz is below mandatory_hpf_hz = 40 Hz"),
        "{m}"
    );
    let boost_over_max = boost_below_hpf
        .replace("freq_hz = 30.0", "freq_hz = 60.0")
        .replace("max_boost_db = 6.0", "max_boost_db = 3.0");
    let m = refusal(&two_way(24), &ids(&[("sub", &boost_over_max)]));
    assert!(
        m.contains("eq[1].gain_db (channel 3): boost of 6 dB exceeds max_boost_db = 3 dB"),
        "{m}"
    );
}

#[test]
fn refuses_unknown_identity() {
    let t = two_way(24).replacen("identity = \"top\"", "identity = \"nonexistent\"", 1);
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("profiles/test.toml: speaker[1].identity (channel 1): unknown speaker identity `nonexistent`"),
        "{m}"
    );
}

#[test]
fn refuses_bad_units() {
    // delay as a string with a unit
    let t = two_way(24).replace("delay_ms = 1.0", "delay_ms = \"1 ms\"");
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("profiles/test.toml") && m.contains("invalid type"),
        "{m}"
    );
    // seconds where milliseconds are expected... the other way round: 250 "ms"
    let t = two_way(24).replace("delay_ms = 1.0", "delay_ms = 250.0");
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("speaker[4].delay_ms (channel 4): bad units: delay is in milliseconds"),
        "{m}"
    );
    // a positive trim would add gain
    let t = two_way(24).replace("delay_ms = 1.0", "trim_db = 3.0");
    let m = refusal(&t, &ids(&[]));
    assert!(
        m.contains("speaker[4].trim_db (channel 4): bad units: trim is a cut in dB"),
        "{m}"
    );
    // kHz written where Hz is expected
    let khz = SUB.replace("mandatory_hpf_hz = 10.0", "mandatory_hpf_hz = 0.042");
    let m = refusal(&two_way(24), &ids(&[("sub", &khz)]));
    assert!(
        m.contains("mandatory_hpf_hz (channel 3): bad units: expected Hz"),
        "{m}"
    );
    // unknown keys are refused, not ignored
    let t = two_way(24).replace("delay_ms = 1.0", "delay = 1.0");
    let m = refusal(&t, &ids(&[]));
    assert!(m.contains("unknown field `delay`"), "{m}");
}

#[test]
fn refuses_wrong_speaker_count_and_uncovered_band() {
    let t = two_way(24).replace("role = \"right\"", "role = \"left\"");
    let m = refusal(&t, &ids(&[]));
    assert!(m.contains("band 2 needs a left and a right speaker"), "{m}");
}

// ---- traps ----

fn sum_deviation_db(a: &[f32], b: &[f32], rate: f64, lo: f64, hi: f64) -> f64 {
    let sum: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) + f64::from(*y))
        .collect();
    let mut fft = MinPhase::with_fft(a.len(), a.len() * 8);
    let spec = fft.spectrum(&sum);
    let df = rate / (a.len() * 8) as f64;
    let levels: Vec<f64> = spec
        .iter()
        .enumerate()
        .filter(|(k, _)| (*k as f64 * df) >= lo && (*k as f64 * df) <= hi)
        .map(|(_, c)| 20.0 * c.norm().log10())
        .collect();
    let max = levels.iter().cloned().fold(f64::MIN, f64::max);
    let min = levels.iter().cloned().fold(f64::MAX, f64::min);
    (max - min) / 2.0
}

#[test]
fn trap_generated_lr_crossover_sums_flat() {
    // Top (high-pass band) + sub (low-pass band, fed L+R at -6 dB each, so a mono signal reaches it
    // at full level) from the real pipeline, LR4 and LR8: flat within +/-0.5 dB from fc/2 to 2 fc.
    for slope in [24, 48] {
        let rig = check(&two_way(slope), &ids(&[])).unwrap();
        let f = generate(&rig, None, &|_| {}).unwrap();
        let dev = sum_deviation_db(&f[0].taps, &f[2].taps, 48_000.0, 40.0, 160.0);
        assert!(dev <= 0.5, "LR{}: +/-{dev} dB", slope / 6);
    }
}

#[test]
fn trap_delay_control_is_in_seconds_and_lands_on_the_sample() {
    let rig = check(&two_way(24), &ids(&[])).unwrap();
    let c = config::standalone(&config::ConfigInput {
        rig: &rig,
        tag: "main",
        set_id: "x",
        dir: Path::new("/tmp/set"),
    });
    // 1.0 ms at 48 kHz = 48 samples; PipeWire truncates float32(delay) * rate.
    assert!(c.contains("name = ch4_delay label = delay"), "{c}");
    assert!(c.contains("\"Delay (s)\" = 0.001010417"), "{c}");
    assert!(!c.contains("\"Delay\" ="));
    let d = config::delay_control_s(48, 48_000) as f32;
    assert_eq!((d * 48_000.0) as u32, 48);
    // channels without a delay get no delay block
    assert!(!c.contains("ch1_delay"));
}

#[test]
fn trap_gains_live_in_linear_blocks_and_are_never_hot() {
    let t = two_way(24).replace("delay_ms = 1.0", "trim_db = -6.0");
    let rig = check(&t, &ids(&[])).unwrap();
    let c = config::standalone(&config::ConfigInput {
        rig: &rig,
        tag: "main",
        set_id: "x",
        dir: Path::new("/tmp/set"),
    });
    assert!(
        c.contains("name = ch4_gain label = linear control = { \"Mult\" = 0.501187234"),
        "{c}"
    );
    assert!(
        !c.contains("gain ="),
        "convolver gain config is ignored by PipeWire: {c}"
    );
    // every Mult and mixer gain <= 1: no stage adds gain
    for w in c
        .split("\"Mult\" = ")
        .skip(1)
        .chain(c.split("\"Gain 1\" = ").skip(1))
    {
        let v: f64 = w.split_whitespace().next().unwrap().parse().unwrap();
        assert!(v <= 1.0, "{v}");
    }
    // and every filter stays <= -0.5 dB; the boosted shipped profile is attenuated by 10.5 dB
    let rig = load_rig(
        &conf().join("profiles/2way-80hz-small-boosted-subs.toml"),
        None,
    )
    .unwrap();
    assert_eq!(rig.global_attenuation_db(), -10.5);
    for f in generate(&rig, None, &|_| {}).unwrap() {
        assert!(f.report.gain_max_db <= -0.5, "{:?}", f.report);
    }
}

#[test]
fn trap_polarity_inversion_negates_the_filter() {
    let t = two_way(24);
    let inv = t.replacen(
        "channel = 2\nband = 2",
        "channel = 2\nband = 2\npolarity = \"inverted\"",
        1,
    );
    let rig = check(&inv, &ids(&[])).unwrap();
    assert_eq!(rig.profile.speakers[1].polarity, Polarity::Inverted);
    let f = generate(&rig, None, &|_| {}).unwrap();
    // ch1 and ch2 share identity and band: ch2 must be exactly -ch1
    assert!(f[0].taps.iter().zip(&f[1].taps).all(|(a, b)| *a == -*b));
    assert!(f[0].taps.iter().any(|v| *v != 0.0));
}

#[test]
fn trap_placeholder_is_never_a_dirac() {
    for p in shipped_profiles() {
        let rig = load_rig(&p, None).unwrap();
        for f in generate(&rig, None, &|_| {}).unwrap() {
            let e0 = f64::from(f.taps[0]).powi(2);
            let e: f64 = f.taps.iter().map(|v| f64::from(*v).powi(2)).sum();
            assert!(e0 < 0.99 * e, "{}: ch{} is a dirac", p.display(), f.channel);
            assert!(f.report.protection_db <= -12.0);
        }
    }
}

// ---- sets ----

#[test]
fn set_is_written_atomically_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set-a");
    let text = two_way(24);
    let rig = check(&text, &ids(&[])).unwrap();
    let m = set::write_set(&rig, &text, &out, "main", None, &|_| {}).unwrap();
    assert_eq!(m.channels.len(), 4);
    assert_eq!(m.channels[3].delay_samples, 48);
    for f in [
        "ch1.wav",
        "ch2.wav",
        "ch3.wav",
        "ch4.wav",
        set::CONFIG,
        set::FRAGMENT,
        set::MANIFEST,
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // no temporary directories left behind
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let (m2, reports) = set::verify(&out).unwrap();
    // (floats may differ in the last bit through JSON)
    assert_eq!(
        (&m2.set_id, &m2.files, m2.channels.len()),
        (&m.set_id, &m.files, 4)
    );
    assert_eq!(reports.len(), 4);
    let (taps, rate) = set::read_wav(&out.join("ch3.wav")).unwrap();
    assert_eq!((taps.len(), rate), (16_384, 48_000));
    let conf = std::fs::read_to_string(out.join(set::CONFIG)).unwrap();
    assert!(conf.contains(&out.join("ch3.wav").display().to_string()));
    assert!(conf.contains(&format!("mugge.set = \"{}\"", m.set_id)));

    // tampering is caught
    let mut bytes = std::fs::read(out.join("ch2.wav")).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x40;
    std::fs::write(out.join("ch2.wav"), bytes).unwrap();
    let e = set::verify(&out).unwrap_err().to_string();
    assert!(e.contains("ch2.wav") && e.contains("does not match"), "{e}");

    // regenerating replaces the set whole
    set::write_set(&rig, &text, &out, "main", None, &|_| {}).unwrap();
    set::verify(&out).unwrap();
}

#[test]
fn failed_gate_writes_nothing_and_names_channel_gate_and_frequency() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set-b");
    let text = two_way(24);
    let mut rig = check(&text, &ids(&[])).unwrap();
    // bypass validation: a +6 dB EQ boost with max_boost_db = 0 makes the sub channels hot
    rig.identities
        .get_mut("sub")
        .unwrap()
        .eq
        .push(toml::from_str("type = \"peak\"\nfreq_hz = 50.0\ngain_db = 6.0\nq = 1.0").unwrap());
    let e = set::write_set(&rig, &text, &out, "main", None, &|_| {}).unwrap_err();
    let SetError::Gates(fails) = &e else {
        panic!("{e}")
    };
    assert!(fails.iter().all(|f| f.gate == Gate::Gain));
    assert_eq!(
        fails.iter().map(|f| f.channel).collect::<Vec<_>>(),
        [Some(3), Some(4)]
    );
    let msg = e.to_string();
    assert!(msg.contains("channel 3: gain gate failed"), "{msg}");
    assert!(
        fails
            .iter()
            .all(|f| (30.0..70.0).contains(&f.worst_hz) && f.value > 4.0),
        "{msg}"
    );
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn verify_rejects_a_set_whose_filter_fails_a_gate() {
    // A set rewritten with a hot filter and a matching manifest hash still fails verify.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set-c");
    let text = two_way(24);
    let rig = check(&text, &ids(&[])).unwrap();
    let mut filters = generate(&rig, None, &|_| {}).unwrap();
    for t in filters[0].taps.iter_mut() {
        *t *= 4.0;
    }
    set::write_filters(&rig, &text, &out, "main", &filters).unwrap();
    let e = set::verify(&out).unwrap_err().to_string();
    assert!(e.contains("channel 1: gain gate failed"), "{e}");
    let _ = Analyzer::new(8192);
}

#[test]
fn config_has_exactly_the_blocks_each_topology_needs() {
    for p in shipped_profiles() {
        let rig = load_rig(&p, None).unwrap();
        let c = config::standalone(&config::ConfigInput {
            rig: &rig,
            tag: "main",
            set_id: "s0",
            dir: Path::new("/tmp/set"),
        });
        let count = |pat: &str| c.matches(pat).count();
        let prof = &rig.profile;
        let n_sp = prof.speakers.len();
        let n_mon = prof.monitors.headphones.len() + prof.monitors.in_ears.len();
        let n_delay = prof.speakers.iter().filter(|s| s.delay_ms > 0.0).count();
        let has_sum = prof
            .speakers
            .iter()
            .any(|s| s.role == mugge_filter_chain::profile::Role::Sum);
        let name = p.display();
        assert_eq!(count("label = convolver"), n_sp, "{name}");
        assert_eq!(count("label = linear"), n_sp, "{name}");
        assert_eq!(count("label = delay"), n_delay, "{name}");
        assert_eq!(count("label = mixer"), usize::from(has_sum), "{name}");
        assert_eq!(count("_mon label = copy"), n_mon, "{name}");
        assert_eq!(count("audio.channels = 8"), 1, "{name}");
        assert!(
            c.contains(&format!("audio.channels = {}", 2 + n_mon)),
            "{name}"
        );
        assert_eq!(count("node.autoconnect = false"), 2, "{name}");
        for s in &prof.speakers {
            assert!(c.contains(&format!("name = ch{}_conv label = convolver", s.channel)));
            assert!(c.contains(&format!("/tmp/set/ch{}.wav", s.channel)));
        }
        // outputs: every speaker and monitor channel routed, the rest silent
        let outputs = c
            .split("outputs = [")
            .nth(1)
            .unwrap()
            .split(']')
            .next()
            .unwrap();
        assert_eq!(
            outputs.matches("null").count(),
            8 - n_sp - n_mon,
            "{name}: {outputs}"
        );
        mugge_filter_chain::gates::check_config(&c).unwrap();
    }
}

#[test]
fn lr8_high_pass_above_the_bass_is_refused_by_the_phase_gate_not_written() {
    // Known limit (docs/filters.md): an LR8 high-pass at 300 Hz / 1.8 kHz keeps its exact DC zeros
    // for a flat sum, and float32 storage makes its deep DC stopband non-minimum-phase noise.
    let dir = tempfile::tempdir().unwrap();
    let p = conf().join("profiles/3way-stereo.toml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("slope_db_per_oct = 24", "slope_db_per_oct = 48");
    let src = |id: &str| {
        let f = conf().join("speakers").join(format!("{id}.toml"));
        std::fs::read_to_string(&f)
            .ok()
            .map(|t| (f.display().to_string(), t))
    };
    let rig = check_rig("profiles/3way-lr8.toml", &text, &src).unwrap();
    let out = dir.path().join("set");
    let e = set::write_set(&rig, &text, &out, "main", None, &|_| {}).unwrap_err();
    let SetError::Gates(fails) = &e else {
        panic!("{e}")
    };
    assert!(fails.iter().all(|f| f.gate == Gate::MinimumPhase), "{e}");
    assert!(fails.iter().any(|f| f.channel == Some(5)), "{e}");
    assert!(!out.exists());
}

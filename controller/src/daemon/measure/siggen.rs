//! The generator's `Props` (docs/plugin.md, `mugge.siggen`). Every change is ramped by the
//! node itself and clamped to its -20 dBFS cap whatever we ask.

use mugge_filter_chain::measure::sweep::SweepParams;

use super::super::props::PropValue;

type Params = Vec<(String, PropValue)>;

fn p(k: &str, v: PropValue) -> (String, PropValue) {
    (k.to_string(), v)
}

/// Silence at the bottom level: the state between and after sweeps. The generator is never
/// stopped during a measurement: `siggen.running` false -> true after a one-shot sweep
/// replays that sweep instead of the signal switched to in the same update (plugin
/// behaviour), so it stays running and plays silence.
pub fn silent() -> Params {
    vec![
        p("siggen.signal", PropValue::Str("silence".into())),
        p("siggen.level", PropValue::Float(-120.0)),
        p("siggen.running", PropValue::Bool(true)),
    ]
}

/// Pink noise at `level_dbfs` (peak; its RMS is 12 dB lower).
pub fn pink(level_dbfs: f64) -> Params {
    vec![
        p("siggen.signal", PropValue::Str("pink".into())),
        p("siggen.level", PropValue::Float(level_dbfs as f32)),
    ]
}

/// One Farina sweep, then silence.
pub fn sweep(s: &SweepParams) -> Params {
    vec![
        p("siggen.sweep.start", PropValue::Float(s.start_hz as f32)),
        p("siggen.sweep.end", PropValue::Float(s.end_hz as f32)),
        p(
            "siggen.sweep.duration",
            PropValue::Float(s.duration_s as f32),
        ),
        p("siggen.sweep.fade-in", PropValue::Float(s.fade_in_s as f32)),
        p(
            "siggen.sweep.fade-out",
            PropValue::Float(s.fade_out_s as f32),
        ),
        p("siggen.repeat", PropValue::Bool(false)),
        p("siggen.level", PropValue::Float(s.level_dbfs as f32)),
        p("siggen.signal", PropValue::Str("sweep".into())),
        p("siggen.running", PropValue::Bool(true)),
    ]
}

//! The structured result of a measurement (D-Bus `MeasurementResult`, `mugge measure --json`)
//! and its human summary.

use serde::{Deserialize, Serialize};

use super::level::Abort;
use mugge_filter_chain::measure::preset::ChannelDrift;

/// A recalled preset's verification: the fresh measurement against the stored one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PresetCheck {
    pub name: String,
    /// The set the preset made (deployed for the verification).
    pub set_id: String,
    pub threshold_db: f64,
    /// Per channel, per 1/3 octave: fresh - stored, dB.
    pub channels: Vec<ChannelDrift>,
    /// Some band of some channel drifted past the threshold: measure again and design anew.
    pub warn: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Harmonic {
    pub order: usize,
    /// Power mean over the reported fundamentals, dB re the fundamental.
    pub db: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelReport {
    pub channel: u32,
    /// Pink-noise level that read the target, dBFS peak, and what the mic read.
    pub noise_level_dbfs: f64,
    pub spl_db: f64,
    pub sweep_level_dbfs: f64,
    /// Arrival at the listening position with the loopback removed.
    pub arrival_samples: f64,
    pub arrival_ms: f64,
    /// Level of the response over 500 Hz - 2 kHz (dB re the played reference).
    pub level_db: f64,
    /// From the design (absent in a dry run): total delay and trim of the corrected set.
    pub delay_ms: Option<f64>,
    pub trim_db: Option<f64>,
    pub max_cut_db: Option<f64>,
    pub harmonics: Vec<Harmonic>,
    /// Sweeps played for this channel (more than one: a tap lost frames).
    pub attempts: u32,
    pub lost_frames: u64,
    /// Verification (after deploy): worst deviation from the target and pass.
    pub verify_max_abs_db: Option<f64>,
    pub verify_pass: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The saved measurement (`mugge analyse DIR`).
    pub dir: String,
    pub ok: bool,
    pub dry_run: bool,
    pub error: Option<String>,
    pub abort: Option<Abort>,
    pub target_spl_db: f64,
    pub ambient_spl_db: Option<f64>,
    pub loopback_samples: f64,
    pub channels: Vec<ChannelReport>,
    /// The deployed corrected set and the verification measurement's directory.
    pub deployed_set: Option<String>,
    pub verify_dir: Option<String>,
    pub verify_pass: Option<bool>,
    /// The design (corrections, targets) as JSON, in the measurement directory.
    pub design_file: Option<String>,
    pub verify: Option<serde_json::Value>,
    /// Set when the run verified a recalled preset (RecallPreset).
    #[serde(default)]
    pub preset: Option<PresetCheck>,
    /// Phase -> milliseconds of wall time, in order.
    pub timings: Vec<(String, u64)>,
    /// Wall time of the whole loop, and the part spent playing sweeps (captures).
    pub total_ms: u64,
    pub sweeps_ms: u64,
}

impl Report {
    /// The operator's summary (CLI).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let status = match (&self.abort, &self.error, self.ok) {
            (Some(a), _, _) => format!("ABORTED: {a}"),
            (None, Some(e), _) => format!("FAILED: {e}"),
            (None, None, true) => "done".into(),
            (None, None, false) => "incomplete".into(),
        };
        s.push_str(&format!("measurement {}: {status}\n", self.dir));
        if let Some(a) = self.ambient_spl_db {
            s.push_str(&format!(
                "ambient {a:.1} dB SPL, target {:.1} dB SPL\n",
                self.target_spl_db
            ));
        }
        if !self.channels.is_empty() {
            s.push_str(
                "ch  level    SPL   arrival (ms / samples)   delay ms  trim dB  max cut  H2 dB  H3 dB  verify\n",
            );
        }
        let opt = |v: Option<f64>, w: usize| match v {
            Some(x) => format!("{x:>w$.2}"),
            None => format!("{:>w$}", "-"),
        };
        for c in &self.channels {
            let h = |k: usize| c.harmonics.iter().find(|h| h.order == k).map(|h| h.db);
            let verify = match (c.verify_pass, c.verify_max_abs_db) {
                (Some(p), Some(d)) => format!("{} ({d:.1} dB)", if p { "pass" } else { "FAIL" }),
                _ => "-".into(),
            };
            s.push_str(&format!(
                "{:>2} {:>6.1} {:>6.1}   {:>8.3} / {:>9.2}   {} {} {} {} {}  {verify}\n",
                c.channel,
                c.noise_level_dbfs,
                c.spl_db,
                c.arrival_ms,
                c.arrival_samples,
                opt(c.delay_ms, 9),
                opt(c.trim_db, 8),
                opt(c.max_cut_db, 8),
                opt(h(2), 6),
                opt(h(3), 6),
            ));
        }
        if let Some(set) = &self.deployed_set {
            s.push_str(&format!("deployed {set}\n"));
        }
        if let Some(p) = self.verify_pass {
            s.push_str(&format!(
                "verification: {}\n",
                if p { "PASS" } else { "FAIL" }
            ));
        }
        if let Some(p) = &self.preset {
            s.push_str(&p.summary());
        }
        s.push_str(&format!(
            "wall time {:.1} s ({:.1} s of it sweeps)\n",
            self.total_ms as f64 / 1000.0,
            self.sweeps_ms as f64 / 1000.0
        ));
        s
    }
}

impl PresetCheck {
    /// Per channel its worst band, then the verdict.
    pub fn summary(&self) -> String {
        let mut s = format!("preset \"{}\" (set {}):\n", self.name, self.set_id);
        for c in &self.channels {
            let worst = c
                .bands
                .iter()
                .max_by(|a, b| a.2.abs().total_cmp(&b.2.abs()));
            let what = match worst {
                Some(w) => format!(
                    "max drift {:.2} dB ({:.0}-{:.0} Hz {:+.2} dB)",
                    c.max_abs_db, w.0, w.1, w.2
                ),
                None => "not measured again".into(),
            };
            s.push_str(&format!(
                "  channel {}: {what}{}\n",
                c.channel,
                if c.warn { "  WARNING" } else { "" }
            ));
        }
        if self.warn {
            s.push_str(&format!(
                "WARNING: drifted past {} dB since the preset was stored: measure again and \
                 design anew\n",
                self.threshold_db
            ));
        } else {
            s.push_str(&format!(
                "within {} dB of the stored measurement\n",
                self.threshold_db
            ));
        }
        s
    }
}

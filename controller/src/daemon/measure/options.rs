//! `[measurement]` in the controller config, and the options a StartMeasurement call may
//! override (JSON).

use std::path::PathBuf;

use mugge_filter_chain::measure::calibration::{Calibration, MicSensitivity};
use mugge_filter_chain::measure::sweep::SweepParams;
use serde::{Deserialize, Serialize};

/// UMIK-1 at 18 dB gain: -18 dBFS RMS for 94 dB SPL (the calibration file's Sens Factor is
/// added to it).
pub const UMIK1_NOMINAL_DBFS: f64 = -18.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeasureConfig {
    /// Level finding aims at this SPL (pink noise, RMS) at the mic.
    pub target_spl_db: f64,
    /// Level finding is done within +- this.
    pub tolerance_db: f64,
    /// Abort when the mic's RMS reads more than target + this.
    pub abort_above_db: f64,
    /// Peaks may exceed the RMS limit by this much (pink noise's crest factor is 12 dB).
    pub crest_allowance_db: f64,
    /// The same during the sweep (a sine's crest factor is 3 dB; room modes add to it).
    pub sweep_crest_allowance_db: f64,
    /// Needed distance between the target and the ambient noise (generator silent).
    pub min_snr_db: f64,
    /// Mic reading (dBFS RMS) for 94 dB SPL before the calibration file's Sens Factor.
    pub mic_sensitivity_dbfs: f64,
    /// miniDSP/UMIK-1 calibration file (its Sens Factor and response are used).
    pub calibration_file: Option<PathBuf>,
    /// First pink-noise level, dBFS peak.
    pub start_level_dbfs: f64,
    /// Largest level increase per step.
    pub max_step_db: f64,
    /// Snapshots to wait after a level change (the meter's 300 ms RMS window must refill).
    pub settle_snapshots: u32,
    /// Snapshots averaged (power) for each reading after settling.
    pub average_snapshots: u32,
    /// The sweep plays this much below the found pink-noise level (dB, peak). Pink noise is
    /// scaled to an RMS 12 dB below its peak, a sweep only 3 dB: -12 keeps the sweep's RMS 3 dB
    /// under the level that was found, so room modes do not trip the safety limit.
    pub sweep_offset_db: f64,
    pub sweep_start_hz: f64,
    pub sweep_end_hz: f64,
    pub sweep_s: f64,
    pub sweep_fade_in_s: f64,
    pub sweep_fade_out_s: f64,
    /// Captured after the sweep's end (room decay and the latest arrival).
    pub tail_s: f64,
    /// Latency of the measurement path itself (interface loopback), samples, subtracted from
    /// every arrival. `loopback_quanta` adds that many graph quanta (the mock hardware: 1).
    pub loopback_samples: f64,
    pub loopback_quanta: u32,
    /// Sweeps repeated at most this often when a tap lost frames.
    pub capture_retries: u32,
    /// Where measurements are saved (default `$XDG_STATE_HOME/mugge/measurements`).
    pub measurements_dir: Option<PathBuf>,
    /// Snapshot periods without a mic snapshot before the mic counts as gone.
    pub mic_timeout_snapshots: u32,
    /// Verification tolerance (dB) and the correction's upper limit (Hz).
    pub verify_tolerance_db: f64,
    pub correction_max_hz: f64,
    /// Installation presets (default `$XDG_STATE_HOME/mugge/presets`, beside the sets).
    pub presets_dir: Option<PathBuf>,
    /// A recalled preset's verification warns when a band drifted more than this (dB).
    pub drift_threshold_db: f64,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig {
            target_spl_db: 75.0,
            tolerance_db: 1.0,
            abort_above_db: 9.0,
            crest_allowance_db: 12.0,
            sweep_crest_allowance_db: 6.0,
            min_snr_db: 15.0,
            mic_sensitivity_dbfs: UMIK1_NOMINAL_DBFS,
            calibration_file: None,
            start_level_dbfs: -60.0,
            max_step_db: 6.0,
            settle_snapshots: 10,
            average_snapshots: 8,
            sweep_offset_db: -12.0,
            sweep_start_hz: 10.0,
            sweep_end_hz: 22_000.0,
            sweep_s: 5.0,
            sweep_fade_in_s: 0.05,
            sweep_fade_out_s: 0.01,
            tail_s: 0.6,
            loopback_samples: 0.0,
            loopback_quanta: 0,
            capture_retries: 2,
            measurements_dir: None,
            mic_timeout_snapshots: 10,
            verify_tolerance_db: 1.5,
            correction_max_hz: 500.0,
            presets_dir: None,
            drift_threshold_db: 1.5,
        }
    }
}

impl MeasureConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ok = (20.0..=120.0).contains(&self.target_spl_db)
            && (0.1..=6.0).contains(&self.tolerance_db)
            && (1.0..=30.0).contains(&self.abort_above_db)
            && (0.0..=30.0).contains(&self.crest_allowance_db)
            && (0.0..=30.0).contains(&self.sweep_crest_allowance_db)
            && (0.0..=60.0).contains(&self.min_snr_db)
            && (-120.0..=-20.0).contains(&self.start_level_dbfs)
            && (0.5..=20.0).contains(&self.max_step_db)
            && (1..=300).contains(&self.settle_snapshots)
            && (1..=300).contains(&self.average_snapshots)
            && (-60.0..=0.0).contains(&self.sweep_offset_db)
            && self.sweep_start_hz >= 1.0
            && self.sweep_end_hz > self.sweep_start_hz
            && (0.5..=60.0).contains(&self.sweep_s)
            && (0.0..=10.0).contains(&self.tail_s)
            && self.loopback_samples >= 0.0
            && (1..=1000).contains(&self.mic_timeout_snapshots)
            && self.verify_tolerance_db > 0.0
            && (0.1..=20.0).contains(&self.drift_threshold_db)
            && self.tolerance_db < self.abort_above_db;
        if ok {
            Ok(())
        } else {
            Err(format!("[measurement] has a value out of range: {self:?}"))
        }
    }

    pub fn measurements_dir(&self) -> PathBuf {
        self.measurements_dir
            .clone()
            .unwrap_or_else(|| state_dir().join("measurements"))
    }

    pub fn presets_dir(&self) -> PathBuf {
        self.presets_dir
            .clone()
            .unwrap_or_else(|| state_dir().join("presets"))
    }

    /// The mic calibration file, parsed (none configured: `None`).
    pub fn calibration(&self) -> Result<Option<Calibration>, String> {
        let Some(p) = &self.calibration_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        Calibration::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display()))
    }

    pub fn sensitivity(&self, cal: Option<&Calibration>) -> MicSensitivity {
        match cal {
            Some(c) => c.sensitivity(self.mic_sensitivity_dbfs),
            None => MicSensitivity {
                dbfs_at_94_db_spl: self.mic_sensitivity_dbfs,
            },
        }
    }

    /// The sweep the generator plays at `level_dbfs` (peak).
    pub fn sweep(&self, rate: u32, level_dbfs: f64) -> SweepParams {
        SweepParams {
            start_hz: self.sweep_start_hz,
            end_hz: self.sweep_end_hz.min(0.99 * f64::from(rate) / 2.0),
            duration_s: self.sweep_s,
            fade_in_s: self.sweep_fade_in_s,
            fade_out_s: self.sweep_fade_out_s,
            rate,
            level_dbfs,
        }
    }
}

/// `$XDG_STATE_HOME/mugge` (or `~/.local/state/mugge`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mugge")
}

/// StartMeasurement's options (JSON object; every key optional).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Request {
    /// Mic positions per channel (position 1 is the listening position). More than one waits
    /// for `ContinueMeasurement` between positions (the operator moves the mic).
    pub positions: Option<u32>,
    /// Capture and analyse only: no design, no deploy, no verification.
    pub dry_run: bool,
    pub target_spl_db: Option<f64>,
    pub sweep_s: Option<f64>,
    /// Also in DJ/Live mode (the program stops for the whole measurement).
    pub force: bool,
}

/// A D-Bus options argument: a JSON object, or nothing for the defaults.
pub fn parse_options<T: serde::de::DeserializeOwned + Default>(json: &str) -> Result<T, String> {
    if json.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(json).map_err(|e| format!("options are not valid: {e}"))
}

impl Request {
    pub fn parse(json: &str) -> Result<Request, String> {
        let r: Request = parse_options(json)?;
        if r.positions.is_some_and(|p| !(1..=16).contains(&p)) {
            return Err("positions must be 1..16".into());
        }
        Ok(r)
    }

    /// The config with this call's overrides, validated.
    pub fn apply(&self, base: &MeasureConfig) -> Result<MeasureConfig, String> {
        let mut c = base.clone();
        if let Some(t) = self.target_spl_db {
            c.target_spl_db = t;
        }
        if let Some(s) = self.sweep_s {
            c.sweep_s = s;
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_options_override_them() {
        let c = MeasureConfig::default();
        c.validate().unwrap();
        let r = Request::parse(r#"{"target_spl_db": 80, "dry_run": true}"#).unwrap();
        assert!(r.dry_run);
        assert_eq!(r.apply(&c).unwrap().target_spl_db, 80.0);
        assert!(Request::parse(r#"{"target_spl_db": 200}"#)
            .unwrap()
            .apply(&c)
            .is_err());
        assert!(Request::parse(r#"{"loud": true}"#).is_err());
        assert!(Request::parse(r#"{"positions": 0}"#).is_err());
        assert_eq!(Request::parse("").unwrap(), Request::default());
    }
}

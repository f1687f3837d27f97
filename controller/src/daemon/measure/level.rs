//! Level finding and the safety layer (D-035), as a pure state machine fed with the mic
//! meter's snapshots: the orchestrator reacts to each snapshot as it arrives (no polling), so
//! an abort acts on the first snapshot that shows the problem.
//!
//! Safety, checked on every snapshot while the generator may play:
//! - too loud: RMS above target + `abort_above_db`, or peak above that + the crest allowance;
//! - mic silent: digital silence (peak below [`DIGITAL_SILENCE_DBFS`]) while the generator's
//!   sound should be at the mic: no cable, no signal.
//!
//! Level finding: ambient first (generator silent; too close to the target aborts), then pink
//! noise from `start_level_dbfs`, raised by at most `max_step_db` per step, each step read
//! after `settle_snapshots`, until the RMS reads the target within the tolerance.

use serde::{Deserialize, Serialize};

use super::options::MeasureConfig;
use mugge_filter_chain::measure::calibration::MicSensitivity;

/// The generator's hard cap (dBFS peak); a request above it is pointless.
pub const GENERATOR_CAP_DBFS: f64 = -20.0;
/// The meter reports silence as -200 dBFS; a live mic never reads this low (its own noise).
pub const DIGITAL_SILENCE_DBFS: f64 = -140.0;

/// One mic meter snapshot (graph clock stamped).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub seq: i64,
    pub position: i64,
    pub rms_dbfs: f64,
    pub peak_dbfs: f64,
}

/// Why a measurement stopped; each one leaves the speakers muted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Abort {
    /// The mic read more than the limit (a gain jump, feedback, a mistake in the chain).
    TooLoud {
        spl_db: f64,
        peak_spl_db: f64,
        limit_db: f64,
        reading: Reading,
    },
    /// Digital silence, the mic node or its link gone, or no snapshot for too long.
    MicLost { why: String },
    /// Ambient noise leaves less than the needed SNR to the target.
    AmbientTooHigh {
        ambient_spl_db: f64,
        target_spl_db: f64,
        min_snr_db: f64,
    },
    /// The generator's cap was reached below the target (speaker off, mic far away).
    TooQuiet {
        spl_db: f64,
        level_dbfs: f64,
        target_spl_db: f64,
    },
    /// AbortMeasurement, or a failure of the graph (the text says which).
    Stopped { why: String },
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::TooLoud {
                spl_db,
                peak_spl_db,
                limit_db,
                reading,
            } => write!(
                f,
                "too loud: mic read {spl_db:.1} dB SPL RMS / {peak_spl_db:.1} dB SPL peak, \
                 limit {limit_db:.1} dB SPL (snapshot {} at graph position {})",
                reading.seq, reading.position
            ),
            Abort::MicLost { why } => write!(f, "mic signal lost: {why}"),
            Abort::AmbientTooHigh {
                ambient_spl_db,
                target_spl_db,
                min_snr_db,
            } => write!(
                f,
                "ambient noise too high: {ambient_spl_db:.1} dB SPL, the target \
                 {target_spl_db:.1} dB SPL needs {min_snr_db:.0} dB above it"
            ),
            Abort::TooQuiet {
                spl_db,
                level_dbfs,
                target_spl_db,
            } => write!(
                f,
                "target not reached: {spl_db:.1} dB SPL at the generator's cap \
                 ({level_dbfs:.1} dBFS), target {target_spl_db:.1} dB SPL"
            ),
            Abort::Stopped { why } => write!(f, "stopped: {why}"),
        }
    }
}

/// The per-snapshot safety check.
#[derive(Clone, Debug)]
pub struct Guard {
    pub sens: MicSensitivity,
    pub limit_spl_db: f64,
    pub peak_limit_spl_db: f64,
}

impl Guard {
    /// The guard for pink noise (level finding).
    pub fn new(cfg: &MeasureConfig, sens: MicSensitivity) -> Guard {
        Guard::with_crest(cfg, sens, cfg.crest_allowance_db)
    }

    /// The guard for the sweep: a sine's peaks sit only 3 dB over its RMS, so a jump shows in
    /// the first snapshot's peak long before the 300 ms RMS window has filled.
    pub fn for_sweep(cfg: &MeasureConfig, sens: MicSensitivity) -> Guard {
        Guard::with_crest(cfg, sens, cfg.sweep_crest_allowance_db)
    }

    fn with_crest(cfg: &MeasureConfig, sens: MicSensitivity, crest_db: f64) -> Guard {
        let limit = cfg.target_spl_db + cfg.abort_above_db;
        Guard {
            sens,
            limit_spl_db: limit,
            peak_limit_spl_db: limit + crest_db,
        }
    }

    /// `expect_sound`: the generator plays and its sound has reached the mic, so digital
    /// silence means the mic is gone (between sounds a simulated, noiseless room is silent).
    pub fn check(&self, r: &Reading, expect_sound: bool) -> Result<(), Abort> {
        if expect_sound && r.peak_dbfs < DIGITAL_SILENCE_DBFS {
            return Err(Abort::MicLost {
                why: format!(
                    "digital silence ({:.0} dBFS peak, snapshot {})",
                    r.peak_dbfs, r.seq
                ),
            });
        }
        let (spl, peak) = (self.sens.spl(r.rms_dbfs), self.sens.spl(r.peak_dbfs));
        if spl > self.limit_spl_db || peak > self.peak_limit_spl_db {
            return Err(Abort::TooLoud {
                spl_db: spl,
                peak_spl_db: peak,
                limit_db: self.limit_spl_db,
                reading: *r,
            });
        }
        Ok(())
    }
}

/// What the orchestrator does after a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Keep reading snapshots.
    Wait,
    /// Start (or change) pink noise at this level, dBFS peak.
    SetLevel(f64),
    /// Found: the pink-noise level that reads the target, and what was read.
    Done { level_dbfs: f64, spl_db: f64 },
}

#[derive(Clone, Debug)]
enum Phase {
    Ambient,
    Raise,
}

/// Level finding for one channel. Ambient is measured by the first finder of a run and handed
/// to the next ones (`with_ambient`).
#[derive(Clone, Debug)]
pub struct Finder {
    cfg: MeasureConfig,
    guard: Guard,
    phase: Phase,
    settle: u32,
    /// Powers (linear) of the snapshots read after settling.
    acc: Vec<f64>,
    level: f64,
    pub ambient_spl_db: Option<f64>,
    /// (level dBFS, SPL read) per finished step.
    pub steps: Vec<(f64, f64)>,
}

impl Finder {
    pub fn new(cfg: &MeasureConfig, sens: MicSensitivity, ambient: Option<f64>) -> Finder {
        Finder {
            guard: Guard::new(cfg, sens),
            cfg: cfg.clone(),
            phase: if ambient.is_some() {
                Phase::Raise
            } else {
                Phase::Ambient
            },
            settle: cfg.settle_snapshots,
            acc: Vec::new(),
            level: cfg.start_level_dbfs.min(GENERATOR_CAP_DBFS),
            ambient_spl_db: ambient,
            steps: Vec::new(),
        }
    }

    /// The first action: measure ambient (generator silent) or start the noise.
    pub fn start(&self) -> Step {
        match self.phase {
            Phase::Ambient => Step::Wait,
            Phase::Raise => Step::SetLevel(self.level),
        }
    }

    pub fn level_dbfs(&self) -> f64 {
        self.level
    }

    /// Progress through the level range, 0..=1 (for the progress signal).
    pub fn fraction(&self) -> f64 {
        let span = GENERATOR_CAP_DBFS - self.cfg.start_level_dbfs;
        if span <= 0.0 {
            return 1.0;
        }
        ((self.level - self.cfg.start_level_dbfs) / span).clamp(0.0, 1.0)
    }

    pub fn on_snapshot(&mut self, r: &Reading) -> Result<Step, Abort> {
        // A live mic is never digitally silent, not even in a quiet room; but right after a
        // level or channel change the generator's sound may not have reached it yet (a
        // noiseless simulated room is silent then): silence counts once the step settled.
        self.guard.check(r, self.settle == 0)?;
        if self.settle > 0 {
            self.settle -= 1;
            return Ok(Step::Wait);
        }
        // Low-frequency noise (a sub's band) swings by dB within one 300 ms RMS window: the
        // reading is the mean power of several snapshots.
        self.acc.push(10f64.powf(r.rms_dbfs / 10.0));
        if self.acc.len() < self.cfg.average_snapshots.max(1) as usize {
            return Ok(Step::Wait);
        }
        let mean = self.acc.iter().sum::<f64>() / self.acc.len() as f64;
        self.acc.clear();
        let spl = self.guard.sens.spl(10.0 * mean.max(1e-30).log10());
        match self.phase {
            Phase::Ambient => {
                self.ambient_spl_db = Some(spl);
                if self.cfg.target_spl_db - spl < self.cfg.min_snr_db {
                    return Err(Abort::AmbientTooHigh {
                        ambient_spl_db: spl,
                        target_spl_db: self.cfg.target_spl_db,
                        min_snr_db: self.cfg.min_snr_db,
                    });
                }
                self.phase = Phase::Raise;
                self.settle = self.cfg.settle_snapshots;
                Ok(Step::SetLevel(self.level))
            }
            Phase::Raise => {
                self.steps.push((self.level, spl));
                let delta = self.cfg.target_spl_db - spl;
                if delta.abs() <= self.cfg.tolerance_db {
                    return Ok(Step::Done {
                        level_dbfs: self.level,
                        spl_db: spl,
                    });
                }
                if delta > 0.0 && self.level >= GENERATOR_CAP_DBFS - 1e-9 {
                    return Err(Abort::TooQuiet {
                        spl_db: spl,
                        level_dbfs: self.level,
                        target_spl_db: self.cfg.target_spl_db,
                    });
                }
                let step = delta.clamp(-self.cfg.max_step_db, self.cfg.max_step_db);
                self.level = (self.level + step).min(GENERATOR_CAP_DBFS);
                self.settle = self.cfg.settle_snapshots;
                Ok(Step::SetLevel(self.level))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENS: MicSensitivity = MicSensitivity {
        dbfs_at_94_db_spl: -18.0,
    };

    fn reading(seq: i64, rms_spl: f64) -> Reading {
        let rms = rms_spl - 94.0 - 18.0;
        Reading {
            seq,
            position: seq * 1024,
            rms_dbfs: rms,
            peak_dbfs: rms + 10.0,
        }
    }

    /// A room where the mic reads `gain_db` + the level (pink RMS is 12 dB under its peak).
    fn run(
        cfg: &MeasureConfig,
        ambient: f64,
        gain_db: f64,
    ) -> Result<(f64, Vec<(f64, f64)>), Abort> {
        let mut f = Finder::new(cfg, SENS, None);
        let mut level: Option<f64> = match f.start() {
            Step::SetLevel(l) => Some(l),
            _ => None,
        };
        for seq in 0..10_000 {
            let spl = match level {
                None => ambient,
                Some(l) => {
                    let sig = l - 12.0 + gain_db;
                    10.0 * (10f64.powf(sig / 10.0) + 10f64.powf(ambient / 10.0)).log10()
                }
            };
            match f.on_snapshot(&reading(seq, spl))? {
                Step::Wait => {}
                Step::SetLevel(l) => {
                    assert!(l <= GENERATOR_CAP_DBFS);
                    if let Some(prev) = level {
                        assert!(l - prev <= cfg.max_step_db + 1e-9, "step {prev} -> {l}");
                    }
                    level = Some(l);
                }
                Step::Done { level_dbfs, spl_db } => {
                    assert!((spl_db - cfg.target_spl_db).abs() <= cfg.tolerance_db);
                    return Ok((level_dbfs, f.steps.clone()));
                }
            }
        }
        panic!("no result");
    }

    #[test]
    fn raises_in_bounded_steps_to_the_target() {
        let cfg = MeasureConfig::default();
        // Mic reads 75 dB SPL at -30 dBFS pink: -30 - 12 + g = 75.
        let (level, steps) = run(&cfg, 40.0, 117.0).unwrap();
        assert!((level - -30.0).abs() <= 1.0, "{level} {steps:?}");
        assert!(steps.len() >= 5, "started low: {steps:?}");
    }

    #[test]
    fn ambient_too_high_aborts_before_any_noise() {
        let cfg = MeasureConfig::default();
        let e = run(&cfg, 65.0, 117.0).unwrap_err();
        assert!(matches!(e, Abort::AmbientTooHigh { .. }), "{e}");
    }

    #[test]
    fn the_cap_below_the_target_aborts_too_quiet() {
        let cfg = MeasureConfig::default();
        let e = run(&cfg, 30.0, 90.0).unwrap_err();
        assert!(matches!(e, Abort::TooQuiet { .. }), "{e}");
    }

    #[test]
    fn a_loud_or_silent_snapshot_aborts_at_once_even_while_settling() {
        let cfg = MeasureConfig::default();
        let mut f = Finder::new(&cfg, SENS, Some(40.0));
        assert_eq!(f.start(), Step::SetLevel(-60.0));
        assert_eq!(f.on_snapshot(&reading(1, 60.0)).unwrap(), Step::Wait);
        // RMS below the limit, but a peak 20 dB above the level that was there.
        let mut r = reading(2, 80.0);
        r.peak_dbfs = r.rms_dbfs + 20.0;
        assert!(matches!(f.on_snapshot(&r), Err(Abort::TooLoud { .. })));
        let e = f.on_snapshot(&reading(3, 85.0)).unwrap_err();
        assert!(matches!(e, Abort::TooLoud { .. }), "{e}");
        let mut silent = reading(4, 60.0);
        silent.peak_dbfs = -200.0;
        // While a step settles silence is expected; once settled it is a lost mic.
        let mut f = Finder::new(&cfg, SENS, Some(40.0));
        f.start();
        for _ in 0..cfg.settle_snapshots {
            assert_eq!(f.on_snapshot(&silent).unwrap(), Step::Wait);
        }
        assert!(matches!(f.on_snapshot(&silent), Err(Abort::MicLost { .. })));
    }
}

//! Cut-only correction against a target curve.
//!
//! The measured response is smoothed (1/N octave), the target is shifted to the measured level
//! over a reference band, and wherever the measurement lies above the target inside the
//! correction range the difference is cut. Where it lies below (a null), nothing happens: a null
//! at one position is a cancellation that more energy cannot fill, and boosting it only costs
//! headroom and excursion. The correction fades to 0 dB over `transition_oct` outside the range.
//!
//! The result is a [`CorrectionCurve`]: `(Hz, linear gain)` points, gain <= 1 everywhere, that
//! the filter engine evaluates at its own FFT bins ([`CorrectionCurve::gain_at`]) and multiplies
//! into the combined minimum-phase response before its gates. The filter engine's per-channel
//! correction input is a `&(dyn Fn(f64) -> f64 + Sync)` (linear magnitude at Hz): pass
//! `&|hz| curve.gain_at(hz)`.

use super::response::{interpolate_log, log_frequencies, smooth, Response};
use super::{from_db, MeasureError, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A target magnitude in dB at a frequency (relative: only its shape matters).
pub trait TargetCurve {
    fn db_at(&self, f: f64) -> f64;
}

impl<F: Fn(f64) -> f64> TargetCurve for F {
    fn db_at(&self, f: f64) -> f64 {
        self(f)
    }
}

/// A target given as a table of `(Hz, dB)`, interpolated over log frequency, ends held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetTable(pub Vec<(f64, f64)>);

impl TargetTable {
    pub fn new(points: Vec<(f64, f64)>) -> Result<Self> {
        if points.is_empty()
            || points.windows(2).any(|w| w[1].0 <= w[0].0)
            || points
                .iter()
                .any(|p| p.0.is_nan() || p.0 <= 0.0 || !p.1.is_finite())
        {
            return Err(MeasureError::Invalid(
                "target table needs ascending positive frequencies and finite dB".into(),
            ));
        }
        Ok(TargetTable(points))
    }
}

impl TargetCurve for TargetTable {
    fn db_at(&self, f: f64) -> f64 {
        let (xs, ys): (Vec<f64>, Vec<f64>) = self.0.iter().copied().unzip();
        interpolate_log(&xs, &ys, f)
    }
}

impl TargetCurve for Response {
    fn db_at(&self, f: f64) -> f64 {
        self.at(f)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionParams {
    /// Correction range, Hz (rooms: up to ~500 Hz; speaker EQ: full range).
    pub lo_hz: f64,
    pub hi_hz: f64,
    /// Fade from full correction to 0 dB outside the range, octaves.
    pub transition_oct: f64,
    /// Deepest cut, dB (positive number).
    pub max_cut_db: f64,
    /// Smoothing of the measurement before comparison: 1/N octave.
    pub smoothing_n: f64,
    /// Band over which the target is aligned to the measured level, Hz.
    pub reference_lo_hz: f64,
    pub reference_hi_hz: f64,
    /// Density of the output table.
    pub points_per_octave: usize,
}

impl Default for CorrectionParams {
    fn default() -> Self {
        CorrectionParams {
            lo_hz: 20.0,
            hi_hz: 500.0,
            transition_oct: 0.5,
            max_cut_db: 15.0,
            smoothing_n: 6.0,
            // Above the room's modal region, where the speaker itself sets the level.
            reference_lo_hz: 500.0,
            reference_hi_hz: 2_000.0,
            points_per_octave: 48,
        }
    }
}

impl CorrectionParams {
    pub(crate) fn validate(&self) -> Result<()> {
        let ok = self.lo_hz > 0.0
            && self.hi_hz > self.lo_hz
            && self.transition_oct >= 0.0
            && self.max_cut_db >= 0.0
            && self.smoothing_n > 0.0
            && self.reference_lo_hz > 0.0
            && self.reference_hi_hz > self.reference_lo_hz
            && self.points_per_octave > 0;
        if ok {
            Ok(())
        } else {
            Err(MeasureError::Invalid(format!(
                "correction parameters {self:?}"
            )))
        }
    }
}

/// The filter engine's input: `(Hz, linear gain)` ascending, every gain in `(0, 1]`; 1.0 (0 dB)
/// below the first and above the last point. Linear interpolation in dB over log frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionCurve {
    pub points: Vec<(f64, f64)>,
}

impl CorrectionCurve {
    /// The gain at `f`: the multiplier for the filter engine's bin at `f`.
    pub fn gain_at(&self, f: f64) -> f64 {
        let (first, last) = match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) => (a.0, b.0),
            _ => return 1.0,
        };
        if f < first || f > last {
            return 1.0;
        }
        let xs: Vec<f64> = self.points.iter().map(|p| p.0).collect();
        let ys: Vec<f64> = self.points.iter().map(|p| super::db(p.1)).collect();
        from_db(interpolate_log(&xs, &ys, f)).min(1.0)
    }

    /// The largest gain anywhere (never above 1).
    pub fn max_gain(&self) -> f64 {
        self.points.iter().map(|p| p.1).fold(0.0, f64::max)
    }
}

/// Cut-only correction of `measured` (unsmoothed, dB) towards `target`.
pub fn cut_only(
    measured: &Response,
    target: &dyn TargetCurve,
    p: &CorrectionParams,
) -> Result<CorrectionCurve> {
    p.validate()?;
    let smoothed = smooth(measured, p.smoothing_n)?;
    let reference = smoothed
        .band_level(p.reference_lo_hz, p.reference_hi_hz)
        .ok_or_else(|| {
            MeasureError::Invalid(format!(
                "no measured point in the reference band {}..{} Hz",
                p.reference_lo_hz, p.reference_hi_hz
            ))
        })?;
    // The target's own power-average level over the same points.
    let ref_pts: Vec<f64> = smoothed
        .freqs
        .iter()
        .filter(|f| (p.reference_lo_hz..=p.reference_hi_hz).contains(*f))
        .map(|&f| 10f64.powf(target.db_at(f) / 10.0))
        .collect();
    let target_ref = 10.0 * (ref_pts.iter().sum::<f64>() / ref_pts.len() as f64).log10();
    let offset = reference - target_ref;

    let edge = 2f64.powf(p.transition_oct);
    let lo = p.lo_hz / edge;
    let hi = p.hi_hz * edge;
    let mut points: Vec<(f64, f64)> = log_frequencies(lo, hi, p.points_per_octave)
        .into_iter()
        .map(|f| {
            let excess = smoothed.at(f) - (target.db_at(f) + offset);
            let cut = (-excess).clamp(-p.max_cut_db, 0.0) * weight(f, p);
            (f, from_db(cut).min(1.0))
        })
        .collect();
    if points.last().is_some_and(|l| l.0 < hi) {
        points.push((hi, 1.0));
    }
    Ok(CorrectionCurve { points })
}

/// 1 inside the range, a raised-cosine fade (log frequency) to 0 over `transition_oct` outside.
pub(crate) fn weight(f: f64, p: &CorrectionParams) -> f64 {
    let oct = if f < p.lo_hz {
        (p.lo_hz / f).log2()
    } else if f > p.hi_hz {
        (f / p.hi_hz).log2()
    } else {
        return 1.0;
    };
    if p.transition_oct <= 0.0 || oct >= p.transition_oct {
        return 0.0;
    }
    0.5 + 0.5 * (PI * oct / p.transition_oct).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::db;

    /// A bump of `gain_db` at `fc`, Gaussian over log2 frequency with `width` octaves sigma.
    fn bump(f: f64, fc: f64, gain_db: f64, width: f64) -> f64 {
        gain_db * (-((f / fc).log2() / width).powi(2) / 2.0).exp()
    }

    fn room() -> Response {
        let freqs = log_frequencies(10.0, 20_000.0, 48);
        let db = freqs
            .iter()
            .map(|&f| {
                bump(f, 60.0, 8.0, 0.15) + bump(f, 120.0, -15.0, 0.05) + bump(f, 3_000.0, 6.0, 0.2)
            })
            .collect();
        Response { freqs, db }
    }

    #[test]
    fn peaks_are_cut_nulls_and_out_of_range_left_alone() {
        let m = room();
        let c = cut_only(&m, &|_f: f64| 0.0, &CorrectionParams::default()).unwrap();
        assert!(c.max_gain() <= 1.0);
        assert!(c.points.iter().all(|p| p.1 > 0.0 && p.1 <= 1.0));
        // The 8 dB mode is cut by nearly its smoothed height.
        let at60 = db(c.gain_at(60.0));
        assert!(at60 < -6.5 && at60 > -8.5, "60 Hz: {at60}");
        // The -15 dB null: no boost (and no cut).
        assert!(db(c.gain_at(120.0)).abs() < 1e-9);
        // The 3 kHz peak is outside the 500 Hz range: untouched.
        assert_eq!(c.gain_at(3_000.0), 1.0);
        assert_eq!(c.gain_at(5.0), 1.0);
        // After correction, wherever the measurement was above target, it is within 1.5 dB.
        let s = smooth(&m, 6.0).unwrap();
        for (f, l) in s.freqs.iter().zip(&s.db) {
            if (20.0..=500.0).contains(f) && *l > 0.0 {
                let after = l + db(c.gain_at(*f));
                assert!(after.abs() <= 1.5, "{f} Hz: {after}");
            }
        }
    }

    #[test]
    fn a_house_curve_target_is_followed_and_cuts_are_capped() {
        let m = Response {
            freqs: log_frequencies(10.0, 20_000.0, 48),
            db: log_frequencies(10.0, 20_000.0, 48)
                .iter()
                .map(|&f| if f < 100.0 { 25.0 } else { 0.0 })
                .collect(),
        };
        // +6 dB at 20 Hz falling to 0 dB at 200 Hz.
        let t = TargetTable::new(vec![(20.0, 6.0), (200.0, 0.0)]).unwrap();
        let p = CorrectionParams {
            smoothing_n: 48.0,
            ..CorrectionParams::default()
        };
        let c = cut_only(&m, &t, &p).unwrap();
        // 25 dB over a 6 dB target at 20 Hz: 19 dB wanted, capped at 15.
        assert!((db(c.gain_at(20.0)) + 15.0).abs() < 0.01);
        // At 63 Hz target is 6 * (1 - log(63/20)/log(10)) = 3.0 dB: cut 22 -> 15 cap too.
        // At 300 Hz measured 0 on a 0 dB target: no cut.
        assert!(db(c.gain_at(300.0)).abs() < 0.01);
    }

    #[test]
    fn bad_parameters_and_tables_are_rejected() {
        let m = room();
        let bad = CorrectionParams {
            hi_hz: 10.0,
            ..CorrectionParams::default()
        };
        assert!(cut_only(&m, &|_f: f64| 0.0, &bad).is_err());
        assert!(TargetTable::new(vec![(100.0, 0.0), (50.0, 0.0)]).is_err());
        assert!(TargetTable::new(vec![]).is_err());
        let narrow = Response {
            freqs: vec![50.0, 60.0],
            db: vec![0.0, 0.0],
        };
        assert!(cut_only(&narrow, &|_f: f64| 0.0, &CorrectionParams::default()).is_err());
    }

    #[test]
    fn curve_plugs_into_the_filter_engines_correction_input() {
        let c = cut_only(&room(), &|_f: f64| 0.0, &CorrectionParams::default()).unwrap();
        let f = |hz: f64| c.gain_at(hz);
        let input: &(dyn Fn(f64) -> f64 + Sync) = &f;
        assert!(input(60.0) < 0.5 && input(60.0) > 0.0);
        assert_eq!(input(10_000.0), 1.0);
    }

    #[test]
    fn curve_round_trips_through_serde() {
        let c = cut_only(&room(), &|_f: f64| 0.0, &CorrectionParams::default()).unwrap();
        let back: CorrectionCurve =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        // serde_json's default float parsing may differ in the last bit.
        assert_eq!(c.points.len(), back.points.len());
        for (a, b) in c.points.iter().zip(&back.points) {
            assert!((a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-12);
        }
    }
}

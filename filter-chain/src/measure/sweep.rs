//! The Farina exponential sine sweep and its analytic inverse filter.
//!
//! Definition (time `t = n / rate`, `n = 0 .. N`, `N = floor(T * rate)`, `T = duration_s`):
//!
//! ```text
//! L    = T / ln(f2 / f1)                        sweep rate constant, seconds per e-fold
//! f(t) = f1 * exp(t / L)                        instantaneous frequency, f1 -> f2
//! x(t) = A * w(t) * sin(2 pi f1 L (exp(t / L) - 1))
//! A    = 10^(level_dbfs / 20)                   peak amplitude
//! w(t) = sin^2(pi t / (2 Ti))   for t < Ti      half-Hann fade-in over Ti = fade_in_s
//!        sin^2(pi (T-t)/(2 To)) for t > T - To  half-Hann fade-out over To = fade_out_s
//!        1                      otherwise
//! ```
//!
//! The inverse filter (Farina 2000) is the time-reversed sweep with an exponential envelope
//! `exp(-t / L)`, which falls 6 dB per octave as the reversed sweep descends and so whitens the
//! sweep's pink spectrum: `inv(t) = x(T - t) * exp(-t / L) / g`, with `g` chosen so that
//! `x * inv` has unit gain in the band. The k-th harmonic of a nonlinearity appears after
//! deconvolution `L ln(k)` seconds *before* the linear impulse response.
//!
//! The signal generator node publishes the same [`SweepParams`] and must produce the same
//! samples: this is the formula of `mugge-dsp`'s `siggen` (plugin branch), which computes in
//! `f64` and outputs `f32`, and applies the level as its (ramped) gain.

use super::{spectrum, MeasureError, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A sweep, exactly as the generator plays it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepParams {
    /// First instantaneous frequency f1, Hz.
    pub start_hz: f64,
    /// Last instantaneous frequency f2, Hz (at most Nyquist).
    pub end_hz: f64,
    /// Sweep length in seconds (fades included).
    pub duration_s: f64,
    /// Half-Hann fade-in, seconds.
    pub fade_in_s: f64,
    /// Half-Hann fade-out, seconds.
    pub fade_out_s: f64,
    /// Sample rate, Hz.
    pub rate: u32,
    /// Peak level in dBFS (the generator caps at -20 dBFS regardless).
    pub level_dbfs: f64,
}

impl Default for SweepParams {
    fn default() -> Self {
        SweepParams {
            start_hz: 10.0,
            end_hz: 22_000.0,
            duration_s: 10.0,
            fade_in_s: 0.05,
            fade_out_s: 0.01,
            rate: 48_000,
            level_dbfs: -20.0,
        }
    }
}

impl SweepParams {
    /// Checks the parameters; every generator of a sweep calls this first.
    pub fn validate(&self) -> Result<()> {
        let nyquist = f64::from(self.rate) / 2.0;
        let bad = |m: String| Err(MeasureError::Invalid(m));
        if self.rate == 0 {
            return bad("rate must be > 0".into());
        }
        if !(self.start_hz > 0.0 && self.start_hz < self.end_hz && self.end_hz <= nyquist) {
            return bad(format!(
                "need 0 < start_hz < end_hz <= {nyquist} Hz, got {} .. {}",
                self.start_hz, self.end_hz
            ));
        }
        if !(self.duration_s > 0.0 && self.duration_s <= 600.0) {
            return bad(format!("duration_s {} outside (0, 600]", self.duration_s));
        }
        if !(self.fade_in_s >= 0.0
            && self.fade_out_s >= 0.0
            && self.fade_in_s + self.fade_out_s <= self.duration_s)
        {
            return bad(format!(
                "fades {} s + {} s must be >= 0 and fit in {} s",
                self.fade_in_s, self.fade_out_s, self.duration_s
            ));
        }
        if !(self.level_dbfs.is_finite() && self.level_dbfs <= 0.0) {
            return bad(format!("level_dbfs {} must be <= 0", self.level_dbfs));
        }
        if self.len() < 16 {
            return bad("sweep shorter than 16 samples".into());
        }
        Ok(())
    }

    /// Number of samples N = floor(T * rate), as the generator counts them.
    pub fn len(&self) -> usize {
        (self.duration_s * f64::from(self.rate)) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// L = T / ln(f2 / f1), seconds.
    pub fn rate_constant(&self) -> f64 {
        self.duration_s / (self.end_hz / self.start_hz).ln()
    }

    /// Where the k-th harmonic's impulse response lands relative to the linear one: -L ln(k) s.
    pub fn harmonic_offset_s(&self, k: usize) -> f64 {
        -self.rate_constant() * (k as f64).ln()
    }

    /// Instantaneous frequency at time t.
    pub fn frequency_at(&self, t: f64) -> f64 {
        self.start_hz * (t / self.rate_constant()).exp()
    }

    fn envelope(&self, t: f64) -> f64 {
        let t_end = self.duration_s;
        let mut w = 1.0;
        if self.fade_in_s > 0.0 && t < self.fade_in_s {
            w *= (PI * t / (2.0 * self.fade_in_s)).sin().powi(2);
        }
        if self.fade_out_s > 0.0 && t > t_end - self.fade_out_s {
            w *= (PI * (t_end - t) / (2.0 * self.fade_out_s)).sin().powi(2);
        }
        w
    }

    /// The sweep's samples.
    pub fn generate(&self) -> Result<Vec<f64>> {
        self.validate()?;
        let rate = f64::from(self.rate);
        let l = self.rate_constant();
        let a = 10f64.powf(self.level_dbfs / 20.0);
        Ok((0..self.len())
            .map(|n| {
                let t = n as f64 / rate;
                a * self.envelope(t) * (2.0 * PI * self.start_hz * l * ((t / l).exp() - 1.0)).sin()
            })
            .collect())
    }

    /// Farina's inverse filter, normalised so that `sweep * inverse` has unit gain in the band
    /// (measured over the middle of the band, away from the fades).
    pub fn inverse_filter(&self) -> Result<Vec<f64>> {
        let x = self.generate()?;
        let rate = f64::from(self.rate);
        let l = self.rate_constant();
        let n = x.len();
        let mut inv: Vec<f64> = (0..n)
            .map(|i| x[n - 1 - i] * (-(i as f64) / rate / l).exp())
            .collect();
        let len = spectrum::fft_len(2 * n);
        let xs = spectrum::forward(&x, len);
        let is = spectrum::forward(&inv, len);
        let (lo, hi) = (self.start_hz * 4.0, self.end_hz / 4.0);
        let bin_hz = rate / len as f64;
        let (mut sum, mut count) = (0.0, 0usize);
        for (k, (a, b)) in xs.iter().zip(&is).enumerate() {
            let f = k as f64 * bin_hz;
            if f >= lo && f <= hi {
                sum += (a * b).norm();
                count += 1;
            }
        }
        if count == 0 {
            return Err(MeasureError::Invalid(
                "band too narrow to normalise the inverse filter (need f2/f1 > 16)".into(),
            ));
        }
        let g = sum / count as f64;
        inv.iter_mut().for_each(|v| *v /= g);
        Ok(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short() -> SweepParams {
        SweepParams {
            start_hz: 20.0,
            end_hz: 20_000.0,
            duration_s: 2.0,
            ..SweepParams::default()
        }
    }

    #[test]
    fn instantaneous_frequency_follows_the_definition() {
        let p = short();
        let x = p.generate().unwrap();
        assert_eq!(x.len(), 96_000);
        // Count zero crossings in a 50 ms window around t and compare with f(t).
        for t in [0.5, 1.0, 1.5] {
            let start = (t * 48_000.0) as usize;
            let win = 2_400;
            let crossings = x[start..start + win]
                .windows(2)
                .filter(|w| w[0] <= 0.0 && w[1] > 0.0)
                .count() as f64;
            let f_mid = p.frequency_at(t + 0.025);
            let measured = crossings / 0.05;
            assert!(
                (measured - f_mid).abs() / f_mid < 0.03,
                "t={t}: {measured} Hz vs {f_mid} Hz"
            );
        }
        // Peak level and fades.
        let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!((peak - 0.1).abs() < 1e-3, "peak {peak}");
        assert_eq!(x[0], 0.0);
        assert!(x[x.len() - 1].abs() < 1e-3);
    }

    #[test]
    fn inverse_filter_turns_the_sweep_into_a_flat_impulse() {
        let p = short();
        let x = p.generate().unwrap();
        let inv = p.inverse_filter().unwrap();
        let n = spectrum::fft_len(x.len() + inv.len());
        let xs = spectrum::forward(&x, n);
        let is = spectrum::forward(&inv, n);
        let prod: Vec<_> = xs.iter().zip(&is).map(|(a, b)| a * b).collect();
        let bin_hz = 48_000.0 / n as f64;
        // Flat within 0.5 dB inside the band; the analytic inverse ripples near the edges, which is
        // why `deconvolve` divides by the played reference instead.
        for (k, c) in prod.iter().enumerate() {
            let f = k as f64 * bin_hz;
            if (80.0..8_000.0).contains(&f) {
                let d = crate::measure::db(c.norm());
                assert!(d.abs() < 0.5, "{f} Hz: {d} dB");
            }
        }
        // The impulse sits at N - 1 (the end of the reversed sweep meets its start).
        let h = spectrum::inverse(prod, n);
        let peak = h
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
            .0;
        assert_eq!(peak, x.len() - 1);
    }

    /// The generator node's per-sample loop (mugge-dsp siggen), written out independently: the
    /// analysis must describe exactly the sweep that plays, also for a duration that is not a
    /// whole number of samples.
    #[test]
    fn matches_the_generator_loop_sample_for_sample() {
        let p = SweepParams {
            start_hz: 15.0,
            end_hz: 21_000.0,
            duration_s: 1.234_567,
            fade_in_s: 0.05,
            fade_out_s: 0.01,
            rate: 48_000,
            level_dbfs: 0.0,
        };
        let x = p.generate().unwrap();
        let n = (p.duration_s * 48_000.0) as u64;
        assert_eq!(x.len() as u64, n);
        let l = p.duration_s / (p.end_hz / p.start_hz).ln();
        for (i, v) in x.iter().enumerate() {
            let t = i as f64 / 48_000.0;
            let phase = std::f64::consts::TAU * p.start_hz * l * ((t / l).exp() - 1.0);
            let mut w = 1.0;
            if t < p.fade_in_s {
                w = 0.5 - 0.5 * (PI * t / p.fade_in_s).cos();
            }
            let left = p.duration_s - t;
            if left < p.fade_out_s {
                w *= 0.5 - 0.5 * (PI * left / p.fade_out_s).cos();
            }
            let g = (phase.sin() * w) as f32;
            assert!((*v as f32 - g).abs() <= 1e-6, "sample {i}: {v} vs {g}");
        }
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for p in [
            SweepParams {
                end_hz: 30_000.0,
                ..short()
            },
            SweepParams {
                start_hz: 0.0,
                ..short()
            },
            SweepParams {
                fade_in_s: 1.5,
                fade_out_s: 1.0,
                ..short()
            },
            SweepParams {
                level_dbfs: 3.0,
                ..short()
            },
            SweepParams {
                duration_s: -1.0,
                ..short()
            },
        ] {
            assert!(p.generate().is_err(), "{p:?}");
        }
    }

    #[test]
    fn params_round_trip_through_serde() {
        let p = short();
        let json = serde_json::to_string(&p).unwrap();
        let back: SweepParams = serde_json::from_str(&json).unwrap();
        assert_eq!(p, back);
        assert!((p.harmonic_offset_s(2) + p.rate_constant() * 2f64.ln()).abs() < 1e-12);
    }
}

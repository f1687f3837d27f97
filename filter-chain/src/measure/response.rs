//! Magnitude response from an impulse response with a frequency-dependent window, averaging over
//! positions, and fractional-octave smoothing.
//!
//! At each frequency `f` the window is `cycles / f` seconds long (clamped to `[min_s, max_s]`):
//! long at low frequencies, where room modes are what we want to see and correct, short at high
//! frequencies, where only the direct sound is meaningful. It rises as a half-Hann over `pre_s`
//! before the arrival and falls as a half-Hann from the arrival to its end. The spectrum at `f`
//! is the DTFT of the windowed response at exactly `f`, so every frequency gets its own window.

use super::deconvolve::ImpulseResponse;
use super::{db, spectrum, MeasureError, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Levels in dB at frequencies in Hz (ascending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub freqs: Vec<f64>,
    pub db: Vec<f64>,
}

impl Response {
    /// The level at `f`, interpolated linearly in dB over log frequency (ends held).
    pub fn at(&self, f: f64) -> f64 {
        interpolate_log(&self.freqs, &self.db, f)
    }

    /// Power-average level over `[lo, hi]` Hz, dB (`None` when no point falls inside).
    pub fn band_level(&self, lo: f64, hi: f64) -> Option<f64> {
        let p: Vec<f64> = self
            .freqs
            .iter()
            .zip(&self.db)
            .filter(|(f, _)| (lo..=hi).contains(*f))
            .map(|(_, d)| 10f64.powf(d / 10.0))
            .collect();
        (!p.is_empty()).then(|| 10.0 * (p.iter().sum::<f64>() / p.len() as f64).log10())
    }
}

/// `y` at `x` by linear interpolation over `ln x`; values beyond the table hold the end values.
pub fn interpolate_log(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    match xs.iter().position(|&v| v >= x) {
        None => ys.last().copied().unwrap_or(0.0),
        Some(0) => ys.first().copied().unwrap_or(0.0),
        Some(i) => {
            let (x0, x1) = (xs[i - 1].ln(), xs[i].ln());
            let u = if x1 > x0 {
                (x.ln() - x0) / (x1 - x0)
            } else {
                0.0
            };
            ys[i - 1] + u * (ys[i] - ys[i - 1])
        }
    }
}

/// `per_octave` log-spaced frequencies from `lo` to `hi` inclusive-ish.
pub fn log_frequencies(lo: f64, hi: f64, per_octave: usize) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && per_octave > 0) {
        return Vec::new();
    }
    let n = ((hi / lo).log2() * per_octave as f64).floor() as usize;
    (0..=n)
        .map(|i| lo * 2f64.powf(i as f64 / per_octave as f64))
        .collect()
}

/// The frequency-dependent window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Window length in periods of the frequency.
    pub cycles: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Lead-in before the arrival.
    pub pre_s: f64,
}

impl Default for WindowSpec {
    fn default() -> Self {
        // 15 cycles: 500 ms (the cap) below 30 Hz, 15 ms at 1 kHz, 1 ms at 15 kHz.
        WindowSpec {
            cycles: 15.0,
            min_s: 0.001,
            max_s: 0.5,
            pre_s: 0.001,
        }
    }
}

impl WindowSpec {
    fn validate(&self) -> Result<()> {
        if self.cycles > 0.0 && self.min_s > 0.0 && self.max_s >= self.min_s && self.pre_s >= 0.0 {
            Ok(())
        } else {
            Err(MeasureError::Invalid(format!("window {self:?}")))
        }
    }

    /// Length after the arrival at `f`, seconds.
    pub fn length_s(&self, f: f64) -> f64 {
        (self.cycles / f).clamp(self.min_s, self.max_s)
    }
}

/// The windowed magnitude response at `freqs`, with the window's time zero at `arrival` (samples).
///
/// The lead-in ends at the response's onset, not at its peak: a low-passed channel (a sub through
/// its crossover) peaks many milliseconds after it starts, and a window rising only just before
/// the peak would cut its first half-cycle off and bend the low end by several dB. From the onset
/// to the peak the window is flat.
pub fn windowed(
    ir: &ImpulseResponse,
    arrival: f64,
    freqs: &[f64],
    spec: &WindowSpec,
) -> Result<Response> {
    spec.validate()?;
    let nyquist = ir.rate / 2.0;
    if freqs.is_empty() || freqs.iter().any(|&f| !(f > 0.0 && f < nyquist)) {
        return Err(MeasureError::Invalid(format!(
            "frequencies must be non-empty and inside (0, {nyquist}) Hz"
        )));
    }
    let centre = arrival.round() as isize;
    let lead = (centre - onset(ir, centre)).max(0) as usize;
    let pre = (spec.pre_s * ir.rate).round() as usize;
    let mut out = Vec::with_capacity(freqs.len());
    // Cache the windowed segment per distinct length (the long windows repeat below cycles/max).
    let mut cache: Option<(usize, Vec<f64>, Vec<f64>)> = None;
    for &f in freqs {
        let post = ((spec.length_s(f) * ir.rate).round() as usize).max(1);
        if !matches!(&cache, Some((p, _, _)) if *p == post) {
            let seg = ir.segment(centre - (lead + pre) as isize, pre + lead + post);
            cache = Some((post, seg, window(pre, lead, post)));
        }
        let (_, seg, w) = cache.as_ref().expect("filled above");
        let c = spectrum::dtft_at(seg, 0, w, f, ir.rate);
        out.push(db(c.norm()));
    }
    Ok(Response {
        freqs: freqs.to_vec(),
        db: out,
    })
}

/// Onset of the response that peaks at `peak`: walking back from the peak, the start of the
/// first stretch of [`ONSET_QUIET_S`] that stays [`ONSET_BELOW_DB`] under the peak (at most
/// [`ONSET_MAX_S`] back). A band-limited impulse's own ringing is shorter than the stretch; the
/// deconvolution's noise floor lies far under the threshold.
pub fn onset(ir: &ImpulseResponse, peak: isize) -> isize {
    let limit = super::from_db(-ONSET_BELOW_DB) * ir.at(peak).abs();
    let quiet = ((ONSET_QUIET_S * ir.rate).round() as isize).max(1);
    let max_back = (ONSET_MAX_S * ir.rate).round() as isize;
    let mut last_loud = peak;
    let mut t = peak - 1;
    while t >= peak - max_back && last_loud - t <= quiet {
        if ir.at(t).abs() > limit {
            last_loud = t;
        }
        t -= 1;
    }
    last_loud
}

/// Threshold of [`onset`] under the peak, dB.
pub const ONSET_BELOW_DB: f64 = 40.0;
/// Length of the quiet stretch before the onset, seconds.
pub const ONSET_QUIET_S: f64 = 0.001;
/// Largest distance of the onset before the peak, seconds.
pub const ONSET_MAX_S: f64 = 0.1;

fn window(pre: usize, flat: usize, post: usize) -> Vec<f64> {
    let rise = (0..pre).map(|i| (PI * (i as f64 + 0.5) / (2.0 * pre as f64)).sin().powi(2));
    let fall = (0..post).map(|i| (PI * i as f64 / (2.0 * post as f64)).cos().powi(2));
    rise.chain(std::iter::repeat_n(1.0, flat))
        .chain(fall)
        .collect()
}

/// Power average of responses on the same frequencies (several mic positions).
pub fn power_average(responses: &[Response]) -> Result<Response> {
    let first = responses
        .first()
        .ok_or_else(|| MeasureError::Invalid("no responses to average".into()))?;
    if responses
        .iter()
        .any(|r| r.freqs != first.freqs || r.db.len() != first.freqs.len())
    {
        return Err(MeasureError::Invalid(
            "responses to average must share their frequencies".into(),
        ));
    }
    let n = responses.len() as f64;
    let db = (0..first.freqs.len())
        .map(|i| {
            let p: f64 = responses.iter().map(|r| 10f64.powf(r.db[i] / 10.0)).sum();
            10.0 * (p / n).log10()
        })
        .collect();
    Ok(Response {
        freqs: first.freqs.clone(),
        db,
    })
}

/// 1/N-octave smoothing: each point becomes the power average of the points within
/// `+-1/(2N)` octave of it. The grid should have several points per `1/N` octave.
pub fn smooth(r: &Response, n: f64) -> Result<Response> {
    if n.is_nan() || n <= 0.0 {
        return Err(MeasureError::Invalid(format!("smoothing 1/{n} octave")));
    }
    let half = 2f64.powf(1.0 / (2.0 * n));
    let db = r
        .freqs
        .iter()
        .map(|&f| {
            let (lo, hi) = (f / half, f * half);
            let (s, c) = r
                .freqs
                .iter()
                .zip(&r.db)
                .filter(|(g, _)| (lo..=hi).contains(*g))
                .fold((0.0, 0usize), |(s, c), (_, d)| {
                    (s + 10f64.powf(d / 10.0), c + 1)
                });
            10.0 * (s / c.max(1) as f64).log10()
        })
        .collect();
    Ok(Response {
        freqs: r.freqs.clone(),
        db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::arrival::fractional_impulse;

    fn ir(samples: Vec<f64>) -> ImpulseResponse {
        ImpulseResponse {
            samples,
            rate: 48_000.0,
        }
    }

    #[test]
    fn a_delayed_gain_is_flat_at_its_level() {
        let d = 1000.4;
        let h = ir(fractional_impulse(48_000, d, 0.5, 64));
        let f = log_frequencies(20.0, 20_000.0, 12);
        let r = windowed(&h, d, &f, &WindowSpec::default()).unwrap();
        for (f, l) in r.freqs.iter().zip(&r.db) {
            // 0.9-Nyquist band-limit in the test impulse: -6.02 dB + the 0.9 factor.
            assert!((l - db(0.5)).abs() < 0.02, "{f} Hz: {l} dB");
        }
    }

    #[test]
    fn a_late_peaking_low_pass_is_measured_from_its_onset() {
        // Four one-pole low-passes at 60 Hz after 500 samples of delay: the response starts at
        // 500 and peaks 3 time constants (8 ms) later, like a sub through its crossover.
        let rate = 48_000.0;
        let a = (-2.0 * PI * 60.0 / rate).exp();
        let mut h = vec![0.0; 48_000];
        h[500] = 1.0;
        for _ in 0..4 {
            let mut y = 0.0;
            for v in h.iter_mut() {
                y = (1.0 - a) * *v + a * y;
                *v = y;
            }
        }
        let peak = (0..h.len())
            .max_by(|&x, &y| h[x].abs().total_cmp(&h[y].abs()))
            .unwrap();
        assert!(peak > 800, "{peak}");
        let ir = ir(h.clone());
        let f = log_frequencies(20.0, 200.0, 12);
        let r = windowed(&ir, peak as f64, &f, &WindowSpec::default()).unwrap();
        for (f, l) in r.freqs.iter().zip(&r.db) {
            let w = vec![1.0; h.len()];
            let exact = db(spectrum::dtft_at(&h, 0, &w, *f, rate).norm());
            assert!((l - exact).abs() < 0.1, "{f} Hz: {l} vs {exact}");
        }
        let o = onset(&ir, peak as isize);
        assert!((500..560).contains(&o), "{o}");
    }

    #[test]
    fn short_windows_hide_a_late_reflection_at_high_frequencies_only() {
        let mut h = fractional_impulse(48_000, 1000.0, 1.0, 64);
        // A reflection 10 ms later at -6 dB.
        for (a, b) in h
            .iter_mut()
            .zip(fractional_impulse(48_000, 1480.0, 0.5, 64))
        {
            *a += b;
        }
        let h = ir(h);
        let f = log_frequencies(50.0, 16_000.0, 24);
        let r = windowed(&h, 1000.0, &f, &WindowSpec::default()).unwrap();
        let spread = |lo: f64, hi: f64| {
            let v: Vec<f64> = r
                .freqs
                .iter()
                .zip(&r.db)
                .filter(|(f, _)| (lo..hi).contains(*f))
                .map(|(_, d)| *d)
                .collect();
            v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
        };
        // Above 1.5 kHz the window (<10 ms) ends before the reflection: flat.
        assert!(
            spread(2_000.0, 16_000.0) < 0.2,
            "{}",
            spread(2_000.0, 16_000.0)
        );
        // At low frequencies the comb (+3.5 / -6 dB) shows.
        assert!(spread(50.0, 300.0) > 6.0, "{}", spread(50.0, 300.0));
    }

    #[test]
    fn power_average_and_smoothing() {
        let f = log_frequencies(100.0, 1600.0, 48);
        let a = Response {
            freqs: f.clone(),
            db: vec![0.0; f.len()],
        };
        let b = Response {
            freqs: f.clone(),
            db: vec![db(0.5); f.len()],
        };
        let avg = power_average(&[a.clone(), b]).unwrap();
        assert!(avg
            .db
            .iter()
            .all(|d| (d - 10.0 * 0.625f64.log10()).abs() < 1e-9));
        // A one-point -20 dB notch: 1/3-octave smoothing (17 points) makes it shallow;
        // a flat response stays flat.
        let mut notch = a.clone();
        let mid = f.len() / 2;
        notch.db[mid] = -20.0;
        let s = smooth(&notch, 3.0).unwrap();
        assert!(s.db[mid] > -0.3 && s.db[mid] < -0.2, "{}", s.db[mid]);
        assert!(s.db[0].abs() < 1e-12);
        assert_eq!(smooth(&a, 6.0).unwrap(), a);
        assert!(power_average(&[]).is_err());
        assert!(smooth(&a, 0.0).is_err());
    }

    #[test]
    fn interpolation_is_linear_in_log_frequency() {
        let r = Response {
            freqs: vec![100.0, 400.0],
            db: vec![0.0, db(0.5)],
        };
        assert!((r.at(200.0) - db(0.5) / 2.0).abs() < 1e-12);
        assert_eq!(r.at(10.0), 0.0);
        assert_eq!(r.at(1000.0), db(0.5));
        assert!(
            (r.band_level(100.0, 400.0).unwrap() - 10.0 * ((1.0 + 0.25) / 2f64).log10()).abs()
                < 1e-9
        );
    }
}

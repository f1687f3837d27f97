//! Deconvolution of a capture by the reference that really played, to an impulse response.
//!
//! `H = Y X* / (|X|^2 + eps(f))` over one FFT long enough that nothing wraps: the linear response
//! lands at non-negative times, the harmonic responses of an exponential sweep at negative times
//! (the end of the circular buffer). `eps` is tiny inside the sweep band (so the division is exact
//! there) and rises smoothly to `max |X|^2` over a third of an octave outside it, so out-of-band
//! noise is not amplified. Dividing by the captured reference rather than by the analytic sweep
//! makes the result independent of fades, level and any sample the generator may have changed.
//!
//! Below the band the response is limited by a *causal* (minimum-phase, 4th-order Butterworth)
//! high-pass at `f1 / 2`, evaluated as a frequency response, instead of by the zero-phase
//! regularisation: a zero-phase band-limit rings before the arrival for tens of milliseconds,
//! and the short lead-in of a frequency-dependent window would cut that ringing off and bend the
//! response by a few tenths of a dB up to ~1 kHz. Above the band the regularisation ramp stays
//! (its ringing is sub-millisecond).

use super::{spectrum, MeasureError, Result};
use realfft::num_complex::Complex64;

/// Inside the band, `eps = REG_IN * max |X|^2` (-100 dB): exact where the sweep has energy.
const REG_IN: f64 = 1e-10;
/// Width of the regularisation ramp outside the band, octaves.
const RAMP_OCT: f64 = 1.0 / 3.0;

/// A circular impulse response: sample `i` is time `i` for `i < len/2`, time `i - len` above.
#[derive(Debug, Clone)]
pub struct ImpulseResponse {
    pub samples: Vec<f64>,
    pub rate: f64,
}

impl ImpulseResponse {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The value at (possibly negative) time `t` in samples.
    pub fn at(&self, t: isize) -> f64 {
        let n = self.samples.len() as isize;
        self.samples[t.rem_euclid(n) as usize]
    }

    /// `len` samples starting at time `start` (negative times wrap from the end).
    pub fn segment(&self, start: isize, len: usize) -> Vec<f64> {
        (0..len as isize).map(|i| self.at(start + i)).collect()
    }

    /// The causal part `[0, len)`.
    pub fn causal(&self, len: usize) -> &[f64] {
        &self.samples[..len.min(self.samples.len() / 2)]
    }
}

/// Deconvolves `capture` by `reference` (both at `rate`); `band` is the sweep's (f1, f2).
pub fn deconvolve(
    capture: &[f64],
    reference: &[f64],
    rate: f64,
    band: (f64, f64),
) -> Result<ImpulseResponse> {
    if capture.is_empty() || reference.is_empty() {
        return Err(MeasureError::Signal("capture or reference is empty".into()));
    }
    if !(rate > 0.0 && band.0 > 0.0 && band.0 < band.1) {
        return Err(MeasureError::Invalid(format!(
            "rate {rate} / band {band:?} (need 0 < f1 < f2)"
        )));
    }
    if capture.iter().chain(reference).any(|v| !v.is_finite()) {
        return Err(MeasureError::Signal("non-finite sample".into()));
    }
    let n = spectrum::fft_len(capture.len() + reference.len());
    let x = spectrum::forward(reference, n);
    let y = spectrum::forward(capture, n);
    let pmax = x.iter().map(|c| c.norm_sqr()).fold(0.0, f64::max);
    if pmax <= 0.0 {
        return Err(MeasureError::Signal("reference is silent".into()));
    }
    let bin_hz = rate / n as f64;
    let h = x
        .iter()
        .zip(&y)
        .enumerate()
        .map(|(k, (xk, yk))| {
            let f = k as f64 * bin_hz;
            let eps = pmax * (REG_IN + above_band(f, band.1));
            yk * xk.conj() / (xk.norm_sqr() + eps) * highpass(f, band.0 / 2.0)
        })
        .collect();
    Ok(ImpulseResponse {
        samples: spectrum::inverse(h, n),
        rate,
    })
}

/// 0 up to `hi`, rising as a raised cosine (in log frequency) to 1 over `RAMP_OCT` above it.
fn above_band(f: f64, hi: f64) -> f64 {
    if f <= hi {
        return 0.0;
    }
    let x = ((f / hi).log2() / RAMP_OCT).min(1.0);
    0.5 - 0.5 * (std::f64::consts::PI * x).cos()
}

/// Frequency response of a 4th-order Butterworth high-pass at `fc` (analysis only: it shapes
/// the deconvolved response below the sweep, it never runs on a signal).
fn highpass(f: f64, fc: f64) -> Complex64 {
    let s = Complex64::new(0.0, f / fc);
    // Butterworth: (s^2 + 0.7654 s + 1)(s^2 + 1.8478 s + 1).
    let q1 = 2.0 * (std::f64::consts::PI / 8.0).cos();
    let q2 = 2.0 * (3.0 * std::f64::consts::PI / 8.0).cos();
    let den = (s * s + q2 * s + 1.0) * (s * s + q1 * s + 1.0);
    s.powi(4) / den
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::measure::sweep::SweepParams;

    pub(crate) use crate::measure::spectrum::convolve;

    #[test]
    fn recovers_a_known_impulse_response() {
        let p = SweepParams {
            start_hz: 20.0,
            end_hz: 24_000.0,
            duration_s: 2.0,
            fade_out_s: 0.0,
            ..SweepParams::default()
        };
        let x = p.generate().unwrap();
        let mut h = vec![0.0; 600];
        h[100] = 0.8;
        h[101] = -0.3;
        h[350] = 0.25;
        h[520] = -0.1;
        let y = convolve(&x, &h);
        let ir = deconvolve(&y, &x, 48_000.0, (20.0, 24_000.0)).unwrap();
        // Swept to Nyquist, only the lowest 20 Hz are missing: every tap comes back within 1 %
        // of its size and the rest of the causal part stays near zero.
        for (i, want) in [(100, 0.8), (101, -0.3), (350, 0.25), (520, -0.1)] {
            assert!((ir.at(i) - want).abs() < 0.01, "tap {i}: {}", ir.at(i));
        }
        let stray = (0..2000)
            .filter(|i| ![100, 101, 350, 520].contains(i))
            .map(|i| ir.at(i as isize).abs())
            .fold(0.0, f64::max);
        assert!(stray < 0.01, "stray {stray}");
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(deconvolve(&[], &[1.0], 48_000.0, (20.0, 20_000.0)).is_err());
        assert!(deconvolve(&[1.0], &[0.0; 8], 48_000.0, (20.0, 20_000.0)).is_err());
        assert!(deconvolve(&[1.0], &[1.0], 48_000.0, (20_000.0, 20.0)).is_err());
        assert!(deconvolve(&[f64::NAN], &[1.0], 48_000.0, (20.0, 20_000.0)).is_err());
    }
}

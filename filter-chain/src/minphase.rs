//! Minimum-phase FIR from a magnitude (homomorphic / real-cepstrum method).
//!
//! log|H| -> real cepstrum -> fold (keep n = 0 and N/2, double 1..N/2, zero the anti-causal half)
//! -> exp(FFT) = H_min -> (x an exact minimum-phase factor) -> IFFT -> first `taps` samples ->
//! gentle tail window.
//!
//! The FFT is `OVERSAMPLE` x the tap count so the folded cepstrum is not time-aliased. Dynamic
//! range is bounded twice: the cepstral factor gets a soft floor `DYNAMIC_RANGE_DB` below its peak,
//! and the combined stopband above the passband a soft floor `STOPBAND_RANGE_DB` below the combined
//! peak. An unbounded stopband (an LR8 low-pass reaches -400 dB at Nyquist) is float32 noise once
//! stored, and that noise has zeros outside the unit circle: the stored taps would stop being
//! minimum phase. The phase gate proves on the stored taps that the bound is enough.

use realfft::num_complex::Complex64;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// FFT length = OVERSAMPLE x taps for the design.
pub const OVERSAMPLE: usize = 4;
/// Design magnitudes are floored this far below their peak.
pub const DYNAMIC_RANGE_DB: f64 = 100.0;
/// Depth bound of the combined stopband above the passband.
pub const STOPBAND_RANGE_DB: f64 = 150.0;
/// Fraction of the taps at the end that get a half-Hann fade-out.
pub const TAIL_FRACTION: f64 = 0.125;

/// Reusable FFT plans and buffers for one (taps, n_fft) size. Not shared between threads.
pub struct MinPhase {
    taps: usize,
    n_fft: usize,
    fwd: Arc<dyn RealToComplex<f64>>,
    inv: Arc<dyn ComplexToReal<f64>>,
    time: Vec<f64>,
    spec: Vec<Complex64>,
    scratch_f: Vec<Complex64>,
    scratch_i: Vec<Complex64>,
}

impl MinPhase {
    pub fn new(taps: usize) -> Self {
        Self::with_fft(taps, Self::new_fft_len(taps))
    }

    /// The FFT length `new` designs on.
    pub fn new_fft_len(taps: usize) -> usize {
        taps * OVERSAMPLE
    }

    pub fn with_fft(taps: usize, n_fft: usize) -> Self {
        let mut planner = RealFftPlanner::<f64>::new();
        let fwd = planner.plan_fft_forward(n_fft);
        let inv = planner.plan_fft_inverse(n_fft);
        MinPhase {
            taps,
            n_fft,
            time: fwd.make_input_vec(),
            spec: fwd.make_output_vec(),
            scratch_f: fwd.make_scratch_vec(),
            scratch_i: inv.make_scratch_vec(),
            fwd,
            inv,
        }
    }

    /// The design FFT length; `design` wants `n_fft / 2 + 1` magnitudes on bins k * rate / n_fft.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Minimum-phase taps for `mag` (linear magnitude on the half spectrum).
    pub fn design(&mut self, mag: &[f64]) -> Vec<f64> {
        let one = vec![Complex64::new(1.0, 0.0); mag.len()];
        self.design_combined(&one, mag, None)
    }

    /// Minimum-phase taps for `exact` (already minimum-phase complex response) x the minimum-phase
    /// realisation of `mag`. A product of minimum-phase factors is minimum phase.
    /// `low_floor_db`: also floor the stopband below the passband peak this far under it.
    pub fn design_combined(
        &mut self,
        exact: &[Complex64],
        mag: &[f64],
        low_floor_db: Option<f64>,
    ) -> Vec<f64> {
        assert_eq!(mag.len(), self.n_fft / 2 + 1, "magnitude length");
        assert_eq!(exact.len(), mag.len(), "exact response length");
        let peak_rest = mag.iter().cloned().fold(0.0, f64::max).max(1e-30);
        let floor_rest = peak_rest * 10f64.powf(-DYNAMIC_RANGE_DB / 20.0);
        // Bound the combined depth above the peak frequency: a stopband below float32 resolution
        // is noise once stored, and noise zeros there are not minimum phase. The floor enters as
        // a magnitude factor >= 1 realised by the cepstral part, so the whole stays minimum phase.
        // Below the peak (high-pass DC zeros) the exact response is kept: those zeros survive
        // float32 storage (see gates).
        let total: Vec<f64> = exact.iter().zip(mag).map(|(e, m)| e.norm() * m).collect();
        let (k_pk, peak) = total
            .iter()
            .cloned()
            .enumerate()
            .fold((0, 0.0), |a, (k, m)| if m > a.1 { (k, m) } else { a });
        let floor = peak * 10f64.powf(-STOPBAND_RANGE_DB / 20.0);
        // ln(softfloor(t) / t); at an exact zero (LP at Nyquist, HP at DC) keep the neighbour's
        // value, the product is zero there anyway.
        let lift_of = |t: f64, floor: f64, last: f64| {
            if t > 0.0 {
                let r = floor / t;
                if r > 1e100 {
                    r.ln()
                } else {
                    0.5 * (r * r).ln_1p()
                }
            } else {
                last
            }
        };
        let mut lift = vec![0.0; total.len()];
        let mut last = 0.0;
        for k in k_pk + 1..total.len() {
            last = lift_of(total[k], floor, last);
            lift[k] = last;
        }
        if let Some(d) = low_floor_db {
            let low = peak * 10f64.powf(-d / 20.0);
            let mut last = 0.0;
            for k in (0..k_pk).rev() {
                last = lift_of(total[k], low, last);
                lift[k] = last;
            }
        }
        for ((s, &m), &lf) in self.spec.iter_mut().zip(mag).zip(&lift) {
            // Soft floors: no corner in log|H| where a floor takes over.
            let l = 0.5 * (m * m + floor_rest * floor_rest).ln() + lf;
            *s = Complex64::new(l, 0.0);
        }
        let mut h = self.min_phase_spectrum_to_time(exact);
        h.truncate(self.taps);
        tail_window(&mut h);
        h
    }

    /// Takes log|H| in `self.spec` (real parts); returns the full-length minimum-phase impulse
    /// response of that magnitude times `exact`.
    fn min_phase_spectrum_to_time(&mut self, exact: &[Complex64]) -> Vec<f64> {
        let n = self.n_fft;
        let inv_n = 1.0 / n as f64;
        self.inverse();
        // real cepstrum is now in self.time (unscaled)
        let half = n / 2;
        self.time[0] *= inv_n;
        for v in &mut self.time[1..half] {
            *v *= 2.0 * inv_n;
        }
        self.time[half] *= inv_n;
        for v in &mut self.time[half + 1..] {
            *v = 0.0;
        }
        self.fwd
            .process_with_scratch(&mut self.time, &mut self.spec, &mut self.scratch_f)
            .expect("fft sizes match");
        for (s, e) in self.spec.iter_mut().zip(exact) {
            *s = s.exp() * e;
        }
        self.inverse();
        self.time.iter().map(|v| v * inv_n).collect()
    }

    /// Minimum phase (radians) of a given log-magnitude half spectrum on this FFT size.
    pub fn min_phase_of_log_mag(&mut self, log_mag: &[f64]) -> Vec<f64> {
        let n = self.n_fft;
        let inv_n = 1.0 / n as f64;
        for (s, &l) in self.spec.iter_mut().zip(log_mag) {
            *s = Complex64::new(l, 0.0);
        }
        self.inverse();
        let half = n / 2;
        self.time[0] *= inv_n;
        for v in &mut self.time[1..half] {
            *v *= 2.0 * inv_n;
        }
        self.time[half] *= inv_n;
        for v in &mut self.time[half + 1..] {
            *v = 0.0;
        }
        self.fwd
            .process_with_scratch(&mut self.time, &mut self.spec, &mut self.scratch_f)
            .expect("fft sizes match");
        self.spec.iter().map(|s| s.im).collect()
    }

    /// Complex spectrum of `taps` zero-padded to this FFT size.
    pub fn spectrum(&mut self, taps: &[f64]) -> Vec<Complex64> {
        self.time.iter_mut().for_each(|v| *v = 0.0);
        self.time[..taps.len()].copy_from_slice(taps);
        self.fwd
            .process_with_scratch(&mut self.time, &mut self.spec, &mut self.scratch_f)
            .expect("fft sizes match");
        self.spec.clone()
    }

    fn inverse(&mut self) {
        // A real signal's DC and Nyquist bins are real; realfft insists.
        let last = self.spec.len() - 1;
        self.spec[0].im = 0.0;
        self.spec[last].im = 0.0;
        self.inv
            .process_with_scratch(&mut self.spec, &mut self.time, &mut self.scratch_i)
            .expect("fft sizes match");
    }
}

/// Half-Hann fade over the last TAIL_FRACTION of the taps: removes the truncation step.
pub fn tail_window(h: &mut [f64]) {
    let n = h.len();
    let len = ((n as f64) * TAIL_FRACTION) as usize;
    for i in 0..len {
        let x = (i as f64 + 0.5) / len as f64;
        let w = 0.5 * (1.0 + (std::f64::consts::PI * x).cos());
        h[n - len + i] *= w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{lr_highpass, lr_section};

    fn grid(n_fft: usize, rate: f64, f: impl Fn(f64) -> f64) -> Vec<f64> {
        (0..=n_fft / 2)
            .map(|k| f(k as f64 * rate / n_fft as f64))
            .collect()
    }

    #[test]
    fn magnitude_is_reproduced_by_the_taps() {
        let taps = 16_384;
        let mut d = MinPhase::new(taps);
        let rate = 48_000.0;
        let mag = grid(d.n_fft(), rate, |f| 0.5 * lr_highpass(f, 80.0, 4));
        let h = d.design(&mag);
        assert_eq!(h.len(), taps);
        let mut e = MinPhase::with_fft(taps, taps * 4);
        let spec = e.spectrum(&h);
        for (k, s) in spec.iter().enumerate().step_by(7) {
            let f = k as f64 * rate / (taps * 4) as f64;
            if f < 30.0 {
                continue;
            }
            let want = 0.5 * lr_highpass(f, 80.0, 4);
            let got = s.norm();
            assert!(
                (20.0 * (got / want).log10()).abs() < 0.05,
                "{f} Hz: {got} vs {want}"
            );
        }
    }

    #[test]
    fn lr_pair_sums_flat_one_octave_around_fc() {
        let taps = 16_384;
        let rate = 48_000.0;
        for (fc, order) in [(80.0, 4), (80.0, 8), (2000.0, 4), (500.0, 8)] {
            let mut d = MinPhase::new(taps);
            let n = d.n_fft();
            let flat = grid(n, rate, |_| 1.0);
            let section = |high: bool| -> Vec<Complex64> {
                (0..=n / 2)
                    .map(|k| lr_section(k as f64 * rate / n as f64, fc, order, rate, high))
                    .collect()
            };
            let lp = d.design_combined(&section(false), &flat, None);
            let hp = d.design_combined(&section(true), &flat, None);
            let sum: Vec<f64> = lp.iter().zip(&hp).map(|(a, b)| a + b).collect();
            let mut e = MinPhase::with_fft(taps, taps * 4);
            let spec = e.spectrum(&sum);
            let df = rate / (taps * 4) as f64;
            let mut worst: f64 = 0.0;
            for (k, s) in spec.iter().enumerate() {
                let f = k as f64 * df;
                if f >= fc / 2.0 && f <= fc * 2.0 {
                    worst = worst.max((20.0 * s.norm().log10()).abs());
                }
            }
            assert!(
                worst <= 0.5,
                "LR{order} at {fc} Hz: sum deviates {worst} dB"
            );
            // A "knee" crossover (both 0 dB at fc) would sum to about +6 dB here: make sure
            // the test can see that.
            let k_fc = (fc / df).round() as usize;
            assert!((20.0 * spec[k_fc].norm().log10()).abs() < 0.5);
        }
    }

    #[test]
    fn knee_shaped_pair_does_not_sum_flat() {
        // The previous implementation's trap: both halves 0 dB at fc.
        let taps = 8192;
        let rate = 48_000.0;
        let mut d = MinPhase::new(taps);
        let n = d.n_fft();
        let knee = |x: f64| x.min(1.0);
        let lp = d.design(&grid(n, rate, |f| knee((80.0 / f).powi(4))));
        let hp = d.design(&grid(n, rate, |f| knee((f / 80.0).powi(4))));
        let sum: Vec<f64> = lp.iter().zip(&hp).map(|(a, b)| a + b).collect();
        let mut e = MinPhase::with_fft(taps, taps * 4);
        let spec = e.spectrum(&sum);
        let k = (80.0 / (rate / (taps * 4) as f64)).round() as usize;
        assert!(20.0 * spec[k].norm().log10() > 3.0);
    }
}

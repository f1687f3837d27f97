//! Thin wrappers around realfft shared by the analysis modules.

use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

/// Forward real FFT of `x` zero-padded to `n` (even). Returns `n/2 + 1` bins.
pub(crate) fn forward(x: &[f64], n: usize) -> Vec<Complex64> {
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let mut input = vec![0.0; n];
    let m = x.len().min(n);
    input[..m].copy_from_slice(&x[..m]);
    let mut out = fft.make_output_vec();
    // Lengths come from the plan itself, so this cannot fail.
    fft.process(&mut input, &mut out)
        .expect("realfft buffers sized by the plan");
    out
}

/// Inverse real FFT of `n/2 + 1` bins to `n` samples, scaled by `1/n` (a true inverse).
pub(crate) fn inverse(mut spec: Vec<Complex64>, n: usize) -> Vec<f64> {
    let mut planner = RealFftPlanner::<f64>::new();
    let ifft = planner.plan_fft_inverse(n);
    // realfft insists on exactly real DC and Nyquist bins.
    spec[0].im = 0.0;
    if let Some(last) = spec.last_mut() {
        last.im = 0.0;
    }
    let mut out = ifft.make_output_vec();
    ifft.process(&mut spec, &mut out)
        .expect("realfft buffers sized by the plan");
    let scale = 1.0 / n as f64;
    out.iter_mut().for_each(|v| *v *= scale);
    out
}

/// The smallest power of two >= `n` (at least 2): fast plans, even length for realfft.
pub(crate) fn fft_len(n: usize) -> usize {
    n.max(2).next_power_of_two()
}

/// Linear convolution by FFT (`x.len() + h.len() - 1` samples): for building synthetic systems
/// and simulated captures in tests and benchmarks.
pub fn convolve(x: &[f64], h: &[f64]) -> Vec<f64> {
    let n = fft_len(x.len() + h.len());
    let xs = forward(x, n);
    let hs = forward(h, n);
    let mut y = inverse(xs.iter().zip(&hs).map(|(a, b)| a * b).collect(), n);
    y.truncate(x.len() + h.len() - 1);
    y
}

/// Magnitude of the DTFT of `x` (weighted by `w`, starting at `start`) at one frequency.
pub(crate) fn dtft_at(x: &[f64], start: usize, w: &[f64], freq: f64, rate: f64) -> Complex64 {
    // A rotating phasor instead of sin/cos per sample; renormalised to stop drift.
    let step = Complex64::from_polar(1.0, -2.0 * std::f64::consts::PI * freq / rate);
    let mut ph = Complex64::new(1.0, 0.0);
    let mut acc = Complex64::new(0.0, 0.0);
    for (i, wi) in w.iter().enumerate() {
        let Some(v) = x.get(start + i) else { break };
        acc += ph * (v * wi);
        ph *= step;
        if i % 1024 == 1023 {
            ph /= ph.norm();
        }
    }
    acc
}

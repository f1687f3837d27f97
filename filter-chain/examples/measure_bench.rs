//! Benchmark: analysis of one channel, a 10 s sweep at 48 kHz captured through a synthetic room,
//! to a cut-only correction curve. Prints the median time of each step over several runs and
//! the ratio to one forward + inverse real FFT of the deconvolution's size, measured in the same
//! run as the reference.
//!
//!     cargo run --release -p mugge-filter-chain --example measure_bench

use mugge_filter_chain::measure::arrival::{arrival, fractional_impulse};
use mugge_filter_chain::measure::correction::{cut_only, CorrectionParams};
use mugge_filter_chain::measure::deconvolve::deconvolve;
use mugge_filter_chain::measure::distortion::harmonic_levels;
use mugge_filter_chain::measure::response::{log_frequencies, smooth, windowed, WindowSpec};
use mugge_filter_chain::measure::sweep::SweepParams;
use realfft::RealFftPlanner;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The capture: `x * h`, `len` samples, plus -100 dBFS of pseudo-noise.
fn convolve(x: &[f64], h: &[f64], len: usize) -> Vec<f64> {
    let n = (x.len() + h.len()).max(len).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let spectrum = |v: &[f64]| {
        let mut a = vec![0.0; n];
        a[..v.len()].copy_from_slice(v);
        let mut s = fwd.make_output_vec();
        fwd.process(&mut a, &mut s).expect("sized by plan");
        s
    };
    let (xs, hs) = (spectrum(x), spectrum(h));
    let mut prod: Vec<_> = xs.iter().zip(&hs).map(|(a, b)| a * b / n as f64).collect();
    let mut y = inv.make_output_vec();
    inv.process(&mut prod, &mut y).expect("sized by plan");
    y.truncate(len);
    let mut s = 1u64;
    for v in &mut y {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        *v += 1e-5 * ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5);
    }
    y
}

fn main() {
    let sweep = SweepParams::default(); // 10 Hz .. 22 kHz, 10 s, 48 kHz, -20 dBFS
    let x = sweep.generate().expect("default sweep is valid");
    // Room: direct sound at 7.3 ms (fractional), a reflection, two decaying modes; 1 s tail.
    let mut h = fractional_impulse(24_000, 350.4, 0.5, 64);
    for (a, b) in h.iter_mut().zip(fractional_impulse(24_000, 510.9, 0.2, 64)) {
        *a += b;
    }
    for (f, tau) in [(48.0, 0.15), (95.0, 0.08)] {
        for (i, v) in h.iter_mut().enumerate().skip(350) {
            let t = (i - 350) as f64 / 48_000.0;
            *v += 2e-4 * (-t / tau).exp() * (2.0 * std::f64::consts::PI * f * t).sin();
        }
    }
    let y = convolve(&x, &h, x.len() + 48_000);
    let n = (y.len() + x.len()).next_power_of_two();
    println!(
        "one channel: {} s sweep at {} Hz, capture {} samples, deconvolution FFT {} points",
        sweep.duration_s,
        sweep.rate,
        y.len(),
        n
    );

    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let freqs = log_frequencies(20.0, 20_000.0, 48);
    let fund: Vec<f64> = log_frequencies(50.0, 5_000.0, 3);
    let mut t_ref = Vec::new();
    let mut steps: Vec<(&str, Vec<Duration>)> = [
        "deconvolve",
        "arrival",
        "distortion (H2, H3)",
        "windowed response",
        "smoothing + correction",
        "total",
    ]
    .iter()
    .map(|s| (*s, Vec::new()))
    .collect();
    for _ in 0..RUNS {
        // Reference: one forward + inverse FFT of the same size.
        let mut a = vec![0.0; n];
        a[..y.len()].copy_from_slice(&y);
        let t = Instant::now();
        let mut spec = fwd.make_output_vec();
        fwd.process(&mut a, &mut spec).expect("sized by plan");
        let mut back = inv.make_output_vec();
        inv.process(&mut spec, &mut back).expect("sized by plan");
        t_ref.push(t.elapsed());

        let t0 = Instant::now();
        let ir = deconvolve(&y, &x, 48_000.0, (sweep.start_hz, sweep.end_hz)).expect("deconvolve");
        let t1 = Instant::now();
        let arr = arrival(&ir, 0, 48_000).expect("arrival");
        let t2 = Instant::now();
        let thd = harmonic_levels(&ir, &sweep, arr.index, 3, &fund).expect("distortion");
        let t3 = Instant::now();
        let resp = windowed(&ir, arr.samples, &freqs, &WindowSpec::default()).expect("response");
        let t4 = Instant::now();
        let sm = smooth(&resp, 6.0).expect("smooth");
        let corr = cut_only(&sm, &|_f: f64| 0.0, &CorrectionParams::default()).expect("cut");
        let t5 = Instant::now();
        for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0]
            .into_iter()
            .enumerate()
        {
            steps[i].1.push(d);
        }
        assert!(corr.max_gain() <= 1.0 && !thd.is_empty());
        assert!(
            (arr.samples - 350.4).abs() < 0.05,
            "arrival {}",
            arr.samples
        );
    }
    let r = median(t_ref);
    println!(
        "reference: one {n}-point real FFT forward + inverse: {:.1} ms",
        ms(r)
    );
    for (name, v) in steps {
        let m = median(v);
        println!(
            "{name:>24}: {:8.1} ms  ({:5.1} x reference)",
            ms(m),
            m.as_secs_f64() / r.as_secs_f64()
        );
    }
    println!("(median of {RUNS} runs; the filter engine's 16,384-tap FIR design and gates are not included)");
}

//! Frequency-domain building blocks of a channel's combined magnitude response. Everything here is a
//! magnitude (linear) at a frequency in Hz; the minimum phase comes later from `minphase.rs`, so
//! nothing here can become an IIR stage.
//!
//! combined = global attenuation x crossover band x protection high-pass x compensation EQ
//!            x target (ISO 226 + breakpoints, cut only) x room correction (cut only)

use crate::profile::{Enclosure, EqBand, EqKind, Speaker, Target};
use crate::validate::Rig;
use realfft::num_complex::Complex64;
use std::f64::consts::PI;

/// Linkwitz-Riley low-pass magnitude; `order` is 4 (LR4, 24 dB/oct) or 8 (LR8, 48 dB/oct).
/// LR = Butterworth(order/2) squared, so |H| = 1 / (1 + (f/fc)^order): -6.02 dB at fc.
pub fn lr_lowpass(f: f64, fc: f64, order: u32) -> f64 {
    1.0 / (1.0 + (f / fc).powi(order as i32))
}

/// Linkwitz-Riley high-pass magnitude: (f/fc)^order / (1 + (f/fc)^order).
pub fn lr_highpass(f: f64, fc: f64, order: u32) -> f64 {
    let x = (f / fc).powi(order as i32);
    x / (1.0 + x)
}

/// One Linkwitz-Riley section as a complex response: the prewarped bilinear transform of
/// Butterworth(order/2) squared. It is the exact minimum-phase realisation of the LR magnitude (all
/// poles inside the unit circle, zeros at z = 1 or z = -1), so low-pass + high-pass is an allpass.
/// Used as-is instead of a cepstral design: an LR8 stopband is far deeper than any bounded
/// dynamic range, and flooring it would shift the phase the flat sum depends on.
pub fn lr_section(f: f64, fc: f64, order: u32, rate: f64, high: bool) -> Complex64 {
    if f >= rate / 2.0 {
        return Complex64::new(if high { 1.0 } else { 0.0 }, 0.0);
    }
    let n = (order / 2) as i32;
    let w = (PI * f / rate).tan() / (PI * fc / rate).tan();
    let s = Complex64::new(0.0, w);
    let mut b = Complex64::new(1.0, 0.0);
    for k in 0..n {
        let ang = PI * f64::from(2 * k + n + 1) / f64::from(2 * n);
        b *= s - Complex64::from_polar(1.0, ang);
    }
    let bw = if high { s.powi(n) / b } else { b.inv() };
    bw * bw
}

/// LR order from a slope in dB/octave (24 -> 4, 48 -> 8).
pub fn lr_order(slope_db_per_oct: u32) -> u32 {
    slope_db_per_oct / 6
}

/// Magnitude of one parametric band (RBJ cookbook biquad evaluated on the unit circle); used only
/// as a magnitude target for the FIR.
pub fn eq_band(b: &EqBand, f: f64, rate: f64) -> f64 {
    let a = 10f64.powf(b.gain_db / 40.0);
    let w0 = 2.0 * PI * b.freq_hz / rate;
    let (sn, cs) = w0.sin_cos();
    let alpha = sn / (2.0 * b.q);
    let sa = 2.0 * a.sqrt() * alpha;
    let (num, den) = match b.kind {
        EqKind::Peak => (
            [1.0 + alpha * a, -2.0 * cs, 1.0 - alpha * a],
            [1.0 + alpha / a, -2.0 * cs, 1.0 - alpha / a],
        ),
        EqKind::LowShelf => (
            [
                a * ((a + 1.0) - (a - 1.0) * cs + sa),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cs),
                a * ((a + 1.0) - (a - 1.0) * cs - sa),
            ],
            [
                (a + 1.0) + (a - 1.0) * cs + sa,
                -2.0 * ((a - 1.0) + (a + 1.0) * cs),
                (a + 1.0) + (a - 1.0) * cs - sa,
            ],
        ),
        EqKind::HighShelf => (
            [
                a * ((a + 1.0) + (a - 1.0) * cs + sa),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cs),
                a * ((a + 1.0) + (a - 1.0) * cs - sa),
            ],
            [
                (a + 1.0) - (a - 1.0) * cs + sa,
                2.0 * ((a - 1.0) - (a + 1.0) * cs),
                (a + 1.0) - (a - 1.0) * cs - sa,
            ],
        ),
    };
    let w = 2.0 * PI * f / rate;
    let eval = |c: [f64; 3]| {
        let re = c[0] + c[1] * w.cos() + c[2] * (2.0 * w).cos();
        let im = -c[1] * w.sin() - c[2] * (2.0 * w).sin();
        re.hypot(im)
    };
    eval(num) / eval(den)
}

// ISO 226:2003 table: frequency, alpha_f, L_U, T_f.
const ISO_F: [f64; 29] = [
    20.0, 25.0, 31.5, 40.0, 50.0, 63.0, 80.0, 100.0, 125.0, 160.0, 200.0, 250.0, 315.0, 400.0,
    500.0, 630.0, 800.0, 1000.0, 1250.0, 1600.0, 2000.0, 2500.0, 3150.0, 4000.0, 5000.0, 6300.0,
    8000.0, 10000.0, 12500.0,
];
const ISO_AF: [f64; 29] = [
    0.532, 0.506, 0.480, 0.455, 0.432, 0.409, 0.387, 0.367, 0.349, 0.330, 0.315, 0.301, 0.288,
    0.276, 0.267, 0.259, 0.253, 0.250, 0.246, 0.244, 0.243, 0.243, 0.243, 0.242, 0.242, 0.245,
    0.254, 0.271, 0.301,
];
const ISO_LU: [f64; 29] = [
    -31.6, -27.2, -23.0, -19.1, -15.9, -13.0, -10.3, -8.1, -6.2, -4.5, -3.1, -2.0, -1.1, -0.4, 0.0,
    0.3, 0.5, 0.0, -2.7, -4.1, -1.0, 1.7, 2.5, 1.2, -2.1, -7.1, -11.2, -10.7, -3.1,
];
const ISO_TF: [f64; 29] = [
    78.5, 68.7, 59.5, 51.1, 44.0, 37.5, 31.5, 26.5, 22.1, 17.9, 14.4, 11.4, 8.6, 6.2, 4.4, 3.0,
    2.2, 2.4, 3.5, 1.7, -1.3, -4.2, -6.0, -5.4, -1.5, 6.0, 12.6, 13.9, 12.3,
];

/// SPL (dB) of the ISO 226:2003 equal-loudness contour for `phon` at table index `i`.
fn iso226_at(i: usize, phon: f64) -> f64 {
    let af = ISO_AF[i];
    let a = 4.47e-3 * (10f64.powf(0.025 * phon) - 1.15)
        + (0.4 * 10f64.powf((ISO_TF[i] + ISO_LU[i]) / 10.0 - 9.0)).powf(af);
    10.0 / af * a.log10() - ISO_LU[i] + 94.0
}

/// Equal-loudness contour SPL at any frequency (log-frequency interpolation, flat outside the table).
pub fn iso226_spl(f: f64, phon: f64) -> f64 {
    interp_log(f, &ISO_F, |i| iso226_at(i, phon))
}

/// Level change (dB) that makes programme balanced at `reference_phon` sound balanced at
/// `operating_phon`: (contour(op) - op) - (contour(ref) - ref). Not yet normalised.
pub fn loudness_adjust_db(f: f64, operating_phon: f64, reference_phon: f64) -> f64 {
    (iso226_spl(f, operating_phon) - operating_phon)
        - (iso226_spl(f, reference_phon) - reference_phon)
}

fn interp_log(f: f64, xs: &[f64], y: impl Fn(usize) -> f64) -> f64 {
    let n = xs.len();
    if f <= xs[0] {
        return y(0);
    }
    if f >= xs[n - 1] {
        return y(n - 1);
    }
    let i = xs.partition_point(|&x| x <= f) - 1;
    let t = (f / xs[i]).ln() / (xs[i + 1] / xs[i]).ln();
    y(i) * (1.0 - t) + y(i + 1) * t
}

/// Target curve as a linear magnitude, normalised to cut only (its maximum over 20 Hz..min(20 kHz,
/// Nyquist) is 0 dB). The same function for every channel, so crossover bands still sum flat.
/// The ISO 226 adjustment is evaluated once at the table frequencies and interpolated.
pub struct TargetCurve {
    iso_db: Option<[f64; 29]>,
    points: Vec<[f64; 2]>,
    offset_db: f64,
}

impl TargetCurve {
    pub fn new(t: &Target, rate: f64) -> Self {
        let iso_db = t.operating_spl_db.map(|op| {
            let mut a = [0.0; 29];
            for (i, v) in a.iter_mut().enumerate() {
                *v = (iso226_at(i, op) - op) - (iso226_at(i, t.reference_phon) - t.reference_phon);
            }
            a
        });
        let mut points = t.points.clone();
        points.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let mut c = TargetCurve {
            iso_db,
            points,
            offset_db: 0.0,
        };
        let hi = (rate / 2.0).min(20_000.0);
        let max = (0..=400)
            .map(|i| 20.0 * (hi / 20.0).powf(f64::from(i) / 400.0))
            .map(|f| c.db(f))
            .fold(f64::NEG_INFINITY, f64::max);
        c.offset_db = -max;
        c
    }

    pub fn db(&self, f: f64) -> f64 {
        let mut db = self.offset_db;
        if let Some(iso) = &self.iso_db {
            db += interp_log(f, &ISO_F, |i| iso[i]);
        }
        if !self.points.is_empty() {
            let xs: Vec<f64> = self.points.iter().map(|p| p[0]).collect();
            db += interp_log(f, &xs, |i| self.points[i][1]);
        }
        db
    }
}

/// Protection high-pass of a speaker, if its band needs one beyond its own crossover high-pass:
/// (corner Hz, LR order). Ported boxes get LR8 (unloaded below tuning), others LR4. A band whose
/// crossover high-pass already sits at or above `mandatory_hpf_hz` is protected by it: a second
/// high-pass would break the flat crossover sum. The protection gate checks the result either way.
pub fn protection_hpf(rig: &Rig, sp: &Speaker) -> Option<(f64, u32)> {
    let id = rig.identity_of(sp);
    let hpf = id.mandatory_hpf_hz?;
    let order = match id.enclosure {
        Enclosure::Ported { .. } => 8,
        _ => 4,
    };
    if sp.band >= 2 {
        let x = rig.profile.crossovers[sp.band as usize - 2];
        if x.freq_hz >= hpf {
            return None;
        }
    }
    Some((hpf, order))
}

/// Magnitude of band `band` (one-based, lowest first) of the profile's crossover.
pub fn crossover_band(rig: &Rig, band: u32, f: f64) -> f64 {
    let xs = &rig.profile.crossovers;
    let b = band as usize;
    let mut m = 1.0;
    if b >= 2 {
        let x = xs[b - 2];
        m *= lr_highpass(f, x.freq_hz, lr_order(x.slope_db_per_oct));
    }
    if b <= xs.len() {
        let x = xs[b - 1];
        m *= lr_lowpass(f, x.freq_hz, lr_order(x.slope_db_per_oct));
    }
    m
}

/// Extra attenuation (dB) on top of the global attenuation so that float32 rounding and the tail
/// window's ripple cannot lift a passband that sits exactly at -0.5 dB over the gain gate.
pub const DESIGN_MARGIN_DB: f64 = 0.02;

/// A per-channel room-correction magnitude (linear, at a frequency in Hz). Clamped to <= 1 when
/// applied: room correction cuts only, it never fills nulls.
pub type Correction<'a> = &'a (dyn Fn(f64) -> f64 + Sync);

/// A channel's design on the bins `k * rate / n_fft`, k = 0..=n_fft/2, in two factors:
/// `exact` = crossover band x protection high-pass as exact minimum-phase complex responses, and
/// `rest` = global attenuation x EQ x target x room correction as a magnitude for the cepstral
/// method. Their product is the combined filter.
pub struct ChannelDesign {
    pub exact: Vec<Complex64>,
    pub rest: Vec<f64>,
    /// Depth (dB under the peak) at which the stopband below the passband may be floored, when
    /// that costs the high-pass sections little phase (see `low_floor_db`).
    pub low_floor_db: Option<f64>,
}

/// Phase (rad) a floor below the passband may cost at a high-pass corner.
pub const LOW_FLOOR_PHASE_COST_RAD: f64 = 0.1;

/// A floor at depth D under an order-n LR high-pass at fc flattens it below
/// f_D = fc 10^(-D / (20 n)), which moves its n DC zeros to about f_D and costs about
/// (2/pi) n f_D / fc of phase at fc, whatever fc. Returns the floor depth (150 dB, just above
/// float32 noise) when that cost stays under LOW_FLOOR_PHASE_COST_RAD for every high-pass section
/// (LR4: 0.034 rad), else None (LR8: 0.59 rad): the exact DC zeros are then kept, the flat sum
/// needs them.
pub fn low_floor_db(sections: &[(f64, u32)]) -> Option<f64> {
    const DEPTH: f64 = 150.0;
    let ok = sections.iter().all(|&(_fc, n)| {
        let ratio = 10f64.powf(-DEPTH / (20.0 * f64::from(n)));
        2.0 / std::f64::consts::PI * f64::from(n) * ratio < LOW_FLOOR_PHASE_COST_RAD
    });
    ok.then_some(DEPTH)
}

/// The target curve as a linear magnitude on the bins `k * rate / n_fft` (shared by all channels).
pub fn target_on_bins(target: &TargetCurve, rate: f64, n_fft: usize) -> Vec<f64> {
    (0..=n_fft / 2)
        .map(|k| 10f64.powf(target.db(k as f64 * rate / n_fft as f64) / 20.0))
        .collect()
}

/// Designs one speaker channel; `target` from `target_on_bins` on the same FFT size.
pub fn channel_design(
    rig: &Rig,
    sp: &Speaker,
    target: &[f64],
    correction: Option<Correction<'_>>,
    n_fft: usize,
) -> ChannelDesign {
    let rate = f64::from(rig.profile.sample_rate);
    let global = 10f64.powf((rig.global_attenuation_db() - DESIGN_MARGIN_DB) / 20.0);
    let id = rig.identity_of(sp);
    let prot = protection_hpf(rig, sp);
    let xs = &rig.profile.crossovers;
    let b = sp.band as usize;
    let bins = n_fft / 2 + 1;
    let mut exact = Vec::with_capacity(bins);
    let mut rest = Vec::with_capacity(bins);
    for (k, &t) in target.iter().enumerate().take(bins) {
        let f = k as f64 * rate / n_fft as f64;
        let mut h = Complex64::new(1.0, 0.0);
        if b >= 2 {
            let x = xs[b - 2];
            h *= lr_section(f, x.freq_hz, lr_order(x.slope_db_per_oct), rate, true);
        }
        if b <= xs.len() {
            let x = xs[b - 1];
            h *= lr_section(f, x.freq_hz, lr_order(x.slope_db_per_oct), rate, false);
        }
        if let Some((fc, order)) = prot {
            h *= lr_section(f, fc, order, rate, true);
        }
        exact.push(h);
        let mut m = global;
        for band in &id.eq {
            m *= eq_band(band, f, rate);
        }
        m *= t;
        if let Some(c) = correction {
            m *= c(f).clamp(0.0, 1.0);
        }
        rest.push(m);
    }
    let mut highpasses = Vec::new();
    if b >= 2 {
        let x = xs[b - 2];
        highpasses.push((x.freq_hz, lr_order(x.slope_db_per_oct)));
    }
    if let Some(p) = prot {
        highpasses.push(p);
    }
    ChannelDesign {
        exact,
        rest,
        low_floor_db: low_floor_db(&highpasses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(x: f64) -> f64 {
        20.0 * x.log10()
    }

    #[test]
    fn lr_magnitudes_are_minus_6_db_at_fc_and_slope_as_named() {
        for order in [4, 8] {
            assert!((db(lr_lowpass(80.0, 80.0, order)) + 6.02).abs() < 0.01);
            assert!((db(lr_highpass(80.0, 80.0, order)) + 6.02).abs() < 0.01);
            // one decade into the stopband: 20 dB/decade per order
            let lp = db(lr_lowpass(8000.0, 80.0, order));
            assert!((lp + 20.0 * 2.0 * order as f64).abs() < 0.1, "{lp}");
        }
    }

    #[test]
    fn lr_sections_match_the_lr_magnitude_and_sum_to_an_allpass() {
        let rate = 48_000.0;
        for order in [4, 8] {
            for f in [20.0, 40.0, 80.0, 160.0, 1000.0] {
                let lp = lr_section(f, 80.0, order, rate, false);
                let hp = lr_section(f, 80.0, order, rate, true);
                if f <= 160.0 {
                    // frequency warping of the bilinear map is negligible this far below Nyquist
                    assert!((db(lp.norm()) - db(lr_lowpass(f, 80.0, order))).abs() < 0.05);
                    assert!((db(hp.norm()) - db(lr_highpass(f, 80.0, order))).abs() < 0.05);
                }
                assert!(db((lp + hp).norm()).abs() < 1e-6, "LR{order} {f} Hz");
            }
        }
    }

    #[test]
    fn low_floor_only_where_it_costs_the_high_pass_little_phase() {
        assert_eq!(low_floor_db(&[]), Some(150.0));
        assert_eq!(low_floor_db(&[(1800.0, 4), (42.0, 4)]), Some(150.0));
        assert_eq!(low_floor_db(&[(80.0, 8)]), None);
        assert_eq!(low_floor_db(&[(300.0, 4), (35.0, 8)]), None);
    }

    #[test]
    fn eq_bands_hit_their_gain() {
        let rate = 48_000.0;
        let peak = EqBand {
            kind: EqKind::Peak,
            freq_hz: 1000.0,
            gain_db: -6.0,
            q: 2.0,
        };
        assert!((db(eq_band(&peak, 1000.0, rate)) + 6.0).abs() < 0.01);
        assert!(db(eq_band(&peak, 100.0, rate)).abs() < 0.1);
        let shelf = EqBand {
            kind: EqKind::LowShelf,
            freq_hz: 100.0,
            gain_db: 10.0,
            q: 0.707,
        };
        assert!((db(eq_band(&shelf, 10.0, rate)) - 10.0).abs() < 0.1);
        assert!(db(eq_band(&shelf, 5000.0, rate)).abs() < 0.1);
        let hs = EqBand {
            kind: EqKind::HighShelf,
            ..shelf
        };
        assert!((db(eq_band(&hs, 20000.0, rate)) - 10.0).abs() < 0.1);
    }

    #[test]
    fn iso226_reproduces_the_standard_at_1khz_and_low_frequencies() {
        // By definition the contour passes through phon = SPL at 1 kHz.
        for phon in [40.0, 60.0, 80.0, 90.0] {
            assert!((iso226_spl(1000.0, phon) - phon).abs() < 0.3, "{phon}");
        }
        // ISO 226:2003 40-phon contour: 64.37 dB SPL at 100 Hz, 99.85 dB at 20 Hz.
        assert!((iso226_spl(100.0, 40.0) - 64.37).abs() < 0.05);
        assert!((iso226_spl(20.0, 40.0) - 99.85).abs() < 0.05);
        // Playing louder than the reference needs less bass: the adjustment is negative at 40 Hz.
        assert!(loudness_adjust_db(40.0, 95.0, 83.0) < -1.0);
    }

    #[test]
    fn target_curve_only_cuts() {
        let t = Target {
            operating_spl_db: Some(70.0),
            reference_phon: 83.0,
            points: vec![[100.0, 3.0], [10_000.0, -2.0]],
        };
        let c = TargetCurve::new(&t, 48_000.0);
        for i in 0..200 {
            let f = 10.0 * 1.04f64.powi(i);
            assert!(c.db(f) <= 1e-9, "{f} Hz: {}", c.db(f));
        }
    }
}

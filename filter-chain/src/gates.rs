//! The gates every generated filter passes before anything is written. They look only at the
//! actual taps (as stored: float32) and at the generated config text, never at the design.
//!
//! 1. Gain: max |H| on a dense grid (OVERSAMPLE x taps FFT bins) <= -0.5 dB.
//! 2. Minimum phase: the taps, weighted by PHASE_WEIGHT^n, have the minimum phase of their own
//!    magnitude (real-cepstrum Hilbert relation on the same grid) within PHASE_TOLERANCE_RAD at
//!    every bin whose level is within PHASE_RANGE_DB of the peak, up to a global sign (polarity
//!    inversion keeps every zero where it is). Passing means no zero lies outside radius
//!    1 / PHASE_WEIGHT (~1.002) in a way that adds more than the tolerance of excess phase. A
//!    delay, a linear-phase or a mixed-phase filter differs by radians.
//! 3. Protection: everything at or below mandatory_hpf_hz / 2 is >= 12 dB below the passband peak.
//! 4. No IIR: the config uses only the builtin `convolver`, `linear`, `delay`, `copy`, `mixer`.

use crate::minphase::MinPhase;
use std::fmt;

pub const GAIN_LIMIT_DB: f64 = -0.5;
pub const PHASE_TOLERANCE_RAD: f64 = 0.05;
pub const PHASE_RANGE_DB: f64 = 60.0;
/// Taps are weighted by PHASE_WEIGHT^n before the phase test (see `check_f64`).
pub const PHASE_WEIGHT: f64 = 0.998;
pub const PROTECTION_MIN_DB: f64 = 12.0;
pub const OVERSAMPLE: usize = 4;
/// Builtin filter-graph labels that are FIR or memoryless: the only ones a config may use.
pub const ALLOWED_LABELS: [&str; 5] = ["convolver", "linear", "delay", "copy", "mixer"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    Gain,
    MinimumPhase,
    Protection,
    NoIir,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gate::Gain => "gain gate",
            Gate::MinimumPhase => "minimum-phase gate",
            Gate::Protection => "protection gate",
            Gate::NoIir => "no-IIR gate",
        })
    }
}

/// One failed gate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    /// One-based channel; None for config-wide gates.
    pub channel: Option<u32>,
    pub gate: Gate,
    pub worst_hz: f64,
    pub value: f64,
    pub limit: f64,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ch) = self.channel {
            write!(f, "channel {ch}: ")?;
        }
        write!(
            f,
            "{} failed: {} (worst at {:.1} Hz: {:.3}, limit {:.3})",
            self.gate, self.detail, self.worst_hz, self.value, self.limit
        )
    }
}

/// What the gates measured on one channel (all passed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelReport {
    pub gain_max_db: f64,
    pub gain_worst_hz: f64,
    pub phase_max_error_rad: f64,
    pub phase_worst_hz: f64,
    /// Worst level at or below mandatory_hpf_hz / 2, relative to the passband peak.
    pub protection_db: f64,
    pub protection_worst_hz: f64,
}

/// Reusable analyser for one tap count.
pub struct Analyzer {
    taps: usize,
    fft: MinPhase,
}

impl Analyzer {
    pub fn new(taps: usize) -> Self {
        Analyzer {
            taps,
            fft: MinPhase::with_fft(taps, taps * OVERSAMPLE),
        }
    }

    /// Runs gates 1-3 on one channel's taps. `hpf_hz` is the speaker's mandatory_hpf_hz.
    pub fn check(
        &mut self,
        channel: u32,
        taps: &[f32],
        rate: f64,
        hpf_hz: Option<f64>,
    ) -> Result<ChannelReport, Vec<Failure>> {
        let h: Vec<f64> = taps.iter().map(|&t| f64::from(t)).collect();
        self.check_f64(channel, &h, rate, hpf_hz)
    }

    pub fn check_f64(
        &mut self,
        channel: u32,
        h: &[f64],
        rate: f64,
        hpf_hz: Option<f64>,
    ) -> Result<ChannelReport, Vec<Failure>> {
        assert_eq!(h.len(), self.taps, "tap count");
        let spec = self.fft.spectrum(h);
        // Exponential weighting maps every zero z to PHASE_WEIGHT * z: zeros on or just inside the
        // circle (a high-pass's DC zeros, float32 scatter around them) become strictly inside so the
        // cepstrum decays and is not aliased; a zero further out than 1 / PHASE_WEIGHT stays outside
        // and shows up as excess phase.
        let alpha = PHASE_WEIGHT;
        let weighted: Vec<f64> = h
            .iter()
            .enumerate()
            .map(|(n, v)| v * alpha.powi(n as i32))
            .collect();
        let wspec = self.fft.spectrum(&weighted);
        let n = self.fft.n_fft();
        let df = rate / n as f64;
        let mag: Vec<f64> = spec.iter().map(|c| c.norm()).collect();
        let (k_pk, peak) =
            mag.iter()
                .cloned()
                .enumerate()
                .fold((0, 0.0), |a, (k, m)| if m > a.1 { (k, m) } else { a });
        let db = |m: f64| 20.0 * m.max(1e-300).log10();
        let mut fails = Vec::new();

        let gain_max_db = db(peak);
        if gain_max_db > GAIN_LIMIT_DB {
            fails.push(Failure {
                channel: Some(channel),
                gate: Gate::Gain,
                worst_hz: k_pk as f64 * df,
                value: gain_max_db,
                limit: GAIN_LIMIT_DB,
                detail: format!("peak gain {gain_max_db:+.2} dB"),
            });
        }

        // Reference: the minimum phase of the taps' own magnitude. Floor far below anything
        // evaluated, only to keep the logarithm finite.
        let wpeak = wspec.iter().map(|c| c.norm()).fold(0.0, f64::max);
        let floor = wpeak * 1e-15;
        let log_mag: Vec<f64> = wspec.iter().map(|c| c.norm().max(floor).ln()).collect();
        let phi_min = self.fft.min_phase_of_log_mag(&log_mag);
        let wrap = |x: f64| {
            (x + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI
        };
        let sign_offset =
            if wrap(wspec[k_pk].arg() - phi_min[k_pk]).abs() > std::f64::consts::FRAC_PI_2 {
                std::f64::consts::PI
            } else {
                0.0
            };
        let eval_floor = peak * 10f64.powf(-PHASE_RANGE_DB / 20.0);
        let (mut phase_err, mut phase_k) = (0.0f64, 0usize);
        for k in 0..mag.len() {
            if mag[k] < eval_floor {
                continue;
            }
            let e = wrap(wspec[k].arg() - phi_min[k] - sign_offset).abs();
            if e > phase_err {
                phase_err = e;
                phase_k = k;
            }
        }
        if phase_err > PHASE_TOLERANCE_RAD {
            fails.push(Failure {
                channel: Some(channel),
                gate: Gate::MinimumPhase,
                worst_hz: phase_k as f64 * df,
                value: phase_err,
                limit: PHASE_TOLERANCE_RAD,
                detail: format!(
                    "phase differs from the minimum phase of its magnitude by {phase_err:.3} rad"
                ),
            });
        }

        let (mut prot_db, mut prot_k) = (f64::NEG_INFINITY, 0usize);
        match hpf_hz {
            None => fails.push(Failure {
                channel: Some(channel),
                gate: Gate::Protection,
                worst_hz: 0.0,
                value: 0.0,
                limit: -PROTECTION_MIN_DB,
                detail: "speaker channel without a high-pass".into(),
            }),
            Some(hpf) => {
                let k_max = ((hpf / 2.0) / df).floor() as usize;
                for (k, &m) in mag.iter().enumerate().take(k_max + 1) {
                    let rel = db(m) - gain_max_db;
                    if rel > prot_db {
                        prot_db = rel;
                        prot_k = k;
                    }
                }
                if prot_db > -PROTECTION_MIN_DB {
                    fails.push(Failure {
                        channel: Some(channel),
                        gate: Gate::Protection,
                        worst_hz: prot_k as f64 * df,
                        value: prot_db,
                        limit: -PROTECTION_MIN_DB,
                        detail: format!(
                            "only {:.1} dB below the passband at or below {:.1} Hz \
                             (mandatory_hpf_hz / 2)",
                            -prot_db,
                            hpf / 2.0
                        ),
                    });
                }
            }
        }
        if fails.is_empty() {
            Ok(ChannelReport {
                gain_max_db,
                gain_worst_hz: k_pk as f64 * df,
                phase_max_error_rad: phase_err,
                phase_worst_hz: phase_k as f64 * df,
                protection_db: prot_db,
                protection_worst_hz: prot_k as f64 * df,
            })
        } else {
            Err(fails)
        }
    }
}

/// Gate 4: every filter-graph node in the config is a builtin from ALLOWED_LABELS.
pub fn check_config(text: &str) -> Result<(), Vec<Failure>> {
    let mut fails = Vec::new();
    let fail = |detail: String| Failure {
        channel: None,
        gate: Gate::NoIir,
        worst_hz: 0.0,
        value: 0.0,
        limit: 0.0,
        detail,
    };
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        while let Some(w) = words.next() {
            let key = w.trim_matches('{');
            if (key == "label" || key == "type") && words.peek() == Some(&"=") {
                words.next();
                let v = words.next().unwrap_or("").trim_matches('"');
                let ok = if key == "type" {
                    v == "builtin"
                } else {
                    ALLOWED_LABELS.contains(&v)
                };
                if !ok {
                    fails.push(fail(format!(
                        "`{key} = {v}` is not an allowed FIR/builtin block: {}",
                        line.trim()
                    )));
                }
            }
        }
    }
    if fails.is_empty() {
        Ok(())
    } else {
        Err(fails)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::lr_section;
    use realfft::num_complex::Complex64;

    const TAPS: usize = 8192;
    const RATE: f64 = 48_000.0;

    /// A good filter: LR4 high-pass at 80 Hz, -6 dB overall, minimum phase.
    fn good(gain_db: f64) -> Vec<f64> {
        let mut d = MinPhase::new(TAPS);
        let n = d.n_fft();
        let exact: Vec<Complex64> = (0..=n / 2)
            .map(|k| lr_section(k as f64 * RATE / n as f64, 80.0, 4, RATE, true))
            .collect();
        let mag = vec![10f64.powf(gain_db / 20.0); n / 2 + 1];
        d.design_combined(&exact, &mag, None)
    }

    fn f32s(h: &[f64]) -> Vec<f32> {
        h.iter().map(|&v| v as f32).collect()
    }

    #[test]
    fn good_filter_passes_all_gates() {
        let mut a = Analyzer::new(TAPS);
        let r = a.check(1, &f32s(&good(-6.0)), RATE, Some(60.0)).unwrap();
        assert!(r.gain_max_db <= -0.5 && r.gain_max_db > -6.5);
        assert!(r.phase_max_error_rad < PHASE_TOLERANCE_RAD);
        assert!(r.protection_db < -12.0);
    }

    #[test]
    fn gain_gate_fails_a_hot_filter() {
        let mut a = Analyzer::new(TAPS);
        let e = a
            .check(3, &f32s(&good(-0.2)), RATE, Some(60.0))
            .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].gate, Gate::Gain);
        let msg = e[0].to_string();
        assert!(msg.starts_with("channel 3: gain gate failed"), "{msg}");
        assert!(e[0].worst_hz > 100.0, "{msg}");
    }

    #[test]
    fn phase_gate_fails_a_delayed_and_a_linear_phase_filter() {
        let mut a = Analyzer::new(TAPS);
        // delayed by 10 samples: same magnitude, excess phase
        let mut h = vec![0.0; TAPS];
        h[10..].copy_from_slice(&good(-6.0)[..TAPS - 10]);
        let e = a.check(2, &f32s(&h), RATE, Some(60.0)).unwrap_err();
        assert_eq!(e[0].gate, Gate::MinimumPhase, "{e:?}");
        // linear phase (time-reversed min-phase + itself is symmetric): mixed phase
        let g = good(-12.0);
        let mut lin = vec![0.0; TAPS];
        for i in 0..TAPS / 2 {
            lin[TAPS / 2 + i] += g[i];
            lin[TAPS / 2 - 1 - i] += g[i];
        }
        let e = a.check(2, &f32s(&lin), RATE, Some(60.0)).unwrap_err();
        assert!(e.iter().any(|f| f.gate == Gate::MinimumPhase), "{e:?}");
        assert!(e[0]
            .to_string()
            .contains("channel 2: minimum-phase gate failed"));
    }

    #[test]
    fn phase_gate_fails_a_zero_outside_the_unit_circle_and_passes_its_mirror() {
        let mut a = Analyzer::new(TAPS);
        let g = good(-12.0);
        let with_zero = |r: f64| -> Vec<f64> {
            // g * (1 - r z^-1), normalised so the gain gate is not what fails
            let mut h = vec![0.0; TAPS];
            for n in 0..TAPS {
                h[n] = g[n] - if n > 0 { r * g[n - 1] } else { 0.0 };
            }
            let s = 0.25 / (1.0 + r);
            h.iter().map(|v| v * s).collect()
        };
        a.check(1, &f32s(&with_zero(0.8)), RATE, Some(60.0))
            .unwrap();
        let e = a
            .check(1, &f32s(&with_zero(1.25)), RATE, Some(60.0))
            .unwrap_err();
        assert_eq!(e[0].gate, Gate::MinimumPhase, "{e:?}");
    }

    #[test]
    fn float32_lr8_high_pass_passes_the_phase_gate() {
        // Float32 storage scatters an LR8's eight DC zeros by ~1e-3; the weighting tolerates that.
        let mut d = MinPhase::new(16_384);
        let n = d.n_fft();
        let exact: Vec<Complex64> = (0..=n / 2)
            .map(|k| lr_section(k as f64 * RATE / n as f64, 80.0, 8, RATE, true))
            .collect();
        let h = d.design_combined(&exact, &vec![0.5; n / 2 + 1], None);
        let r = Analyzer::new(16_384)
            .check(1, &f32s(&h), RATE, Some(80.0))
            .unwrap();
        assert!(r.phase_max_error_rad < PHASE_TOLERANCE_RAD);
    }

    #[test]
    fn phase_gate_accepts_inverted_polarity() {
        let mut a = Analyzer::new(TAPS);
        let h: Vec<f64> = good(-6.0).iter().map(|v| -v).collect();
        a.check(1, &f32s(&h), RATE, Some(60.0)).unwrap();
    }

    #[test]
    fn protection_gate_fails_without_high_pass() {
        let mut a = Analyzer::new(TAPS);
        // a dirac at -6 dB: flat, minimum phase, no protection
        let mut h = vec![0.0; TAPS];
        h[0] = 0.5;
        let e = a.check(4, &f32s(&h), RATE, Some(42.0)).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].gate, Gate::Protection);
        assert!(e[0].worst_hz <= 21.0);
        assert!(e[0]
            .to_string()
            .starts_with("channel 4: protection gate failed"));
        // and a high-pass far too low for the declared protection also fails
        let e = a
            .check(4, &f32s(&good(-6.0)), RATE, Some(300.0))
            .unwrap_err();
        assert_eq!(e[0].gate, Gate::Protection);
        // a missing declaration fails too
        let e = a.check(4, &f32s(&good(-6.0)), RATE, None).unwrap_err();
        assert_eq!(e[0].gate, Gate::Protection);
    }

    #[test]
    fn no_iir_gate_refuses_biquads_and_plugins() {
        assert!(check_config("{ type = builtin name = ch1_conv label = convolver }").is_ok());
        let e = check_config("{ type = builtin name = x label = bq_highpass }").unwrap_err();
        assert_eq!(e[0].gate, Gate::NoIir);
        assert!(e[0].to_string().contains("bq_highpass"));
        assert!(check_config("{ type = ladspa name = x label = foo }").is_err());
    }
}

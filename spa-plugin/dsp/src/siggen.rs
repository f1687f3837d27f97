//! The measurement signal generator: silence, sine, white and pink noise, Farina exponential
//! sine sweep. Its output never exceeds [`MAX_PEAK_DBFS`]: every sample is clamped to
//! [`MAX_PEAK_LIN`] as the last step, whatever the level, the signal or a bug upstream asks.
//!
//! Level semantics: the level is the signal's peak amplitude (sine and sweep amplitude, white
//! noise's uniform bound). Pink noise is scaled to an RMS 12 dB below the level and limited at
//! the level, so its peaks obey the same number.
//!
//! Every start, stop, signal switch and level change goes through a linear gain ramp: the gain
//! moves at most [`MAX_PEAK_LIN`] / (`RAMP_S` * rate) per sample, so no step is larger than a
//! 10 ms full-scale fade allows. A signal switch fades out, switches, fades in.

use crate::db::{db_to_lin, lin_to_db};

/// The hard output cap (D-035, D-050). A constant: nothing can raise it.
pub const MAX_PEAK_DBFS: f32 = -20.0;
/// [`MAX_PEAK_DBFS`] as a linear amplitude.
pub const MAX_PEAK_LIN: f32 = 0.1;
/// Time of a full 0 -> cap gain ramp.
pub const RAMP_S: f64 = 0.010;
/// Pink noise RMS relative to the level.
pub const PINK_CREST_DB: f32 = 12.0;
/// Lowest level a caller can ask for; below reads as silence.
pub const MIN_LEVEL_DBFS: f32 = -120.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepParams {
    pub start_hz: f64,
    pub end_hz: f64,
    pub duration_s: f64,
    pub fade_in_s: f64,
    pub fade_out_s: f64,
}

impl Default for SweepParams {
    fn default() -> Self {
        SweepParams {
            start_hz: 20.0,
            end_hz: 20000.0,
            duration_s: 10.0,
            fade_in_s: 0.05,
            fade_out_s: 0.01,
        }
    }
}

impl SweepParams {
    /// Clamps every field into a usable range for `rate` (bad input never reaches the oscillator).
    pub fn sanitized(self, rate: u32) -> Self {
        let nyq = rate as f64 / 2.0;
        let fin = |v: f64, d: f64| if v.is_finite() { v } else { d };
        let start = fin(self.start_hz, 20.0).clamp(1.0, nyq * 0.99);
        let end = fin(self.end_hz, 20000.0).clamp(1.0, nyq * 0.99);
        let end = if (end / start - 1.0).abs() < 1e-3 {
            (start * 2.0).min(nyq * 0.99)
        } else {
            end
        };
        let dur = fin(self.duration_s, 10.0).clamp(0.1, 600.0);
        let fi = fin(self.fade_in_s, 0.0).clamp(0.0, dur / 2.0);
        let fo = fin(self.fade_out_s, 0.0).clamp(0.0, dur / 2.0);
        SweepParams {
            start_hz: start,
            end_hz: end,
            duration_s: dur,
            fade_in_s: fi,
            fade_out_s: fo,
        }
    }

    /// Farina's L = T / ln(f2 / f1): the instantaneous frequency is f1 * exp(t / L).
    pub fn rate_constant_l(&self) -> f64 {
        self.duration_s / (self.end_hz / self.start_hz).ln()
    }

    /// Instantaneous frequency at time `t` seconds into the sweep.
    pub fn frequency_at(&self, t: f64) -> f64 {
        self.start_hz * (t / self.rate_constant_l()).exp()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    Silence,
    Sine { hz: f64 },
    White,
    Pink,
    Sweep { params: SweepParams, repeat: bool },
}

impl Signal {
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Silence => "silence",
            Signal::Sine { .. } => "sine",
            Signal::White => "white",
            Signal::Pink => "pink",
            Signal::Sweep { .. } => "sweep",
        }
    }
}

/// What one `fill` did that the node reports with the graph clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillReport {
    /// Offset in the block where a sweep (re)started.
    pub sweep_started_at: Option<usize>,
    /// Offset where a one-shot sweep ended.
    pub sweep_ended_at: Option<usize>,
}

/// Deterministic xorshift32: the tap test regenerates noise bit-exactly from the seed.
#[derive(Clone, Copy, Debug)]
struct Rng(u32);

impl Rng {
    #[inline]
    fn next_uniform(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        // 24 random bits -> [-1, 1)
        ((x >> 8) as f32 / 8_388_608.0) - 1.0
    }
}

/// Paul Kellet's refined pink-noise shaper (sum of first-order noise sources).
#[derive(Clone, Copy, Debug, Default)]
struct Pink([f32; 7]);

/// Scales Kellet's shaper (fed with uniform white of RMS 1/sqrt(3)) to unit RMS.
const PINK_NORM: f32 = 0.5665;

impl Pink {
    #[inline]
    fn next(&mut self, w: f32) -> f32 {
        let b = &mut self.0;
        b[0] = 0.99886 * b[0] + w * 0.055_517_9;
        b[1] = 0.99332 * b[1] + w * 0.075_075_9;
        b[2] = 0.96900 * b[2] + w * 0.153_852;
        b[3] = 0.86650 * b[3] + w * 0.310_485_6;
        b[4] = 0.55000 * b[4] + w * 0.532_952_2;
        b[5] = -0.7616 * b[5] - w * 0.016_898;
        let p = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
        b[6] = w * 0.115_926;
        p * PINK_NORM
    }
}

pub const DEFAULT_SEED: u32 = 0x6d75_6767;

#[derive(Clone, Debug)]
pub struct Generator {
    rate: u32,
    signal: Signal,
    pending: Option<Signal>,
    running: bool,
    level_db: f32,
    level_lin: f32,
    clamped: bool,
    gain: f32,
    step: f32,
    phase: f64,
    t: u64,
    sweep_done: bool,
    seed: u32,
    rng: Rng,
    pink: Pink,
    /// Pink RMS relative to the level (linear), computed once.
    pink_scale: f32,
}

impl Generator {
    /// A stopped generator playing silence at the cap level.
    pub fn new(rate: u32) -> Self {
        let rate = rate.clamp(8000, 768_000);
        Generator {
            rate,
            signal: Signal::Silence,
            pending: None,
            running: false,
            level_db: MAX_PEAK_DBFS,
            level_lin: MAX_PEAK_LIN,
            clamped: false,
            gain: 0.0,
            step: (MAX_PEAK_LIN as f64 / (RAMP_S * rate as f64)) as f32,
            phase: 0.0,
            t: 0,
            sweep_done: false,
            seed: DEFAULT_SEED,
            rng: Rng(DEFAULT_SEED),
            pink: Pink::default(),
            pink_scale: db_to_lin(-PINK_CREST_DB),
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }
    pub fn running(&self) -> bool {
        self.running
    }
    /// The signal playing (or fading out), and the one queued behind it.
    pub fn signal(&self) -> Signal {
        self.pending.unwrap_or(self.signal)
    }
    /// Effective level after the cap, dBFS.
    pub fn level_db(&self) -> f32 {
        self.level_db
    }
    /// True when the last level request was above the cap and got clamped.
    pub fn level_clamped(&self) -> bool {
        self.clamped
    }
    /// The current ramp gain (linear).
    pub fn gain(&self) -> f32 {
        self.gain
    }
    /// Largest gain change per sample.
    pub fn ramp_step(&self) -> f32 {
        self.step
    }
    pub fn sweep_done(&self) -> bool {
        self.sweep_done
    }

    /// Requests a level; above the cap it is clamped (reported by `level_clamped`), NaN is ignored.
    /// Returns the effective level.
    pub fn set_level_db(&mut self, db: f32) -> f32 {
        if db.is_nan() {
            return self.level_db;
        }
        self.clamped = db > MAX_PEAK_DBFS;
        let db = db.clamp(MIN_LEVEL_DBFS, MAX_PEAK_DBFS);
        self.level_db = db;
        self.level_lin = if db <= MIN_LEVEL_DBFS {
            0.0
        } else {
            db_to_lin(db).min(MAX_PEAK_LIN)
        };
        db
    }

    /// Switches the signal: fades out, switches, fades in. Sweep parameters are sanitized.
    pub fn set_signal(&mut self, s: Signal) {
        let s = match s {
            Signal::Sweep { params, repeat } => Signal::Sweep {
                params: params.sanitized(self.rate),
                repeat,
            },
            Signal::Sine { hz } => Signal::Sine {
                hz: if hz.is_finite() {
                    hz.clamp(1.0, self.rate as f64 * 0.49)
                } else {
                    1000.0
                },
            },
            other => other,
        };
        if self.gain == 0.0 {
            self.switch_to(s);
        } else {
            self.pending = Some(s);
        }
    }

    /// Restarts the noise sequence from `seed` at the next signal (re)start.
    pub fn set_seed(&mut self, seed: u32) {
        self.seed = if seed == 0 { DEFAULT_SEED } else { seed };
    }

    pub fn start(&mut self) {
        if !self.running {
            // A one-shot sweep that ended plays again from its start, unless another signal
            // was asked for since (it is queued behind the fade-out and must win).
            if self.sweep_done && self.pending.is_none() {
                self.pending = Some(self.signal);
            }
            self.running = true;
        }
    }

    pub fn stop(&mut self) {
        self.running = false;
    }

    fn switch_to(&mut self, s: Signal) {
        self.signal = s;
        self.pending = None;
        self.phase = 0.0;
        self.t = 0;
        self.sweep_done = false;
        self.rng = Rng(self.seed);
        self.pink = Pink::default();
    }

    #[inline]
    fn raw_sample(&mut self, report: &mut FillReport, i: usize) -> f32 {
        match self.signal {
            Signal::Silence => 0.0,
            Signal::Sine { hz } => {
                let v = self.phase.sin() as f32;
                self.phase += std::f64::consts::TAU * hz / self.rate as f64;
                if self.phase >= std::f64::consts::TAU {
                    self.phase -= std::f64::consts::TAU;
                }
                v
            }
            Signal::White => self.rng.next_uniform(),
            Signal::Pink => {
                let w = self.rng.next_uniform();
                (self.pink.next(w) * self.pink_scale).clamp(-1.0, 1.0)
            }
            Signal::Sweep { params, repeat } => {
                if self.sweep_done {
                    return 0.0;
                }
                let n = (params.duration_s * self.rate as f64) as u64;
                if self.t >= n {
                    if repeat {
                        self.t = 0;
                    } else {
                        self.sweep_done = true;
                        report.sweep_ended_at = Some(i);
                        return 0.0;
                    }
                }
                if self.t == 0 {
                    report.sweep_started_at = Some(i);
                }
                let t = self.t as f64 / self.rate as f64;
                let l = params.rate_constant_l();
                let phase = std::f64::consts::TAU * params.start_hz * l * ((t / l).exp() - 1.0);
                let mut w = 1.0;
                if t < params.fade_in_s {
                    w = 0.5 - 0.5 * (std::f64::consts::PI * t / params.fade_in_s).cos();
                }
                let left = params.duration_s - t;
                if left < params.fade_out_s {
                    w *= 0.5 - 0.5 * (std::f64::consts::PI * left / params.fade_out_s).cos();
                }
                self.t += 1;
                (phase.sin() * w) as f32
            }
        }
    }

    /// Fills one block. Bounded O(out.len()); no allocation.
    pub fn fill(&mut self, out: &mut [f32]) -> FillReport {
        let mut report = FillReport::default();
        for (i, o) in out.iter_mut().enumerate() {
            let target = if self.running && self.pending.is_none() {
                self.level_lin
            } else {
                0.0
            };
            if self.gain < target {
                self.gain = (self.gain + self.step).min(target);
            } else if self.gain > target {
                self.gain = (self.gain - self.step).max(target);
            }
            if self.gain == 0.0 {
                if let Some(s) = self.pending {
                    self.switch_to(s);
                }
            }
            let v = if self.gain > 0.0 {
                self.raw_sample(&mut report, i) * self.gain
            } else {
                0.0
            };
            // The cap, last: NaN becomes silence, anything else is clamped.
            *o = if v.is_nan() {
                0.0
            } else {
                v.clamp(-MAX_PEAK_LIN, MAX_PEAK_LIN)
            };
        }
        report
    }

    /// Effective level for reports (dBFS of the current ramp gain).
    pub fn current_gain_db(&self) -> f32 {
        lin_to_db(self.gain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realfft::RealFftPlanner;

    const RATE: u32 = 48000;

    fn run(g: &mut Generator, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        for c in out.chunks_mut(256) {
            g.fill(c);
        }
        out
    }

    fn peak(s: &[f32]) -> f32 {
        s.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    #[test]
    fn cap_constant_is_minus_20_dbfs() {
        assert!((lin_to_db(MAX_PEAK_LIN) - MAX_PEAK_DBFS).abs() < 1e-4);
    }

    #[test]
    fn level_above_cap_is_clamped_and_reported() {
        let mut g = Generator::new(RATE);
        assert_eq!(g.set_level_db(0.0), MAX_PEAK_DBFS);
        assert!(g.level_clamped());
        g.set_signal(Signal::Sine { hz: 997.0 });
        g.start();
        let s = run(&mut g, RATE as usize);
        assert!(peak(&s) <= MAX_PEAK_LIN);
        assert!(peak(&s) > MAX_PEAK_LIN * 0.999);
        assert_eq!(g.set_level_db(-30.0), -30.0);
        assert!(!g.level_clamped());
        assert_eq!(g.set_level_db(f32::NAN), -30.0);
    }

    #[test]
    fn fuzzed_settings_never_exceed_the_cap() {
        let mut g = Generator::new(RATE);
        let mut r = Rng(12345);
        let mut out = vec![0.0f32; 512];
        for _ in 0..3000 {
            let pick = (r.next_uniform() * 4.0 + 4.0) as i32;
            let wild = |r: &mut Rng| -> f64 {
                match (r.next_uniform() * 3.0 + 3.0) as i32 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => -1e9,
                    _ => r.next_uniform() as f64 * 1e5,
                }
            };
            match pick {
                0 => {
                    g.set_level_db(wild(&mut r) as f32);
                }
                1 => g.set_signal(Signal::Sine { hz: wild(&mut r) }),
                2 => g.set_signal(Signal::Pink),
                3 => g.set_signal(Signal::White),
                4 => g.set_signal(Signal::Sweep {
                    params: SweepParams {
                        start_hz: wild(&mut r),
                        end_hz: wild(&mut r),
                        duration_s: wild(&mut r),
                        fade_in_s: wild(&mut r),
                        fade_out_s: wild(&mut r),
                    },
                    repeat: r.next_uniform() > 0.0,
                }),
                5 => g.start(),
                6 => g.stop(),
                _ => {
                    g.set_level_db(100.0 * r.next_uniform());
                }
            }
            let n = 1 + ((r.next_uniform() + 1.0) * 255.0) as usize;
            g.fill(&mut out[..n]);
            assert!(out[..n]
                .iter()
                .all(|x| x.is_finite() && x.abs() <= MAX_PEAK_LIN));
        }
    }

    #[test]
    fn gain_moves_by_at_most_one_ramp_step_per_sample() {
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::White);
        g.start();
        let mut last = g.gain();
        let mut one = [0.0f32];
        let mut steps = 0;
        for i in 0..RATE as usize {
            match i {
                1000 => g.set_level_db(-60.0),
                5000 => g.set_level_db(-20.0),
                9000 => {
                    g.set_signal(Signal::Pink);
                    -20.0
                }
                20000 => {
                    g.stop();
                    -20.0
                }
                _ => 0.0,
            };
            g.fill(&mut one);
            let d = (g.gain() - last).abs();
            assert!(d <= g.ramp_step() * 1.0001, "step {d} at {i}");
            if d > 0.0 {
                steps += 1;
            }
            assert!(
                one[0].abs() <= g.gain() + 1e-7,
                "output beyond the envelope at {i}"
            );
            last = g.gain();
        }
        assert!(steps > 1000, "the ramps ran");
        assert_eq!(g.gain(), 0.0, "stopped");
    }

    #[test]
    fn a_signal_chosen_after_a_finished_sweep_is_what_plays_on_restart() {
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::Sweep {
            params: SweepParams {
                start_hz: 100.0,
                end_hz: 1000.0,
                duration_s: 0.1,
                fade_in_s: 0.01,
                fade_out_s: 0.01,
            },
            repeat: false,
        });
        g.start();
        run(&mut g, RATE as usize / 5);
        assert!(g.sweep_done());
        // One Props update: stop, new signal, start (the fade-out has not run yet).
        g.stop();
        g.set_signal(Signal::Pink);
        g.start();
        assert_eq!(g.signal(), Signal::Pink);
        let s = run(&mut g, RATE as usize / 2);
        assert!(peak(&s[RATE as usize / 4..]) > 0.01, "pink noise plays");
        assert!(!g.sweep_done());
    }

    #[test]
    fn start_fades_in_over_10_ms() {
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::Sine { hz: 1000.0 });
        g.start();
        let s = run(&mut g, 2000);
        assert!(
            peak(&s[..48]) < 0.011,
            "first ms is quiet: {}",
            peak(&s[..48])
        );
        assert!(peak(&s[480..]) > 0.0999);
    }

    #[test]
    fn sweep_follows_the_exponential_law() {
        let p = SweepParams {
            start_hz: 20.0,
            end_hz: 20000.0,
            duration_s: 4.0,
            fade_in_s: 0.05,
            fade_out_s: 0.01,
        };
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::Sweep {
            params: p,
            repeat: false,
        });
        g.start();
        let mut out = vec![0.0f32; 5 * RATE as usize];
        let mut started = None;
        let mut ended = None;
        for (k, c) in out.chunks_mut(1024).enumerate() {
            let r = g.fill(c);
            if let Some(i) = r.sweep_started_at {
                started.get_or_insert(k * 1024 + i);
            }
            if let Some(i) = r.sweep_ended_at {
                ended = Some(k * 1024 + i);
            }
        }
        let started = started.expect("sweep start reported");
        assert_eq!(ended.unwrap() - started, 4 * RATE as usize);
        // Instantaneous frequency from zero-crossing spacing at a few points of the sweep.
        for t in [0.5f64, 1.5, 2.5, 3.2] {
            let i0 = started + (t * RATE as f64) as usize;
            let zc: Vec<f64> = (i0..i0 + 4800)
                .filter(|&i| out[i] <= 0.0 && out[i + 1] > 0.0)
                .map(|i| i as f64 + out[i] as f64 / (out[i] as f64 - out[i + 1] as f64))
                .collect();
            let n = zc.len() - 1;
            let f_meas = n as f64 * RATE as f64 / (zc[n] - zc[0]);
            let tc = ((zc[0] + zc[n]) / 2.0 - started as f64) / RATE as f64;
            // Over the window the frequency grows geometrically: compare at the window's
            // log-centre with 1 % tolerance.
            let f_law = p.frequency_at(tc);
            assert!(
                (f_meas / f_law - 1.0).abs() < 0.01,
                "t={t}: {f_meas} vs {f_law}"
            );
        }
        assert!(g.sweep_done());
        assert!(
            peak(&out[ended.unwrap()..]) == 0.0,
            "one-shot ends in silence"
        );
        // The fade-in starts from zero.
        assert!(out[started].abs() < 1e-6);
    }

    #[test]
    fn repeat_sweep_restarts() {
        let p = SweepParams {
            duration_s: 0.5,
            ..SweepParams::default()
        };
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::Sweep {
            params: p,
            repeat: true,
        });
        g.start();
        let mut starts = 0;
        let mut out = vec![0.0f32; 1024];
        for _ in 0..(2 * RATE as usize / 1024) {
            if g.fill(&mut out).sweep_started_at.is_some() {
                starts += 1;
            }
        }
        assert_eq!(starts, 4);
    }

    fn octave_band_powers_db(s: &[f32]) -> Vec<f64> {
        let n = 1 << 15;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        let mut spec = fft.make_output_vec();
        let mut acc = vec![0f64; n / 2 + 1];
        let win: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos())
            .collect();
        for seg in s.chunks_exact(n / 2).collect::<Vec<_>>().windows(2) {
            let mut buf: Vec<f64> = seg[0]
                .iter()
                .chain(seg[1])
                .zip(&win)
                .map(|(x, w)| *x as f64 * w)
                .collect();
            fft.process(&mut buf, &mut spec).unwrap();
            for (a, c) in acc.iter_mut().zip(&spec) {
                *a += c.norm_sqr();
            }
        }
        let bin_hz = RATE as f64 / n as f64;
        (0..10)
            .map(|k| {
                let lo = 20.0 * 2f64.powi(k);
                let p: f64 = acc
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (*i as f64 * bin_hz) >= lo && (*i as f64 * bin_hz) < 2.0 * lo)
                    .map(|(_, a)| a)
                    .sum();
                10.0 * p.log10()
            })
            .collect()
    }

    #[test]
    fn pink_noise_has_equal_power_per_octave_within_half_a_db() {
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::Pink);
        g.start();
        let s = run(&mut g, 60 * (1 << 15));
        let bands = octave_band_powers_db(&s[4800..]);
        let mean = bands.iter().sum::<f64>() / bands.len() as f64;
        for (k, b) in bands.iter().enumerate() {
            assert!(
                (b - mean).abs() < 0.5,
                "octave {k} from {} Hz: {:.2} dB vs mean {mean:.2}",
                20 << k,
                b
            );
        }
        // Pink RMS sits 12 dB under the level.
        let rms = (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        let rms_db = 20.0 * rms.log10();
        assert!(
            (rms_db - (MAX_PEAK_DBFS - PINK_CREST_DB) as f64).abs() < 0.5,
            "{rms_db}"
        );
    }

    #[test]
    fn white_noise_is_flat() {
        let mut g = Generator::new(RATE);
        g.set_signal(Signal::White);
        g.start();
        let s = run(&mut g, 30 * (1 << 15));
        let bands = octave_band_powers_db(&s[4800..]);
        // White: +3 dB per octave.
        for w in bands.windows(2).skip(1) {
            assert!((w[1] - w[0] - 3.01).abs() < 0.5, "{bands:?}");
        }
    }
}

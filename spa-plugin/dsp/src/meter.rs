//! Per-channel meter ballistics: sample peak, windowed RMS, the owner's display ballistics,
//! IEC 60268-10 PPM (Type I / Type II) and a latching clip indicator.
//!
//! Definitions (see docs/plugin.md for sources):
//! - Sample peak: max |x| since the previous snapshot, so no peak is lost between snapshots.
//! - RMS: sqrt(mean(x^2)) over the last `window` seconds, kept as 30 sub-block sums so the
//!   running value never drifts (each sub-block is summed fresh).
//! - Display: sample peak held for 2 s, then falling 20 dB/s (owner's decision D-047).
//! - PPM: rectified |x| charges an integrator whose time constant is solved at construction so
//!   that a 5 kHz tone burst of the type's integration time (Type I 5 ms, Type II 10 ms) reads
//!   2 dB below the steady-state reading (IEC 60268-10's definition of integration time); the
//!   reading returns linearly in dB: 20 dB in 1.7 s (Type I), 24 dB in 2.8 s (Type II).
//! - Clip: latched when |x| >= 1.0 (0 dBFS), with a count of clipped samples; reset explicitly.

use crate::db::lin_to_db;

/// The PPM reading a meter node offers beside peak, RMS and the display ballistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpmType {
    /// IEC 60268-10 Type I (DIN): 5 ms integration, 20 dB return in 1.7 s.
    TypeI,
    /// IEC 60268-10 Type II (BBC/EBU): 10 ms integration, 24 dB return in 2.8 s.
    TypeII,
}

impl PpmType {
    /// Integration time in seconds.
    pub fn integration_s(self) -> f64 {
        match self {
            PpmType::TypeI => 0.005,
            PpmType::TypeII => 0.010,
        }
    }
    /// Return (fall) in dB per second.
    pub fn return_db_per_s(self) -> f64 {
        match self {
            PpmType::TypeI => 20.0 / 1.7,
            PpmType::TypeII => 24.0 / 2.8,
        }
    }
    /// Property value: "I" or "II".
    pub fn name(self) -> &'static str {
        match self {
            PpmType::TypeI => "I",
            PpmType::TypeII => "II",
        }
    }
    /// Parses "I"/"II" (also "1"/"2", "type1"/"type2"); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "i" | "1" | "type1" | "typei" => Some(PpmType::TypeI),
            "ii" | "2" | "type2" | "typeii" => Some(PpmType::TypeII),
            _ => None,
        }
    }
}

/// Reference frequency of IEC 60268-10's tone-burst definition.
pub const PPM_REFERENCE_HZ: f64 = 5000.0;
/// Reading of a burst of exactly the integration time, relative to steady state.
pub const PPM_BURST_READING_DB: f64 = -2.0;
/// Owner's display ballistics (D-047).
pub const DISPLAY_HOLD_S: f64 = 2.0;
pub const DISPLAY_FALL_DB_PER_S: f64 = 20.0;
/// Default RMS window.
pub const DEFAULT_RMS_WINDOW_S: f64 = 0.3;
/// Sub-blocks of the RMS window.
const RMS_BLOCKS: usize = 30;

/// Per-sample coefficients derived from the rate; computed once on the main thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ballistics {
    pub rate: u32,
    pub ppm: PpmType,
    hold_samples: u32,
    display_fall: f32,
    ppm_attack: f32,
    ppm_release: f32,
    rms_block_len: u32,
}

fn per_sample_fall(db_per_s: f64, rate: u32) -> f32 {
    10f64.powf(-db_per_s / 20.0 / rate as f64) as f32
}

impl Ballistics {
    /// Builds the coefficients (does a short bisection for the PPM attack: main thread only).
    pub fn new(rate: u32, ppm: PpmType, rms_window_s: f64) -> Self {
        let rate = rate.clamp(8000, 768_000);
        let release = per_sample_fall(ppm.return_db_per_s(), rate).powi(PPM_DECIMATION as i32);
        let rms_window_s = if rms_window_s.is_finite() {
            rms_window_s.clamp(0.01, 10.0)
        } else {
            DEFAULT_RMS_WINDOW_S
        };
        let block = ((rms_window_s * rate as f64) / RMS_BLOCKS as f64)
            .round()
            .max(1.0) as u32;
        Ballistics {
            rate,
            ppm,
            hold_samples: (DISPLAY_HOLD_S * rate as f64) as u32,
            display_fall: per_sample_fall(DISPLAY_FALL_DB_PER_S, rate),
            ppm_attack: solve_ppm_attack(rate, ppm.integration_s(), release),
            ppm_release: release,
            rms_block_len: block,
        }
    }

    /// The PPM integrator's (attack, release) coefficients per group step.
    pub fn ppm_coefficients(&self) -> (f32, f32) {
        (self.ppm_attack, self.ppm_release)
    }

    /// The RMS window actually used, in seconds (a whole number of sub-blocks).
    pub fn rms_window_s(&self) -> f64 {
        (self.rms_block_len as usize * RMS_BLOCKS) as f64 / self.rate as f64
    }
}

/// Independent accumulators in the block loops: enough that the add/max latency of one does
/// not stall the next (32 f32 = 8 SSE registers).
const ACC_LANES: usize = 32;

/// max |x| of a block: NaN ignored, infinity read as `f32::MAX`. Many lanes so it vectorizes.
fn block_peak(s: &[f32]) -> f32 {
    let mut m = [0f32; ACC_LANES];
    let (chunks, rest) = s.as_chunks::<ACC_LANES>();
    for c in chunks {
        for (l, x) in m.iter_mut().zip(c) {
            let a = x.abs();
            *l = if a > *l { a } else { *l };
        }
    }
    let mut r = m.iter().fold(0f32, |a, b| a.max(*b));
    for x in rest {
        r = r.max(x.abs());
    }
    r.min(f32::MAX)
}

/// max |x| of one PPM group (NaN ignored, never chosen): four lanes down the group (vertical
/// maxima vectorize), then across the lanes.
#[inline]
fn group_peak(c: &[f32; PPM_DECIMATION]) -> f32 {
    let mut m = [0f32; 4];
    for q in c.as_chunks::<4>().0 {
        for (l, x) in m.iter_mut().zip(q) {
            let a = x.abs();
            *l = if a > *l { a } else { *l };
        }
    }
    let m0 = if m[2] > m[0] { m[2] } else { m[0] };
    let m1 = if m[3] > m[1] { m[3] } else { m[1] };
    if m1 > m0 {
        m1
    } else {
        m0
    }
}

/// Sum of squares: f32 lanes (at most one RMS sub-block long), summed in f64.
fn sum_squares(s: &[f32]) -> f64 {
    let mut m = [0f32; ACC_LANES];
    let (chunks, rest) = s.as_chunks::<ACC_LANES>();
    for c in chunks {
        for (l, x) in m.iter_mut().zip(c) {
            *l += x * x;
        }
    }
    m.iter().map(|v| *v as f64).sum::<f64>()
        + rest.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>()
}

/// The PPM integrator steps once per this many samples, on their peak (the calibration
/// simulates exactly this, so the ballistics hold; the recursive part costs 8x less). A burst
/// can start anywhere in a group: the calibration centres it, so the reading of a burst of the
/// integration time is within half a step (< 0.1 dB) of the definition whatever its phase.
pub const PPM_DECIMATION: usize = 8;

/// Most samples [`ChannelMeter::process_deferred`] takes at once (the largest quantum).
pub const PIECE: usize = 8192;
/// Room for the group peaks of one piece (a head group completed from the previous call, then
/// whole groups).
pub const GROUPS_PER_PIECE: usize = PIECE / PPM_DECIMATION + 1;

/// A group peak as the integrator takes it: infinity as full scale (and NaN, which the peak
/// functions never return, as silence).
#[inline]
pub fn sane_group(g: f32) -> f32 {
    if g >= 0.0 {
        g.min(f32::MAX)
    } else {
        0.0
    }
}

/// One step of the PPM integrator on a group peak `a`.
#[inline]
pub fn ppm_step(e: f32, a: f32, attack: f32, release: f32) -> f32 {
    if a > e {
        e + attack * (a - e)
    } else {
        e * release
    }
}

/// PPM reading (linear) of a reference-frequency tone of unit amplitude lasting `secs`,
/// through the same decimated integrator as `ChannelMeter`.
fn simulate_burst(rate: u32, secs: f64, attack: f32, release: f32) -> f32 {
    let n = (secs * rate as f64).round() as usize;
    let w = std::f64::consts::TAU * PPM_REFERENCE_HZ / rate as f64;
    let mut e = 0f32;
    let mut max = 0f32;
    let mut acc = 0f32;
    // The burst starts half a group in; its tail group is stepped too (silence follows).
    let off = PPM_DECIMATION / 2;
    for i in 0..(n + off).div_ceil(PPM_DECIMATION) * PPM_DECIMATION {
        let x = if i >= off && i < n + off {
            ((w * (i - off) as f64).sin() as f32).abs()
        } else {
            0.0
        };
        acc = acc.max(x);
        if (i + 1) % PPM_DECIMATION == 0 {
            e = ppm_step(e, acc, attack, release);
            max = max.max(e);
            acc = 0.0;
        }
    }
    max
}

fn solve_ppm_attack(rate: u32, integration_s: f64, release: f32) -> f32 {
    let target = 10f64.powf(PPM_BURST_READING_DB / 20.0) as f32;
    // Bisection on log(tau): a longer time constant reads a burst lower.
    let (mut lo, mut hi) = (1e-5f64.ln(), 0.1f64.ln());
    let mut attack = 0.0;
    for _ in 0..40 {
        let tau = ((lo + hi) / 2.0).exp();
        attack = (1.0 - (-(PPM_DECIMATION as f64) / (tau * rate as f64)).exp()) as f32;
        let steady = simulate_burst(rate, 0.2, attack, release);
        let burst = simulate_burst(rate, integration_s, attack, release);
        if burst / steady > target {
            lo = tau.ln();
        } else {
            hi = tau.ln();
        }
    }
    attack
}

/// One snapshot's reading of one channel, in dBFS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelReading {
    pub peak_db: f32,
    pub rms_db: f32,
    pub display_db: f32,
    pub ppm_db: f32,
    pub clipped: bool,
    pub clip_count: u32,
}

impl Default for ChannelReading {
    /// Silence: every level at the floor, no clip.
    fn default() -> Self {
        let f = crate::db::FLOOR_DB;
        ChannelReading {
            peak_db: f,
            rms_db: f,
            display_db: f,
            ppm_db: f,
            clipped: false,
            clip_count: 0,
        }
    }
}

/// State of one channel.
#[derive(Clone, Debug)]
pub struct ChannelMeter {
    peak: f32,
    clipped: bool,
    clip_count: u32,
    display: f32,
    hold_left: u32,
    ppm: f32,
    ppm_max: f32,
    ppm_acc: f32,
    ppm_n: usize,
    rms_blocks: [f64; RMS_BLOCKS],
    rms_next: usize,
    rms_filled: usize,
    rms_acc: f64,
    rms_acc_n: u32,
}

impl Default for ChannelMeter {
    fn default() -> Self {
        ChannelMeter {
            peak: 0.0,
            clipped: false,
            clip_count: 0,
            display: 0.0,
            hold_left: 0,
            ppm: 0.0,
            ppm_max: 0.0,
            ppm_acc: 0.0,
            ppm_n: 0,
            rms_blocks: [0.0; RMS_BLOCKS],
            rms_next: 0,
            rms_filled: 0,
            rms_acc: 0.0,
            rms_acc_n: 0,
        }
    }
}

impl ChannelMeter {
    /// Feeds one cycle of samples. Bounded: O(samples.len()), block-wise so it vectorizes: one
    /// pass over groups of [`PPM_DECIMATION`] samples gives the group peaks (whose maximum is
    /// the block peak), one sums the squares, then the PPM integrator steps once per group.
    pub fn process(&mut self, b: &Ballistics, samples: &[f32]) {
        // A cycle longer than the scratch is fed in pieces: same result (the state carries on).
        let mut gp = [0f32; GROUPS_PER_PIECE];
        for piece in samples.chunks(PIECE) {
            let n = self.process_deferred(b, piece, &mut gp);
            self.ppm_run(b, &gp[..n]);
        }
    }

    /// Everything of [`ChannelMeter::process`] except the PPM integrator's steps: the peaks of
    /// the groups completed in `samples` (at most [`PIECE`] long) go to `gp` in order and their
    /// count is returned; [`ChannelMeter::ppm_run`] (or a lockstep run over several channels,
    /// see `snapshot::Meter::process_planes`) must step them before the next call. Deferring
    /// the one serial recursion lets it run for several channels at once.
    pub fn process_deferred(
        &mut self,
        b: &Ballistics,
        samples: &[f32],
        gp: &mut [f32; GROUPS_PER_PIECE],
    ) -> usize {
        let samples = &samples[..samples.len().min(PIECE)];
        if samples.is_empty() {
            return 0;
        }
        let (p, seg, n) = self.peak_and_groups(samples, gp);
        if p > self.peak {
            self.peak = p;
        }
        if p >= 1.0 {
            let n = samples.iter().filter(|x| x.abs() >= 1.0).count() as u32;
            self.clipped = true;
            self.clip_count = self.clip_count.saturating_add(n);
        }
        self.display_block(b, samples, p, seg);
        self.rms_block(b, samples);
        n
    }

    /// The PPM integrator's value and its maximum since the last reading.
    pub fn ppm_state(&self) -> (f32, f32) {
        (self.ppm, self.ppm_max)
    }

    /// Sets what [`ChannelMeter::ppm_state`] returns (after stepping it elsewhere).
    pub fn set_ppm_state(&mut self, (ppm, ppm_max): (f32, f32)) {
        (self.ppm, self.ppm_max) = (ppm, ppm_max);
    }

    /// Steps the PPM integrator over the group peaks `gp` (from `process_deferred`).
    pub fn ppm_run(&mut self, b: &Ballistics, gp: &[f32]) {
        let (mut e, mut m) = (self.ppm, self.ppm_max);
        for g in gp {
            e = ppm_step(e, sane_group(*g), b.ppm_attack, b.ppm_release);
            m = if e > m { e } else { m };
        }
        (self.ppm, self.ppm_max) = (e, m);
    }

    /// Block peak (NaN ignored, infinity as `f32::MAX`), the start of the last group holding
    /// it, and the peaks of the PPM groups completed here (written to `gp`, count returned).
    /// The group peaks are independent of each other, so this pass has no serial dependency.
    fn peak_and_groups(
        &mut self,
        s: &[f32],
        gp: &mut [f32; GROUPS_PER_PIECE],
    ) -> (f32, usize, usize) {
        let head_len = if self.ppm_n == 0 {
            0
        } else {
            (PPM_DECIMATION - self.ppm_n).min(s.len())
        };
        let (head, body) = s.split_at(head_len);
        let mut n = 0;
        let mut head_peak = 0f32;
        if !head.is_empty() {
            head_peak = block_peak(head);
            self.ppm_acc = self.ppm_acc.max(head_peak);
            self.ppm_n += head.len();
            if self.ppm_n == PPM_DECIMATION {
                gp[0] = self.ppm_acc;
                n = 1;
                self.ppm_acc = 0.0;
                self.ppm_n = 0;
            }
        }
        let first = n;
        let (groups, rest) = body.as_chunks::<PPM_DECIMATION>();
        for (d, c) in gp[first..].iter_mut().zip(groups) {
            *d = group_peak(c);
            n += 1;
        }
        let body_groups = &gp[first..n];
        // The block peak: a max over the group peaks (vectorizes), then where it last occurs.
        let mut lanes = [0f32; 8];
        let chunks = body_groups.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            for (l, g) in lanes.iter_mut().zip(c) {
                *l = if *g > *l { *g } else { *l };
            }
        }
        let mut p = lanes
            .iter()
            .chain(tail)
            .fold(head_peak, |a, g| if *g > a { *g } else { a });
        let mut at = 0;
        if let Some(k) = body_groups.iter().rposition(|g| *g >= p) {
            at = head_len + k * PPM_DECIMATION;
        }
        if !rest.is_empty() {
            let g = block_peak(rest);
            if g >= p {
                p = g;
                at = s.len() - rest.len();
            }
            self.ppm_acc = g;
            self.ppm_n = rest.len();
        }
        (p.min(f32::MAX), at, n)
    }

    /// Moves the display envelope `k` samples on without input above it.
    fn display_advance(&mut self, b: &Ballistics, k: u32) {
        if self.hold_left >= k {
            self.hold_left -= k;
        } else {
            let fall = k - self.hold_left;
            self.hold_left = 0;
            self.display *= b.display_fall.powi(fall.min(i32::MAX as u32) as i32);
        }
    }

    /// Per-sample semantics at block cost: the envelope restarts its hold at the last sample
    /// equal to the block peak (found in the group starting at `seg`) if that sample reaches
    /// the envelope there.
    fn display_block(&mut self, b: &Ballistics, s: &[f32], p: f32, seg: usize) {
        let n = s.len() as u32;
        let lowest = self.display * b.display_fall.powi(n.min(i32::MAX as u32) as i32);
        if p >= lowest && p > 0.0 {
            let end = (seg + PPM_DECIMATION).min(s.len());
            let i = s[seg..end]
                .iter()
                .rposition(|x| x.abs().min(f32::MAX) == p)
                .map_or(seg, |j| seg + j) as u32;
            let saved = (self.display, self.hold_left);
            self.display_advance(b, i);
            if p >= self.display {
                self.display = p;
                self.hold_left = b.hold_samples;
                self.display_advance(b, n - 1 - i);
                return;
            }
            (self.display, self.hold_left) = saved;
        }
        self.display_advance(b, n);
    }

    fn rms_block(&mut self, b: &Ballistics, s: &[f32]) {
        let mut rest = s;
        while !rest.is_empty() {
            let take = ((b.rms_block_len - self.rms_acc_n) as usize).min(rest.len());
            let chunk = &rest[..take];
            let mut sum = sum_squares(chunk);
            if !sum.is_finite() {
                // NaN reads as silence, infinities as full scale: never poison the state.
                sum = chunk
                    .iter()
                    .map(|x| {
                        if x.is_nan() {
                            0.0
                        } else {
                            (x.abs().min(f32::MAX) as f64).powi(2)
                        }
                    })
                    .sum();
            }
            self.rms_acc += sum;
            self.rms_acc_n += take as u32;
            rest = &rest[take..];
            if self.rms_acc_n >= b.rms_block_len {
                self.rms_blocks[self.rms_next] = self.rms_acc;
                self.rms_next = (self.rms_next + 1) % RMS_BLOCKS;
                self.rms_filled = (self.rms_filled + 1).min(RMS_BLOCKS);
                self.rms_acc = 0.0;
                self.rms_acc_n = 0;
            }
        }
    }

    /// Current RMS over the completed sub-blocks of the window (linear).
    pub fn rms(&self, b: &Ballistics) -> f32 {
        if self.rms_filled == 0 {
            return 0.0;
        }
        let sum: f64 = self.rms_blocks.iter().take(self.rms_filled).sum();
        // Blocks are written round-robin, so the first `filled` slots are exactly the filled ones.
        (sum / (self.rms_filled as f64 * b.rms_block_len as f64)).sqrt() as f32
    }

    /// Takes the reading: the sample peak and the PPM report their maximum since the previous
    /// reading (a short burst between snapshots is never missed) and restart from now.
    pub fn take(&mut self, b: &Ballistics) -> ChannelReading {
        let r = ChannelReading {
            peak_db: lin_to_db(self.peak),
            rms_db: lin_to_db(self.rms(b)),
            display_db: lin_to_db(self.display),
            ppm_db: lin_to_db(self.ppm_max),
            clipped: self.clipped,
            clip_count: self.clip_count,
        };
        self.peak = 0.0;
        self.ppm_max = self.ppm;
        r
    }

    /// Resets the clip latch and its count.
    pub fn reset_clip(&mut self) {
        self.clipped = false;
        self.clip_count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48000;

    fn sine(freq: f64, amp: f32, n: usize, start: usize) -> Vec<f32> {
        (start..start + n)
            .map(|i| amp * (std::f64::consts::TAU * freq * i as f64 / RATE as f64).sin() as f32)
            .collect()
    }

    fn feed(m: &mut ChannelMeter, b: &Ballistics, s: &[f32]) {
        for c in s.chunks(256) {
            m.process(b, c);
        }
    }

    #[test]
    fn sine_peak_and_rms_are_exact() {
        let b = Ballistics::new(RATE, PpmType::TypeI, 0.3);
        let mut m = ChannelMeter::default();
        let amp = 0.5f32;
        feed(&mut m, &b, &sine(1000.0, amp, RATE as usize, 0));
        let r = m.take(&b);
        assert!((r.peak_db - lin_to_db(amp)).abs() < 0.01, "{r:?}");
        let rms_expected = lin_to_db(amp / 2f32.sqrt());
        assert!((r.rms_db - rms_expected).abs() < 0.01, "{r:?}");
        assert!(!r.clipped);
        assert!((b.rms_window_s() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn rms_window_forgets_old_signal() {
        let b = Ballistics::new(RATE, PpmType::TypeI, 0.3);
        let mut m = ChannelMeter::default();
        feed(&mut m, &b, &sine(1000.0, 1.0, RATE as usize, 0));
        feed(&mut m, &b, &vec![0.0; (0.31 * RATE as f64) as usize]);
        assert!(m.take(&b).rms_db < -150.0);
    }

    #[test]
    fn peak_is_held_until_a_snapshot_reports_it() {
        let b = Ballistics::new(RATE, PpmType::TypeI, 0.3);
        let mut m = ChannelMeter::default();
        let mut s = vec![0.0f32; 4096];
        s[17] = -0.25;
        feed(&mut m, &b, &s);
        feed(&mut m, &b, &vec![0.0; 8192]);
        assert!((m.take(&b).peak_db - lin_to_db(0.25)).abs() < 1e-4);
        assert!(m.take(&b).peak_db <= crate::db::FLOOR_DB);
    }

    #[test]
    fn display_holds_two_seconds_then_falls_20_db_per_s() {
        let b = Ballistics::new(RATE, PpmType::TypeI, 0.3);
        let mut m = ChannelMeter::default();
        feed(&mut m, &b, &[0.5]);
        feed(&mut m, &b, &vec![0.0; (1.99 * RATE as f64) as usize]);
        assert!((m.take(&b).display_db - lin_to_db(0.5)).abs() < 1e-4);
        // 2 s hold then 1 s of fall.
        feed(&mut m, &b, &vec![0.0; (1.01 * RATE as f64) as usize]);
        let r = m.take(&b);
        assert!(
            (r.display_db - (lin_to_db(0.5) - 20.0)).abs() < 0.05,
            "{r:?}"
        );
    }

    fn ppm_burst_db_at(t: PpmType, freq: f64, secs: f64, lead: usize) -> (f32, f32) {
        let b = Ballistics::new(RATE, t, 0.3);
        let mut steady = ChannelMeter::default();
        feed(&mut steady, &b, &sine(freq, 0.5, RATE as usize, 0));
        let steady_db = steady.take(&b).ppm_db;
        let mut m = ChannelMeter::default();
        let n = (secs * RATE as f64).round() as usize;
        let mut s = vec![0.0; lead];
        s.extend(sine(freq, 0.5, n, 0));
        s.extend(vec![0.0; 64]);
        feed(&mut m, &b, &s);
        let burst_db = m.take(&b).ppm_db;
        (steady_db, burst_db)
    }

    fn ppm_burst_db(t: PpmType, freq: f64, secs: f64) -> (f32, f32) {
        ppm_burst_db_at(t, freq, secs, 3)
    }

    #[test]
    fn ppm_burst_reading_does_not_depend_on_its_phase_in_the_decimation_grid() {
        for lead in 0..PPM_DECIMATION {
            let (steady, burst) = ppm_burst_db_at(PpmType::TypeI, PPM_REFERENCE_HZ, 0.005, lead);
            assert!(
                (burst - steady + 2.0).abs() < 0.15,
                "lead {lead}: {steady} {burst}"
            );
        }
    }

    #[test]
    fn ppm_type_i_integration_5ms_reads_minus_2_db() {
        let (steady, burst) = ppm_burst_db(PpmType::TypeI, PPM_REFERENCE_HZ, 0.005);
        assert!((steady - lin_to_db(0.5)).abs() < 0.5, "steady {steady}");
        assert!((burst - steady + 2.0).abs() < 0.25, "{steady} {burst}");
        // A burst twice as long reads clearly higher, a tenth as long clearly lower.
        let (_, long) = ppm_burst_db(PpmType::TypeI, PPM_REFERENCE_HZ, 0.010);
        let (_, short) = ppm_burst_db(PpmType::TypeI, PPM_REFERENCE_HZ, 0.0005);
        assert!(
            long > burst + 0.5 && short < burst - 6.0,
            "{short} {burst} {long}"
        );
    }

    #[test]
    fn ppm_type_ii_integration_10ms_reads_minus_2_db() {
        let (steady, burst) = ppm_burst_db(PpmType::TypeII, PPM_REFERENCE_HZ, 0.010);
        assert!((burst - steady + 2.0).abs() < 0.25, "{steady} {burst}");
        let (_, five) = ppm_burst_db(PpmType::TypeII, PPM_REFERENCE_HZ, 0.005);
        assert!(five < burst - 1.0, "{five} {burst}");
    }

    #[test]
    fn ppm_return_times() {
        for (t, db, secs) in [(PpmType::TypeI, 20.0, 1.7), (PpmType::TypeII, 24.0, 2.8)] {
            let b = Ballistics::new(RATE, t, 0.3);
            let mut m = ChannelMeter::default();
            feed(&mut m, &b, &sine(PPM_REFERENCE_HZ, 0.5, RATE as usize, 0));
            let start = m.take(&b).ppm_db;
            feed(&mut m, &b, &vec![0.0; (secs * RATE as f64) as usize]);
            m.take(&b);
            let end = m.take(&b).ppm_db;
            assert!((start - end - db).abs() < 0.1, "{t:?}: {start} -> {end}");
        }
    }

    /// The block-wise display envelope matches the per-sample definition on a signal whose
    /// peaks come in single samples (an envelope hit inside a block is what blocks can miss).
    #[test]
    fn block_display_matches_the_per_sample_definition() {
        let b = Ballistics::new(RATE, PpmType::TypeI, 0.3);
        let mut m = ChannelMeter::default();
        let (mut v, mut hold) = (0f32, 0u32);
        let mut x = 99u32;
        let mut t = 0usize;
        for _ in 0..400 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = 1 + (x % 700) as usize;
            let mut block = vec![0.0f32; len];
            if x.is_multiple_of(3) {
                block[(x as usize / 7) % len] = (x % 1000) as f32 / 1000.0;
            }
            for &s in &block {
                if s.abs() >= v {
                    v = s.abs();
                    hold = b.hold_samples;
                } else if hold > 0 {
                    hold -= 1;
                } else {
                    v *= b.display_fall;
                }
            }
            m.process(&b, &block);
            t += len;
            let got = m.take(&b).display_db;
            assert!(
                (got - lin_to_db(v)).abs() < 0.01 || (v < 1e-6 && got < -100.0),
                "t={t}: {got} vs {}",
                lin_to_db(v)
            );
        }
    }

    #[test]
    fn clip_latches_counts_and_resets() {
        let b = Ballistics::new(RATE, PpmType::TypeI, 0.3);
        let mut m = ChannelMeter::default();
        feed(&mut m, &b, &[0.1, 1.0, -1.5, 0.2, 0.999]);
        feed(&mut m, &b, &vec![0.0; RATE as usize]);
        let r = m.take(&b);
        assert!(r.clipped && r.clip_count == 2, "{r:?}");
        assert!(m.take(&b).clipped, "latch holds across snapshots");
        m.reset_clip();
        let r = m.take(&b);
        assert!(!r.clipped && r.clip_count == 0);
    }

    #[test]
    fn non_finite_input_never_poisons_state() {
        let b = Ballistics::new(RATE, PpmType::TypeII, 0.3);
        let mut m = ChannelMeter::default();
        feed(
            &mut m,
            &b,
            &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5],
        );
        let r = m.take(&b);
        for v in [r.peak_db, r.rms_db, r.display_db, r.ppm_db] {
            assert!(v.is_finite(), "{r:?}");
        }
        assert_eq!(r.clip_count, 2);
    }
}

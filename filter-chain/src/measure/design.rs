//! From measured channels to a deployable, verified room correction: per-channel cut-only
//! corrections against the profile's target (with ISO 226 at the operating SPL), delays that make
//! the bands sum at their crossovers at the listening position, level trims (cut only), a gated
//! set written for `ReloadFilters`, and the verification of a second measurement against the
//! design's targets. docs/measurement.md has the theory and the numbers.
//!
//! The measurement is taken *through the set that was playing* ([`design`]: the profile's own
//! set, crossover, protection high-pass, compensation EQ, target, trims and delays all in;
//! [`design_through`]: any other set of the profile): `M = P F_old`, `P` the speaker in the room.
//! The new set's filter is `F_new = F_own C T_new / T_old` (`T` the target curve, which changes
//! with the operating SPL), so the response after deployment will be `M (F_own / F_old) C T_new /
//! T_old`. The design picks `C` (cut only) to bring that towards the channel's target: its
//! crossover band x protection high-pass x `T_new`, at the channel's own level; trims then bring
//! every channel to the quietest one's level.

use super::arrival::arrival;
use super::correction::{CorrectionCurve, CorrectionParams};
use super::deconvolve::ImpulseResponse;
use super::record::ChannelResult;
use super::response::{log_frequencies, smooth, Response};
use super::spectrum;
use super::MeasureError;
use crate::generate::generate;
use crate::profile::Target;
use crate::response::{crossover_band, lr_highpass, protection_hpf, TargetCurve};
use crate::set::{Manifest, SetError};
use crate::validate::{check_rig, Problems, Rig};
use realfft::num_complex::Complex64;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DesignError {
    #[error("design: {0}")]
    Invalid(String),
    #[error(transparent)]
    Measure(#[from] MeasureError),
    #[error("corrected profile refused:\n{0}")]
    Profile(#[from] Problems),
    #[error(transparent)]
    Set(#[from] SetError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

pub type Result<T> = std::result::Result<T, DesignError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesignOptions {
    /// Cut-only range, smoothing, deepest cut (rooms: up to 500 Hz; speaker EQ: full range).
    pub correction: CorrectionParams,
    /// ISO 226 equal-loudness compensation at this SPL (phon); replaces the profile's own
    /// `target.operating_spl_db` in the corrected set.
    pub operating_spl_db: f64,
    /// Verification: largest deviation from target (dB) where the target is reachable by cutting.
    pub tolerance_db: f64,
    /// Delays and trims from the measured arrivals and levels (false: the profile's stay).
    pub align: bool,
}

impl Default for DesignOptions {
    fn default() -> Self {
        DesignOptions {
            correction: CorrectionParams::default(),
            operating_spl_db: 85.0,
            tolerance_db: 1.5,
            align: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelDesign {
    /// One-based speaker channel.
    pub channel: u32,
    pub correction: CorrectionCurve,
    /// Total delay for the set (profile + alignment), ms.
    pub delay_ms: f64,
    /// Total trim for the set (profile + alignment), dB; never above the profile's trim.
    pub trim_db: f64,
}

impl ChannelDesign {
    /// The deepest cut of the correction, dB (<= 0).
    pub fn max_cut_db(&self) -> f64 {
        self.correction
            .points
            .iter()
            .map(|p| super::db(p.1))
            .fold(0.0, f64::min)
    }
}

/// What verification compares a new measurement of one channel against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelTarget {
    pub channel: u32,
    /// The response expected after deployment where correction reaches (absolute, dB re the
    /// played reference like the measurement): band shape x target at the aligned level.
    pub expected: Response,
    /// Per point of `expected`: the target is reachable by cutting there (inside the correction
    /// range and the channel's passband, not a null, not deeper than the deepest cut).
    pub reachable: Vec<bool>,
    /// The measurement as it will be after deployment without the correction (smoothed), dB:
    /// the "before" of a before/after comparison.
    pub before: Response,
    /// The channel's level (see `robust_level`: measurement - target over its reference band)
    /// before its new trim, dB.
    pub level_db: f64,
    /// Measured arrival (peak) at the listening position, seconds.
    pub arrival_s: f64,
    /// The arrival the alignment used, seconds on a time base common to the measured channels
    /// (see `band_lag_s`, `acoustic_arrival_s`).
    pub alignment_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomDesign {
    pub channels: Vec<ChannelDesign>,
    pub options: DesignOptions,
    /// One per designed channel, same order.
    pub targets: Vec<ChannelTarget>,
}

/// A channel's band shape (crossover band x protection high-pass), dB, at `f`.
fn band_db(rig: &Rig, sp: &crate::profile::Speaker, f: f64) -> f64 {
    let mut m = crossover_band(rig, sp.band, f);
    if let Some((fc, order)) = protection_hpf(rig, sp) {
        m *= lr_highpass(f, fc, order);
    }
    super::db(m)
}

/// Weight of the correction from the band shape: full in the passband, none deep in a stopband
/// (cutting there would only reshape a crossover slope the other band depends on).
fn band_weight(band_db: f64) -> f64 {
    const FULL: f64 = -6.5;
    const NONE: f64 = -20.0;
    if band_db >= FULL {
        1.0
    } else if band_db <= NONE {
        0.0
    } else {
        let u = (FULL - band_db) / (FULL - NONE);
        0.5 + 0.5 * (std::f64::consts::PI * u).cos()
    }
}

/// The level a channel's response sits at, ignoring modes and nulls: the median, then twice the
/// median of the points within 3 dB of the previous estimate (a mode covering a good part of a
/// sub's one-octave passband would otherwise lift a plain median).
fn robust_level(v: Vec<f64>) -> Option<f64> {
    let mut m = median(v.clone())?;
    for _ in 0..2 {
        let near: Vec<f64> = v.iter().copied().filter(|d| (d - m).abs() <= 3.0).collect();
        match median(near) {
            Some(n) => m = n,
            None => break,
        }
    }
    Some(m)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// The profile's target with the design's operating SPL.
fn new_target(t: &Target, opts: &DesignOptions) -> Target {
    Target {
        operating_spl_db: Some(opts.operating_spl_db),
        ..t.clone()
    }
}

/// Regularisation of the division by the played filter, dB under its largest bin: where the
/// filter is deeper (a sub's stopband) the measurement is noise and must not be amplified.
const UNFILTER_FLOOR_DB: f64 = 30.0;

/// The arrival of the sound at the mic without the filter it played through, seconds after the
/// reference (loopback removed, the chain's delay included): the peak of the measured impulse
/// response divided by the played filter's spectrum (regularised), i.e. of the speaker in the
/// room. Used for alignment only where no crossover links two channels (see [`band_lag_s`]).
/// Without an impulse response (synthetic results) the filter's own peak is taken off the
/// measured arrival.
pub fn acoustic_arrival_s(result: &ChannelResult, played_taps: &[f32], rate: f64) -> Result<f64> {
    let Some(first) = result.positions.first() else {
        let ir = ImpulseResponse {
            samples: played_taps.iter().map(|&t| f64::from(t)).collect(),
            rate,
        };
        return Ok(result.arrival_s - arrival(&ir, 0, ir.len() as isize)?.seconds);
    };
    let ir = &first.ir;
    if played_taps.is_empty() || ir.is_empty() || ir.rate != rate {
        return Err(DesignError::Invalid(format!(
            "channel {}: no filter taps, no impulse response, or its rate is not {rate} Hz",
            result.channel
        )));
    }
    // The causal part (harmonic distortion sits at negative times, the end of the buffer), as
    // long as arrivals and the filter can be.
    let h = ir.causal(ALIGN_LEN);
    let n = spectrum::fft_len(h.len() + played_taps.len());
    let taps: Vec<f64> = played_taps.iter().map(|&t| f64::from(t)).collect();
    let (hs, fs) = (spectrum::forward(h, n), spectrum::forward(&taps, n));
    let max = fs.iter().map(|c| c.norm_sqr()).fold(0.0, f64::max);
    let eps = max * super::from_db(-2.0 * UNFILTER_FLOOR_DB);
    let plant: Vec<Complex64> = hs
        .iter()
        .zip(&fs)
        .map(|(y, x)| y * x.conj() / (x.norm_sqr() + eps))
        .collect();
    let search = (h.len() as isize).min(n as isize / 2);
    let p = ImpulseResponse {
        samples: spectrum::inverse(plant, n),
        rate,
    };
    let raw = arrival(&p, 0, search)?.samples;
    // The analysis took its loopback off the measured peak; the same comes off this one.
    let measured_raw = arrival(ir, 0, (ir.len() / 2) as isize)?;
    let loopback = measured_raw.samples - first.arrival.samples;
    Ok((raw - loopback) / rate)
}

/// Samples of each impulse response the alignment looks at (1.4 s at 48 kHz): arrivals lie
/// within 0.5 s, a filter is at most 65,536 taps, and the rest is decay.
const ALIGN_LEN: usize = 1 << 16;

/// Largest lag [`band_lag_s`] considers, seconds.
pub const MAX_LAG_S: f64 = 0.05;

/// How much later channel `a` must be heard than channel `b` (negative: earlier) for the two
/// to sum with the most energy inside `band` (Hz, a raised cosine over log frequency), from
/// their measured impulse responses (position 1), seconds.
///
/// `|A e^{-jwt} + B|^2 = |A|^2 + |B|^2 + 2 Re(A B* e^{-jwt})`: summed over the band, the energy
/// of the sum is largest at the peak of the band-limited cross-correlation. This, not the peaks
/// of the responses, is what aligning two bands of a crossover means: a sub's response has no
/// high frequencies to peak with and its low frequencies come late in any room (roll-off,
/// modes), while a top's peak is its high-frequency direct sound. The measured responses
/// include the played filters, whose phase is part of the sum.
pub fn band_lag_s(a: &ChannelResult, b: &ChannelResult, band: (f64, f64)) -> Result<f64> {
    let (Some(pa), Some(pb)) = (a.positions.first(), b.positions.first()) else {
        return Err(DesignError::Invalid(format!(
            "channels {} and {}: no impulse responses to compare",
            a.channel, b.channel
        )));
    };
    let (ia, ib) = (&pa.ir, &pb.ir);
    let rate = ia.rate;
    let (lo, hi) = band;
    if ib.rate != rate || !(lo > 0.0 && hi > lo && hi < rate / 2.0) {
        return Err(DesignError::Invalid(format!(
            "alignment band {lo}..{hi} Hz at {rate} / {} Hz",
            ib.rate
        )));
    }
    let lag =
        band_lag(ia.causal(ALIGN_LEN), ib.causal(ALIGN_LEN), rate, band).ok_or_else(|| {
            DesignError::Invalid(format!(
                "channels {} and {}: nothing in common in {lo:.0}..{hi:.0} Hz",
                a.channel, b.channel
            ))
        })?;
    // Loopback is the same for both channels of one measurement: it cancels.
    Ok(lag / rate)
}

/// The lag of `ha` against `hb` (samples) at the peak of their cross-correlation in `band`
/// (raised cosine over log frequency), within +-[`MAX_LAG_S`]; None if they share nothing there.
fn band_lag(ha: &[f64], hb: &[f64], rate: f64, (lo, hi): (f64, f64)) -> Option<f64> {
    let n = spectrum::fft_len(ha.len().max(hb.len()) * 2);
    let (sa, sb) = (spectrum::forward(ha, n), spectrum::forward(hb, n));
    let centre = (lo * hi).sqrt();
    let half = (hi / centre).log2();
    let cross: Vec<Complex64> = sa
        .iter()
        .zip(&sb)
        .enumerate()
        .map(|(k, (x, y))| {
            let f = k as f64 * rate / n as f64;
            let u = if f > 0.0 {
                (f / centre).log2() / half
            } else {
                2.0
            };
            let w = if u.abs() < 1.0 {
                (std::f64::consts::FRAC_PI_2 * u).cos().powi(2)
            } else {
                0.0
            };
            x * y.conj() * w
        })
        .collect();
    let r = spectrum::inverse(cross, n);
    let max_lag = ((MAX_LAG_S * rate) as isize).min(n as isize / 2 - 1);
    let at = |l: isize| r[l.rem_euclid(n as isize) as usize];
    let best = (-max_lag..=max_lag)
        .max_by(|&x, &y| at(x).total_cmp(&at(y)))
        .unwrap_or(0);
    if at(best) <= 0.0 {
        return None;
    }
    let (y0, y1, y2) = (at(best - 1), at(best), at(best + 1));
    let d = y0 - 2.0 * y1 + y2;
    let frac = if d < 0.0 { 0.5 * (y0 - y2) / d } else { 0.0 };
    Some(best as f64 + frac)
}

/// The alignment band around a crossover: an octave either side.
pub fn crossover_band_hz(fc: f64) -> (f64, f64) {
    (fc / 2.0, fc * 2.0)
}

/// Arrivals of the measured channels on one time base, for alignment. Channels of bands `k` and
/// `k + 1` meet at crossover `k` and are timed against one reference channel there by
/// [`band_lag_s`]; the next crossover's reference is a channel of the band between the two, so
/// the times chain up. Without crossovers, without impulse responses, or when a band that links
/// two crossovers was not measured, every channel's own acoustic arrival is used.
fn alignment_arrivals(
    rig: &Rig,
    results: &[ChannelResult],
    taps_of: &dyn Fn(u32) -> Result<Vec<f32>>,
) -> Result<Vec<f64>> {
    let p = &rig.profile;
    let rate = f64::from(p.sample_rate);
    let band_of = |r: &ChannelResult| {
        p.speakers
            .iter()
            .find(|s| s.channel as usize == r.channel)
            .map(|s| s.band as usize)
            .unwrap_or(1)
    };
    let bands: Vec<usize> = results.iter().map(band_of).collect();
    let (lo_band, hi_band) = (
        *bands.iter().min().unwrap_or(&1),
        *bands.iter().max().unwrap_or(&1),
    );
    let linked = (lo_band + 1..hi_band).all(|b| bands.contains(&b));
    let with_ir = results.iter().all(|r| !r.positions.is_empty());
    if p.crossovers.is_empty() || !linked || !with_ir {
        return results
            .iter()
            .map(|r| acoustic_arrival_s(r, &taps_of(r.channel as u32)?, rate))
            .collect();
    }
    // Crossover k (0-based) lies between bands k + 1 and k + 2 (1-based); a channel of band b
    // is timed at crossover b - 2 (band 1: crossover 0).
    let xo = |b: usize| b.max(2) - 2;
    let last = p.crossovers.len() - 1;
    let mut t: Vec<Option<f64>> = vec![None; results.len()];
    let first_k = xo(lo_band).min(last);
    for k in first_k..=xo(hi_band).min(last) {
        let band = crossover_band_hz(p.crossovers[k].freq_hz);
        // The reference: a channel of band k + 2 timed already (k > first_k), else the first
        // channel of band k + 1 or k + 2 at time 0.
        let members: Vec<usize> = (0..results.len())
            .filter(|&i| xo(bands[i]).min(last) == k || (bands[i] == k + 1 && k == first_k))
            .collect();
        let reference = (0..results.len())
            .find(|&i| t[i].is_some() && bands[i] == k + 1)
            .or_else(|| members.first().copied());
        let Some(r) = reference else { continue };
        let t_ref = t[r].unwrap_or(0.0);
        for i in members {
            if t[i].is_none() {
                t[i] = Some(if i == r {
                    t_ref
                } else {
                    t_ref + band_lag_s(&results[i], &results[r], band)?
                });
            }
        }
    }
    t.into_iter()
        .zip(results)
        .map(|(v, r)| {
            v.ok_or_else(|| {
                DesignError::Invalid(format!("channel {}: not timed at any crossover", r.channel))
            })
        })
        .collect()
}

/// Designs corrections, delays and trims for the measured channels of `rig`.
pub fn design(rig: &Rig, results: &[ChannelResult], opts: &DesignOptions) -> Result<RoomDesign> {
    design_impl(rig, None, results, opts)
}

/// [`design`] for a measurement taken through another set of the same profile (`played_set`, a
/// set directory: e.g. an earlier corrected set that is still playing). The played filters'
/// magnitude is divided out against the profile's own filters, and its delays and trims are the
/// base the new ones build on, so the result is the same as measured through the profile's own
/// set: a room is never corrected twice.
pub fn design_through(
    rig: &Rig,
    played_set: &Path,
    results: &[ChannelResult],
    opts: &DesignOptions,
) -> Result<RoomDesign> {
    let m = crate::set::read_manifest(played_set)?;
    if m.profile_name != rig.profile.name || m.sample_rate != rig.profile.sample_rate {
        return Err(DesignError::Invalid(format!(
            "set {} is for \"{}\" at {} Hz, the profile is \"{}\" at {} Hz",
            played_set.display(),
            m.profile_name,
            m.sample_rate,
            rig.profile.name,
            rig.profile.sample_rate
        )));
    }
    let mut played = Vec::new();
    for r in results {
        let c = m
            .channels
            .iter()
            .find(|c| c.channel as usize == r.channel)
            .ok_or_else(|| {
                DesignError::Invalid(format!(
                    "channel {} is not in set {}",
                    r.channel,
                    played_set.display()
                ))
            })?;
        let (taps, _) = crate::set::read_wav(&played_set.join(&c.file))?;
        played.push(Played {
            channel: c.channel,
            taps,
            delay_ms: c.delay_ms,
            trim_db: c.trim_db,
        });
    }
    design_impl(rig, Some(played), results, opts)
}

/// One channel as it played during the measurement.
struct Played {
    channel: u32,
    taps: Vec<f32>,
    delay_ms: f64,
    trim_db: f64,
}

/// Magnitude of `taps` at `f`, dB.
fn taps_db(taps: &[f32], f: f64, rate: f64) -> f64 {
    let t: Vec<f64> = taps.iter().map(|&v| f64::from(v)).collect();
    let w = vec![1.0; t.len()];
    super::db(spectrum::dtft_at(&t, 0, &w, f, rate).norm())
}

fn design_impl(
    rig: &Rig,
    played_set: Option<Vec<Played>>,
    results: &[ChannelResult],
    opts: &DesignOptions,
) -> Result<RoomDesign> {
    let p = &rig.profile;
    let cp = &opts.correction;
    cp.validate()?;
    if !(opts.operating_spl_db.is_finite() && (20.0..=120.0).contains(&opts.operating_spl_db)) {
        return Err(DesignError::Invalid(format!(
            "operating SPL {} dB: ISO 226 covers 20..=120 phon",
            opts.operating_spl_db
        )));
    }
    if !(opts.tolerance_db.is_finite() && opts.tolerance_db > 0.0) {
        return Err(DesignError::Invalid(format!(
            "tolerance {} dB must be positive",
            opts.tolerance_db
        )));
    }
    if results.is_empty() {
        return Err(DesignError::Invalid("no measured channels".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in results {
        if !seen.insert(r.channel) {
            return Err(DesignError::Invalid(format!(
                "channel {} measured twice",
                r.channel
            )));
        }
        if !p.speakers.iter().any(|s| s.channel as usize == r.channel) {
            return Err(DesignError::Invalid(format!(
                "channel {} is not a speaker channel of profile \"{}\"",
                r.channel, p.name
            )));
        }
        if r.response.freqs.is_empty() || r.response.freqs.len() != r.response.db.len() {
            return Err(DesignError::Invalid(format!(
                "channel {}: empty response",
                r.channel
            )));
        }
    }
    let rate = f64::from(p.sample_rate);
    // The filters the measurement played through: the profile's own set. Their peaks come off
    // the measured arrivals before aligning: a sub's low-pass peaks ~15 ms after its onset, while
    // the bands of a Linkwitz-Riley crossover share their phase, so aligning the peaks would put
    // the tops that far behind the subs.
    // Only the measured channels' filters are needed (each is designed on its own; the global
    // attenuation may differ without the others, which only scales them: they serve timing).
    let mut measured_rig = rig.clone();
    measured_rig
        .profile
        .speakers
        .retain(|s| results.iter().any(|r| r.channel == s.channel as usize));
    let mut plain = generate(&measured_rig, None, &|_| {}).map_err(|f| {
        DesignError::Invalid(format!(
            "the profile's own filters fail their gates: {}",
            f.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    // As in the full rig: its global attenuation may be deeper (a boosted speaker not measured).
    let scale = super::from_db(rig.global_attenuation_db() - measured_rig.global_attenuation_db());
    for f in &mut plain {
        f.taps
            .iter_mut()
            .for_each(|t| *t = (f64::from(*t) * scale) as f32);
    }
    let through_other = played_set.is_some();
    let played: Vec<Played> = match played_set {
        Some(v) => v,
        None => plain
            .iter()
            .map(|f| {
                let sp = &p
                    .speakers
                    .iter()
                    .find(|s| s.channel == f.channel)
                    .expect("generated");
                Played {
                    channel: f.channel,
                    taps: f.taps.clone(),
                    delay_ms: sp.delay_ms,
                    trim_db: sp.trim_db,
                }
            })
            .collect(),
    };
    let played_of = |ch: u32| -> Result<&Played> {
        played
            .iter()
            .find(|f| f.channel == ch)
            .ok_or_else(|| DesignError::Invalid(format!("channel {ch}: no filter")))
    };
    let taps_of = |ch: u32| -> Result<Vec<f32>> { Ok(played_of(ch)?.taps.clone()) };
    // Measured through another set: what the profile's own set would have given.
    let adjusted: Vec<ChannelResult>;
    let results = if through_other {
        adjusted = results
            .iter()
            .map(|r| {
                let ch = r.channel as u32;
                let own = &plain
                    .iter()
                    .find(|f| f.channel == ch)
                    .expect("generated for every measured channel")
                    .taps;
                let pl = played_of(ch)?;
                let sp = p
                    .speakers
                    .iter()
                    .find(|s| s.channel == ch)
                    .expect("checked");
                let mut a = r.clone();
                for (f, d) in a.response.freqs.iter().zip(a.response.db.iter_mut()) {
                    *d += taps_db(own, *f, rate) - taps_db(&pl.taps, *f, rate) + sp.trim_db
                        - pl.trim_db;
                }
                Ok(a)
            })
            .collect::<Result<Vec<_>>>()?;
        &adjusted[..]
    } else {
        results
    };
    let acoustic = alignment_arrivals(rig, results, &taps_of)?;
    let t_old = TargetCurve::new(&p.target, rate);
    let t_new = TargetCurve::new(&new_target(&p.target, opts), rate);

    struct Pre {
        channel: u32,
        arrival_s: f64,
        level_db: f64,
        curve: CorrectionCurve,
        target: ChannelTarget,
    }
    let mut pre = Vec::new();
    for (r, &acoustic_s) in results.iter().zip(&acoustic) {
        let sp = p
            .speakers
            .iter()
            .find(|s| s.channel as usize == r.channel)
            .expect("checked above");
        let shape = |f: f64| band_db(rig, sp, f) + t_new.db(f);
        // The measurement relative to the channel's target shape, smoothed as a ratio (smoothing
        // the steep crossover slopes themselves would lift them and read as excess). The old
        // target comes out, the new one is in `shape`: the change of operating SPL is applied.
        let residual = Response {
            freqs: r.response.freqs.clone(),
            db: r
                .response
                .freqs
                .iter()
                .zip(&r.response.db)
                .map(|(&f, &d)| d - t_old.db(f) - band_db(rig, sp, f))
                .collect(),
        };
        let smoothed = smooth(&residual, cp.smoothing_n)?;
        // Level: over the reference band where it lies in the passband, else over the passband
        // inside the correction range (a sub has no energy at 500 Hz); see `robust_level`.
        let pass = |f: f64| band_db(rig, sp, f) >= -3.0;
        let excess_in = |lo: f64, hi: f64| -> Vec<f64> {
            smoothed
                .freqs
                .iter()
                .zip(&smoothed.db)
                .filter(|(f, _)| (lo..=hi).contains(*f) && pass(**f))
                .map(|(_, &d)| d)
                .collect()
        };
        let per_oct = |lo: f64, hi: f64| {
            let n = smoothed
                .freqs
                .iter()
                .filter(|f| (lo..=hi).contains(*f))
                .count();
            n as f64 / (hi / lo).log2().max(1e-9)
        };
        let in_ref = excess_in(cp.reference_lo_hz, cp.reference_hi_hz);
        // At least a third of the reference band in the passband.
        let ref_ok = !in_ref.is_empty()
            && in_ref.len() as f64
                >= per_oct(cp.reference_lo_hz, cp.reference_hi_hz)
                    * (cp.reference_hi_hz / cp.reference_lo_hz).log2()
                    / 3.0;
        let level_db = if ref_ok {
            robust_level(in_ref)
        } else {
            robust_level(excess_in(cp.lo_hz, cp.hi_hz))
                .or_else(|| robust_level(excess_in(0.0, f64::MAX)))
        }
        .ok_or_else(|| {
            DesignError::Invalid(format!(
                "channel {}: no measured point in its passband",
                r.channel
            ))
        })?;

        let edge = 2f64.powf(cp.transition_oct);
        let mut points: Vec<(f64, f64)> =
            log_frequencies(cp.lo_hz / edge, cp.hi_hz * edge, cp.points_per_octave)
                .into_iter()
                .map(|f| {
                    let excess = smoothed.at(f) - level_db;
                    let w = super::correction::weight(f, cp) * band_weight(band_db(rig, sp, f));
                    let cut = (-excess).clamp(-cp.max_cut_db, 0.0) * w;
                    (f, super::from_db(cut).min(1.0))
                })
                .collect();
        if points.last().is_some_and(|l| l.0 < cp.hi_hz * edge) {
            points.push((cp.hi_hz * edge, 1.0));
        }
        let reachable = smoothed
            .freqs
            .iter()
            .zip(&smoothed.db)
            .map(|(&f, &d)| {
                let excess = d - level_db;
                super::correction::weight(f, cp) >= 1.0
                    && band_weight(band_db(rig, sp, f)) >= 1.0
                    && excess >= -opts.tolerance_db
                    && excess <= cp.max_cut_db
            })
            .collect();
        pre.push(Pre {
            channel: sp.channel,
            arrival_s: acoustic_s,
            level_db,
            curve: CorrectionCurve { points },
            target: ChannelTarget {
                channel: sp.channel,
                expected: Response {
                    freqs: smoothed.freqs.clone(),
                    db: smoothed
                        .freqs
                        .iter()
                        .map(|&f| shape(f) + level_db)
                        .collect(),
                },
                reachable,
                arrival_s: r.arrival_s,
                alignment_s: acoustic_s,
                before: Response {
                    freqs: smoothed.freqs.clone(),
                    db: smoothed
                        .freqs
                        .iter()
                        .zip(&smoothed.db)
                        .map(|(&f, &d)| d + shape(f))
                        .collect(),
                },
                level_db,
            },
        });
    }

    let latest = pre.iter().map(|c| c.arrival_s).fold(f64::MIN, f64::max);
    let quietest = pre.iter().map(|c| c.level_db).fold(f64::MAX, f64::min);
    let mut channels = Vec::new();
    let mut targets = Vec::new();
    for c in pre {
        let sp = p
            .speakers
            .iter()
            .find(|s| s.channel == c.channel)
            .expect("checked above");
        // The measured arrivals contain the delays that played; the levels were brought to the
        // profile's trims above.
        let base_delay = played_of(c.channel)?.delay_ms;
        let (delay_ms, trim_db) = if opts.align {
            (
                base_delay + (latest - c.arrival_s) * 1000.0,
                sp.trim_db + (quietest - c.level_db),
            )
        } else {
            (sp.delay_ms, sp.trim_db)
        };
        let mut target = c.target;
        if opts.align {
            let shift = quietest - c.level_db;
            target.expected.db.iter_mut().for_each(|d| *d += shift);
            target.before.db.iter_mut().for_each(|d| *d += shift);
        }
        channels.push(ChannelDesign {
            channel: c.channel,
            correction: c.curve,
            delay_ms,
            trim_db,
        });
        targets.push(target);
    }
    if opts.align && !p.crossovers.is_empty() {
        compensate_correction_phase(&measured_rig, opts, &played, &mut channels)?;
    }
    if opts.align {
        let min = channels.iter().map(|c| c.delay_ms).fold(f64::MAX, f64::min);
        // Every speaker measured: the common part of the delays is latency nobody needs. Else
        // the unmeasured keep theirs, and the measured are only lifted if one went negative.
        if p.speakers.len() == channels.len() || min < 0.0 {
            channels.iter_mut().for_each(|c| c.delay_ms -= min);
        }
    }
    Ok(RoomDesign {
        channels,
        options: opts.clone(),
        targets,
    })
}

/// A cut is minimum phase: it moves its channel's phase at the crossover a little (a sub's cut
/// of a mode just below 80 Hz: a quarter of a millisecond). Each channel's delay is corrected by
/// how much later its corrected filter sums than the played one in the band it was aligned in,
/// so the alignment measured through the played filters holds for the corrected ones.
fn compensate_correction_phase(
    measured_rig: &Rig,
    opts: &DesignOptions,
    played: &[Played],
    channels: &mut [ChannelDesign],
) -> Result<()> {
    let mut rig = measured_rig.clone();
    rig.profile.target = new_target(&rig.profile.target, opts);
    let lags = corrected_lags(&rig, played, channels)?;
    let rate = f64::from(rig.profile.sample_rate);
    for (c, lag) in channels.iter_mut().zip(lags) {
        c.delay_ms -= lag / rate * 1000.0;
    }
    Ok(())
}

/// Per channel: how much later (samples) its corrected filter sums than the played one.
fn corrected_lags(rig: &Rig, played: &[Played], channels: &[ChannelDesign]) -> Result<Vec<f64>> {
    fn gain_of(c: &CorrectionCurve) -> impl Fn(f64) -> f64 + Sync + '_ {
        move |hz| c.gain_at(hz)
    }
    let gains: Vec<_> = channels
        .iter()
        .map(|c| (c.channel, gain_of(&c.correction)))
        .collect();
    let lookup = |ch: u32| -> Option<crate::response::Correction<'_>> {
        gains.iter().find(|g| g.0 == ch).map(|g| &g.1 as _)
    };
    let corrected = generate(rig, Some(&lookup), &|_| {}).map_err(|f| {
        DesignError::Invalid(format!(
            "a corrected filter fails its gates: {}",
            f.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let rate = f64::from(rig.profile.sample_rate);
    let xos = &rig.profile.crossovers;
    let last = xos.len() - 1;
    let f64s = |t: &[f32]| t.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    // How much later channel `ch`'s corrected filter sums than its played one at crossover k.
    let lag_at = |ch: u32, k: usize| -> f64 {
        match (
            played.iter().find(|f| f.channel == ch),
            corrected.iter().find(|f| f.channel == ch),
        ) {
            (Some(old), Some(new)) => band_lag(
                &f64s(&new.taps),
                &f64s(&old.taps),
                rate,
                crossover_band_hz(xos[k].freq_hz),
            )
            .unwrap_or(0.0),
            _ => 0.0,
        }
    };
    let band_of = |ch: u32| {
        rig.profile
            .speakers
            .iter()
            .find(|s| s.channel == ch)
            .map(|s| s.band as usize)
            .unwrap_or(1)
    };
    // As in `alignment_arrivals`: a channel of band b is aligned at crossover b - 2 (band 1 at
    // 0). A middle band meets two crossovers with one delay: what its correction moves at the
    // upper one more than at the lower one, the bands above take over.
    let xo = |b: usize| (b.max(2) - 2).min(last);
    let mut extra = vec![0.0; xos.len()];
    for k in 1..xos.len() {
        let bridge: Vec<f64> = channels
            .iter()
            .filter(|c| band_of(c.channel) == k + 1)
            .map(|c| lag_at(c.channel, k) - lag_at(c.channel, k - 1))
            .collect();
        let drift = if bridge.is_empty() {
            0.0
        } else {
            bridge.iter().sum::<f64>() / bridge.len() as f64
        };
        extra[k] = extra[k - 1] + drift;
    }
    Ok(channels
        .iter()
        .map(|c| {
            let k = xo(band_of(c.channel));
            lag_at(c.channel, k) - extra[k]
        })
        .collect())
}

/// Writes a new gated set for `design` under `sets_dir` (as `<tag>-<millis>`; the same layout as
/// `set::write_set`), for `ReloadFilters`: the profile at `profile_path` (same name, channels and
/// speakers) with the design's delays, trims and operating SPL, each designed channel's filter
/// multiplied by its correction. Nothing is written unless every filter passes every gate.
pub fn write_corrected_set(
    profile_path: &Path,
    design: &RoomDesign,
    sets_dir: &Path,
    tag: &str,
) -> Result<(PathBuf, Manifest)> {
    let rig = crate::validate::load_rig(profile_path, None)?;
    write_corrected_set_for(&rig, design, sets_dir, tag)
}

/// [`write_corrected_set`] for an already loaded rig.
pub fn write_corrected_set_for(
    rig: &Rig,
    design: &RoomDesign,
    sets_dir: &Path,
    tag: &str,
) -> Result<(PathBuf, Manifest)> {
    let mut profile = rig.profile.clone();
    for c in &design.channels {
        let sp = profile
            .speakers
            .iter_mut()
            .find(|s| s.channel == c.channel)
            .ok_or_else(|| {
                DesignError::Invalid(format!(
                    "channel {} is not a speaker channel of profile \"{}\"",
                    c.channel, profile.name
                ))
            })?;
        if c.correction
            .points
            .iter()
            .any(|p| !(p.1 > 0.0 && p.1 <= 1.0))
        {
            return Err(DesignError::Invalid(format!(
                "channel {}: a correction gain outside (0, 1] (room correction only cuts)",
                c.channel
            )));
        }
        // Rounded so the profile text stays readable; 1 us and 0.001 dB are far below audibility.
        sp.delay_ms = (c.delay_ms * 1000.0).round() / 1000.0;
        sp.trim_db = (c.trim_db * 1000.0).round() / 1000.0;
    }
    profile.target = new_target(&profile.target, &design.options);
    let text = format!(
        "# Generated by mugge's room correction from {}: delays, trims and operating SPL measured.\n{}",
        rig.file,
        toml::to_string(&profile)
            .map_err(|e| DesignError::Invalid(format!("profile to TOML: {e}")))?
    );
    // Validated like any profile: delays and trims stay in their ranges or nothing is written.
    let ids = &rig.identities;
    let source = |id: &str| {
        ids.get(id)
            .and_then(|i| toml::to_string(i).ok())
            .map(|t| (format!("{id} (as loaded)"), t))
    };
    let mut new_rig = check_rig(&rig.file, &text, &source)?;
    new_rig.file = rig.file.clone();

    std::fs::create_dir_all(sets_dir).map_err(|e| DesignError::Io(sets_dir.into(), e))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut out = sets_dir.join(format!("{tag}-{stamp}"));
    let mut k = 1;
    while out.exists() {
        out = sets_dir.join(format!("{tag}-{stamp}-{k}"));
        k += 1;
    }
    fn gain_of(c: &CorrectionCurve) -> impl Fn(f64) -> f64 + Sync + '_ {
        move |hz| c.gain_at(hz)
    }
    let gains: Vec<_> = design
        .channels
        .iter()
        .map(|c| (c.channel, gain_of(&c.correction)))
        .collect();
    let lookup = |ch: u32| -> Option<crate::response::Correction<'_>> {
        gains.iter().find(|g| g.0 == ch).map(|g| &g.1 as _)
    };
    let m = crate::set::write_set(&new_rig, &text, &out, tag, Some(&lookup), &|_| {})?;
    Ok((out, m))
}

/// Deviation of a new measurement from the design's target in one band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandDeviation {
    pub lo_hz: f64,
    pub hi_hz: f64,
    /// Measured - expected, dB (mean over the band's points).
    pub deviation_db: f64,
    /// The target is reachable by cutting in this band: it counts for pass/fail.
    pub reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelVerify {
    pub channel: u32,
    pub bands: Vec<BandDeviation>,
    /// Largest |deviation| over the reachable bands, dB.
    pub max_abs_db: f64,
    /// The designed correction boosts somewhere (must never happen).
    pub boosted: bool,
    pub pass: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub tolerance_db: f64,
    pub channels: Vec<ChannelVerify>,
    pub pass: bool,
}

/// 1/3-octave bands (base-2 centres around 1 kHz) covering `[lo, hi]`.
pub fn third_octave_bands(lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let edge = 2f64.powf(1.0 / 6.0);
    (-30..=15)
        .map(|k| 1000.0 * 2f64.powf(f64::from(k) / 3.0))
        .filter(|c| *c * edge >= lo && *c / edge <= hi)
        .map(|c| (c / edge, c * edge))
        .collect()
}

/// Compares a measurement taken after deployment (`after`, through the corrected set) with the
/// design's targets, per 1/3 octave. A band counts where at least half of its points are
/// reachable; its deviation is the mean over those points of (smoothed measured - expected).
pub fn verify(design: &RoomDesign, after: &[ChannelResult]) -> VerifyReport {
    let tol = design.options.tolerance_db;
    let mut channels = Vec::new();
    for (cd, t) in design.channels.iter().zip(&design.targets) {
        let boosted = cd.correction.points.iter().any(|p| p.1 > 1.0 + 1e-12);
        let Some(r) = after.iter().find(|r| r.channel == cd.channel as usize) else {
            channels.push(ChannelVerify {
                channel: cd.channel,
                bands: Vec::new(),
                max_abs_db: f64::INFINITY,
                boosted,
                pass: false,
            });
            continue;
        };
        let measured = smooth(&r.response, design.options.correction.smoothing_n)
            .unwrap_or_else(|_| r.response.clone());
        let (lo, hi) = (
            *t.expected.freqs.first().unwrap_or(&20.0),
            *t.expected.freqs.last().unwrap_or(&20_000.0),
        );
        let mut bands = Vec::new();
        for (blo, bhi) in third_octave_bands(lo, hi) {
            let idx: Vec<usize> = (0..t.expected.freqs.len())
                .filter(|&i| (blo..bhi).contains(&t.expected.freqs[i]))
                .collect();
            if idx.is_empty() {
                continue;
            }
            let reach: Vec<usize> = idx.iter().copied().filter(|&i| t.reachable[i]).collect();
            let reachable = reach.len() * 2 >= idx.len();
            let use_idx = if reachable { &reach } else { &idx };
            let dev = use_idx
                .iter()
                .map(|&i| {
                    let f = t.expected.freqs[i];
                    measured.at(f) - t.expected.db[i]
                })
                .sum::<f64>()
                / use_idx.len() as f64;
            bands.push(BandDeviation {
                lo_hz: blo,
                hi_hz: bhi,
                deviation_db: dev,
                reachable,
            });
        }
        let max_abs_db = bands
            .iter()
            .filter(|b| b.reachable)
            .map(|b| b.deviation_db.abs())
            .fold(0.0, f64::max);
        let pass = !boosted && max_abs_db <= tol;
        channels.push(ChannelVerify {
            channel: cd.channel,
            bands,
            max_abs_db,
            boosted,
            pass,
        });
    }
    let pass = !channels.is_empty() && channels.iter().all(|c| c.pass);
    VerifyReport {
        tolerance_db: tol,
        channels,
        pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::correction::CorrectionParams;
    use crate::measure::db;
    use crate::validate::load_rig;

    fn conf() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
    }

    fn rig() -> Rig {
        load_rig(&conf().join("profiles/2way-80hz-sealed-subs.toml"), None).unwrap()
    }

    /// A bump of `gain_db` at `fc`, Gaussian over log2 frequency with `width` octaves sigma.
    fn bump(f: f64, fc: f64, gain_db: f64, width: f64) -> f64 {
        gain_db * (-((f / fc).log2() / width).powi(2) / 2.0).exp()
    }

    /// What the mic hears through the profile's own set: band shape x old target x `room`, at
    /// `level` dB, arriving at `arrival_ms`.
    fn measured(
        rig: &Rig,
        channel: u32,
        level: f64,
        arrival_ms: f64,
        room: &dyn Fn(f64) -> f64,
    ) -> ChannelResult {
        let sp = rig
            .profile
            .speakers
            .iter()
            .find(|s| s.channel == channel)
            .unwrap();
        let t = TargetCurve::new(&rig.profile.target, 48_000.0);
        let freqs = log_frequencies(20.0, 20_000.0, 48);
        let db = freqs
            .iter()
            .map(|&f| band_db(rig, sp, f) + t.db(f) + level + room(f))
            .collect();
        ChannelResult {
            channel: channel as usize,
            positions: Vec::new(),
            response: Response { freqs, db },
            arrival_s: arrival_ms / 1000.0,
        }
    }

    fn modes(f: f64) -> f64 {
        bump(f, 45.0, 9.0, 0.12) + bump(f, 180.0, 6.0, 0.1) + bump(f, 110.0, -14.0, 0.05)
    }

    #[test]
    fn modes_are_cut_nulls_left_alone_delays_and_trims_align() {
        let rig = rig();
        let results = vec![
            measured(&rig, 1, -20.0, 10.0, &modes),
            measured(&rig, 2, -22.0, 10.5, &modes),
            measured(&rig, 3, -18.0, 12.0, &modes),
            measured(&rig, 4, -19.0, 11.0, &|_| 0.0),
        ];
        let d = design(&rig, &results, &DesignOptions::default()).unwrap();
        for c in &d.channels {
            assert!(c.correction.max_gain() <= 1.0, "channel {}", c.channel);
        }
        let ch = |n: u32| d.channels.iter().find(|c| c.channel == n).unwrap();
        // The sub's 45 Hz mode is cut by about its height; the 110 Hz null is not filled.
        let sub = ch(3);
        assert!(db(sub.correction.gain_at(45.0)) < -7.0);
        assert!(db(ch(1).correction.gain_at(180.0)) < -4.5);
        assert!(db(ch(1).correction.gain_at(110.0)).abs() < 1e-9);
        assert!(ch(4).max_cut_db() > -0.5, "{}", ch(4).max_cut_db());
        // Arrivals 10, 10.5, 12, 11 ms include the profile's delays 2.5, 2.5, 0, 0 and the
        // played filters' own peaks (a sub's low-pass peaks late): without those peaks, each
        // channel is delayed to the latest, and with every speaker measured the smallest total
        // delay is 0.
        let acoustic: Vec<f64> = [10.0, 10.5, 12.0, 11.0]
            .iter()
            .zip(&d.targets)
            .map(|(a, t)| {
                assert!((t.arrival_s * 1000.0 - a).abs() < 1e-12);
                t.alignment_s * 1000.0
            })
            .collect();
        // The sub's filter peaks late, a top's early.
        assert!(d.targets[2].arrival_s - d.targets[2].alignment_s > 0.005);
        assert!(d.targets[0].arrival_s - d.targets[0].alignment_s < 0.002);
        let latest = acoustic.iter().cloned().fold(f64::MIN, f64::max);
        let want: Vec<f64> = [2.5, 2.5, 0.0, 0.0]
            .iter()
            .zip(&acoustic)
            .map(|(p, a)| p + latest - a)
            .collect();
        let min = want.iter().cloned().fold(f64::MAX, f64::min);
        let got_min = d
            .channels
            .iter()
            .map(|c| c.delay_ms)
            .fold(f64::MAX, f64::min);
        assert_eq!(got_min, 0.0);
        // Within what the cuts' and the target change's phase at the crossover move (a 9 dB
        // cut of a 45 Hz mode and 10 phon more bass: 0.35 ms).
        for (c, w) in d.channels.iter().zip(want) {
            assert!(
                (c.delay_ms - (w - min)).abs() < 0.5,
                "channel {}: {} vs {}",
                c.channel,
                c.delay_ms,
                w - min
            );
        }
        // Levels -20, -22, -18, -19 (trims -0, -0, -1, -1 in the profile): to the quietest.
        let want = [-2.0, 0.0, -1.0 - 4.0, -1.0 - 3.0];
        for (c, w) in d.channels.iter().zip(want) {
            // The sub's mode lifts its level estimate a little.
            assert!(
                (c.trim_db - w).abs() < 0.5,
                "channel {}: {}",
                c.channel,
                c.trim_db
            );
        }
    }

    #[test]
    fn the_corrected_set_carries_corrections_delays_and_trims_and_passes_the_gates() {
        let rig = rig();
        let results = vec![
            measured(&rig, 1, -20.0, 10.0, &modes),
            measured(&rig, 2, -22.0, 10.5, &modes),
            measured(&rig, 3, -18.0, 12.0, &modes),
            measured(&rig, 4, -19.0, 11.0, &|_| 0.0),
        ];
        let d = design(&rig, &results, &DesignOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let profile = conf().join("profiles/2way-80hz-sealed-subs.toml");
        let (out, m) = write_corrected_set(&profile, &d, dir.path(), "b").unwrap();
        assert!(out.starts_with(dir.path()));
        assert_eq!(m.profile_name, rig.profile.name);
        // The set on disk re-checks: hashes, every gate on the stored taps, no IIR.
        let (back, reports) = crate::set::verify(&out).unwrap();
        assert_eq!(
            (back.set_id, back.profile),
            (m.set_id.clone(), m.profile.clone())
        );
        assert_eq!(reports.len(), 4);
        let conf_text = std::fs::read_to_string(out.join(crate::set::CONFIG)).unwrap();
        for c in &d.channels {
            let mc = m.channels.iter().find(|x| x.channel == c.channel).unwrap();
            assert!((mc.delay_ms - c.delay_ms).abs() < 1e-3);
            assert!((mc.trim_db - c.trim_db).abs() < 1e-3);
            // The chain applies them: the config's controls are the manifest's.
            let mult = format!("{:.9}", 10f64.powf(mc.trim_db / 20.0));
            assert!(
                conf_text.contains(&format!(
                    "name = ch{}_gain label = linear control = {{ \"Mult\" = {mult}",
                    c.channel
                )),
                "channel {} Mult {mult}",
                c.channel
            );
            if mc.delay_samples > 0 {
                let s = crate::config::delay_control_s(mc.delay_samples, m.sample_rate);
                assert!(conf_text.contains(&format!(
                    "name = ch{}_delay label = delay config = {{ \"max-delay\" = 0.2 }} control = {{ \"Delay (s)\" = {s:.9}",
                    c.channel
                )));
            }
        }
        // Different from the profile's own: new delays, and the sub is trimmed.
        for (mc, c) in m.channels.iter().zip(&d.channels) {
            assert_eq!(
                mc.delay_samples,
                crate::config::delay_samples(c.delay_ms, 48_000)
            );
        }
        assert!(m
            .channels
            .iter()
            .zip(&rig.profile.speakers)
            .any(|(c, s)| (c.delay_ms - s.delay_ms).abs() > 0.1));
        assert!(m.channels[2].trim_db < -4.0);
        assert_eq!(m.profile.target.operating_spl_db, Some(85.0));

        // The filter really carries the cut: the sub's 45 Hz mode is down against the same
        // channel of the profile's own set.
        let plain = dir.path().join("plain");
        let text = std::fs::read_to_string(&profile).unwrap();
        crate::set::write_set(&rig, &text, &plain, "a", None, &|_| {}).unwrap();
        let mag = |dir: &Path, f: f64| {
            let (taps, _) = crate::set::read_wav(&dir.join("ch3.wav")).unwrap();
            let t: Vec<f64> = taps.iter().map(|&v| f64::from(v)).collect();
            let w = vec![1.0; t.len()];
            db(crate::measure::spectrum::dtft_at(&t, 0, &w, f, 48_000.0).norm())
        };
        let cut = mag(&out, 45.0) - mag(&plain, 45.0);
        let want = db(d.channels[2].correction.gain_at(45.0))
            + TargetCurve::new(&m.profile.target, 48_000.0).db(45.0)
            - TargetCurve::new(&rig.profile.target, 48_000.0).db(45.0);
        assert!((cut - want).abs() < 0.3, "{cut} vs {want}");
    }

    #[test]
    fn bad_input_is_refused_and_writes_nothing() {
        let rig = rig();
        let ok = vec![measured(&rig, 1, -20.0, 10.0, &modes)];
        assert!(design(&rig, &[], &DesignOptions::default()).is_err());
        let twice = vec![ok[0].clone(), ok[0].clone()];
        assert!(design(&rig, &twice, &DesignOptions::default()).is_err());
        let mut monitor = ok[0].clone();
        monitor.channel = 5;
        let e = design(&rig, &[monitor], &DesignOptions::default()).unwrap_err();
        assert!(e.to_string().contains("channel 5"), "{e}");
        let bad = DesignOptions {
            operating_spl_db: f64::NAN,
            ..DesignOptions::default()
        };
        assert!(design(&rig, &ok, &bad).is_err());

        // A boosting curve or an out-of-range delay: refused, nothing under the sets dir.
        let dir = tempfile::tempdir().unwrap();
        let profile = conf().join("profiles/2way-80hz-sealed-subs.toml");
        let mut d = design(&rig, &ok, &DesignOptions::default()).unwrap();
        d.channels[0].correction.points[10].1 = 1.5;
        assert!(write_corrected_set(&profile, &d, dir.path(), "b").is_err());
        let mut d = design(&rig, &ok, &DesignOptions::default()).unwrap();
        d.channels[0].delay_ms = 250.0;
        let e = write_corrected_set(&profile, &d, dir.path(), "b").unwrap_err();
        assert!(e.to_string().contains("delay_ms"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// The measurement through the corrected set, computed: the same room, the new target,
    /// the correction and the new trim.
    fn after(rig: &Rig, d: &RoomDesign, before: &[ChannelResult]) -> Vec<ChannelResult> {
        let t_old = TargetCurve::new(&rig.profile.target, 48_000.0);
        let t_new = TargetCurve::new(&new_target(&rig.profile.target, &d.options), 48_000.0);
        before
            .iter()
            .map(|r| {
                let c = d
                    .channels
                    .iter()
                    .find(|c| c.channel as usize == r.channel)
                    .unwrap();
                let sp = rig
                    .profile
                    .speakers
                    .iter()
                    .find(|s| s.channel == c.channel)
                    .unwrap();
                let mut a = r.clone();
                for (f, v) in a.response.freqs.iter().zip(a.response.db.iter_mut()) {
                    *v += t_new.db(*f) - t_old.db(*f)
                        + db(c.correction.gain_at(*f))
                        + (c.trim_db - sp.trim_db);
                }
                a
            })
            .collect()
    }

    fn rig_results(rig: &Rig) -> Vec<ChannelResult> {
        vec![
            measured(rig, 1, -20.0, 10.0, &modes),
            measured(rig, 2, -22.0, 10.5, &|f| bump(f, 70.0, 5.0, 0.2)),
            measured(rig, 3, -18.0, 12.0, &modes),
            measured(rig, 4, -19.0, 11.0, &|f| {
                bump(f, 32.0, 12.0, 0.1) + bump(f, 60.0, -10.0, 0.1)
            }),
        ]
    }

    #[test]
    fn verify_passes_the_corrected_room_and_catches_boosts_and_deviations() {
        let rig = rig();
        let before = rig_results(&rig);
        let d = design(&rig, &before, &DesignOptions::default()).unwrap();
        let ok = verify(&d, &after(&rig, &d, &before));
        for c in &ok.channels {
            assert!(
                c.pass && !c.boosted && c.max_abs_db <= 1.5,
                "channel {}: {:?}",
                c.channel,
                c.bands
            );
            // Every channel has reachable bands to judge, and nulls are not among them.
            assert!(c.bands.iter().filter(|b| b.reachable).count() >= 3);
        }
        assert!(ok.pass);
        let ch4 = &ok.channels[3];
        let null = ch4
            .bands
            .iter()
            .find(|b| (b.lo_hz..b.hi_hz).contains(&60.0))
            .unwrap();
        assert!(!null.reachable && null.deviation_db < -3.0, "{null:?}");
        // Uncorrected, the same room fails: the modes stand out.
        let raw = verify(&d, &before);
        assert!(!raw.pass);
        assert!(raw.channels[2].max_abs_db > 3.0, "{:?}", raw.channels[2]);

        // A boost anywhere in a correction fails its channel, whatever was measured.
        let mut boosted = d.clone();
        boosted.channels[1].correction.points[40].1 = 1.2;
        let r = verify(&boosted, &after(&rig, &d, &before));
        assert!(r.channels[1].boosted && !r.channels[1].pass && !r.pass);
        assert!(r.channels[0].pass);

        // A 3 dB deviation in one band (a speaker moved, a driver failing) is found there.
        let mut moved = after(&rig, &d, &before);
        let r0 = &mut moved[0].response;
        for (f, v) in r0.freqs.iter().zip(r0.db.iter_mut()) {
            if (150.0..250.0).contains(f) {
                *v += 3.0;
            }
        }
        let r = verify(&d, &moved);
        assert!(!r.channels[0].pass && !r.pass);
        let worst = r.channels[0]
            .bands
            .iter()
            .filter(|b| b.reachable)
            .max_by(|a, b| a.deviation_db.abs().total_cmp(&b.deviation_db.abs()))
            .unwrap();
        assert!(
            (150.0..250.0).contains(&((worst.lo_hz * worst.hi_hz).sqrt())),
            "{worst:?}"
        );
        assert!(worst.deviation_db > 2.0);

        // A channel that was not measured again fails.
        let r = verify(&d, &after(&rig, &d, &before)[..3]);
        assert!(!r.channels[3].pass && !r.pass);
    }

    /// A measurement of `taps` played `delay` samples late into a room that is a pure delay.
    fn through(channel: u32, taps: &[f32], delay: usize) -> ChannelResult {
        use crate::measure::analysis::ChannelAnalysis;
        use crate::measure::response::{windowed, WindowSpec};
        let mut h = vec![0.0; 1 << 16];
        for (i, &t) in taps.iter().enumerate() {
            h[delay + i] = f64::from(t);
        }
        let ir = ImpulseResponse {
            samples: h,
            rate: 48_000.0,
        };
        let a = arrival(&ir, 0, 1 << 15).unwrap();
        let response = windowed(
            &ir,
            a.samples,
            &log_frequencies(20.0, 20_000.0, 24),
            &WindowSpec::default(),
        )
        .unwrap();
        ChannelResult {
            channel: channel as usize,
            positions: vec![ChannelAnalysis {
                ir,
                arrival: a,
                response: response.clone(),
                harmonics: Vec::new(),
            }],
            response,
            arrival_s: a.seconds,
        }
    }

    #[test]
    fn three_way_bands_are_aligned_through_both_crossovers() {
        let profile = conf().join("profiles/3way-stereo.toml");
        let rig = load_rig(&profile, None).unwrap();
        let plain = generate(&rig, None, &|_| {}).unwrap();
        // Speakers 1..6 (bass, mid, horn; left, right) at these distances, in samples.
        let room = [300usize, 310, 280, 292, 260, 275];
        let played = |ch: u32| {
            let sp = rig
                .profile
                .speakers
                .iter()
                .find(|s| s.channel == ch)
                .unwrap();
            crate::config::delay_samples(sp.delay_ms, 48_000) as usize
        };
        let before: Vec<ChannelResult> = plain
            .iter()
            .map(|f| {
                through(
                    f.channel,
                    &f.taps,
                    room[f.channel as usize - 1] + played(f.channel),
                )
            })
            .collect();
        let d = design(&rig, &before, &DesignOptions::default()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (dir, m) = write_corrected_set(&profile, &d, tmp.path(), "b").unwrap();
        let after: Vec<ChannelResult> = m
            .channels
            .iter()
            .map(|c| {
                let (taps, _) = crate::set::read_wav(&dir.join(&c.file)).unwrap();
                through(
                    c.channel,
                    &taps,
                    room[c.channel as usize - 1] + c.delay_samples as usize,
                )
            })
            .collect();
        // Through the corrected set, each pair that meets at a crossover sums best as it is
        // (and left with right): within the whole-sample rounding of the delays.
        let lag = |a: u32, b: u32, fc: f64| {
            band_lag_s(
                &after[a as usize - 1],
                &after[b as usize - 1],
                crossover_band_hz(fc),
            )
            .unwrap()
                * 48_000.0
        };
        for (a, b, fc) in [
            (1, 3, 300.0),
            (2, 4, 300.0),
            (3, 5, 1800.0),
            (4, 6, 1800.0),
            (1, 2, 300.0),
            (5, 6, 1800.0),
        ] {
            let l = lag(a, b, fc);
            eprintln!("channels {a} and {b} at {fc} Hz: {l:.2} samples");
            assert!(
                l.abs() <= 1.0,
                "channels {a} and {b} at {fc} Hz: {l} samples"
            );
        }
        // Before, they did not.
        let l = band_lag_s(&before[0], &before[2], crossover_band_hz(300.0)).unwrap() * 48_000.0;
        assert!(l.abs() > 5.0, "{l}");
    }

    #[test]
    fn full_range_speaker_eq_cuts_high_frequencies_and_passes_the_gates() {
        let rig = rig();
        // A top with a 6 dB horn peak at 3 kHz and a 4 dB hump at 10 kHz; the subs flat.
        let top = |f: f64| bump(f, 3_000.0, 6.0, 0.2) + bump(f, 10_000.0, 4.0, 0.15);
        let results = vec![
            measured(&rig, 1, -20.0, 10.0, &top),
            measured(&rig, 2, -20.0, 10.0, &top),
            measured(&rig, 3, -20.0, 12.0, &|_| 0.0),
            measured(&rig, 4, -20.0, 12.0, &|_| 0.0),
        ];
        let room = design(&rig, &results, &DesignOptions::default()).unwrap();
        // Rooms: up to 500 Hz, the horn peak stays.
        assert!(db(room.channels[0].correction.gain_at(3_000.0)).abs() < 1e-9);
        let eq = DesignOptions {
            correction: CorrectionParams {
                hi_hz: 20_000.0,
                ..CorrectionParams::default()
            },
            ..DesignOptions::default()
        };
        let d = design(&rig, &results, &eq).unwrap();
        let c = &d.channels[0];
        // The reference band (500 Hz-2 kHz) sets the level; both peaks are cut by about their
        // (smoothed) height.
        let at3k = db(c.correction.gain_at(3_000.0));
        let at10k = db(c.correction.gain_at(10_000.0));
        assert!(at3k < -4.5 && at3k > -6.5, "{at3k}");
        assert!(at10k < -2.5 && at10k > -4.5, "{at10k}");
        assert!(c.correction.max_gain() <= 1.0);
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = write_corrected_set_for(&rig, &d, tmp.path(), "b").unwrap();
        crate::set::verify(&dir).unwrap();
    }
}

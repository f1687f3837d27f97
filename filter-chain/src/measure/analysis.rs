//! One channel's analysis in one call: capture + played reference + sweep -> impulse response,
//! arrival, windowed response, harmonic distortion. The controller's measurement loop and
//! `mugge analyse DIR` both go through here, so a re-analysis gives the same numbers.

use super::arrival::{arrival, Arrival};
use super::deconvolve::{deconvolve, ImpulseResponse};
use super::distortion::{harmonic_levels, HarmonicLevel};
use super::response::{log_frequencies, windowed, Response, WindowSpec};
use super::sweep::SweepParams;
use super::{MeasureError, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// Latency of the measurement path itself (interface loopback), samples; subtracted from
    /// the arrival.
    pub loopback_samples: f64,
    /// Latest plausible arrival, seconds (search range for the peak).
    pub max_arrival_s: f64,
    pub window: WindowSpec,
    /// Response grid: `points_per_octave` from `lo_hz` to `hi_hz`.
    pub lo_hz: f64,
    pub hi_hz: f64,
    pub points_per_octave: usize,
    /// Highest harmonic order reported (0 or 1: none).
    pub max_harmonic: usize,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            loopback_samples: 0.0,
            max_arrival_s: 0.5,
            window: WindowSpec::default(),
            lo_hz: 20.0,
            hi_hz: 20_000.0,
            points_per_octave: 48,
            max_harmonic: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChannelAnalysis {
    pub ir: ImpulseResponse,
    /// Arrival at the mic with the loopback latency removed.
    pub arrival: Arrival,
    /// Level in dB re the played reference.
    pub response: Response,
    pub harmonics: Vec<HarmonicLevel>,
}

pub fn analyse_channel(
    capture: &[f64],
    reference: &[f64],
    sweep: &SweepParams,
    o: &AnalysisOptions,
) -> Result<ChannelAnalysis> {
    sweep.validate()?;
    let rate = f64::from(sweep.rate);
    let hi = o.hi_hz.min(rate / 2.0 * 0.999);
    if !(o.loopback_samples >= 0.0 && o.max_arrival_s > 0.0 && o.lo_hz > 0.0 && hi > o.lo_hz) {
        return Err(MeasureError::Invalid(format!("analysis options {o:?}")));
    }
    let ir = deconvolve(capture, reference, rate, (sweep.start_hz, sweep.end_hz))?;
    let search = ((o.max_arrival_s * rate) as usize).min(ir.len() / 2) as isize;
    let raw = arrival(&ir, 0, search)?;
    let response = windowed(
        &ir,
        raw.samples,
        &log_frequencies(o.lo_hz, hi, o.points_per_octave),
        &o.window,
    )?;
    let harmonics = if o.max_harmonic >= 2 {
        harmonic_levels(
            &ir,
            sweep,
            raw.index,
            o.max_harmonic,
            // An octave clear of the sweep's start and its fade-in.
            &log_frequencies(o.lo_hz.max(2.0 * sweep.start_hz), hi, 3),
        )?
    } else {
        Vec::new()
    };
    let samples = raw.samples - o.loopback_samples;
    Ok(ChannelAnalysis {
        arrival: Arrival {
            samples,
            seconds: samples / rate,
            ..raw
        },
        ir,
        response,
        harmonics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::arrival::fractional_impulse;
    use crate::measure::db;
    use crate::measure::deconvolve::tests::convolve;

    #[test]
    fn one_call_gives_arrival_level_and_distortion() {
        let sweep = SweepParams {
            start_hz: 20.0,
            end_hz: 20_000.0,
            duration_s: 3.0,
            level_dbfs: -6.0,
            ..SweepParams::default()
        };
        let x = sweep.generate().unwrap();
        // 256 samples of interface loopback + 100.3 samples of room, gain 0.25, 1 % of 2nd harmonic.
        let nl: Vec<f64> = x.iter().map(|v| v + 0.04 * v * v).collect();
        let y = convolve(&nl, &fractional_impulse(1024, 356.3, 0.25, 64));
        let a = analyse_channel(
            &y,
            &x,
            &sweep,
            &AnalysisOptions {
                loopback_samples: 256.0,
                max_harmonic: 2,
                ..AnalysisOptions::default()
            },
        )
        .unwrap();
        assert!((a.arrival.samples - 100.3).abs() < 0.01, "{:?}", a.arrival);
        let level = a.response.band_level(200.0, 2_000.0).unwrap();
        assert!((level - db(0.25)).abs() < 0.01, "{level}");
        // Flat within 0.05 dB from 20 Hz to 16 kHz (windowing does not bend it; above, the
        // sweep's 20 kHz end rolls it off).
        for (f, d) in a.response.freqs.iter().zip(&a.response.db) {
            if *f <= 16_000.0 {
                assert!((d - db(0.25)).abs() < 0.05, "{f} Hz: {d} dB");
            }
        }
        // 0.04 * A / 2 with A = -6 dBFS: -40 dB.
        let h2 = &a.harmonics[0];
        let want = db(0.04 * 10f64.powf(-6.0 / 20.0) / 2.0);
        assert!(
            h2.points.iter().all(|(_, d)| (d - want).abs() < 0.5),
            "{h2:?} vs {want}"
        );
        let bad = AnalysisOptions {
            lo_hz: 0.0,
            ..AnalysisOptions::default()
        };
        assert!(analyse_channel(&y, &x, &sweep, &bad).is_err());
    }
}

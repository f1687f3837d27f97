//! Measurement analysis: from a played sweep and a mic capture to impulse responses, arrival
//! times, frequency responses, distortion, and a cut-only correction the filter engine multiplies
//! into its combined response. Pure, safe DSP on `f64` samples; nothing here touches PipeWire.
//!
//! The pieces, each with one job:
//! - [`sweep`]: the Farina exponential sweep and its analytic inverse filter.
//! - [`deconvolve`]: capture / played reference -> impulse response (regularised spectral division).
//! - [`distortion`]: harmonic impulse responses at negative times, THD per harmonic.
//! - [`arrival`]: arrival time of an impulse response, sub-sample.
//! - [`response`]: frequency-dependent windowed magnitude response, averaging, 1/N-octave smoothing.
//! - [`correction`]: cut-only correction against a target curve.
//! - [`alignment`]: per-channel delays and level trims.
//! - [`design`]: measured channels -> corrections, delays, trims, a gated set; verification.
//! - [`preset`]: designs stored under a name for fixed installations, recall, drift.
//! - [`calibration`]: miniDSP/UMIK-1 calibration files, mic sensitivity to absolute SPL.
//! - [`analysis`]: the above in one call per channel.
//! - [`record`]: saved measurements (raw captures, settings, clock stamps) and their analysis.
//!
//! See docs/measurement.md for the theory and the data formats.

pub mod alignment;
pub mod analysis;
pub mod arrival;
pub mod calibration;
pub mod correction;
pub mod deconvolve;
pub mod design;
pub mod distortion;
pub mod preset;
pub mod record;
pub mod response;
pub mod sweep;

pub mod spectrum;

/// Bad input to an analysis step; nothing was computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeasureError {
    #[error("invalid parameter: {0}")]
    Invalid(String),
    #[error("signal too short or empty: {0}")]
    Signal(String),
}

pub type Result<T> = std::result::Result<T, MeasureError>;

/// dB of a linear magnitude (power-safe: tiny values floor at -400 dB instead of -inf).
pub fn db(mag: f64) -> f64 {
    20.0 * mag.max(1e-20).log10()
}

/// Linear magnitude of a dB value.
pub fn from_db(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

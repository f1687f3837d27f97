//! A saved measurement: the raw captures, the settings and the graph-clock stamps, so a
//! measurement can be analysed again offline (`mugge analyse DIR`) with the same result.
//!
//! ```text
//! DIR/measurement.json                  RecordingMeta (serde JSON, `version` = 1)
//! DIR/ch<N>-pos<P>-mic.wav              mic capture, mono 32-bit float at the sweep's rate
//! DIR/ch<N>-pos<P>-reference.wav        the generator's output as played (tap), same frames
//! ```
//!
//! Channels and positions are one-based; position 1 is the listening position (delays align
//! arrivals there). `measurement.json` is written last, through a temporary file and a rename,
//! so a directory with it is complete. Saving never overwrites an existing measurement.

use super::analysis::{analyse_channel, AnalysisOptions, ChannelAnalysis};
use super::calibration::Calibration;
use super::response::{power_average, Response};
use super::sweep::SweepParams;
use super::MeasureError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;
pub const META_FILE: &str = "measurement.json";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("measurement: {0}")]
    Invalid(String),
    #[error(transparent)]
    Analysis(#[from] MeasureError),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> RecordError {
    RecordError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The graph clock at the first captured frame (from the tap's frame header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStamp {
    /// Graph clock position, samples.
    pub position: u64,
    pub nsec: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureMeta {
    pub channel: usize,
    pub position: usize,
    pub clock: Option<ClockStamp>,
    /// Frames the taps reported lost during this capture; a capture with losses is not analysed.
    pub lost_frames: u64,
    pub mic_file: String,
    pub reference_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingMeta {
    pub version: u32,
    pub sweep: SweepParams,
    pub options: AnalysisOptions,
    pub calibration: Option<Calibration>,
    pub captures: Vec<CaptureMeta>,
}

/// One channel at one mic position.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub channel: usize,
    pub position: usize,
    pub clock: Option<ClockStamp>,
    pub lost_frames: u64,
    pub mic: Vec<f32>,
    pub reference: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub sweep: SweepParams,
    pub options: AnalysisOptions,
    pub calibration: Option<Calibration>,
    pub captures: Vec<Capture>,
}

/// One channel's result: every position analysed, their power average, the listening
/// position's arrival.
#[derive(Debug, Clone)]
pub struct ChannelResult {
    pub channel: usize,
    /// In position order.
    pub positions: Vec<ChannelAnalysis>,
    /// Power average over the positions (mic calibration applied when present).
    pub response: Response,
    /// Arrival at position 1, seconds (loopback removed).
    pub arrival_s: f64,
}

impl Recording {
    fn validate(&self) -> Result<(), RecordError> {
        self.sweep.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.captures {
            if c.channel == 0 || c.position == 0 {
                return Err(RecordError::Invalid(format!(
                    "channel {} position {}: both are one-based",
                    c.channel, c.position
                )));
            }
            if !seen.insert((c.channel, c.position)) {
                return Err(RecordError::Invalid(format!(
                    "channel {} position {} captured twice",
                    c.channel, c.position
                )));
            }
            if c.mic.is_empty() || c.reference.is_empty() {
                return Err(RecordError::Invalid(format!(
                    "channel {} position {}: empty capture",
                    c.channel, c.position
                )));
            }
        }
        if self.captures.is_empty() {
            return Err(RecordError::Invalid("no captures".into()));
        }
        Ok(())
    }

    /// Writes the measurement into `dir` (created if missing; an existing measurement there is
    /// an error and is left as it was).
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        self.validate()?;
        let meta_path = dir.join(META_FILE);
        if meta_path.exists() {
            return Err(file_err(&meta_path, "a measurement is already saved here"));
        }
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let mut metas = Vec::new();
        for c in &self.captures {
            let stem = format!("ch{}-pos{}", c.channel, c.position);
            let (mic_file, reference_file) =
                (format!("{stem}-mic.wav"), format!("{stem}-reference.wav"));
            write_wav(&dir.join(&mic_file), &c.mic, self.sweep.rate)?;
            write_wav(&dir.join(&reference_file), &c.reference, self.sweep.rate)?;
            metas.push(CaptureMeta {
                channel: c.channel,
                position: c.position,
                clock: c.clock,
                lost_frames: c.lost_frames,
                mic_file,
                reference_file,
            });
        }
        let meta = RecordingMeta {
            version: FORMAT_VERSION,
            sweep: self.sweep.clone(),
            options: self.options.clone(),
            calibration: self.calibration.clone(),
            captures: metas,
        };
        let json = serde_json::to_string_pretty(&meta).map_err(|e| file_err(&meta_path, e))?;
        let tmp = dir.join(format!(".{META_FILE}.tmp"));
        std::fs::write(&tmp, json).map_err(|e| file_err(&tmp, e))?;
        std::fs::rename(&tmp, &meta_path).map_err(|e| file_err(&meta_path, e))
    }

    /// Reads a measurement saved by [`Recording::save`].
    pub fn load(dir: &Path) -> Result<Recording, RecordError> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| file_err(&meta_path, e))?;
        let meta: RecordingMeta =
            serde_json::from_str(&text).map_err(|e| file_err(&meta_path, e))?;
        if meta.version != FORMAT_VERSION {
            return Err(file_err(
                &meta_path,
                format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    meta.version
                ),
            ));
        }
        let mut captures = Vec::new();
        for c in &meta.captures {
            for f in [&c.mic_file, &c.reference_file] {
                // Only plain file names: a saved measurement never points outside its directory.
                if Path::new(f).components().count() != 1 || f.starts_with('.') {
                    return Err(file_err(&meta_path, format!("bad capture file name {f:?}")));
                }
            }
            captures.push(Capture {
                channel: c.channel,
                position: c.position,
                clock: c.clock,
                lost_frames: c.lost_frames,
                mic: read_wav(&dir.join(&c.mic_file), meta.sweep.rate)?,
                reference: read_wav(&dir.join(&c.reference_file), meta.sweep.rate)?,
            });
        }
        let rec = Recording {
            sweep: meta.sweep,
            options: meta.options,
            calibration: meta.calibration,
            captures,
        };
        rec.validate()?;
        Ok(rec)
    }

    /// Analyses every capture; one result per channel, in channel order.
    pub fn analyse(&self) -> Result<Vec<ChannelResult>, RecordError> {
        self.validate()?;
        if let Some(c) = self.captures.iter().find(|c| c.lost_frames > 0) {
            return Err(RecordError::Invalid(format!(
                "channel {} position {}: {} frames were lost during the capture; measure again",
                c.channel, c.position, c.lost_frames
            )));
        }
        let mut channels: Vec<usize> = self.captures.iter().map(|c| c.channel).collect();
        channels.sort_unstable();
        channels.dedup();
        let f64s = |v: &[f32]| v.iter().map(|&s| f64::from(s)).collect::<Vec<f64>>();
        let mut out = Vec::new();
        for ch in channels {
            let mut caps: Vec<&Capture> =
                self.captures.iter().filter(|c| c.channel == ch).collect();
            caps.sort_by_key(|c| c.position);
            if caps[0].position != 1 {
                return Err(RecordError::Invalid(format!(
                    "channel {ch}: no capture at position 1 (the listening position)"
                )));
            }
            let mut positions = Vec::new();
            for c in caps {
                let a = analyse_channel(
                    &f64s(&c.mic),
                    &f64s(&c.reference),
                    &self.sweep,
                    &self.options,
                )?;
                positions.push(a);
            }
            let responses: Vec<Response> = positions
                .iter()
                .map(|a| match &self.calibration {
                    Some(cal) => cal.apply(&a.response),
                    None => a.response.clone(),
                })
                .collect();
            out.push(ChannelResult {
                channel: ch,
                arrival_s: positions[0].arrival.seconds,
                response: power_average(&responses)?,
                positions,
            });
        }
        Ok(out)
    }
}

fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<(), RecordError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| file_err(path, e))?;
    for &s in samples {
        w.write_sample(s).map_err(|e| file_err(path, e))?;
    }
    w.finalize().map_err(|e| file_err(path, e))
}

fn read_wav(path: &Path, rate: u32) -> Result<Vec<f32>, RecordError> {
    let r = hound::WavReader::open(path).map_err(|e| file_err(path, e))?;
    let spec = r.spec();
    if spec.channels != 1
        || spec.sample_rate != rate
        || spec.sample_format != hound::SampleFormat::Float
        || spec.bits_per_sample != 32
    {
        return Err(file_err(
            path,
            format!(
                "expected mono 32-bit float at {rate} Hz, found {} ch {}-bit {:?} at {} Hz",
                spec.channels, spec.bits_per_sample, spec.sample_format, spec.sample_rate
            ),
        ));
    }
    r.into_samples::<f32>()
        .collect::<Result<Vec<f32>, _>>()
        .map_err(|e| file_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::arrival::fractional_impulse;
    use crate::measure::deconvolve::tests::convolve;

    fn recording() -> Recording {
        let sweep = SweepParams {
            start_hz: 20.0,
            end_hz: 20_000.0,
            duration_s: 1.0,
            ..SweepParams::default()
        };
        let x = sweep.generate().unwrap();
        let capture = |channel: usize, position: usize, d: f64, g: f64| {
            let y = convolve(&x, &fractional_impulse(2048, d, g, 64));
            Capture {
                channel,
                position,
                clock: Some(ClockStamp {
                    position: 1000 * channel as u64,
                    nsec: 7,
                }),
                lost_frames: 0,
                mic: y.iter().map(|&v| v as f32).collect(),
                reference: x.iter().map(|&v| v as f32).collect(),
            }
        };
        Recording {
            sweep: sweep.clone(),
            options: AnalysisOptions {
                max_harmonic: 0,
                lo_hz: 50.0,
                hi_hz: 10_000.0,
                points_per_octave: 6,
                ..AnalysisOptions::default()
            },
            calibration: Some(
                Calibration::parse("\"Sens Factor =-1dB\"\n10 0\n20000 0\n").unwrap(),
            ),
            captures: vec![
                capture(1, 1, 300.25, 0.5),
                capture(1, 2, 320.0, 0.25),
                capture(2, 1, 410.5, 0.5),
            ],
        }
    }

    #[test]
    fn saves_loads_and_analyses_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let rec = recording();
        rec.save(dir.path()).unwrap();
        let back = Recording::load(dir.path()).unwrap();
        assert_eq!(back, rec);
        let r = back.analyse().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].positions.len(), 2);
        assert!((r[0].arrival_s * 48_000.0 - 300.25).abs() < 0.01);
        assert!((r[1].arrival_s * 48_000.0 - 410.5).abs() < 0.01);
        // Power average of 0.5 and 0.25: 10 log10((0.25 + 0.0625) / 2).
        let want = 10.0 * ((0.25f64 + 0.0625) / 2.0).log10();
        assert!(
            r[0].response.db.iter().all(|d| (d - want).abs() < 0.05),
            "{:?}",
            r[0].response.db
        );
        // Saving again over it is refused and changes nothing.
        assert!(rec.save(dir.path()).is_err());
        assert_eq!(Recording::load(dir.path()).unwrap(), rec);
    }

    #[test]
    fn bad_recordings_are_refused_with_the_reason() {
        let mut rec = recording();
        rec.captures[1].position = 1;
        assert!(rec.save(tempfile::tempdir().unwrap().path()).is_err());

        let mut rec = recording();
        rec.captures[2].lost_frames = 12;
        let e = rec.analyse().unwrap_err().to_string();
        assert!(e.contains("12 frames were lost"), "{e}");

        let mut rec = recording();
        rec.captures.remove(0);
        let e = rec.analyse().unwrap_err().to_string();
        assert!(e.contains("position 1"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        recording().save(dir.path()).unwrap();
        // A file the measurement names that is not mono float: the error names it.
        write_wav(&dir.path().join("ch2-pos1-mic.wav"), &[0.0; 4], 44_100).unwrap();
        let e = Recording::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("ch2-pos1-mic.wav") && e.contains("44100"), "{e}");
        // File names that leave the directory are refused.
        let meta = dir.path().join(META_FILE);
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(&meta, text.replace("ch1-pos1-mic.wav", "../x.wav")).unwrap();
        let e = Recording::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad capture file name"), "{e}");
    }
}

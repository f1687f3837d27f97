//! Measurement-mic calibration: the miniDSP/UMIK-1 text format, and mic sensitivity to SPL.
//!
//! The format, as shipped with the UMIK-1 (and tolerated variants):
//!
//! ```text
//! "Sens Factor =-.7584dB, AGain =18dB, SERNO: 7023270"   header: sensitivity deviation
//! "Sensitivity -18.75 dBFS"                               or: absolute sensitivity @ 94 dB SPL
//! * comment  ; comment  # comment  // comment             comments, blank lines ignored
//! 10.054  -1.6921                                         freq Hz, dB (the mic's response)
//! 10.179  -1.5718  12.3                                   optional third column: phase, degrees
//! ```
//!
//! Values are separated by spaces, tabs or commas. Frequencies must rise strictly. The dB column
//! is the mic's own deviation, so it is *subtracted* from a measurement. Every parse error names
//! its (one-based) line.
//!
//! Sensitivity: `S` = the level in dBFS the mic reads for 94 dB SPL (1 Pa). A measured level
//! `L` dBFS is `L - S + 94` dB SPL. A `Sens Factor` header gives the deviation from the model's
//! nominal sensitivity, so `S = nominal + sens_factor` (UMIK-1 at its 18 dB gain: nominal
//! -18 dBFS; confirm once with an acoustic calibrator, see docs/measurement.md).

use super::response::{interpolate_log, Response};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration line {line}: {message}: {text:?}")]
    Line {
        line: usize,
        text: String,
        message: String,
    },
    #[error("calibration file has no data lines")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalPoint {
    pub freq_hz: f64,
    pub db: f64,
    pub phase_deg: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `Sens Factor` from the header, dB.
    pub sens_factor_db: Option<f64>,
    /// `Sensitivity` from the header, dBFS at 94 dB SPL.
    pub sensitivity_dbfs: Option<f64>,
    pub points: Vec<CalPoint>,
}

impl Calibration {
    pub fn parse(text: &str) -> Result<Calibration, CalibrationError> {
        let mut cal = Calibration {
            sens_factor_db: None,
            sensitivity_dbfs: None,
            points: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim().trim_start_matches('\u{feff}');
            let err = |message: &str| CalibrationError::Line {
                line: i + 1,
                text: raw.to_owned(),
                message: message.to_owned(),
            };
            if line.is_empty() || ["*", ";", "#", "//"].iter().any(|c| line.starts_with(c)) {
                continue;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(pos) = lower.find("sens factor") {
                let v = number_after(&line[pos + "sens factor".len()..])
                    .ok_or_else(|| err("no number after 'Sens Factor'"))?;
                cal.sens_factor_db = Some(v);
                continue;
            }
            if let Some(pos) = lower.find("sensitivity") {
                let v = number_after(&line[pos + "sensitivity".len()..])
                    .ok_or_else(|| err("no number after 'Sensitivity'"))?;
                cal.sensitivity_dbfs = Some(v);
                continue;
            }
            if line.starts_with('"') {
                // Another quoted header (serial number, date): informational only.
                continue;
            }
            let fields: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|f| !f.is_empty())
                .collect();
            if !(2..=3).contains(&fields.len()) {
                return Err(err("expected 'frequency dB [phase]'"));
            }
            let num = |s: &str, what: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(&format!("{what} is not a number")))
            };
            let freq_hz = num(fields[0], "frequency")?;
            let db = num(fields[1], "level")?;
            let phase_deg = fields.get(2).map(|p| num(p, "phase")).transpose()?;
            if freq_hz <= 0.0 {
                return Err(err("frequency must be > 0"));
            }
            if cal.points.last().is_some_and(|p| p.freq_hz >= freq_hz) {
                return Err(err("frequencies must rise strictly"));
            }
            cal.points.push(CalPoint {
                freq_hz,
                db,
                phase_deg,
            });
        }
        if cal.points.is_empty() {
            return Err(CalibrationError::Empty);
        }
        Ok(cal)
    }

    /// The mic's deviation at `f`, dB (log-frequency interpolation, ends held).
    pub fn db_at(&self, f: f64) -> f64 {
        let xs: Vec<f64> = self.points.iter().map(|p| p.freq_hz).collect();
        let ys: Vec<f64> = self.points.iter().map(|p| p.db).collect();
        interpolate_log(&xs, &ys, f)
    }

    /// `r` with the mic's deviation removed.
    pub fn apply(&self, r: &Response) -> Response {
        Response {
            freqs: r.freqs.clone(),
            db: r
                .freqs
                .iter()
                .zip(&r.db)
                .map(|(&f, &d)| d - self.db_at(f))
                .collect(),
        }
    }

    /// The mic's sensitivity: the header's absolute value, or `nominal_dbfs + Sens Factor`.
    pub fn sensitivity(&self, nominal_dbfs: f64) -> MicSensitivity {
        MicSensitivity {
            dbfs_at_94_db_spl: self
                .sensitivity_dbfs
                .unwrap_or(nominal_dbfs + self.sens_factor_db.unwrap_or(0.0)),
        }
    }
}

/// The first number in `s` (skipping '=', spaces and the like), e.g. `" =-.7584dB, AGain"`.
fn number_after(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')?;
    let rest = &s[start..];
    let end = rest
        .char_indices()
        .skip(1)
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == 'E'))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

/// Level in dBFS the mic reads for 94 dB SPL.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MicSensitivity {
    pub dbfs_at_94_db_spl: f64,
}

impl MicSensitivity {
    /// Absolute sound pressure level of a mic reading.
    pub fn spl(&self, dbfs: f64) -> f64 {
        dbfs - self.dbfs_at_94_db_spl + 94.0
    }

    /// A response measured with the sweep at `played_dbfs`, as SPL at the mic.
    pub fn spl_response(&self, r: &Response, played_dbfs: f64) -> Response {
        Response {
            freqs: r.freqs.clone(),
            db: r.db.iter().map(|d| self.spl(d + played_dbfs)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UMIK: &str = "\"Sens Factor =-.7584dB, AGain =18dB, SERNO: 7023270\"\n\
        10.054\t-1.6921\n\
        \n\
        * a comment\n\
        20.000\t-0.5\n\
        1000.0\t0.0\t-3.5\n\
        20000, 2.0\n";

    #[test]
    fn parses_the_umik_format() {
        let c = Calibration::parse(UMIK).unwrap();
        assert_eq!(c.sens_factor_db, Some(-0.7584));
        assert_eq!(c.sensitivity_dbfs, None);
        assert_eq!(c.points.len(), 4);
        assert_eq!(c.points[2].phase_deg, Some(-3.5));
        assert_eq!(c.points[3].freq_hz, 20_000.0);
        // Log interpolation between 1 kHz (0 dB) and 20 kHz (+2 dB); ends held.
        let mid = (1000.0f64 * 20_000.0).sqrt();
        assert!((c.db_at(mid) - 1.0).abs() < 1e-9);
        assert_eq!(c.db_at(5.0), -1.6921);
        assert_eq!(c.db_at(24_000.0), 2.0);
    }

    #[test]
    fn applies_to_a_response_and_gives_spl() {
        let c = Calibration::parse(UMIK).unwrap();
        let r = Response {
            freqs: vec![1000.0, 20_000.0],
            db: vec![-30.0, -28.0],
        };
        // The mic reads 2 dB hot at 20 kHz: corrected, the response is flat.
        assert_eq!(c.apply(&r).db, vec![-30.0, -30.0]);
        let s = c.sensitivity(-18.0);
        assert!((s.dbfs_at_94_db_spl + 18.7584).abs() < 1e-12);
        // Reading the sensitivity itself is 94 dB SPL; 20 dB more is 114.
        assert!((s.spl(-18.7584) - 94.0).abs() < 1e-9);
        assert!((s.spl(1.2416) - 114.0).abs() < 1e-9);
        let spl = s.spl_response(&r, -20.0);
        assert!((spl.db[0] - (-50.0 + 18.7584 + 94.0)).abs() < 1e-9);
        let abs = Calibration::parse("\"Sensitivity -17.2 dBFS\"\n100 0\n").unwrap();
        assert_eq!(abs.sensitivity(-18.0).dbfs_at_94_db_spl, -17.2);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("\"Sens Factor =-1dB\"\n10 0\nfoo bar\n", 3),
            ("10 0\n5 0\n", 2),
            ("10 0 0 0\n", 1),
            ("\n\n-3 1\n", 3),
            ("\"Sens Factor = dB\"\n", 1),
            ("10 NaN\n", 1),
        ];
        for (text, line) in cases {
            match Calibration::parse(text) {
                Err(CalibrationError::Line { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(
            Calibration::parse("\"Sens Factor =-1dB\"\n* only comments\n"),
            Err(CalibrationError::Empty)
        );
        let msg = Calibration::parse("10 0\n5 0\n").unwrap_err().to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }
}

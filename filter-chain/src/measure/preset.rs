//! Presets for fixed installations (D-028): a room design stored under a name with the
//! measurement it came from, recalled later as the same matched set, and a drift check of a
//! fresh verification measurement against the stored one.
//!
//! ```text
//! <presets_dir>/installations/<name>/preset.json     Preset (serde JSON, `version` = 1)
//! <presets_dir>/installations/<name>/measurement/    copy of the saved measurement (optional)
//! ```
//!
//! A preset stores what made the set, not the set's files: the profile and speaker identities
//! as validated, the design (corrections, delays, trims, targets) and the set's id. Recall
//! writes the set again through the filter engine (a set's config names its own directory, so
//! files cannot simply be copied elsewhere) and refuses it unless it has the same id, i.e. the
//! same taps and profile text: a changed filter engine or profile is never passed off as the
//! stored preset. Stores are atomic (temporary directory, rename) and never overwrite.

use super::design::{write_corrected_set_for, DesignError, RoomDesign};
use super::record::ChannelResult;
use super::response::{smooth, Response};
use crate::profile::{Identity, Profile};
use crate::set::Manifest;
use crate::validate::{check_rig, Rig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const PRESET_VERSION: u32 = 1;
pub const PRESET_FILE: &str = "preset.json";
/// Installations only: venue measurements are never recalled (D-008).
pub const INSTALLATIONS: &str = "installations";

/// One channel as measured when the preset was stored (position 1 and average alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChannel {
    pub channel: u32,
    /// The measured response (unsmoothed), dB re the played reference.
    pub response: Response,
    pub arrival_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub version: u32,
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    /// The profile file the design was made for (a label; the profile itself is below).
    pub profile_file: String,
    pub profile: Profile,
    pub identities: BTreeMap<String, Identity>,
    pub design: RoomDesign,
    /// The id of the set the design made; recall must reproduce it.
    pub set_id: String,
    /// The verification measurement through the set (or the design's measurement): what a
    /// later verification is compared with.
    pub measured: Vec<StoredChannel>,
}

/// A recalled preset: the set written again (for `ReloadFilters`) and what to check it against.
#[derive(Debug, Clone)]
pub struct Recalled {
    pub set_dir: PathBuf,
    pub manifest: Manifest,
    pub preset: Preset,
}

/// Preset names become directory names: letters, digits, `-`, `_`, `.` (not leading).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn preset_dir(presets_dir: &Path, name: &str) -> Result<PathBuf, DesignError> {
    if !valid_name(name) {
        return Err(DesignError::Invalid(format!(
            "preset name {name:?}: use letters, digits, '-', '_' and '.' (not first), at most 64"
        )));
    }
    Ok(presets_dir.join(INSTALLATIONS).join(name))
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> DesignError + '_ {
    move |e| DesignError::Io(p.to_path_buf(), e)
}

/// Stores `design` for `rig` under `name`: `set_id` is the id of the set it made (the manifest
/// of `write_corrected_set`), `measured` the measurement to compare later verifications with,
/// `measurement_dir` a saved measurement to copy along (optional). An existing preset of that
/// name is an error and stays as it was.
pub fn store(
    presets_dir: &Path,
    name: &str,
    rig: &Rig,
    design: &RoomDesign,
    set_id: &str,
    measured: &[ChannelResult],
    measurement_dir: Option<&Path>,
) -> Result<PathBuf, DesignError> {
    let dir = preset_dir(presets_dir, name)?;
    if dir.exists() {
        return Err(DesignError::Invalid(format!(
            "preset \"{name}\" exists ({}); remove it first to replace it",
            dir.display()
        )));
    }
    if measured.is_empty() {
        return Err(DesignError::Invalid("no measured channels to store".into()));
    }
    let preset = Preset {
        version: PRESET_VERSION,
        name: name.into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        profile_file: rig.file.clone(),
        profile: rig.profile.clone(),
        identities: rig.identities.clone(),
        design: design.clone(),
        set_id: set_id.into(),
        measured: measured
            .iter()
            .map(|r| StoredChannel {
                channel: r.channel as u32,
                response: r.response.clone(),
                arrival_s: r.arrival_s,
            })
            .collect(),
    };
    let parent = dir.parent().expect("preset dirs have a parent");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        if let Some(m) = measurement_dir {
            let to = tmp.join("measurement");
            std::fs::create_dir(&to).map_err(io(&to))?;
            for e in std::fs::read_dir(m).map_err(io(m))? {
                let e = e.map_err(io(m))?;
                if e.file_type().map_err(io(m))?.is_file() {
                    std::fs::copy(e.path(), to.join(e.file_name())).map_err(io(&e.path()))?;
                }
            }
        }
        let json = serde_json::to_vec_pretty(&preset)
            .map_err(|e| DesignError::Invalid(format!("preset to JSON: {e}")))?;
        let f = tmp.join(PRESET_FILE);
        std::fs::write(&f, json).map_err(io(&f))?;
        std::fs::rename(&tmp, &dir).map_err(io(&dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|_| dir)
}

/// A preset of that name is stored (or its directory is taken).
pub fn exists(presets_dir: &Path, name: &str) -> bool {
    preset_dir(presets_dir, name).is_ok_and(|d| d.exists())
}

/// Reads a stored preset.
pub fn load(presets_dir: &Path, name: &str) -> Result<Preset, DesignError> {
    let f = preset_dir(presets_dir, name)?.join(PRESET_FILE);
    let text = std::fs::read_to_string(&f).map_err(io(&f))?;
    let p: Preset = serde_json::from_str(&text)
        .map_err(|e| DesignError::Invalid(format!("{}: {e}", f.display())))?;
    if p.version != PRESET_VERSION {
        return Err(DesignError::Invalid(format!(
            "{}: preset version {} (this build reads {PRESET_VERSION})",
            f.display(),
            p.version
        )));
    }
    Ok(p)
}

/// Names of the stored presets, sorted.
pub fn list(presets_dir: &Path) -> Result<Vec<String>, DesignError> {
    let d = presets_dir.join(INSTALLATIONS);
    if !d.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .map_err(io(&d))?
        .flatten()
        .filter(|e| e.path().join(PRESET_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Writes the preset's set again under `sets_dir` (as `write_corrected_set` does) and checks
/// that it is the stored one (same set id). On a mismatch the new set is removed.
pub fn recall(
    presets_dir: &Path,
    name: &str,
    sets_dir: &Path,
    tag: &str,
) -> Result<Recalled, DesignError> {
    let preset = load(presets_dir, name)?;
    let text = toml::to_string(&preset.profile)
        .map_err(|e| DesignError::Invalid(format!("stored profile to TOML: {e}")))?;
    let ids = &preset.identities;
    let source = |id: &str| {
        ids.get(id)
            .and_then(|i| toml::to_string(i).ok())
            .map(|t| (format!("{id} (stored in preset {name})"), t))
    };
    let rig = check_rig(&preset.profile_file, &text, &source)?;
    let (set_dir, manifest) = write_corrected_set_for(&rig, &preset.design, sets_dir, tag)?;
    if manifest.set_id != preset.set_id {
        let _ = std::fs::remove_dir_all(&set_dir);
        return Err(DesignError::Invalid(format!(
            "preset \"{name}\": the set made now ({}) is not the stored one ({}): the filter \
             engine changed since; measure again",
            manifest.set_id, preset.set_id
        )));
    }
    Ok(Recalled {
        set_dir,
        manifest,
        preset,
    })
}

/// Drift of one channel: per 1/3 octave, fresh - stored (smoothed), where the stored response
/// lies within [`DRIFT_RANGE_DB`] of its loudest band (stopbands are noise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelDrift {
    pub channel: u32,
    /// `(lo Hz, hi Hz, drift dB)`.
    pub bands: Vec<(f64, f64, f64)>,
    pub max_abs_db: f64,
    /// `max_abs_db` is past the threshold: measure again and design anew.
    pub warn: bool,
}

/// Bands more than this far under a stored channel's loudest band are not compared, dB.
pub const DRIFT_RANGE_DB: f64 = 30.0;

/// Compares a fresh measurement with the stored one; a channel missing from `fresh` warns.
pub fn drift(
    stored: &[StoredChannel],
    fresh: &[ChannelResult],
    threshold_db: f64,
) -> Vec<ChannelDrift> {
    stored
        .iter()
        .map(|s| {
            let Some(f) = fresh.iter().find(|r| r.channel == s.channel as usize) else {
                return ChannelDrift {
                    channel: s.channel,
                    bands: Vec::new(),
                    // Not infinity: JSON has none, and the report must read back.
                    max_abs_db: f64::MAX,
                    warn: true,
                };
            };
            let (a, b) = match (smooth(&s.response, 6.0), smooth(&f.response, 6.0)) {
                (Ok(a), Ok(b)) => (a, b),
                _ => (s.response.clone(), f.response.clone()),
            };
            let (lo, hi) = (
                *a.freqs.first().unwrap_or(&20.0),
                *a.freqs.last().unwrap_or(&20_000.0),
            );
            let bands: Vec<(f64, f64, f64, f64)> = super::design::third_octave_bands(lo, hi)
                .into_iter()
                .filter_map(|(blo, bhi)| {
                    let level = a.band_level(blo, bhi)?;
                    let pts: Vec<f64> = a
                        .freqs
                        .iter()
                        .filter(|x| (blo..bhi).contains(*x))
                        .map(|&x| b.at(x) - a.at(x))
                        .collect();
                    (!pts.is_empty())
                        .then(|| (blo, bhi, pts.iter().sum::<f64>() / pts.len() as f64, level))
                })
                .collect();
            let top = bands.iter().map(|b| b.3).fold(f64::MIN, f64::max);
            let bands: Vec<(f64, f64, f64)> = bands
                .into_iter()
                .filter(|b| b.3 >= top - DRIFT_RANGE_DB)
                .map(|b| (b.0, b.1, b.2))
                .collect();
            let max_abs_db = bands.iter().map(|b| b.2.abs()).fold(0.0, f64::max);
            ChannelDrift {
                channel: s.channel,
                bands,
                max_abs_db,
                warn: max_abs_db > threshold_db,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::design::{design, write_corrected_set_for, DesignOptions};
    use crate::measure::response::log_frequencies;
    use crate::validate::load_rig;

    fn rig() -> Rig {
        load_rig(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../conf/profiles/2way-80hz-sealed-subs.toml"),
            None,
        )
        .unwrap()
    }

    fn result(channel: usize, bump_db: f64) -> ChannelResult {
        let freqs = log_frequencies(20.0, 20_000.0, 48);
        let db = freqs
            .iter()
            .map(|&f| -20.0 + bump_db * (-((f / 60.0f64).log2() / 0.15).powi(2) / 2.0).exp())
            .collect();
        ChannelResult {
            channel,
            positions: Vec::new(),
            response: Response { freqs, db },
            arrival_s: 0.01,
        }
    }

    #[test]
    fn stored_presets_recall_the_same_set_and_drift_is_found() {
        let rig = rig();
        let measured: Vec<ChannelResult> = (1..=4).map(|c| result(c, 6.0)).collect();
        let d = design(&rig, &measured, &DesignOptions::default()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (_, m) = write_corrected_set_for(&rig, &d, &tmp.path().join("sets"), "b").unwrap();
        let meas = tmp.path().join("meas");
        std::fs::create_dir(&meas).unwrap();
        std::fs::write(meas.join("measurement.json"), "{}").unwrap();
        let presets = tmp.path().join("presets");
        let dir = store(
            &presets,
            "home",
            &rig,
            &d,
            &m.set_id,
            &measured,
            Some(&meas),
        )
        .unwrap();
        assert!(dir.join("measurement/measurement.json").is_file());
        assert_eq!(list(&presets).unwrap(), vec!["home".to_string()]);
        // Storing again under the name is refused and changes nothing.
        let before = std::fs::read(dir.join(PRESET_FILE)).unwrap();
        assert!(store(&presets, "home", &rig, &d, "other", &measured, None).is_err());
        assert_eq!(std::fs::read(dir.join(PRESET_FILE)).unwrap(), before);
        assert!(store(&presets, "../x", &rig, &d, "x", &measured, None).is_err());

        let r = recall(&presets, "home", &tmp.path().join("sets"), "a").unwrap();
        assert_eq!(r.manifest.set_id, m.set_id);
        crate::set::verify(&r.set_dir).unwrap();
        for (a, b) in r.manifest.channels.iter().zip(&m.channels) {
            assert_eq!((a.delay_samples, a.trim_db), (b.delay_samples, b.trim_db));
        }

        // Unchanged: no drift. A mode grown by 3 dB on channel 2: found there, past 1.5 dB.
        let same = drift(&r.preset.measured, &measured, 1.5);
        assert!(same.iter().all(|c| !c.warn && c.max_abs_db < 1e-9));
        let mut moved = measured.clone();
        moved[1] = result(2, 9.0);
        let dr = drift(&r.preset.measured, &moved, 1.5);
        assert!(!dr[0].warn && dr[1].warn, "{dr:?}");
        let worst = dr[1]
            .bands
            .iter()
            .max_by(|a, b| a.2.abs().total_cmp(&b.2.abs()))
            .unwrap();
        assert!(
            (worst.0..worst.1).contains(&60.0) && worst.2 > 2.0,
            "{worst:?}"
        );
        // A channel not measured again warns.
        assert!(drift(&r.preset.measured, &moved[..3], 1.5)[3].warn);

        // A preset whose set can no longer be made the same is refused, and leaves no set.
        let mut p = load(&presets, "home").unwrap();
        p.set_id = "s000000000000".into();
        std::fs::write(
            dir.join(PRESET_FILE),
            serde_json::to_vec_pretty(&p).unwrap(),
        )
        .unwrap();
        let sets = tmp.path().join("sets2");
        let e = recall(&presets, "home", &sets, "a").unwrap_err();
        assert!(e.to_string().contains("measure again"), "{e}");
        assert_eq!(std::fs::read_dir(&sets).unwrap().count(), 0);
    }
}

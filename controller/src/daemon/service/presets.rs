//! Installation presets through the controller (D-028, docs/measurement.md): StorePreset keeps
//! a finished measurement's design under a name; RecallPreset deploys the set it made and runs
//! a verification measurement whose drift from the stored one is reported per 1/3 octave.
//!
//! Everything that can refuse a recall is checked before anything changes: the preset exists
//! and reads, it is for the active profile and its channels, and its set can be made again
//! with the same id (or is still on disk and verifies). The deploy itself happens inside the
//! measurement run, so an abort puts the previous set back like any other measurement.

use std::path::{Path, PathBuf};

use mugge_filter_chain::measure::design::{self, RoomDesign};
use mugge_filter_chain::measure::preset::{self, Preset};
use mugge_filter_chain::measure::record::Recording;
use serde::Deserialize;

use super::super::measure::options::{parse_options, Request};
use super::super::measure::report::Report;
use super::measurement::may_measure_in;
use super::{Controller, Error};

/// RecallPreset's options (JSON object; every key optional).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecallRequest {
    pub target_spl_db: Option<f64>,
    pub sweep_s: Option<f64>,
    /// Also in DJ/Live mode (the program stops for the verification).
    pub force: bool,
    /// Warn past this drift (dB; default `[measurement] drift_threshold_db`).
    pub drift_threshold_db: Option<f64>,
}

impl RecallRequest {
    pub fn parse(json: &str) -> Result<RecallRequest, String> {
        let r: RecallRequest = parse_options(json)?;
        if r.drift_threshold_db
            .is_some_and(|t| !(0.1..=20.0).contains(&t))
        {
            return Err("drift_threshold_db must be 0.1..20".into());
        }
        Ok(r)
    }

    /// The verification is a one-position dry run: nothing is designed from it.
    fn measurement(&self) -> Request {
        Request {
            positions: Some(1),
            dry_run: true,
            target_spl_db: self.target_spl_db,
            sweep_s: self.sweep_s,
            force: self.force,
        }
    }
}

/// What a run verifying a recalled preset needs.
#[derive(Clone, Debug)]
pub(super) struct Recall {
    pub preset: Preset,
    pub set_dir: PathBuf,
    /// The set is not the active one: the run deploys it first.
    pub deploy: bool,
    pub threshold_db: f64,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgs(e.to_string())
}

/// Preset names become directory names.
fn check_name(name: &str) -> Result<(), Error> {
    if preset::valid_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "preset name {name:?}: letters, digits, '-', '_' and '.' (not first), at most 64"
        )))
    }
}

/// Runs `f` on a thread of its own (filter generation and analysis take seconds; the bus
/// keeps answering).
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = async_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send_blocking(f());
    });
    rx.recv()
        .await
        .map_err(|_| "worker thread died".to_string())?
}

impl Controller {
    fn presets_dir(&self) -> PathBuf {
        self.config.measurement.presets_dir()
    }

    pub(super) async fn recall_preset_inner(
        &self,
        name: &str,
        options: &str,
        conn: &zbus::Connection,
    ) -> Result<String, Error> {
        let rr = RecallRequest::parse(options).map_err(Error::InvalidArgs)?;
        rr.measurement()
            .apply(&self.config.measurement)
            .map_err(Error::InvalidArgs)?;
        self.refuse_while_measuring()?;
        // Before a set may be written: a refusal leaves nothing behind.
        may_measure_in(self.shared.lock().unwrap().mode, rr.force)?;
        let presets = self.presets_dir();
        check_name(name)?;
        if !preset::exists(&presets, name) {
            let known = preset::list(&presets).unwrap_or_default();
            return Err(invalid(format!(
                "no preset \"{name}\" in {} (stored: {})",
                presets.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        let p = preset::load(&presets, name).map_err(invalid)?;
        let (active_set, active_profile, active_channels) = {
            let cs = self.chain.lock().unwrap();
            let Some(a) = cs.active.as_ref() else {
                return Err(Error::Refused(
                    "no active filter set: activate the preset's profile first".into(),
                ));
            };
            let chans: Vec<u32> = a.trims.iter().map(|t| t.0).collect();
            (a.set.clone(), a.profile.clone(), chans)
        };
        if active_profile != p.profile.name {
            return Err(Error::Refused(format!(
                "preset \"{name}\" is for profile \"{}\", the active one is \"{active_profile}\": \
                 activate \"{}\" first",
                p.profile.name, p.profile.name
            )));
        }
        let mut channels: Vec<u32> = p.measured.iter().map(|c| c.channel).collect();
        channels.sort_unstable();
        if let Some(c) = channels.iter().find(|c| !active_channels.contains(c)) {
            return Err(Error::Refused(format!(
                "preset \"{name}\" measured channel {c}, which the active set does not have \
                 (channels {active_channels:?})"
            )));
        }
        let threshold_db = rr
            .drift_threshold_db
            .unwrap_or(self.config.measurement.drift_threshold_db);
        // The stored set when it is still there and intact, else made again (same id or refused).
        let set_dir = match self.set_dir_of(&p.set_id) {
            Some(d) if mugge_filter_chain::set::verify(&d).is_ok() => d,
            _ => {
                let sets = self.config.activation.sets_dir();
                let (presets, n) = (presets.clone(), name.to_string());
                off_thread(move || {
                    preset::recall(&presets, &n, &sets, "preset")
                        .map(|r| r.set_dir)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(Error::Refused)?
            }
        };
        let recall = Recall {
            deploy: active_set != p.set_id,
            preset: p,
            set_dir,
            threshold_db,
        };
        let req = rr.measurement();
        self.start_measurement_inner(channels, &req, conn, Some(recall))
            .await
    }

    pub(super) async fn store_preset_inner(
        &self,
        name: &str,
        measurement: &str,
    ) -> Result<String, Error> {
        let presets = self.presets_dir();
        check_name(name)?;
        if preset::exists(&presets, name) {
            return Err(Error::Refused(format!(
                "preset \"{name}\" exists in {}: nothing changed (remove it first to replace it)",
                presets.display()
            )));
        }
        let dir = PathBuf::from(measurement);
        let report = read_report(&dir).map_err(invalid)?;
        let (Some(deployed), Some(verify_dir)) = (&report.deployed_set, &report.verify_dir) else {
            return Err(invalid(format!(
                "{}: not a measurement that deployed and verified a corrected set (a dry run or \
                 an ended one cannot be stored)",
                dir.display()
            )));
        };
        let design: RoomDesign = read_json(&dir.join("design.json")).map_err(invalid)?;
        let m = mugge_filter_chain::set::read_manifest(Path::new(deployed))
            .map_err(|e| invalid(format!("the deployed set {deployed}: {e}")))?;
        let (verify_dir, name_s, sets_tmp) = (
            PathBuf::from(verify_dir),
            name.to_string(),
            std::env::temp_dir().join(format!(
                "mugge-preset-check-{}-{}",
                std::process::id(),
                CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
        );
        let set_id = m.set_id.clone();
        off_thread(move || {
            let rig = mugge_filter_chain::validate::load_rig(Path::new(&m.profile_file), None)
                .map_err(|e| format!("profile {}: {e}", m.profile_file))?;
            // A profile edited since the measurement would make another set on recall: refuse
            // now rather than store a preset that can never be recalled.
            let _ = std::fs::remove_dir_all(&sets_tmp);
            let made = design::write_corrected_set_for(&rig, &design, &sets_tmp, "check");
            let _ = std::fs::remove_dir_all(&sets_tmp);
            let (_, again) = made.map_err(|e| e.to_string())?;
            if again.set_id != set_id {
                return Err(format!(
                    "the design makes set {} now, the measurement deployed {set_id}: profile \
                     {} changed since; measure again",
                    again.set_id, m.profile_file
                ));
            }
            // The verification through the corrected set is what a recall is compared with.
            let measured = Recording::load(&verify_dir)
                .and_then(|r| r.analyse())
                .map_err(|e| format!("verification {}: {e}", verify_dir.display()))?;
            preset::store(
                &presets,
                &name_s,
                &rig,
                &design,
                &set_id,
                &measured,
                Some(&dir),
            )
            .map(|d| d.display().to_string())
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(Error::Refused)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(f: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))
}

/// The report a finished measurement left in its directory.
pub(super) fn read_report(dir: &Path) -> Result<Report, String> {
    let r: Report = read_json(&dir.join(REPORT_FILE))?;
    if !r.ok {
        return Err(format!(
            "{}: the measurement did not finish (nothing to store)",
            dir.display()
        ));
    }
    Ok(r)
}

/// Numbers the scratch directories of concurrent StorePreset calls.
static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Written at the end of every run, beside the captures.
pub(super) const REPORT_FILE: &str = "report.json";

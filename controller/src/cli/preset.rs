//! `mugge preset`: room designs kept for fixed installations (D-028). Venues are measured
//! fresh every time (D-008); these are for a room that does not change.
//!
//! `save` and `recall` go through the controller (StorePreset, RecallPreset: the recall deploys
//! the set and verifies it with a measurement); `store`, `write` and `drift` work offline on
//! saved measurements and sets.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mugge_controller::client;
use mugge_controller::daemon::chain::default_sets_dir;
use mugge_controller::daemon::measure::options::MeasureConfig;
use mugge_controller::daemon::measure::report::PresetCheck;
use mugge_filter_chain::measure::correction::CorrectionParams;
use mugge_filter_chain::measure::design::{design, write_corrected_set_for, DesignOptions};
use mugge_filter_chain::measure::preset;
use mugge_filter_chain::validate::load_rig;
use std::path::PathBuf;

use super::analysed;
use super::follow::{follow, FollowOptions};

#[derive(Args)]
pub struct PresetArgs {
    /// Presets directory (default: $XDG_STATE_HOME/mugge/presets).
    #[arg(long, global = true)]
    presets: Option<PathBuf>,
    #[command(subcommand)]
    cmd: PresetCmd,
}

#[derive(Subcommand)]
enum PresetCmd {
    /// The stored presets.
    List,
    /// Store a finished `mugge measure` run (it deployed and verified a corrected set) as
    /// NAME, through the controller; its verification is what recalls compare with.
    Save {
        name: String,
        /// The run's directory (default: the controller's last measurement).
        measurement: Option<PathBuf>,
    },
    /// Deploy NAME's set through the controller and verify it: its channels are measured again
    /// and the drift from the stored measurement is reported per 1/3 octave. Exit status 3
    /// when it drifted past the threshold, 2 when the verification did not finish, 130 after
    /// Ctrl-C (which aborts: the previous set comes back, muted).
    Recall {
        name: String,
        /// Warn past this drift, dB (default from the controller config, 1.5).
        #[arg(long)]
        threshold: Option<f64>,
        /// Target SPL of the verification's level finding.
        #[arg(long)]
        target_spl: Option<f64>,
        /// Sweep length of the verification, seconds.
        #[arg(long)]
        sweep_seconds: Option<f64>,
        /// Also in DJ/Live mode (the program stops for the verification).
        #[arg(long)]
        force: bool,
        /// Print the result as JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Design from a saved measurement (taken through the profile's own set), write the
    /// corrected set, and store both under NAME with the measurement.
    Store {
        name: String,
        #[arg(long)]
        profile: PathBuf,
        /// The measurement the design is made from.
        #[arg(long)]
        measurement: PathBuf,
        /// The verification measurement through the corrected set: what later drift checks
        /// compare with (default: the design's measurement).
        #[arg(long)]
        verified: Option<PathBuf>,
        /// Where the corrected set goes (default: the controller's sets directory).
        #[arg(long)]
        sets: Option<PathBuf>,
        #[arg(long, default_value_t = 85.0)]
        operating_spl: f64,
        #[arg(long, default_value_t = 500.0)]
        correct_up_to: f64,
    },
    /// Offline: write the preset's set again (the same set id, or a refusal) and print its
    /// directory, for ReloadFilters. `recall` does this, deploys and verifies in one go.
    Write {
        name: String,
        #[arg(long)]
        sets: Option<PathBuf>,
        #[arg(long, default_value = "b")]
        tag: String,
    },
    /// Compare a fresh measurement with the preset's, per 1/3 octave.
    Drift {
        name: String,
        measurement: PathBuf,
        /// Warn past this many dB in any band.
        #[arg(long, default_value_t = 1.5)]
        threshold: f64,
    },
}

fn default_presets_dir() -> PathBuf {
    // Where the controller keeps them unless its config says otherwise.
    MeasureConfig::default().presets_dir()
}

/// Exit status of a recall whose verification drifted past the threshold.
const DRIFTED: i32 = 3;

pub fn run(a: PresetArgs) -> Result<()> {
    let presets = a.presets.unwrap_or_else(default_presets_dir);
    match a.cmd {
        PresetCmd::List => {
            for n in preset::list(&presets)? {
                let p = preset::load(&presets, &n)?;
                outln!(
                    "{n}: profile \"{}\", set {}, {} channel(s), stored at {} (unix)",
                    p.profile.name,
                    p.set_id,
                    p.design.channels.len(),
                    p.created_unix
                );
            }
            Ok(())
        }
        PresetCmd::Store {
            name,
            profile,
            measurement,
            verified,
            sets,
            operating_spl,
            correct_up_to,
        } => {
            if !preset::valid_name(&name) {
                bail!("preset name {name:?}: use letters, digits, '-', '_' and '.' (not first)");
            }
            if preset::exists(&presets, &name) {
                bail!(
                    "preset \"{name}\" exists in {}: nothing changed",
                    presets.display()
                );
            }
            let rig = load_rig(&profile, None).map_err(|e| anyhow::anyhow!("{e}"))?;
            let results = analysed(&measurement)?;
            let opts = DesignOptions {
                correction: CorrectionParams {
                    hi_hz: correct_up_to,
                    ..CorrectionParams::default()
                },
                operating_spl_db: operating_spl,
                ..DesignOptions::default()
            };
            let d = design(&rig, &results, &opts)?;
            let compare = match &verified {
                Some(v) => analysed(v)?,
                None => results,
            };
            let sets = sets.unwrap_or_else(default_sets_dir);
            let (set_dir, m) = write_corrected_set_for(&rig, &d, &sets, "b")?;
            let stored = preset::store(
                &presets,
                &name,
                &rig,
                &d,
                &m.set_id,
                &compare,
                Some(verified.as_deref().unwrap_or(&measurement)),
            );
            if stored.is_err() {
                let _ = std::fs::remove_dir_all(&set_dir);
            }
            let dir = stored?;
            outln!(
                "preset \"{name}\" stored in {} (set {} at {})",
                dir.display(),
                m.set_id,
                set_dir.display()
            );
            Ok(())
        }
        PresetCmd::Save { name, measurement } => {
            let proxy = client::connect_uncached()?;
            let dir = match measurement {
                Some(d) => std::path::absolute(&d)
                    .with_context(|| format!("measurement {}", d.display()))?,
                None => {
                    let json = proxy.measurement_result().map_err(client::explain)?;
                    if json.is_empty() {
                        bail!("the controller has measured nothing yet: name the measurement");
                    }
                    let v: serde_json::Value = serde_json::from_str(&json)?;
                    PathBuf::from(v["dir"].as_str().unwrap_or_default())
                }
            };
            let stored = proxy
                .store_preset(&name, &dir.display().to_string())
                .map_err(client::explain)?;
            outln!(
                "preset \"{name}\" stored in {stored} (from {})",
                dir.display()
            );
            Ok(())
        }
        PresetCmd::Recall {
            name,
            threshold,
            target_spl,
            sweep_seconds,
            force,
            json,
        } => {
            let proxy = client::connect_uncached()?;
            let mut opts = serde_json::json!({ "force": force });
            if let Some(t) = threshold {
                opts["drift_threshold_db"] = t.into();
            }
            if let Some(t) = target_spl {
                opts["target_spl_db"] = t.into();
            }
            if let Some(s) = sweep_seconds {
                opts["sweep_s"] = s.into();
            }
            let run = follow(
                &proxy,
                || {
                    proxy
                        .recall_preset(&name, &opts.to_string())
                        .map_err(client::explain)
                },
                &FollowOptions { progress: !json },
            )?;
            run.print(json);
            let status = match run.status() {
                0 if run.report.preset.as_ref().is_some_and(|p| p.warn) => DRIFTED,
                s => s,
            };
            if status != 0 {
                std::process::exit(status);
            }
            Ok(())
        }
        PresetCmd::Write { name, sets, tag } => {
            let sets = sets.unwrap_or_else(default_sets_dir);
            let r = preset::recall(&presets, &name, &sets, &tag)?;
            outln!("{}", r.set_dir.display());
            eprintln!(
                "preset \"{name}\": set {} written; deploy it (ReloadFilters), measure again and \
                 run `mugge preset drift {name} <measurement>` (or use `mugge preset recall`)",
                r.manifest.set_id
            );
            Ok(())
        }
        PresetCmd::Drift {
            name,
            measurement,
            threshold,
        } => {
            let p = preset::load(&presets, &name)?;
            let fresh = analysed(&measurement)?;
            let channels = preset::drift(&p.measured, &fresh, threshold);
            let check = PresetCheck {
                name: name.clone(),
                set_id: p.set_id.clone(),
                threshold_db: threshold,
                warn: channels.iter().any(|c| c.warn),
                channels,
            };
            out!("{}", check.summary());
            if check.warn {
                std::process::exit(DRIFTED);
            }
            Ok(())
        }
    }
}

//! `mugge preset list|store|recall|drift`: room designs kept for fixed installations (D-028).
//! Venues are measured fresh every time (D-008); these are for a room that does not change.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mugge_controller::daemon::chain::default_sets_dir;
use mugge_filter_chain::measure::correction::CorrectionParams;
use mugge_filter_chain::measure::design::{design, write_corrected_set_for, DesignOptions};
use mugge_filter_chain::measure::preset;
use mugge_filter_chain::measure::record::{ChannelResult, Recording};
use mugge_filter_chain::validate::load_rig;
use std::path::{Path, PathBuf};

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
    /// Write the preset's set again (the same set id, or a refusal) and print its directory,
    /// for ReloadFilters. Measure again afterwards and run `mugge preset drift`.
    Recall {
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
    // Next to the sets: $XDG_STATE_HOME/mugge/presets.
    default_sets_dir()
        .parent()
        .map(|p| p.join("presets"))
        .unwrap_or_else(|| PathBuf::from("presets"))
}

fn analyse(dir: &Path) -> Result<Vec<ChannelResult>> {
    Recording::load(dir)
        .and_then(|r| r.analyse())
        .with_context(|| format!("measurement {}", dir.display()))
}

pub fn run(a: PresetArgs) -> Result<()> {
    let presets = a.presets.unwrap_or_else(default_presets_dir);
    match a.cmd {
        PresetCmd::List => {
            for n in preset::list(&presets)? {
                let p = preset::load(&presets, &n)?;
                println!(
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
            let results = analyse(&measurement)?;
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
                Some(v) => analyse(v)?,
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
            println!(
                "preset \"{name}\" stored in {} (set {} at {})",
                dir.display(),
                m.set_id,
                set_dir.display()
            );
            Ok(())
        }
        PresetCmd::Recall { name, sets, tag } => {
            let sets = sets.unwrap_or_else(default_sets_dir);
            let r = preset::recall(&presets, &name, &sets, &tag)?;
            println!("{}", r.set_dir.display());
            eprintln!(
                "preset \"{name}\": set {} written; deploy it (ReloadFilters), measure again and \
                 run `mugge preset drift {name} <measurement>`",
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
            let fresh = analyse(&measurement)?;
            let drift = preset::drift(&p.measured, &fresh, threshold);
            let mut warn = false;
            for c in &drift {
                let worst = c
                    .bands
                    .iter()
                    .max_by(|a, b| a.2.abs().total_cmp(&b.2.abs()));
                println!(
                    "channel {}: max drift {:.2} dB{}{}",
                    c.channel,
                    c.max_abs_db,
                    worst
                        .map(|w| format!(" ({:.0}-{:.0} Hz {:+.2} dB)", w.0, w.1, w.2))
                        .unwrap_or_else(|| " (not measured again)".into()),
                    if c.warn { "  WARNING" } else { "" }
                );
                warn |= c.warn;
            }
            if warn {
                println!(
                    "WARNING: the installation drifted past {threshold} dB from preset \"{name}\": \
                     measure again and design anew"
                );
            } else {
                println!("preset \"{name}\": within {threshold} dB of its measurement");
            }
            Ok(())
        }
    }
}

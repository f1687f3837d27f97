//! `mugge profile check FILE`: validate a speaker profile and the identities it uses.
//! `mugge profile activate NAME [--force]`, `abort`, `unmute`, `reload SET`: the controller's
//! safety flow and dropout-free filter reloads.

use anyhow::Result;
use clap::{Args, Subcommand};
use mugge_filter_chain::validate::load_rig;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    cmd: ProfileCmd,
}

#[derive(Subcommand)]
enum ProfileCmd {
    /// Validate a profile; exit status 1 and every problem (file, field, channel) if refused.
    Check {
        file: PathBuf,
        /// Speaker identity directory (default: <profile dir>/../speakers).
        #[arg(long)]
        speakers: Option<PathBuf>,
    },
    /// Activate a profile: generate + gate, mute, new chain, re-link, ramp up (shows progress).
    Activate {
        name: String,
        /// Also in DJ/Live mode (audio drops while the chain changes).
        #[arg(long)]
        force: bool,
    },
    /// Mute every speaker output now and stop a running activation.
    Abort,
    /// Ramp the active chain up to its profile's trims (after a muted start).
    Unmute,
    /// Swap in a new matched set of the active profile without a dropout (crossfade).
    Reload { set: PathBuf },
}

fn watch_progress(p: &mugge_controller::client::ControllerProxyBlocking<'static>) -> Result<()> {
    let signals = p.receive_activation_progress()?;
    std::thread::spawn(move || {
        let mut last = String::new();
        for s in signals {
            if let Ok(a) = s.args() {
                // One line per phase and per 10 % of a ramp.
                let line = format!("{} {}%", a.phase, a.percent / 10 * 10);
                if line != last {
                    outln!("  {line}");
                    last = line;
                }
            }
        }
    });
    Ok(())
}

pub fn run(a: ProfileArgs) -> Result<()> {
    use mugge_controller::client::{connect, explain};
    match a.cmd {
        ProfileCmd::Activate { name, force } => {
            let p = connect()?;
            watch_progress(&p)?;
            outln!("activating profile {name}");
            let timings = p.activate_profile(&name, force).map_err(explain)?;
            let total: u64 = timings.iter().map(|t| t.1).sum();
            for (phase, ms) in timings {
                outln!("  {phase:<9} {ms:>6} ms");
            }
            outln!("profile {name} active ({total} ms)");
            Ok(())
        }
        ProfileCmd::Abort => {
            outln!("{}", connect()?.abort_activation().map_err(explain)?);
            Ok(())
        }
        ProfileCmd::Reload { set } => {
            let p = connect()?;
            watch_progress(&p)?;
            let set = std::fs::canonicalize(&set).unwrap_or(set);
            outln!("reloading filters from {}", set.display());
            let timings = p
                .reload_filters(&set.display().to_string())
                .map_err(explain)?;
            for (phase, ms) in timings {
                outln!("  {phase:<9} {ms:>6} ms");
            }
            outln!("filters reloaded");
            Ok(())
        }
        ProfileCmd::Unmute => {
            let p = connect()?;
            watch_progress(&p)?;
            p.unmute().map_err(explain)?;
            outln!("speaker outputs at the profile's trims");
            Ok(())
        }
        ProfileCmd::Check { file, speakers } => match load_rig(&file, speakers.as_deref()) {
            Ok(rig) => {
                let p = &rig.profile;
                outln!(
                    "{}: OK: \"{}\", {}, {} speaker channels, {} taps at {} Hz, global attenuation {:.1} dB",
                    file.display(),
                    p.name,
                    p.topology.label(),
                    p.speakers.len(),
                    p.taps,
                    p.sample_rate,
                    rig.global_attenuation_db()
                );
                let mut sp: Vec<_> = p.speakers.iter().collect();
                sp.sort_by_key(|s| s.channel);
                for s in sp {
                    let id = rig.identity_of(s);
                    outln!(
                        "  channel {}: {} ({}), band {}, {:?}, HPF {} Hz, trim {} dB, delay {} ms{}",
                        s.channel,
                        s.name,
                        s.identity,
                        s.band,
                        s.role,
                        id.mandatory_hpf_hz.unwrap_or(0.0),
                        s.trim_db,
                        s.delay_ms,
                        if s.polarity == mugge_filter_chain::profile::Polarity::Inverted {
                            ", polarity inverted"
                        } else {
                            ""
                        }
                    );
                }
                for w in &rig.warnings {
                    eprintln!("{w}");
                }
                Ok(())
            }
            Err(problems) => {
                eprintln!("{problems}");
                std::process::exit(1);
            }
        },
    }
}

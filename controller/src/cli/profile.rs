//! `mugge profile check FILE`: validate a speaker profile and the identities it uses.

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
}

pub fn run(a: ProfileArgs) -> Result<()> {
    match a.cmd {
        ProfileCmd::Check { file, speakers } => match load_rig(&file, speakers.as_deref()) {
            Ok(rig) => {
                let p = &rig.profile;
                println!(
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
                    println!(
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

//! `mugge daemon`: runs the controller.

use std::path::PathBuf;

use mugge_controller::daemon::config::Config;
use mugge_controller::daemon::routing::Mode;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (default: $MUGGE_CONFIG, then $XDG_CONFIG_HOME/mugge/controller.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Mode to start in (default: the mode the previous run left, else standby).
    #[arg(long)]
    mode: Option<Mode>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MUGGE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let path = args.config.or_else(Config::default_path);
    let config = match &path {
        Some(p) => Config::load(p).map_err(anyhow::Error::msg)?,
        None => Config::default(),
    };
    mugge_controller::daemon::run(config, args.mode)
}

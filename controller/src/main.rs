//! `mugge`: the command-line front end and the controller daemon.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod cli {
    pub mod filters;
    pub mod profile;
}

/// mugge: the audio brain of a small PA box.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Speaker profiles.
    Profile(cli::profile::ProfileArgs),
    /// Filter sets: generate, verify, plot, bench.
    Filters(cli::filters::FiltersArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Some(Cmd::Profile(a)) => cli::profile::run(a),
        Some(Cmd::Filters(a)) => cli::filters::run(a),
        None => Ok(()),
    }
}

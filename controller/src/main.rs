//! `mugge`: the command-line front end and the controller daemon.
#![forbid(unsafe_code)]

mod cli;
mod setup;

use clap::{Parser, Subcommand};

/// mugge: the audio brain of a small PA box.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    Setup(cli::setup::SetupArgs),
    /// Speaker profiles.
    Profile(cli::profile::ProfileArgs),
    /// Filter sets: generate, verify, plot, bench.
    Filters(cli::filters::FiltersArgs),
    /// Run the controller daemon (D-Bus org.mugge.Controller).
    Daemon(cli::daemon::Args),
    /// Show mode, quantum, profile, readiness and health.
    Status(cli::status::Args),
    /// Set the mode: standby, dj, live, measurement.
    Mode(cli::mode::Args),
    /// Show the desired links and whether each exists.
    Links(cli::links::Args),
    /// Live view of the three meter points (program, hardware out, hardware in).
    Meters(cli::meters::Args),
    /// Tap a source's PCM (framed stream) to a file or stdout.
    Tap(cli::tap::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Some(Command::Setup(args)) => cli::setup::run(args),
        Some(Command::Profile(a)) => cli::profile::run(a),
        Some(Command::Filters(a)) => cli::filters::run(a),
        Some(Command::Daemon(a)) => cli::daemon::run(a),
        Some(Command::Status(a)) => cli::status::run(a),
        Some(Command::Mode(a)) => cli::mode::run(a),
        Some(Command::Links(a)) => cli::links::run(a),
        Some(Command::Meters(a)) => cli::meters::run(a),
        Some(Command::Tap(a)) => cli::tap::run(a),
        None => Ok(()),
    }
}

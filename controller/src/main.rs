//! `mugge`: the command-line front end and the controller daemon.
#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};

/// mugge: the audio brain of a small PA box.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Measure the speakers through the mic, design the room correction, deploy and verify it.
    Measure(cli::measure::Args),
    /// Tap a source's PCM (framed stream) to a file or stdout.
    Tap(cli::tap::Args),
    /// Speaker profiles.
    Profile(cli::profile::ProfileArgs),
    /// Filter sets: generate, verify, plot, bench.
    Filters(cli::filters::FiltersArgs),
    /// Set up this box for headless user-session audio.
    Setup(cli::setup::SetupArgs),
    /// Analyse a saved measurement offline; with --profile, propose the room correction.
    Analyse(cli::analyse::Args),
    /// Room corrections kept for fixed installations: list, store, recall, drift.
    Preset(cli::preset::PresetArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Daemon(a) => cli::daemon::run(a),
        Command::Status(a) => cli::status::run(a),
        Command::Mode(a) => cli::mode::run(a),
        Command::Links(a) => cli::links::run(a),
        Command::Meters(a) => cli::meters::run(a),
        Command::Measure(a) => cli::measure::run(a),
        Command::Tap(a) => cli::tap::run(a),
        Command::Profile(a) => cli::profile::run(a),
        Command::Filters(a) => cli::filters::run(a),
        Command::Setup(a) => cli::setup::run(a),
        Command::Analyse(a) => cli::analyse::run(a),
        Command::Preset(a) => cli::preset::run(a),
    }
}

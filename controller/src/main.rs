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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Some(Command::Setup(args)) => cli::setup::run(args),
        None => Ok(()),
    }
}

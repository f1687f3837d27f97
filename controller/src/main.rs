//! `mugge`: the command-line front end and the controller daemon.
#![forbid(unsafe_code)]

use clap::Parser;

/// mugge: the audio brain of a small PA box.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}

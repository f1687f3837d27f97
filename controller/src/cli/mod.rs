//! `mugge` subcommands, one module per command group.

pub mod daemon;
pub mod links;
pub mod mode;
pub mod status;

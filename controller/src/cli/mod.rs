//! `mugge` subcommands, one module per command group.

pub mod daemon;
pub mod links;
pub mod meters;
pub mod mode;
pub mod status;
pub mod tap;

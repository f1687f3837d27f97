//! `mugge` subcommands, one module per command group, so several people can add subcommands
//! without conflicts.

pub mod daemon;
pub mod filters;
pub mod links;
pub mod measure;
pub mod meters;
pub mod mode;
pub mod profile;
pub mod setup;
pub mod status;
pub mod tap;

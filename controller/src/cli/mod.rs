//! One module per command group, so several people can add subcommands without conflicts.
pub mod setup;

//! mugge-controller: the only link manager of mugge's PipeWire graph, and the `mugge` CLI.
#![forbid(unsafe_code)]

pub mod client;
pub mod daemon;
pub mod setup;

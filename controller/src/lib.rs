//! mugge-controller: the only link manager of mugge's PipeWire graph.
#![forbid(unsafe_code)]

pub mod daemon;

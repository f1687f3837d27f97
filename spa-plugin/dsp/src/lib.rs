//! Real-time-safe DSP of mugge's in-graph nodes. Runs and is tested without PipeWire.
//!
//! Contract: every `process_*`/`tick`/`fill` function here is bounded, never allocates, locks,
//! logs or makes syscalls, and never panics on any input (NaN and infinities included).
//! Allocation happens only in constructors, which the plugin calls on the main thread.
#![forbid(unsafe_code)]

pub mod db;
pub mod meter;
pub mod siggen;
pub mod snapshot;
pub mod tapframe;

/// Most channels one meter or tap node handles (node property `audio.channels` is 1..=32).
pub const MAX_CHANNELS: usize = 32;

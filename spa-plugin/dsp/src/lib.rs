//! Real-time-safe DSP for mugge's in-graph nodes. Runs and is tested without PipeWire.
#![forbid(unsafe_code)]

//! libspa-mugge: PipeWire SPA plugin with mugge's in-graph nodes.
//!
//! Every `unsafe` line of the plugin lives in one audited FFI module (added with the node
//! implementations); the DSP behind it is the safe `mugge-dsp` crate.
pub use mugge_dsp as dsp;

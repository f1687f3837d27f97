//! libspa-mugge: PipeWire SPA plugin with mugge's in-graph nodes (`mugge.meter`, `mugge.tap`,
//! `mugge.siggen`).
//!
//! Every `unsafe` line of the plugin lives in the one audited module [`ffi`]: the exported
//! `spa_handle_factory_enum`, the handle/node vtables, hooks, buffer and IO area access. All
//! other modules are safe Rust (`unsafe_code` is denied crate-wide and allowed only there); the
//! DSP is the `#![forbid(unsafe_code)]` crate `mugge-dsp`.
//!
//! Threads: `*_main` functions and the [`node::MainSide`] trait run on PipeWire's main loop;
//! [`node::RtSide`] runs on the data loop (real-time: no allocation, lock, syscall, log);
//! [`server`] threads serve the Unix sockets.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use mugge_dsp as dsp;

#[allow(unsafe_code)]
mod ffi;
pub mod meter_node;
pub mod node;
pub mod params;
pub mod server;
pub mod siggen_node;
pub mod tap_node;

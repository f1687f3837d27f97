//! mugge-testkit: a private, headless PipeWire stack with only the hardware mocked.
//!
//! `Stack::start()` gives a test its own D-Bus session bus, PipeWire daemon (the project's
//! `conf/pipewire-headless.conf` plus the `conf/mock-hardware.conf` null devices) and WirePlumber
//! (the project's `wireplumber/` fragments: devices managed, nothing linked). The freshly built
//! `libspa-mugge.so` is on the daemon's plugin path. See docs/development.md.
#![forbid(unsafe_code)]

pub mod audio;
pub mod graph;
pub mod process;
pub mod profile;
pub mod room;
pub mod stack;

pub use audio::{Player, Recorder};
pub use graph::{Graph, Link, Node, Port};
pub use process::ChildGuard;
pub use profile::{NodeCost, Profile};
pub use stack::{Stack, StackBuilder, HW_IN, HW_OUT, MIC};

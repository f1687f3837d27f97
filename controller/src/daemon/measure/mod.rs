//! The online measurement loop's parts (issue 8, docs/measurement.md): the orchestration that
//! drives the graph lives in `service/measurement.rs`; these modules are the pieces it uses,
//! each testable without PipeWire.
//!
//! - [`options`]: `[measurement]` config and the per-call JSON options.
//! - [`solo`]: one speaker at a time through its own filters (generator inputs, gains).
//! - [`level`]: level finding and the safety layer on mic meter snapshots (D-035).
//! - [`capture`]: tap socket readers and the graph-clock cut of a sweep capture.
//! - [`siggen`]: the generator's `Props`.
//! - [`report`]: the structured result (D-Bus JSON, CLI summary).

pub mod capture;
pub mod level;
pub mod options;
pub mod report;
pub mod siggen;
pub mod solo;

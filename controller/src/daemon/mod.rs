//! The controller daemon: desired state per mode, the observed graph and the reconciler.

pub mod config;
pub mod graph;
pub mod reconcile;
pub mod routing;

//! What the PipeWire side reports to the D-Bus side: readiness, links, health, quantum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    pub from: String,
    pub to: String,
    pub optional: bool,
    pub present: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub links_created: u64,
    pub links_destroyed: u64,
    pub nodes_created: u64,
    pub nodes_destroyed: u64,
    /// Registry appearance to removal of the last undesired link we destroyed, microseconds.
    pub last_destroy_us: Option<u64>,
    pub max_destroy_us: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Connected to PipeWire and through the initial registry enumeration.
    pub connected: bool,
    /// The desired state this status was computed against.
    pub generation: u64,
    pub ready: bool,
    pub missing: Vec<String>,
    pub optional_missing: Vec<String>,
    /// `clock.force-quantum` as the settings metadata reports it.
    pub quantum: Option<u32>,
    pub profile: Option<String>,
    /// Component name -> present in the graph.
    pub health: BTreeMap<String, bool>,
    pub links: Vec<LinkState>,
    /// Plugin node -> its socket path (`mugge.tap.socket` / `mugge.meter.socket`).
    pub sockets: BTreeMap<String, String>,
    pub stats: Stats,
    /// Filter-chain instances in the graph (nodes with `mugge.set`).
    pub chains: Vec<super::chain::ChainSeen>,
}

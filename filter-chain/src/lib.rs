//! Speaker identities and profiles in; gated minimum-phase FIR sets and filter-chain configs out.
//!
//! Flow: `validate::load_rig` (typed TOML -> checked rig) -> `generate::generate` (per-channel
//! design from `response` + `minphase`, checked by `gates`) -> `set::write_set` (WAVs, configs from
//! `config`, manifest; atomic). `set::verify` re-checks a set on disk.
#![forbid(unsafe_code)]

pub mod config;
pub mod gates;
pub mod generate;
pub mod measure;
pub mod minphase;
pub mod profile;
pub mod response;
pub mod set;
pub mod validate;

//! Speaker identities and profiles in; gated minimum-phase FIR sets and filter-chain configs out.
#![forbid(unsafe_code)]

pub mod gates;
pub mod minphase;
pub mod profile;
pub mod response;
pub mod validate;

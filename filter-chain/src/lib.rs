//! Speaker identities and profiles in; gated minimum-phase FIR sets and filter-chain configs out.
#![forbid(unsafe_code)]

pub mod measure;

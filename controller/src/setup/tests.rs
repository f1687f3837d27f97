//! Tests for `mugge setup` that need no booted systemd: detection on fixture trees, plan/apply/
//! rollback against a fake root with a fake system behind the command runner, gate logic against
//! recorded command output.

mod alsa_rules_tests;
mod fake;
mod fixture;
mod gate_tests;
mod run_tests;
mod stack_tests;

#!/usr/bin/env bash
# The README's test command: installs what is missing, then format, lint, build and every test
# (unit tests and integration tests on private headless PipeWire stacks). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/rust-env.sh

step() { printf '\n== %s\n' "$*"; }
step "format";  cargo fmt --all --check
step "lint";    cargo clippy --workspace --all-targets -- -D warnings
# The plugin must exist before the integration tests load it into their daemons.
step "build";   cargo build --workspace --all-targets
step "test";    cargo test --workspace --no-fail-fast

#!/usr/bin/env bash
# The README's demo command: builds mugge and runs it on a private, headless PipeWire with the
# hardware mocked by null devices. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/rust-env.sh
cargo build --workspace --bins
exec target/debug/mugge-demo "$@"

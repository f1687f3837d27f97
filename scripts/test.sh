#!/usr/bin/env bash
# The README's test command: installs what is missing, then format, lint, build and every test
# (unit tests, integration tests on private headless PipeWire stacks, the meson install check).
# Idempotent; a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/rust-env.sh

log=$(mktemp /tmp/mugge-test.XXXXXX)
trap 'rm -f "$log"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "format";  cargo fmt --all --check
step "lint";    cargo clippy --workspace --all-targets -- -D warnings
# The plugin must exist before the integration tests load it into their daemons.
step "build";   cargo build --workspace --all-targets
step "install"; bash tests/meson-install.sh | tee -a "$log"
step "test"
status=0
# One test at a time: each integration test runs its own PipeWire stack with real convolution,
# and two of them sharing 2 cores turn scheduling jitter into dropouts the tests must not see.
cargo test --workspace --no-fail-fast -- --test-threads=1 2>&1 | tee -a "$log" || status=$?

# One closing line over every runner above.
passed=$(grep -oE '(ok\.|FAILED\.) [0-9]+ passed' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
meson_passed=$(sed -n 's/^meson-install: \([0-9]*\) passed.*/\1/p' "$log" | tail -n1)
echo
echo "mugge: $((passed + ${meson_passed:-0})) passed, $failed failed"
exit "$status"

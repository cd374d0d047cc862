#!/usr/bin/env bash
# Builds everything and runs every test: formatting, lints, unit and property tests, and the
# end-to-end tests that start real `bsfg` processes on loopback. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (unit, property and end-to-end)"
cargo test --workspace --all-targets -- --test-threads 2

#!/usr/bin/env bash
# Builds everything and runs every test: the Prometheus alert rules shipped in config-samples/,
# formatting, lints, unit and property tests, and the end-to-end tests that start real `bsfg`
# processes on loopback. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
# promtool checks and unit-tests the shipped alert rules; Debian ships it in `prometheus`. The runbook
# drills (integration/drill_*.rs) run the guide's commands, which use jq, curl and openssl. The
# host tests (integration/systemd.rs, packaging.rs) verify the unit with systemd-analyze (systemd),
# build the .deb (dpkg-dev's dpkg-shlibdeps, binutils' objcopy), render man pages (man-db) and
# check the package with lintian; they fail, never skip, without them. The clock-step test
# (integration/clock_step.rs) runs a node under libfaketime; the storage-stall test freezes an
# ext4 image made with e2fsprogs' mkfs.ext4.
BSFG_EXTRA_APT=(prometheus jq curl openssl systemd dpkg-dev binutils man-db lintian libfaketime e2fsprogs)
. scripts/env.sh
# The HA engine tests run a real nats-server cluster; they fail (never skip) without it.
. scripts/nats-server.sh

echo "== promtool (alert rules and their unit tests)"
promtool check rules config-samples/prometheus/alerts.yml
promtool test rules config-samples/prometheus/alerts_test.yml

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path tools/jetstream-bench/Cargo.toml -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path tools/jetstream-bench/Cargo.toml --all-targets -- -D warnings
echo "== cargo test (unit, property and end-to-end)"
# The end-to-end tests are one binary (integration/main.rs) and spend most of their time waiting
# for nodes, timers and fsyncs, not on a core: four at a time keep a 2-core host busy without
# starving the timing-sensitive ones (BSFG_TEST_THREADS to choose another number).
cargo test --workspace --all-targets -- --test-threads "${BSFG_TEST_THREADS:-4}"
cargo test --manifest-path tools/jetstream-bench/Cargo.toml

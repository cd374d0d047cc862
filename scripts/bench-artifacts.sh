#!/usr/bin/env bash
# Serves one artifact over and over and prints what each get took and the node's CPU for them:
# the cost of serving artifacts (each checked against its digest as it is read).
#
#   scripts/bench-artifacts.sh                  # a release build of this tree
#   scripts/bench-artifacts.sh OLD_BIN NEW_BIN  # two builds, alternating, three rounds
#   ARTIFACT_MB=50 GETS=8 scripts/bench-artifacts.sh
#
# The node is `enterprise` from `bsfg demo --fast`'s configuration (its PKI and client), with a
# data directory of its own per run; the artifact is random bytes put once, then fetched GETS
# times with `bsfg get-object -o`. The node's CPU is its utime + stime from /proc around the gets.
set -euo pipefail
cd "$(dirname "$0")/.."
BSFG_EXTRA_APT=(bc curl)
. scripts/env.sh

mb="${ARTIFACT_MB:-200}"
gets="${GETS:-4}"
if [ $# -eq 0 ]; then
  cargo build --release --bin bsfg
  set -- "$BSFG_BIN_DIR/release/bsfg"
fi
work="$(mktemp -d -t bsfg-bench-artifacts-XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$1" demo --fast --dir "$work/demo" > "$work/demo.out" 2>&1
head -c "$((mb * 1000000))" /dev/urandom > "$work/art.bin"
config="$work/demo/enterprise.toml"
rpc="$(sed -n 's/^rpc = "\(.*\)"/\1/p' "$config")"
admin="$(sed -n 's/^admin = "\(.*\)"/\1/p' "$config")"
export BSFG_NODE="$rpc" BSFG_CA="$work/demo/pki/ca.pem" BSFG_CERT="$work/demo/pki/demo-client.pem" \
  BSFG_KEY="$work/demo/pki/demo-client.key" BSFG_SERVER_NAME=enterprise

run() { # BIN
  local bin="$1" data="$work/data" pid t0 t1 started ended times=()
  rm -rf "$data"
  sed "s#^data_dir = .*#data_dir = \"$data\"#" "$config" > "$work/node.toml"
  "$bin" serve --config "$work/node.toml" > "$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://$admin/readyz" > /dev/null && break; sleep 0.1; done
  "$bin" put-object --bucket bench --key artifact "$work/art.bin" > /dev/null
  t0="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
  for _ in $(seq "$gets"); do
    started="$(date +%s.%N)"
    "$bin" get-object --bucket bench --key artifact -o "$work/got.bin" > /dev/null
    ended="$(date +%s.%N)"
    times+=("$(echo "$ended - $started" | bc)")
    cmp -s "$work/art.bin" "$work/got.bin" || { echo "the bytes served differ" >&2; exit 1; }
  done
  t1="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
  kill "$pid"; wait "$pid" 2> /dev/null || true
  echo "$bin: $gets gets of $mb MB: ${times[*]} s; node CPU $(( (t1 - t0) * 1000 / $(getconf CLK_TCK) )) ms"
}

rounds=$([ $# -gt 1 ] && echo 3 || echo 1)
for _ in $(seq "$rounds"); do
  for bin in "$@"; do run "$bin"; done
done

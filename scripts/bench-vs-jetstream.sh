#!/usr/bin/env bash
# Runs the same workloads against NATS JetStream and bsfg on this machine, in one run, and prints
# them side by side with the ratios bsfg / JetStream (SPEC §14).
#
# JetStream runs as two zones: zone A a hub (domain `zonea`, stream FACTS on `facts.>`, file
# storage, message-id dedupe), zone B a leafnode of A (domain `zoneb`, stream FACTS_B sourcing
# FACTS through `$JS.zonea.API`). It runs in two settings, each on fresh servers for every workload:
#   default  one server per zone, streams R1: the server's out-of-the-box durability;
#   r3       a three-server cluster per zone, streams R3: the most durable setting nats-server
#            2.9 offers (it has no fsync before the ack; see docs/performance.md).
# Then `bsfg bench` runs the same workloads. Workloads: append (unpaced), replicate (unpaced) and
# replicate paced at 10 000 facts/s.
#
# Usage: scripts/bench-vs-jetstream.sh [--record]
#   --record              rewrite the block between <!-- jetstream:begin --> and
#                         <!-- jetstream:end --> in docs/performance.md
#   BSFG_BENCH_QUICK=1    a small run, to try the script
set -euo pipefail
cd "$(dirname "$0")/.."
BSFG_EXTRA_APT=(nats-server)
. scripts/env.sh
. scripts/doc-block.sh

record=false
case "${1:-}" in
  --record) record=true ;;
  "") ;;
  *) echo "usage: $0 [--record]" >&2; exit 2 ;;
esac

if [ "${BSFG_BENCH_QUICK:-0}" = 1 ]; then
  count=20000; paced_count=20000
else
  count=300000; paced_count=200000
fi
producers=4; concurrency=64; payload=256; rate=10000

echo "== building bsfg and the JetStream client (release)" >&2
cargo build --release --bin bsfg
cargo build --release --manifest-path tools/jetstream-bench/Cargo.toml
bsfg="$BSFG_BIN_DIR/release/bsfg"
client="$BSFG_BIN_DIR/release/bsfg-jetstream-bench"

work=$(mktemp -d -t bsfg-vs-jetstream.XXXXXX)
pids=()
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_servers; rm -rf "$work"' EXIT

# What an ack means in each setting; measured on 2.9.10 with strace: one pwrite per message to the
# stream's block file before its PubAck, and the first fsync 2 minutes later.
nats_version=$(nats-server --version | sed 's/^nats-server: //')
case "$nats_version" in
  v2.9.*) ;;
  *) echo "warning: the durability statements were established for nats-server 2.9, this is $nats_version" >&2 ;;
esac
durability_default="nats-server $nats_version, file store, R1: each message written to the OS (not fsync'd) before its PubAck, fsync on a 2-minute timer; survives a server crash, not an OS crash or power loss"
durability_r3="nats-server $nats_version, file store, R3 (3 servers per zone, one machine): PubAck once a quorum (2 of 3) holds it in its replicated log; no server fsyncs before the ack (2.9 has no sync_always); all on one machine, so it survives a server crash, not an OS crash or power loss"

# write_conf FILE NAME DOMAIN STORE CLIENT_PORT CLUSTER_BLOCK LEAF_BLOCK
write_conf() {
  cat >"$1" <<EOF
server_name: $2
listen: 127.0.0.1:$5
jetstream { store_dir: "$4", domain: $3 }
$6
$7
EOF
}

# start_server NAME CONF: starts nats-server and waits until it accepts clients.
start_server() {
  local log="$work/$1.log"
  nats-server -c "$2" -l "$log" &
  pids+=("$!")
  server_flags+=(--server "$1=$!")
  for _ in $(seq 100); do
    grep -q "Server is ready" "$log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nats-server $1 did not start; its log:" >&2; cat "$log" >&2; exit 1
}

join() { local IFS=,; echo "$*"; }

# start_zones SERVERS_PER_ZONE: fresh servers for zone A (hub) and zone B (leafnode of A) on
# random loopback ports (base+0.. clients of A, base+3.. clients of B, base+6.. A's leafnode
# listeners, base+9.. and base+12.. the cluster routes of A and B); sets zone_a, zone_b and
# server_flags.
start_zones() {
  local n=$1 base=$((20000 + RANDOM % 2000 * 20)) i zone name store client cluster leaf
  local leaf_urls=() routes_a=() routes_b=()
  server_flags=()
  zone_a="nats://127.0.0.1:$base"; zone_b="nats://127.0.0.1:$((base + 3))"
  for i in $(seq 0 $((n - 1))); do
    leaf_urls+=("\"nats-leaf://127.0.0.1:$((base + 6 + i))\"")
    routes_a+=("\"nats-route://127.0.0.1:$((base + 9 + i))\"")
    routes_b+=("\"nats-route://127.0.0.1:$((base + 12 + i))\"")
  done
  for i in $(seq 0 $((n - 1))); do
    for zone in a b; do
      name="zone$zone"; cluster=""
      [ "$n" -gt 1 ] && name="zone$zone-$((i + 1))"
      store="$work/store/$name"; mkdir -p "$store"
      if [ "$zone" = a ]; then
        client=$((base + i))
        leaf="leafnodes { listen: 127.0.0.1:$((base + 6 + i)) }"
        [ "$n" -gt 1 ] && cluster="cluster { name: zonea, listen: 127.0.0.1:$((base + 9 + i)), routes: [$(join "${routes_a[@]}")] }"
      else
        client=$((base + 3 + i))
        leaf="leafnodes { remotes: [ { urls: [$(join "${leaf_urls[@]}")] } ] }"
        [ "$n" -gt 1 ] && cluster="cluster { name: zoneb, listen: 127.0.0.1:$((base + 12 + i)), routes: [$(join "${routes_b[@]}")] }"
      fi
      write_conf "$work/$name.conf" "$name" "zone$zone" "$store" "$client" "$cluster" "$leaf"
      start_server "$name" "$work/$name.conf"
    done
  done
}

# workload RUN: sets mode, rate_flag and run_count for one of the runs append, replicate, paced.
workload() {
  mode=$1; rate_flag=(); run_count=$count
  if [ "$1" = paced ]; then mode=replicate; rate_flag=(--rate "$rate"); run_count=$paced_count; fi
}

# jetstream SETTING SERVERS_PER_ZONE DURABILITY: the three runs, each on fresh servers.
jetstream() {
  local setting=$1 n=$2 durability=$3 run
  for run in append replicate paced; do
    echo "== JetStream $setting: $run" >&2
    workload "$run"
    start_zones "$n"
    "$client" run --mode "$mode" --zone-a "$zone_a" --zone-b "$zone_b" --replicas "$n" \
      --count "$run_count" --producers "$producers" --concurrency "$concurrency" \
      --payload-bytes "$payload" "${rate_flag[@]}" --durability "$durability" "${server_flags[@]}" \
      --json >"$work/jetstream-$setting-$run.json"
    stop_servers
    rm -rf "$work/store"
  done
}

# bsfg_bench RUN: `bsfg bench` with the same workload and as many facts in flight: unpaced, each
# producer has one AppendFacts call of $concurrency facts in flight (JetStream: $concurrency
# publishes); paced, one AppendFact per fact, as JetStream publishes them.
bsfg_bench() {
  workload "$1"
  local calls=(--concurrency "$concurrency")
  [ "$1" = paced ] || calls=(--concurrency 1 --batch "$concurrency")
  "$bsfg" bench --mode "$mode" --count "$run_count" --producers "$producers" "${calls[@]}" \
    --payload-bytes "$payload" "${rate_flag[@]}" --json >"$work/bsfg-$1.json"
}

jetstream default 1 "$durability_default"
jetstream r3 3 "$durability_r3"
for run in append replicate paced; do
  echo "== bsfg: $run" >&2
  bsfg_bench "$run"
done

columns=()
for column in "bsfg=bsfg" "JetStream default=jetstream-default" "JetStream R3=jetstream-r3"; do
  label=${column%%=*}; prefix=${column#*=}
  reports=()
  for run in append replicate paced; do
    [ -f "$work/$prefix-$run.json" ] && reports+=("$work/$prefix-$run.json")
  done
  columns+=(--column "$label=$(join "${reports[@]}")")
done
echo
"$client" compare "${columns[@]}"

if $record; then
  doc=docs/performance.md
  block="$work/block.md"
  {
    echo "## Side by side with NATS JetStream"
    echo
    echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench-vs-jetstream.sh\`$([ "${BSFG_BENCH_QUICK:-0}" = 1 ] && echo " with \`BSFG_BENCH_QUICK=1\` (a small run)")"
    echo "on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r),"
    echo "against nats-server $nats_version from Debian. Every figure comes from the same run on the same machine."
    echo
    echo "nats-server 2.9 has no setting that fsyncs before the ack: \`sync_interval\` and \`sync_always\` are"
    echo "unknown fields before 2.10. Traced with strace, 2.9.10 writes each message to its block file with one"
    echo "\`pwrite\` before the PubAck and fsyncs on a 2-minute timer. Its strongest setting is replication, so the"
    echo "R3 column runs a three-server cluster per zone; on one machine that still shares one page cache."
    echo
    echo "Both sides keep the same number of facts in flight. Unpaced, each bsfg producer has one AppendFacts"
    echo "call of $concurrency facts in flight where each JetStream producer has $concurrency async publishes;"
    echo "paced, bsfg sends one AppendFact per fact."
    echo
    "$client" compare --markdown "${columns[@]}"
  } >"$block"
  replace_block "$doc" jetstream "$block"
  echo "recorded in $doc" >&2
fi

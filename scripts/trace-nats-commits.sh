#!/usr/bin/env bash
# Counts what one JetStream commit costs: the fsync calls nats-server (scripts/nats-server.sh)
# makes per acknowledged publish, by file, for one setting and one load. Starts SERVERS fresh
# servers on loopback (a cluster when SERVERS > 1), each under
#   strace -f -ttt --seccomp-bpf -e trace=fsync,fdatasync,sync_file_range,syncfs,openat
# runs `bsfg-jetstream-bench run --mode append` against them (stream FACTS with SERVERS replicas,
# 256-byte messages with Nats-Msg-Id, PRODUCERS connections x INFLIGHT publishes in flight, every
# PubAck awaited) and counts each server's sync calls from the client's start to its end (stream
# creation included). docs/architecture.md, "What one commit costs on nats-server 2.15.1", has
# the findings. strace stops each server at every traced call, so throughput here is lower than
# untraced and Raft entries may batch more; the counts, not the rates, are the result.
#
# Usage: scripts/trace-nats-commits.sh SERVERS SYNC_INTERVAL COUNT PRODUCERS INFLIGHT
#   e.g. scripts/trace-nats-commits.sh 3 always 20000 4 64
#        scripts/trace-nats-commits.sh 1 default 2000 1 1   (nats-server's default: 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 5 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
servers=$1 interval=$2 count=$3 producers=$4 inflight=$5
. scripts/env.sh
. scripts/nats-server.sh
command -v strace >/dev/null 2>&1 || { echo "error: strace is not installed (apt-get install strace)" >&2; exit 1; }
cargo build --release --quiet --manifest-path tools/jetstream-bench/Cargo.toml
client="$BSFG_BIN_DIR/release/bsfg-jetstream-bench"
sync=""
[ "$interval" = default ] || sync="sync_interval: $interval"

dir=$(mktemp -d -t bsfg-nats-commits.XXXXXX)
base=$((20000 + RANDOM % 2000 * 20))
tracers=()
stop() {
  # strace detaches when signalled; the server is its child and is stopped by its own pid.
  for tracer in "${tracers[@]}"; do kill "$(pgrep -P "$tracer")" 2>/dev/null || true; done
  for tracer in "${tracers[@]}"; do wait "$tracer" 2>/dev/null || true; done
  tracers=()
}
trap 'stop; rm -rf "$dir"' EXIT
routes=$(for i in $(seq "$servers"); do printf '"nats-route://127.0.0.1:%d",' $((base + 10 + i)); done)
for i in $(seq "$servers"); do
  cluster=""
  [ "$servers" -gt 1 ] && cluster="cluster { name: probe, listen: 127.0.0.1:$((base + 10 + i)), routes: [${routes%,}] }"
  printf 'server_name: s%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: "%s", %s }\n%s\n' \
    "$i" $((base + i)) "$dir/store$i" "$sync" "$cluster" >"$dir/s$i.conf"
  strace -f -ttt --seccomp-bpf -e trace=fsync,fdatasync,sync_file_range,syncfs,openat \
    -o "$dir/s$i.strace" "$BSFG_NATS_SERVER" -c "$dir/s$i.conf" -l "$dir/s$i.log" &
  tracers+=("$!")
done
for i in $(seq "$servers"); do
  for _ in $(seq 200); do grep -qs "Server is ready" "$dir/s$i.log" && break; sleep 0.1; done
done

started=$(date +%s.%N)
"$client" run --mode append --zone-a "nats://127.0.0.1:$((base + 1))" --replicas "$servers" \
  --count "$count" --producers "$producers" --concurrency "$inflight" --durability traced
ended=$(date +%s.%N)
stop

echo "nats-server $("$BSFG_NATS_SERVER" --version | sed 's/.*: //'), $servers server(s), sync_interval $interval," \
  "$count publishes, $producers x $inflight in flight: sync calls per server during the run"
for i in $(seq "$servers"); do
  # Paths come from the openat calls (an unfinished call resumes on a later line of its thread).
  awk -v from="$started" -v to="$ended" -v count="$count" -v name="s$i" '
    function opened(file, fd) { sub(/.*\/store[0-9]+\//, "", file); sub(/[0-9]+\.blk$/, "N.blk", file); path[fd] = file }
    $3 ~ /^openat\(/ { split($0, q, "\""); if ($NF ~ /^[0-9]+$/) opened(q[2], $NF); else pending[$1] = q[2] }
    $3 == "<..." && $4 == "openat" && $NF ~ /^[0-9]+$/ { opened(pending[$1], $NF) }
    $2 + 0 >= from && $2 + 0 <= to && $3 ~ /^(fsync|fdatasync|sync_file_range|syncfs)\(/ {
      split($3, call, "[(,)]"); total++; by[call[1] " " path[call[2]]]++ }
    END {
      printf "%s: %d, %.3f per publish\n", name, total, total / count
      for (k in by) printf "  %7d %s\n", by[k], k
    }' "$dir/s$i.strace"
done

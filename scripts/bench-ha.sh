#!/usr/bin/env bash
# The HA benchmark (issue 17, SPEC §15) in one run, with a release build of bsfg: durable append
# and cross-zone replication with the source zone as a single node and as an HA zone (two
# instances over a three-server nats-server cluster), then the failover drills under steady load
# (SIGKILL of the active instance; `bsfg admin step-down` of the next one). Rewrites the table
# between `<!-- bench-ha:begin -->` and `<!-- bench-ha:end -->` in docs/performance.md, with
# what an acknowledgement means in each column and the exact commands.
#
#   scripts/bench-ha.sh                     # 1 000 000-fact runs and the drills, about 5-10 min
#   BSFG_BENCH_QUICK=1 scripts/bench-ha.sh  # 20 000-fact runs, to try the script; decides nothing
#
# Installs nats-server (scripts/nats-server.sh) and jq when missing. Each `bsfg bench` run works
# in its own temporary directory and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
BSFG_EXTRA_APT=(jq)
. scripts/env.sh
. scripts/doc-block.sh
. scripts/bench-run.sh
. scripts/nats-server.sh

cargo build --release --bin bsfg
bin="$BSFG_BIN_DIR/release/bsfg"
doc=docs/performance.md
out="$(mktemp -d -t bsfg-bench-ha-XXXXXX)"
trap 'rm -rf "$out"' EXIT

if [ "${BSFG_BENCH_QUICK:-0}" = 1 ]; then
  facts=20000 rate=500 quick=1
else
  facts=1000000 rate=5000 quick=0
fi
# As scripts/bench.sh: producers send AppendFacts calls of 64 facts. The drills' steady load is
# one AppendFact call per fact, paced.
load=(--producers 4 --concurrency 8 --batch 64)

bench_run append --mode append --count "$facts" "${load[@]}"
bench_run replicate --mode replicate --count "$facts" "${load[@]}"
bench_run ha_append --ha --mode append --count "$facts" "${load[@]}"
bench_run ha_replicate --ha --mode replicate --count "$facts" "${load[@]}"
bench_run failover --mode failover --rate "$rate" --producers 4 --concurrency 64

machine="$(bench_machine), nats-server $BSFG_NATS_VERSION"
date="$(date -u +'%Y-%m-%d %H:%M UTC')"

jq -rn \
  --slurpfile a "$out/append.json" --slurpfile r "$out/replicate.json" \
  --slurpfile ha "$out/ha_append.json" --slurpfile hr "$out/ha_replicate.json" \
  --slurpfile f "$out/failover.json" \
  --arg c_a "$(cat "$out/append.cmd")" --arg c_r "$(cat "$out/replicate.cmd")" \
  --arg c_ha "$(cat "$out/ha_append.cmd")" --arg c_hr "$(cat "$out/ha_replicate.cmd")" \
  --arg c_f "$(cat "$out/failover.cmd")" \
  --arg machine "$machine" --arg date "$date" --argjson quick "$quick" --argjson facts "$facts" '
  def grouped: floor | tostring | [scan("\\d{1,3}(?=(?:\\d{3})*$)")] | join(" ");
  def ms: . * 100 | round / 100 | tostring + " ms";
  def s: . * 1000 | round / 1000 | tostring + " s";
  def met(ok): (if ok then "yes" else "**no**" end) + (if $quick == 1 then " (quick run)" else "" end);
  def append(x): "\(x.append.facts_per_second | grouped) facts/s; call p50 \(x.append.latency_ms.p50 | ms), p99 \(x.append.latency_ms.p99 | ms)";
  def replication(x): "\(x.replication.facts_per_second | grouped) facts/s; end-to-end p50 \(x.replication.end_to_end_ms.p50 | ms), p99 \(x.replication.end_to_end_ms.p99 | ms)";
  def drill(d): "\(d.from) → \(d.to): first acknowledged append after **\(d.first_ack_seconds | s)**; \(d.to) active after \(d.active_seconds | s)";
  $a[0] as $a | $r[0] as $r | $ha[0] as $ha | $hr[0] as $hr | $f[0] as $f |
  ($f.failover.drills | map({key: .action, value: .}) | from_entries) as $d |
  (if $quick == 1 then
     "**Quick run** (`BSFG_BENCH_QUICK=1`): \($facts | grouped) facts per run instead of 1 000 000 and a slower drill load; these figures decide nothing.\n"
   else "" end),
  "Measured \($date) on \($machine), with `scripts/bench-ha.sh` (release build): one run, the same machine for both columns. The three engine servers, both instances, the peer zone and the load generator share the CPUs.",
  "",
  "| | single node (`enterprise`) | HA zone (`enterprise-1`, `enterprise-2` over 3 nats-server) |",
  "|---|---|---|",
  "| an acknowledgement means | \($a.durability): on this node'"'"'s disk | \($ha.durability) |",
  "| durable append, AppendFacts of \($a.batch) | \(append($a)) | \(append($ha)) |",
  "| cross-zone replication to `plant-a` | \(replication($r)) | \(replication($hr)) |",
  "| commands | `\($c_a)`, `\($c_r)` | `\($c_ha)`, `\($c_hr)` |",
  "",
  "| bar | target | measured | met |",
  "|---|---|---|---|",
  "| HA durable append | ≥ 50 000 facts/s | \($ha.append.facts_per_second | grouped) facts/s | \(met($ha.append.facts_per_second >= 50000)) |",
  "| single node: no regression (SPEC §14 bars) | append and replication ≥ 100 000 facts/s | append \($a.append.facts_per_second | grouped), replication \($r.replication.facts_per_second | grouped) facts/s | \(met($a.append.facts_per_second >= 100000 and $r.replication.facts_per_second >= 100000)) |",
  "| failover: SIGKILL of the active instance | ≤ 10 s to the first acknowledged append | \(drill($d.sigkill)) | \(met($d.sigkill.first_ack_seconds <= 10)) |",
  "| failover: `bsfg admin step-down` | ≤ 10 s to the first acknowledged append | \(drill($d["step-down"])) | \(met($d["step-down"].first_ack_seconds <= 10)) |",
  "| no acknowledged fact lost or duplicated | every one delivered once | \($f.failover.delivered | grouped) delivered in `plant-a` of \($f.facts | grouped) acknowledged (end-to-end p99 \($f.failover.end_to_end_ms.p99 | ms), max \($f.failover.end_to_end_ms.max | ms)) | \(met($f.failover.delivered == $f.facts)) |",
  "",
  "Drills: `\($c_f)` — \($f.rate_per_second | grouped) appends/s (one AppendFact call per fact) through clients that list both instances; 5 s of load, SIGKILL of the active instance, the killed instance started again as a standby, 5 s, step-down of the new active instance, 5 s. Each figure runs from the action to the first acknowledgement of an append sent after it; the instance answering active is polled every 20 ms. The standby takes over after the lease TTL (`lease_ttl`, 5 s by default) when the active instance dies, at once when it steps down."
' >"$out/table.md"

replace_block "$doc" bench-ha "$out/table.md"
echo "== $doc updated" >&2
cat "$out/table.md"

#!/usr/bin/env bash
# Runs the standard benchmark suite (the performance bars of SPEC §14) with a release build of
# bsfg and rewrites the table between `<!-- bench:begin -->` and `<!-- bench:end -->` in
# docs/performance.md: one row per bar with target, measured figure, whether it is met and the
# exact command, then the machine and the date.
#
#   scripts/bench.sh                     # the full suite: 1 000 000-fact runs, about 15-30 min
#   BSFG_BENCH_QUICK=1 scripts/bench.sh  # much smaller, to try the script; decides nothing
#
# Each `bsfg bench` run works in its own temporary directory and removes it (the full suite
# needs a few GB of free disk while a 1 000 000-fact run lasts). Installs jq when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BSFG_EXTRA_APT=(jq)
. scripts/env.sh
. scripts/doc-block.sh
. scripts/bench-run.sh

cargo build --release --bin bsfg
bin="$BSFG_BIN_DIR/release/bsfg"
doc=docs/performance.md
out="$(mktemp -d -t bsfg-bench-suite-XXXXXX)"
trap 'rm -rf "$out"' EXIT

if [ "${BSFG_BENCH_QUICK:-0}" = 1 ]; then
  facts=20000 paced=5s quick=1
else
  facts=1000000 paced=30s quick=0
fi
# Producers send AppendFacts calls of 64 facts (docs/architecture.md); `single` is the same
# durable append with one AppendFact call per fact, for reference.
load=(--producers 4 --concurrency 8 --batch 64)
single=(--producers 8 --concurrency 64)

bench_run append --mode append --count "$facts" "${load[@]}"
bench_run single --mode append --count "$facts" "${single[@]}"
bench_run replicate --mode replicate --count "$facts" "${load[@]}"
bench_run paced --mode replicate --rate 10000 --duration "$paced" --producers 4 --concurrency 64
bench_run replay --mode replay --count "$facts" "${load[@]}"
bench_run startup --mode startup --count "$facts" "${load[@]}"

# The disk under the temporary directories, as the kernel describes it.
disk() {
  local source name
  source="$(df --output=source "${TMPDIR:-/tmp}" | tail -n 1)"
  name="$(lsblk -no pkname "$source" 2>/dev/null | head -n 1)"
  name="${name:-$(basename "$source")}"
  case "$(cat "/sys/block/$name/queue/rotational" 2>/dev/null)" in
    0) echo "$source (non-rotational)" ;;
    1) echo "$source (reported rotational)" ;;
    *) echo "$source" ;;
  esac
}

machine="$(bench_machine), disk $(disk)"
date="$(date -u +'%Y-%m-%d %H:%M UTC')"

jq -rn \
  --slurpfile append "$out/append.json" --slurpfile replicate "$out/replicate.json" \
  --slurpfile paced "$out/paced.json" --slurpfile replay "$out/replay.json" \
  --slurpfile startup "$out/startup.json" --slurpfile single "$out/single.json" \
  --arg c_single "$(cat "$out/single.cmd")" \
  --arg c_append "$(cat "$out/append.cmd")" --arg c_replicate "$(cat "$out/replicate.cmd")" \
  --arg c_paced "$(cat "$out/paced.cmd")" --arg c_replay "$(cat "$out/replay.cmd")" \
  --arg c_startup "$(cat "$out/startup.cmd")" \
  --arg machine "$machine" --arg date "$date" --argjson quick "$quick" --argjson facts "$facts" '
  def grouped: floor | tostring | [scan("\\d{1,3}(?=(?:\\d{3})*$)")] | join(" ");
  def ms: . * 100 | round / 100 | tostring + " ms";
  def s: . * 1000 | round / 1000 | tostring + " s";
  def met(ok): (if ok then "yes" else "**no**" end) + (if $quick == 1 then " (quick run)" else "" end);
  def row(bar; target; measured; verdict; cmd): "| \(bar) | \(target) | \(measured) | \(verdict) | `\(cmd)` |";
  def million(n; ok): if n >= 1000000 then met(ok) else "n/a (\(n | grouped) facts)" end;
  $append[0] as $a | $single[0] as $one | $replicate[0] as $r | $paced[0] as $p | $replay[0] as $b | $startup[0] as $s |
  ([{run: "append", report: $a}, {run: "append, one fact per call", report: $one}, {run: "replicate", report: $r}, {run: "replicate at 10 000/s", report: $p},
    {run: "replay", report: $b}, {run: "startup", report: $s}]
   | map(.run as $run | .report.nodes | to_entries[] | {run: $run, zone: .key, bytes: .value.peak_rss_bytes})
   | max_by(.bytes)) as $memory |
  ([$s.startup.clean_seconds, $s.startup.after_kill_seconds] | max) as $start |
  (if $quick == 1 then
     "**Quick run** (`BSFG_BENCH_QUICK=1`): \($facts | grouped) facts per run instead of 1 000 000 and a shorter paced run; these figures decide nothing about the bars.\n"
   else "" end),
  "Measured \($date) on \($machine), with `scripts/bench.sh` (release build). Durability: \($a.durability).",
  "",
  "| bar (SPEC §14) | target | measured | met | command |",
  "|---|---|---|---|---|",
  row("durable append"; "≥ 100 000 facts/s";
      "\($a.append.facts_per_second | grouped) facts/s in AppendFacts calls of \($a.batch) facts; call p50 \($a.append.latency_ms.p50 | ms), p99 \($a.append.latency_ms.p99 | ms)";
      met($a.append.facts_per_second >= 100000); $c_append),
  row("durable append, one AppendFact call per fact (no bar; for reference)"; "—";
      "\($one.append.facts_per_second | grouped) facts/s; call p50 \($one.append.latency_ms.p50 | ms), p99 \($one.append.latency_ms.p99 | ms)";
      "—"; $c_single),
  row("cross-zone replication"; "≥ 100 000 facts/s";
      "\($r.replication.facts_per_second | grouped) facts/s (appends \($r.append.facts_per_second | grouped) facts/s)";
      met($r.replication.facts_per_second >= 100000); $c_replicate),
  row("p99 append-to-forward at 10 000 facts/s"; "≤ 10 ms";
      "p99 \($p.replication.end_to_end_ms.p99 | ms) (p50 \($p.replication.end_to_end_ms.p50 | ms), p99.9 \($p.replication.end_to_end_ms.p999 | ms)) at \($p.append.facts_per_second | grouped) facts/s achieved";
      met($p.replication.end_to_end_ms.p99 <= 10); $c_paced),
  row("backlog replay after reconnect"; "1 000 000 facts in ≤ 10 s";
      "\($b.replay.backlog_facts | grouped) facts in \($b.replay.replay_seconds | s) (\($b.replay.facts_per_second | grouped) facts/s); reconnect took \($b.replay.reconnect_seconds | s)";
      million($b.replay.backlog_facts; $b.replay.replay_seconds <= 10); $c_replay),
  row("resident memory under load"; "≤ 150 MB";
      "\($memory.bytes / 1000000 | . * 10 | round / 10) MB peak (`\($memory.zone)` in the \($memory.run) run; highest of all runs)";
      met($memory.bytes <= 150000000); "scripts/bench.sh"),
  row("start-up with 1 000 000 retained facts"; "≤ 1 s";
      "\($s.startup.retained_facts | grouped) facts: \($s.startup.after_kill_seconds | s) after kill -9, \($s.startup.clean_seconds | s) after SIGTERM";
      million($s.startup.retained_facts; $start <= 1); $c_startup),
  "",
  "MB = 10⁶ bytes. Memory is each node process'"'"'s peak RSS (`VmHWM`); node CPU seconds and the load generator'"'"'s own are in each run'"'"'s `--json` report."
' >"$out/table.md"

replace_block "$doc" bench "$out/table.md"
echo "== $doc updated" >&2
cat "$out/table.md"

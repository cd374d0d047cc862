# Sourced by the benchmark scripts (scripts/bench.sh, scripts/bench-ha.sh): one `bsfg bench`
# run recorded for the tables, and the machine a table was measured on. Expects `$bin` (the bsfg
# binary) and `$out` (the directory the reports go to).

# bench_run NAME ARGS...: one `bsfg bench` run; its report goes to $out/NAME.json, its command line
# to $out/NAME.cmd (as it would be typed with bsfg on the PATH).
bench_run() {
  local name=$1
  shift
  echo "== bsfg bench $*" >&2
  "$bin" bench "$@" --json >"$out/$name.json"
  echo "bsfg bench $*" >"$out/$name.cmd"
}

# bench_machine: CPUs, CPU model, memory and kernel, for the line under a table.
bench_machine() {
  local model memory
  model="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  memory="$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "$(nproc) CPUs ($model), $memory RAM, Linux $(uname -r)"
}

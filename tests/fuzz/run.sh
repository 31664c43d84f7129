#!/usr/bin/env bash
# tests/fuzz/run.sh — builds and runs dpt's libFuzzer harnesses (config parser, idx importer,
# dataset loader, checkpoint loader) under ASan+UBSan, with leak detection on.
#
#   bash tests/fuzz/run.sh build          configure and build build-fuzz/ (clang)
#   bash tests/fuzz/run.sh replay         build, then run every harness once over its seed
#                                         corpus; non-zero exit on any crash, hang or leak (CI)
#   bash tests/fuzz/run.sh fuzz SECONDS   build, then fuzz each harness for SECONDS, two at a
#                                         time, and print executions, exec/s, crashes and the
#                                         size of the corpus each one grew
#   bash tests/fuzz/run.sh fuzz SECONDS dataset ckpt    only the harnesses named
#
# Environment: DPT_FUZZ_BUILD (default <repo>/build-fuzz), DPT_FUZZ_JOBS (default 2, harnesses
# run at once). New inputs go to $DPT_FUZZ_BUILD/corpus/<harness>, findings (crash-*, leak-*,
# timeout-*, oom-*) to $DPT_FUZZ_BUILD/artifacts/<harness>/, logs to $DPT_FUZZ_BUILD/logs/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${DPT_FUZZ_BUILD:-$root/build-fuzz}
all=(config idx dataset ckpt model)

usage() {
  sed -n '4,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Sanitizer settings shared by replay and fuzz. Leaks are findings (LSan on); lsan.supp names
# only third-party libraries. UBSan stops at the first report so libFuzzer saves the input.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:${ASAN_OPTIONS_EXTRA:-}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0
export OPENBLAS_NUM_THREADS=1
# The harnesses write their files in a private directory under TMPDIR: RAM if there is some.
scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/dpt-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch

# The libFuzzer flags every run gets: the limits the reliability issue fixes (2 GiB RSS,
# 10 s per input) and where findings go.
common_flags() { # harness
  mkdir -p "$build/artifacts/$1"
  local f=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$build/artifacts/$1/")
  [ -f "$here/$1.dict" ] && f+=(-dict="$here/$1.dict")
  echo "${f[@]}"
}

do_build() {
  command -v clang >/dev/null || {
    echo "run.sh: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
  }
  mkdir -p "$build/logs"
  # quiet unless it fails: dpt's own sources are built with clang here, whose warnings differ
  if ! { CC=clang cmake -S "$here" -B "$build" && cmake --build "$build" -j"$(nproc)"; } \
      >"$build/logs/build.log" 2>&1; then
    tail -40 "$build/logs/build.log" >&2
    echo "run.sh: build failed (log: $build/logs/build.log)" >&2
    exit 1
  fi
}

# One pass over the seed corpus, no mutation: the CI check.
do_replay() {
  local failed=0
  for h in "${all[@]}"; do
    local n log="$build/logs/replay-$h.log"
    mkdir -p "$build/logs"
    n=$(find "$here/corpus/$h" -type f | wc -l)
    # shellcheck disable=SC2046
    if "$build/fuzz_$h" $(common_flags "$h") -runs=0 "$here/corpus/$h" >"$log" 2>&1; then
      echo "replay $h: $n inputs ok"
    else
      echo "replay $h: FAILED (log: $log)"
      grep -E "^==[0-9]+==ERROR|runtime error|^SUMMARY|fuzz[a-z_]*: |Test unit written" "$log" \
        | head -20 | sed 's/^/    /'
      failed=1
    fi
  done
  return $failed
}

# Fuzzes harness $1 for $2 seconds; writes a one-line summary to $build/logs/fuzz-$1.summary.
fuzz_one() {
  local h=$1 secs=$2 log="$build/logs/fuzz-$1.log" work="$build/corpus/$1"
  mkdir -p "$work" "$build/logs" "$build/artifacts/$h"
  local before status=0 t0 t1
  before=$(find "$build/artifacts/$h" -type f | wc -l)
  t0=$(date +%s)
  # DPT_FUZZ_RAW=0: the HDF5 harnesses build their files from the input rather than take raw
  # bytes, which mostly finds HDF5's own bugs (see README in this folder)
  # shellcheck disable=SC2046
  DPT_FUZZ_RAW=0 "$build/fuzz_$h" $(common_flags "$h") -max_total_time="$secs" \
    -print_final_stats=1 "$work" "$here/corpus/$h" >"$log" 2>&1 || status=$?
  t1=$(date +%s)
  local runs eps found files bytes
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  found=$(( $(find "$build/artifacts/$h" -type f | wc -l) - before ))
  files=$(find "$work" -type f | wc -l)
  bytes=$(du -sk "$work" | cut -f1)
  printf '%-8s %10s %8s %7ss %8s %6s %9s\n' "$h" "${runs:-?}" "${eps:-?}" "$((t1 - t0))" \
    "$found" "$status" "$files/${bytes}K" >"$build/logs/fuzz-$h.summary"
}

do_fuzz() {
  local secs=$1
  shift
  local hs=("$@")
  [ ${#hs[@]} -eq 0 ] && hs=("${all[@]}")
  local jobs=${DPT_FUZZ_JOBS:-2} running=0
  for h in "${hs[@]}"; do
    rm -f "$build/logs/fuzz-$h.summary"
    fuzz_one "$h" "$secs" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
      wait -n || true
      running=$((running - 1))
    fi
  done
  wait || true
  printf '%-8s %10s %8s %8s %8s %6s %9s\n' harness execs exec/s time findings status corpus
  local bad=0
  for h in "${hs[@]}"; do
    cat "$build/logs/fuzz-$h.summary"
    read -r _ _ _ _ found status _ <"$build/logs/fuzz-$h.summary"
    if [ "$found" != 0 ] || [ "$status" != 0 ]; then
      bad=1
      grep -E "^==[0-9]+==ERROR|runtime error|^SUMMARY|fuzz[a-z_]*: |Test unit written" \
        "$build/logs/fuzz-$h.log" | head -10 | sed 's/^/    /'
    fi
  done
  return $bad
}

case "${1:-}" in
  build) do_build ;;
  replay) do_build && do_replay ;;
  fuzz)
    [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || usage
    secs=$2
    shift 2
    for h in "$@"; do [[ " ${all[*]} " == *" $h "* ]] || usage; done
    do_build && do_fuzz "$secs" "$@"
    ;;
  *) usage ;;
esac

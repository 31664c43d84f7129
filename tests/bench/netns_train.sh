#!/usr/bin/env bash
# Training throughput across the netns test bed's nodes (issue 20): MLP 784-2048-2048-10
# (5.8 M parameters, 23 MB of gradient a step) at W ranks over 2 nodes whose links are shaped
# to RATE (default 1gbit), against the same W on one host (shared memory), uncompressed and
# with --compress bf16 and powersgd. Samples/s is the median of the per-step figures of the
# metrics file after the first 5 steps; "vs host" divides by the uncompressed one-host run.
# As root; the bed (bed.sh) is removed on exit, failure included.
# ZERO (default 0: the gradient is all-reduced, every byte of it compressed; 1: reduce-scattered,
# then the parameters all-gathered uncompressed). A step must compute for longer than its
# gradient takes over the link for the bed to keep up with the host: 23 MB each way at 1 Gbit/s
# is about 0.2 s (allreduce, 2 nodes), so the default batch is 2048.
# Usage: tests/bench/netns_train.sh BUILD_DIR [RATE [BATCH [STEPS [RANKS_PER_NODE [ZERO]]]]]
set -u
build=$(cd "${1:-build}" && pwd)
rate=${2:-1gbit}; batch=${3:-2048}; steps=${4:-20}; per=${5:-1}; zero=${6:-0}
dpt=$build/dpt
[ -x "$dpt" ] || { echo "build dpt first"; exit 2; }
here=$(cd "$(dirname "$0")/../netns" && pwd)
. "$here/bed.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
w=$((2 * per))
bed_up 2 "$rate" || exit $?
work=$BED_WORK/train
mkdir -p "$work" && cd "$work" || exit 1
"$dpt" data synth --out d.h5 --train 16384 --test 256 --features 784 --classes 10 >/dev/null \
  || { echo "could not make the dataset"; exit 1; }
common=(train --data "$work/d.h5" --model mlp:784-2048-2048-10 --batch "$batch" --max-steps "$steps"
        --epochs 100 --eval-every 0 --progress none --compress-start 5 --zero "$zero")
rate_of() { # RUN_DIR: median samples/s after step 5
  python3 - "$1/metrics.jsonl" <<'PY'
import json, statistics, sys
v = [m["samples_per_s"] for m in map(json.loads, open(sys.argv[1]))
     if m.get("type") == "step" and m["step"] > 5]
print(f"{statistics.median(v):.1f}")
PY
}
run() { # WHERE NAME [options]
  local where=$1 name=$2; shift 2
  if [ "$where" = host ]; then
    timeout 900 mpirun --oversubscribe --bind-to none -n "$w" "$dpt" "${common[@]}" \
      --run-dir "$work/$name" "$@" > "$name.out" 2>&1
  else
    BED_TIMEOUT=900 bed_mpirun "$per" -n "$w" "$dpt" "${common[@]}" --run-dir "$work/$name" "$@" \
      > "$name.out" 2>&1
  fi || { cat "$name.out"; echo "training $name failed"; exit 1; }
  rate_of "$work/$name"
}
echo "## MLP 784-2048-2048-10, W = $w ($per per node), global batch $batch, $steps steps, ZeRO $zero, links $rate"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: figures are noisy)"
ref=$(run host host-none)
printf '%-34s %10s samples/s %6s\n' "where, compression" "" "vs host"
printf '%-34s %10s samples/s %6s\n' "one host, none" "$ref" "1.00"
for c in none bf16 fp16 powersgd:4; do
  s=$(run bed "bed-${c%%:*}" --compress "$c")
  printf '%-34s %10s samples/s %6s\n' "2 nodes at $rate, $c" "$s" \
    "$(python3 -c "print(f'{$s / $ref:.2f}')")"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

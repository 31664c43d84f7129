#!/usr/bin/env bash
# Training throughput across the netns test bed's nodes (issue 20): MLP 784-2048-2048-10
# (5.8 M parameters, 23 MB of gradient a step) at W ranks over 2 nodes whose links are shaped
# to RATE (default 1gbit), against the same W on one host (shared memory), uncompressed and
# with --compress bf16, fp16 and powersgd:4. Samples/s: the median of the per-step figures of
# the metrics file after the first 5 steps, the best of REPS (default 2) runs taken in turn
# (the machine is shared: a run's neighbours change); beside it that run's median comm wait
# per step (time blocked in the reduction, which the load moves least). "vs host" divides by
# the uncompressed one-host run, which uses the bed's MCA settings (no binding, idle ranks
# yield: busy-polling ranks made it 4 times slower). ZERO (default 0): the gradient is
# all-reduced, every byte of it compressed; 1: reduce-scattered, then the parameters
# all-gathered uncompressed. A step must compute for longer than its gradient takes over the
# link for the bed to keep up with the host: 23 MB each way at 1 Gbit/s is about 0.2 s (an
# allreduce over 2 nodes), hence the default batch of 2048.
# As root; the bed (bed.sh) is removed on exit, failure included.
# Usage: [REPS=N] tests/bench/netns_train.sh BUILD_DIR [RATE [BATCH [STEPS [RANKS_PER_NODE [ZERO]]]]]
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
rate_of() { # RUN_DIR: median samples/s and comm wait (s) after step 5
  python3 - "$1/metrics.jsonl" <<'PY'
import json, statistics, sys
m = [m for m in map(json.loads, open(sys.argv[1])) if m.get("type") == "step" and m["step"] > 5]
print(f"{statistics.median(x['samples_per_s'] for x in m):.1f}",
      f"{statistics.median(x['comm_wait_s'] for x in m):.3f}")
PY
}
run() { # WHERE NAME [options]: samples/s
  local where=$1 name=$2; shift 2
  if [ "$where" = host ]; then
    timeout 900 mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 -n "$w" \
      "$dpt" "${common[@]}" --run-dir "$work/$name" "$@" > "$name.out" 2>&1
  else
    BED_TIMEOUT=900 bed_mpirun "$per" -n "$w" "$dpt" "${common[@]}" --run-dir "$work/$name" "$@" \
      > "$name.out" 2>&1
  fi || { cat "$name.out" >&2; echo "training $name failed" >&2; exit 1; }
  rate_of "$work/$name"
}
echo "## MLP 784-2048-2048-10, W = $w ($per per node), global batch $batch, $steps steps, ZeRO $zero, links $rate"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: figures are noisy)"
configs=("host none" "bed none" "bed bf16" "bed fp16" "bed powersgd:4")
declare -A best wait_s
for rep in $(seq 1 "${REPS:-2}"); do
  for cfg in "${configs[@]}"; do
    set -- $cfg
    v=$(run "$1" "$1-${2%%:*}-$rep" --compress "$2") || exit 1
    python3 -c "import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))" "${v% *}" \
      "${best[$cfg]:-0}" && { best[$cfg]=${v% *}; wait_s[$cfg]=${v#* }; }
  done
done
ref=${best["host none"]}
printf '%-34s %10s %9s %12s\n' "where, compression" "samples/s" "vs host" "comm wait s"
for cfg in "${configs[@]}"; do
  set -- $cfg
  label="one host, $2"; [ "$1" = bed ] && label="2 nodes at $rate, $2"
  printf '%-34s %10s %9s %12s\n' "$label" "${best[$cfg]}" \
    "$(python3 -c "print(f'{${best[$cfg]} / $ref:.2f}')")" "${wait_s[$cfg]}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

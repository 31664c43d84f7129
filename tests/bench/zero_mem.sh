#!/usr/bin/env bash
# ZeRO memory and step time through the dpt command: an MLP of 58.7M parameters
# (1024-4096-4096-4096-4096-1024) with Adam at W = 4, stages 0, 1 and 2. Prints, per stage, the
# largest peak resident memory of a rank (VmHWM, the metrics' memory record) against the fp32
# formula (16P, 8P + 8P/W, 4P + 12P/W bytes) plus the working buffers the rank reports, and the
# step time (median and fastest of the steps after each run's first two: the machine may be
# shared), stage 2 against stage 1.
# Usage: tests/bench/zero_mem.sh [BUILD_DIR] [W] [STEPS]
# STAGES="..." sets the runs (default "0 1 2 1 2 1 2": stages 1 and 2 interleaved three times,
# so that a shared machine's load falls on both alike; a stage's runs pool their steps).
set -euo pipefail
build=${1:-build}
w=${2:-4}
steps=${3:-8}
dpt=$(cd "$build" && pwd)/dpt
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d /tmp/dpt-zero-mem.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
model=mlp:1024-4096-4096-4096-4096-1024
"$dpt" data synth --out d.h5 --train 512 --test 0 --features 1024 --classes 1024 >/dev/null
echo "$model, Adam, W = $w, global batch $((4 * w)), $steps steps a run, --bucket-mb 4"
printf '%5s %12s %12s %12s %10s %9s %9s %5s %11s\n' stage "formula MiB" "+buffers" "peak MiB" \
  "peak/f+b" "ms/step" "min ms" steps "2 vs 1"
i=0
for stage in ${STAGES:-0 1 2 1 2 1 2}; do
  i=$((i + 1))
  mpirun --oversubscribe -n "$w" "$dpt" train --data d.h5 --model "$model" --solver adam \
    --batch $((4 * w)) --max-steps "$steps" --zero "$stage" --bucket-mb 4 --eval-every 0 \
    --ckpt 0 --progress none --run-dir "z$i-$stage" >"z$i.out" 2>&1 ||
    { cat "z$i.out"; exit 1; }
done
python3 - "$w" <<'PY'
import glob, json, statistics, sys
w = int(sys.argv[1])
runs = {}
for d in sorted(glob.glob("z*-*")):
    runs.setdefault(int(d.rsplit("-", 1)[1]), []).append(d)
ms1 = None
for stage in sorted(runs):
    times, peak, buffers = [], 0, 0
    for d in runs[stage]:
        recs = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
        p = next(r for r in recs if r.get("type") == "run")["params"]
        mem = next(r for r in recs if r.get("type") == "memory")
        worst = max(mem["ranks"], key=lambda q: q["peak_rss_bytes"])
        if worst["peak_rss_bytes"] > peak:
            peak, buffers = worst["peak_rss_bytes"], worst["buffer_bytes"]
        # a step's time is the global batch over its samples/s
        steps = [r for r in recs if r.get("type") == "step"][2:]
        times += [4 * w / s["samples_per_s"] * 1e3 for s in steps]
    formula = {0: 16 * p, 1: 8 * p + 8 * p / w, 2: 4 * p + 12 * p / w}[stage]
    ms, fast = statistics.median(times), min(times)
    if stage == 1:
        ms1 = (ms, fast)
    rel = f"{ms / ms1[0]:.3f}/{fast / ms1[1]:.3f}" if ms1 and stage == 2 else ""
    mib = 1048576
    print(f"{stage:5d} {formula / mib:12.1f} {(formula + buffers) / mib:12.1f} {peak / mib:12.1f} "
          f"{peak / (formula + buffers):10.3f} {ms:9.1f} {fast:9.1f} {len(times):5d} {rel:>11}")
PY

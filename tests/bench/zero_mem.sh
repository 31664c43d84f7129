#!/usr/bin/env bash
# ZeRO memory and step time through the dpt command: an MLP of 58.7M parameters
# (1024-4096-4096-4096-4096-1024) with Adam at W = 4, stages 0, 1 and 2. Prints, per stage, the
# largest peak resident memory of a rank (VmHWM, the metrics' memory record) against the fp32
# formula (16P, 8P + 8P/W, 4P + 12P/W bytes) plus the working buffers the rank reports, and the
# step time (median and fastest of the steps after the first two: the machine may be shared),
# stage 2 against stage 1.
# Usage: tests/bench/zero_mem.sh [BUILD_DIR] [W] [STEPS]   (STAGES="1 2" to run only those)
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
echo "$model, Adam, W = $w, global batch $((4 * w)), $steps steps, --bucket-mb 4"
printf '%5s %12s %12s %12s %10s %9s %9s %9s\n' stage "formula MiB" "+buffers" "peak MiB" \
  "peak/f+b" "ms/step" "min ms" "vs st. 1"
for stage in ${STAGES:-0 1 2}; do
  mpirun --oversubscribe -n "$w" "$dpt" train --data d.h5 --model "$model" --solver adam \
    --batch $((4 * w)) --max-steps "$steps" --zero "$stage" --bucket-mb 4 --eval-every 0 \
    --ckpt 0 --progress none --run-dir "z$stage" >"z$stage.out" 2>&1 ||
    { cat "z$stage.out"; exit 1; }
done
python3 - "$w" ${STAGES:-0 1 2} <<'EOF'
import json, statistics, sys
w = int(sys.argv[1])
ms1 = None
for stage in map(int, sys.argv[2:]):
    recs = [json.loads(l) for l in open(f"z{stage}/metrics.jsonl")]
    run = next(r for r in recs if r.get("type") == "run")
    mem = next(r for r in recs if r.get("type") == "memory")
    steps = [r for r in recs if r.get("type") == "step"]
    p = run["params"]
    formula = {0: 16 * p, 1: 8 * p + 8 * p / w, 2: 4 * p + 12 * p / w}[stage]
    worst = max(mem["ranks"], key=lambda q: q["peak_rss_bytes"])
    buffers = worst["buffer_bytes"]
    peak = worst["peak_rss_bytes"]
    # a step's time is the global batch over its samples/s; steps after the first two
    times = [4 * w / s["samples_per_s"] * 1e3 for s in steps[2:]]
    ms, fast = statistics.median(times), min(times)
    if stage == 1:
        ms1 = (ms, fast)
    rel = f"{ms / ms1[0]:.3f}/{fast / ms1[1]:.3f}" if ms1 and stage == 2 else ""
    mib = 1048576
    print(f"{stage:5d} {formula / mib:12.1f} {(formula + buffers) / mib:12.1f} {peak / mib:12.1f} "
          f"{peak / (formula + buffers):10.3f} {ms:9.1f} {fast:9.1f} {rel:>11}")
EOF

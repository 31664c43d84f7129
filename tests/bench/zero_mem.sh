#!/usr/bin/env bash
# ZeRO memory and step time through the dpt command: an MLP of 83.9M parameters in 21 layers
# (1024, 20 hidden layers of 2048, 1024; the widest layer holds 5% of the parameters) with
# Adam at W = 4, stages 0 to 3. MODEL=... runs another (e.g. mlp:1024-4096-4096-4096-4096-1024,
# 58.7M parameters whose widest layer holds 29% of them: stage 3's layer buffers then weigh as
# much as its sharded state). Prints, per stage, the
# largest peak resident memory of a rank (VmHWM, the metrics' memory record) against the fp32
# formula (16P, 8P + 8P/W, 4P + 12P/W, 16P/W bytes) plus the working buffers the rank reports
# (stage 3: also its two layer buffers for the gathers), and the step time (median and fastest
# of the steps after each run's first two: the machine may be shared), stages 2 and 3 against
# stage 1. Stage 3 runs with and without --zero-prefetch ("3n"), and "3k" keeps forward's gathered
# layers for backward (--zero-keep-mb KEEP_MB, default all of them); the share of its gather wait
# that prefetching hides is 1 - wait(prefetch) / wait(none), per-step medians of rank 0's
# wait_gather_s. And stage 3's peak against stage 0's.
# Usage: tests/bench/zero_mem.sh [BUILD_DIR] [W] [STEPS]
# STAGES="..." sets the runs (default "0 1 2 3 3n 1 2 3 3n 1 3": stages interleaved, so that a
# shared machine's load falls on all alike; a stage's runs pool their steps).
set -euo pipefail
build=${1:-build}
w=${2:-4}
steps=${3:-8}
dpt=$(cd "$build" && pwd)/dpt
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d /tmp/dpt-zero-mem.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
model=${MODEL:-mlp:1024$(printf -- '-2048%.0s' $(seq 20))-1024}
"$dpt" data synth --out d.h5 --train 512 --test 0 --features 1024 --classes 1024 >/dev/null
echo "$model, Adam, W = $w, global batch $((4 * w)), $steps steps a run, --bucket-mb 4"
printf '%5s %12s %12s %12s %10s %9s %9s %5s %11s %9s\n' stage "formula MiB" "+buffers" \
  "peak MiB" "peak/f+b" "ms/step" "min ms" steps "vs stage 1" "gather ms"
i=0
for stage in ${STAGES:-0 1 2 3 3n 1 2 3 3n 1 3}; do
  i=$((i + 1))
  prefetch=1 keep=0
  [ "$stage" = 3n ] && prefetch=0
  [ "$stage" = 3k ] && keep=${KEEP_MB:-100000}
  mpirun --oversubscribe -n "$w" "$dpt" train --data d.h5 --model "$model" --solver adam \
    --batch $((4 * w)) --max-steps "$steps" --zero "${stage:0:1}" --zero-prefetch $prefetch \
    --zero-keep-mb "$keep" --bucket-mb 4 --eval-every 0 --ckpt 0 --progress none \
    --run-dir "z$i-$stage" >"z$i.out" 2>&1 ||
    { cat "z$i.out"; exit 1; }
done
python3 - "$w" <<'PY'
import glob, json, statistics, sys
w = int(sys.argv[1])
runs = {}
for d in sorted(glob.glob("z*-*")):
    runs.setdefault(d.rsplit("-", 1)[1], []).append(d)
ms1, peaks, gather = None, {}, {}
for stage in sorted(runs):
    times, waits, peak, buffers = [], [], 0, 0
    for d in runs[stage]:
        recs = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
        p = next(r for r in recs if r.get("type") == "run")["params"]
        mem = next(r for r in recs if r.get("type") == "memory")
        worst = max(mem["ranks"], key=lambda q: q["peak_rss_bytes"])
        if worst["peak_rss_bytes"] > peak:
            peak, buffers = worst["peak_rss_bytes"], worst["buffer_bytes"]
            if stage.startswith("3"):  # the gathers' two layer buffers
                buffers += worst["param_bytes"] - 4 * p / w
        # a step's time is the global batch over its samples/s
        steps = [r for r in recs if r.get("type") == "step"][2:]
        times += [4 * w / s["samples_per_s"] * 1e3 for s in steps]
        waits += [s["wait_gather_s"] * 1e3 for s in steps]
    z = int(stage[0])
    formula = {0: 16 * p, 1: 8 * p + 8 * p / w, 2: 4 * p + 12 * p / w, 3: 16 * p / w}[z]
    ms, fast = statistics.median(times), min(times)
    gather[stage] = statistics.median(waits)
    peaks[stage] = peak
    if stage == "1":
        ms1 = (ms, fast)
    rel = f"{ms / ms1[0]:.3f}/{fast / ms1[1]:.3f}" if ms1 and z >= 2 else ""
    mib = 1048576
    print(f"{stage:>5} {formula / mib:12.1f} {(formula + buffers) / mib:12.1f} {peak / mib:12.1f} "
          f"{peak / (formula + buffers):10.3f} {ms:9.1f} {fast:9.1f} {len(times):5d} {rel:>11} "
          f"{gather[stage]:9.1f}")
if "3" in peaks and "0" in peaks:
    print(f"stage 3 peak / stage 0 peak: {peaks['3'] / peaks['0']:.3f} (target <= 0.35)")
if "3" in gather and "3n" in gather and gather["3n"] > 0:
    print(f"stage 3 gather wait hidden by prefetch: {1 - gather['3'] / gather['3n']:.3f} "
          f"({gather['3']:.1f} ms vs {gather['3n']:.1f} ms a step without it)")
PY

#!/usr/bin/env bash
# peer_cnn.sh — dpt against PyTorch 1.13 on the Fashion-MNIST CNN preset (issue 19), in the
# same run: dpt W=1 against torch in one process (no DDP), dpt W=2 against torch DDP (gloo).
#
# Usage: bash tests/bench/peer_cnn.sh [BUILD_DIR] [EPOCHS]        (defaults: build, 1)
# Environment: MODEL (dpt's --model; default tests/bench/models/c32-c64-f128.ini; the torch
# side runs the module `dpt model torch MODEL` prints), BATCH (128, the global batch), LR (3e-3,
# OneCycle's max_lr), MAX_STEPS (0: the whole EPOCHS; else stop both sides there), WORLDS
# ("1 2"), REPS (2: runs of each side, best kept), PEER_CACHE (keep the dataset there between
# runs), PEER_CORETYPE (OpenBLAS kernels of both sides; default SkylakeX on AVX-512 CPUs).
#
# Both sides: AdamW (weight decay 0.01), OneCycle per step with max_lr LR, cross-entropy, global
# batch BATCH split over W ranks, EPOCHS epochs; started alike, alternately (dpt, torch, ...),
# `mpirun -n W /usr/bin/time -f %M ...` (peak RSS of every rank, MiB). samples/s: the training
# loop only (dpt: from its metrics JSONL as peer.sh computes it; torch: wall time from a barrier
# after loading to the last step). MFU: model FLOPs per sample (peer_cnn_torch.py's count: 2 per
# multiply-add of convolutions and linears, forward once, backward twice but the first layer's
# input gradient) x samples/s / W over the single-core sgemm 1024^3 rate that bench_cnn measures
# before and after the runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
epochs=${2:-${EPOCHS:-1}}
model=${MODEL:-$here/models/c32-c64-f128.ini}
max_steps=${MAX_STEPS:-0}
batch=${BATCH:-128}
lr=${LR:-3e-3}
worlds=${WORLDS:-"1 2"}
reps=${REPS:-2}
. "$here/peer_lib.sh"
peer_env
peer_cache peer-cnn
dpt=$build/dpt
bench=$build/tests/bench/bench_cnn
for f in "$dpt" "$bench"; do
  [ -x "$f" ] || { echo "peer_cnn: $f is missing (build dpt and, with -DDPT_BUILD_BENCH=ON, bench_cnn)" >&2; exit 1; }
done
data=$cache/fashion-mnist.h5
[ -f "$data" ] || "$dpt" data import-idx --dir /usr/share/datasets/fashion-mnist --out "$data" >/dev/null
module=$cache/model_torch.py
"$dpt" model torch "$model" >"$module"

results=$cache/results.jsonl
: >"$results"

run_dpt() { # W REP
  local out=$cache/dpt-w$1-r$2
  rm -rf "$cache/run"
  if ! launch "$1" "$out.rss" "$dpt" train --data "$data" --model "$model" --solver adamw \
      --lr "$lr" --weight-decay 0.01 --sched onecycle --sched-max-lr "$lr" --batch "$batch" \
      --epochs "$epochs" --max-steps "$max_steps" --eval-every "$epochs" --progress none \
      --metrics "$out.jsonl" \
      --run-dir "$cache/run" >"$out.log" 2>&1; then
    echo "peer_cnn: dpt failed (W=$1), see $out.log:" >&2
    tail -5 "$out.log" >&2
    return 0
  fi
  peer_dpt_record "$out" "$1" "$2" "$batch" >>"$results"
}

run_torch() { # W REP
  local out=$cache/torch-w$1-r$2
  if launch "$1" "$out.rss" env "$torch_malloc" "$py" "$here/peer_cnn_torch.py" --data "$data" \
      --module "$module" --batch "$batch" --epochs "$epochs" --max-steps "$max_steps" \
      --lr "$lr" --port "$(free_port)" \
      >"$out.log" 2>&1 && grep -q '^{"peer": "torch"' "$out.log"; then
    peer_torch_record "$out" "$2" >>"$results"
  else
    echo "peer_cnn: torch failed (W=$1), see $out.log:" >&2
    tail -5 "$out.log" >&2
  fi
}

sg=$(peer_sgemm)
echo "peer_cnn: dpt --model $model vs PyTorch $("$py" -c 'import torch; print(torch.__version__)')" \
     "global batch $batch, $epochs epoch(s) (max steps $max_steps), W in {$worlds}, REPS=$reps," \
     "OpenBLAS ${OPENBLAS_CORETYPE:-(detected)}"
for w in $worlds; do
  for rep in $(seq 1 "$reps"); do
    run_dpt "$w" "$rep"
    run_torch "$w" "$rep"
  done
done
sg2=$(peer_sgemm)
PYTHONPATH=$here "$py" - "$results" "$sg" "$sg2" <<'PY'
import json, sys
from peer_lib import sgemm_rate
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rate = sgemm_rate(sys.argv[2:])
flops = next((r["flops_per_sample"] for r in recs if r["peer"] == "torch"), float("nan"))
acc = lambda v: "-" if v is None or v != v else "%.4f" % v
print("per run:")
for r in recs:
    print("  %-5s W=%d rep %d %8.0f samples/s  acc %s  RSS %s MiB" % (r["peer"], r["world"],
          r["rep"], r["samples_per_s"], acc(r["test_accuracy"]), "/".join("%.0f" % v for v in r["rss_mb"])))
print("sgemm 1024^3 (one core, bench_cnn, best of before and after): %.1f GFLOP/s; model %.2f "
      "MFLOP/sample" % (rate, flops / 1e6))
print("%2s %9s %9s %9s %8s %8s %8s %8s %8s %8s %7s" % ("W", "dpt s/s", "tch s/s", "dpt/tch",
      "dpt MFU", "tch MFU", "dpt acc", "tch acc", "dpt MiB", "tch MiB", "MiB r"))
for w in sorted({r["world"] for r in recs}):
    d = [r for r in recs if r["peer"] == "dpt" and r["world"] == w]
    t = [r for r in recs if r["peer"] == "torch" and r["world"] == w]
    if not d or not t:
        continue
    bd, bt = max(d, key=lambda r: r["samples_per_s"]), max(t, key=lambda r: r["samples_per_s"])
    dm, tm = max(v for r in d for v in r["rss_mb"]), max(v for r in t for v in r["rss_mb"])
    mfu = lambda s: s * flops / w / (rate * 1e9)
    print("%2d %9.0f %9.0f %9.2f %8.3f %8.3f %8s %8s %8.0f %8.0f %7.2f" % (w,
          bd["samples_per_s"], bt["samples_per_s"], bd["samples_per_s"] / bt["samples_per_s"],
          mfu(bd["samples_per_s"]), mfu(bt["samples_per_s"]), acc(bd["test_accuracy"]),
          acc(bt["test_accuracy"]), dm, tm, dm / tm))
print("torch: W=1 one process, W>1 DDP (gloo), BatchNorm per rank; dpt: BatchNorm over the "
      "global batch. MFU per rank.")
PY

#!/usr/bin/env bash
# peer_gpt.sh — dpt against PyTorch 1.13 on a GPT on the KJV text (issue 21), in the same run:
# dpt W=1 against torch in one process (no DDP), dpt W=2 against torch DDP (gloo).
#
# Usage: bash tests/bench/peer_gpt.sh [BUILD_DIR] [STEPS]        (defaults: build, 200)
# Environment: MODEL (small: dpt's gpt:MODEL, torch's the same GPT), CONTEXT (128), BATCH (32
# windows, the global batch), LR (3e-3), WORLDS ("1 2"), REPS (1: runs of each side, best kept),
# TEXT (default: `bible Gen1:1-Rev22:21`, the KJV; its first characters are used, see below),
# VAL (0.02: the held-out fraction),
# LOSS_TOL (0.02), PEER_CACHE, PEER_CORETYPE (see peer_lib.sh).
#
# Both sides: AdamW (weight decay 0.01, no scheduler), cross-entropy over all positions, global
# batch BATCH windows of CONTEXT tokens split over W ranks, STEPS steps (dpt: one epoch of a text
# cut to that length), then the held-out loss over the consecutive windows of the held-out
# split; started alike, alternately (dpt, torch), by peer_lib.sh's launch (peak RSS per rank).
# The same training on both sides: torch starts from dpt's initial parameters (a checkpoint of
# a one-step dpt run at --lr 0, which leaves AdamW's parameters as they are: dpt's init for
# --seed 42, as every dpt run here draws it) and reads the windows dpt draws (the same starts in
# the same order, peer_gpt_torch.py), so the first steps' losses agree to rounding (printed as
# "step-1 loss") and the held-out losses differ only by how rounding differences grow (LOSS_TOL).
# tokens/s: the training loop only (dpt: from its metrics JSONL, peer_lib.py; torch: a barrier
# after loading to the last step). MFU per rank: FLOPs per token (6 N + 12 L T C, N the
# parameters but the position embedding: nanoGPT's estimate_mfu) x tokens/s / W over the
# single-core sgemm 1024^3 rate bench_cnn measures before and after the runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
steps=${2:-${STEPS:-200}}
model=${MODEL:-small}
context=${CONTEXT:-128}
batch=${BATCH:-32}
lr=${LR:-3e-3}
worlds=${WORLDS:-"1 2"}
reps=${REPS:-1}
val=${VAL:-0.02}
loss_tol=${LOSS_TOL:-0.02}
. "$here/peer_lib.sh"
peer_env
peer_cache peer-gpt
dpt=$build/dpt
[ -x "$dpt" ] || { echo "peer_gpt: $dpt is missing (build dpt)" >&2; exit 1; }
text=${TEXT:-$cache/kjv.txt}
if [ ! -f "$text" ]; then
  command -v bible >/dev/null || { echo "peer_gpt: no TEXT and no bible command (bible-kjv)" >&2; exit 1; }
  bible Gen1:1-Rev22:21 >"$text"
fi
# dpt evaluates after an epoch: the text is cut to one epoch of STEPS steps, (N - 1) / T windows
# = STEPS * BATCH, plus its held-out share (so both sides see the same training tokens' count)
chars=$("$py" -c "import math; print(math.ceil(($steps * $batch * $context + $context + 1) / (1 - $val)))")
data=$cache/text-$chars.h5
head -c "$chars" "$text" >"$cache/text-$chars.txt"
[ -f "$data" ] || "$dpt" data import-text "$cache/text-$chars.txt" --out "$data" --val-fraction "$val" >/dev/null

# dpt's initial parameters, for torch: a one-step run at --lr 0 (the parameters unchanged)
rm -rf "$cache/init"
"$dpt" train --data "$data" --context "$context" --model "gpt:$model" --solver adamw --lr 0 \
  --weight-decay 0.01 --batch "$batch" --epochs 1 --max-steps 1 --progress none --ckpt 1 \
  --run-dir "$cache/init" >"$cache/init.log" 2>&1 || { echo "peer_gpt: dpt's initial checkpoint failed, see $cache/init.log:" >&2; tail -5 "$cache/init.log" >&2; exit 1; }
init=$(ls "$cache"/init/ckpt/ckpt-*.h5 | tail -1)

results=$cache/results.jsonl
: >"$results"
run_dpt() { # W REP
  local out=$cache/dpt-w$1-r$2
  rm -rf "$cache/run"
  if ! launch "$1" "$out.rss" "$dpt" train --data "$data" --context "$context" \
      --model "gpt:$model" --solver adamw --lr "$lr" --weight-decay 0.01 --batch "$batch" \
      --epochs 1 --max-steps "$steps" --progress none --metrics "$out.jsonl" \
      --run-dir "$cache/run" >"$out.log" 2>&1; then
    echo "peer_gpt: dpt failed (W=$1), see $out.log:" >&2
    tail -5 "$out.log" >&2
    return 0
  fi
  peer_dpt_record "$out" "$1" "$2" "$batch" >>"$results"
}
run_torch() { # W REP
  local out=$cache/torch-w$1-r$2
  if launch "$1" "$out.rss" env "$torch_malloc" "$py" "$here/peer_gpt_torch.py" --data "$data" \
      --model "$model" --context "$context" --batch "$batch" --steps "$steps" --lr "$lr" \
      --init "$init" --port "$(free_port)" >"$out.log" 2>&1 && grep -q '^{"peer": "torch"' "$out.log"; then
    peer_torch_record "$out" "$2" >>"$results"
  else
    echo "peer_gpt: torch failed (W=$1), see $out.log:" >&2
    tail -5 "$out.log" >&2
  fi
}

sg=$(peer_sgemm)
echo "peer_gpt: dpt gpt:$model vs PyTorch $("$py" -c 'import torch; print(torch.__version__)')," \
     "context $context, global batch $batch, $steps steps, W in {$worlds}, REPS=$reps," \
     "OpenBLAS ${OPENBLAS_CORETYPE:-(detected)}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for w in $worlds; do
  for rep in $(seq 1 "$reps"); do
    run_dpt "$w" "$rep"
    run_torch "$w" "$rep"
  done
done
sg2=$(peer_sgemm)
echo "peer_gpt: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
PYTHONPATH=$here "$py" - "$results" "$context" "$loss_tol" "$sg" "$sg2" <<'PY'
import json, sys
from peer_lib import best, sgemm_rate
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
T, tol, rate = int(sys.argv[2]), float(sys.argv[3]), sgemm_rate(sys.argv[4:])
tr = next((r for r in recs if r["peer"] == "torch"), None)
fpt = tr["flops_per_token"] if tr else float("nan")
tok = lambda r: r["samples_per_s"] * T
nan = lambda v: float("nan") if v is None else v
print("per run:")
for r in recs:
    print("  %-5s W=%d rep %d %8.0f tokens/s  step-1 loss %.6f  held-out loss %.4f  RSS %s MiB" % (
          r["peer"], r["world"], r["rep"], tok(r), nan(r.get("first_loss")), nan(r["test_loss"]),
          "/".join("%.0f" % v for v in r["rss_mb"])))
print("sgemm 1024^3 (one core, best of before and after): %.1f GFLOP/s; model %s parameters, "
      "%.3f MFLOP/token (6N + 12LTC)" % (rate, tr["nparams"] if tr else "?", fpt / 1e6))
print("%2s %9s %9s %8s %6s %8s %8s %8s %8s %7s %8s %8s %6s" % ("W", "dpt tok/s", "tch tok/s",
      "dpt/tch", "target", "dpt MFU", "tch MFU", "dpt MiB", "tch MiB", "MiB r", "dpt loss",
      "tch loss", "|d|"))
for w in sorted({r["world"] for r in recs}):
    d, ds = best(recs, "dpt", world=w)
    t, ts = best(recs, "torch", world=w)
    if not d or not t:
        continue
    dm, tm = max(v for r in ds for v in r["rss_mb"]), max(v for r in ts for v in r["rss_mb"])
    mfu = lambda r: tok(r) * fpt / w / (rate * 1e9)
    dl = abs(d["test_loss"] - t["test_loss"])
    print("%2d %9.0f %9.0f %8.2f %6s %8.3f %8.3f %8.0f %8.0f %7.2f %8.4f %8.4f %6.4f%s" % (w,
          tok(d), tok(t), tok(d) / tok(t), ">=1.5" if w == 1 else ">=3", mfu(d), mfu(t), dm, tm,
          dm / tm, d["test_loss"], t["test_loss"], dl, "" if dl <= tol else "  NOT comparable"))
print("targets: MFU >= 0.5, RSS ratio <= 0.5, |held-out loss difference| <= %.3g. torch: W=1 one "
      "process, W>1 DDP (gloo); one thread per rank on both sides." % tol)
PY

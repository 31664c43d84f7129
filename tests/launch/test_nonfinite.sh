#!/usr/bin/env bash
# Non-finite values: a NaN injected into one rank's input (DPT_FAULT=nan, test-only) is caught
# before it reaches the parameters. By default the run ends (status 1) with one line naming the
# step, the tensor and the rank, and the last checkpoint is intact; with --on-nonfinite skip the
# step is skipped, counted in the summary and the metrics (loss null), and the run ends with
# finite parameters — in the default and the deterministic mode. A run that diverges on its own
# is stopped the same way. Usage: test_nonfinite.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 16 3
train() { # RUN_DIR [options]
  local dir=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:16-24-3 \
    --batch 32 --epochs 2 --ckpt-every 2 --run-dir "$dir" --progress none "$@"
}

# 1. default: abort, naming step, tensor and rank; the checkpoint of step 4 intact
DPT_FAULT=nan:1@4 train abort > abort.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat abort.out; fail "NaN: status $rc, expected 1"; }
grep -q "^dpt train: step 5: non-finite values in the gradient of fc1.weight on rank 1 (its share" abort.out \
  || { cat abort.out; fail "NaN: the message does not name step 5, a tensor and rank 1"; }
[ "$(cat abort/ckpt/latest)" = ckpt-0000000004.h5 ] || fail "NaN: latest is not step 4"
"$dpt" ckpt inspect abort/ckpt/ckpt-0000000004.h5 >/dev/null || fail "NaN: step 4 does not verify"
echo "abort: $(grep '^dpt train' abort.out | cut -c1-90)..."

# the same in the deterministic mode
DPT_FAULT=nan:1@4 train abort-det --deterministic 1 --micro-shards 4 > abort-det.out 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "^dpt train: step 5: non-finite values in the gradient of fc1.weight on rank 1" abort-det.out \
  || { cat abort-det.out; fail "NaN (deterministic): status $rc or message wrong"; }
# and in ZeRO stage 2, which holds no whole gradient (the diagnosis computes a temporary one)
DPT_FAULT=nan:1@4 train abort-z2 --zero 2 > abort-z2.out 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "^dpt train: step 5: non-finite values in the gradient of fc1.weight on rank 1" abort-z2.out \
  || { cat abort-z2.out; fail "NaN (ZeRO 2): status $rc or message wrong"; }

# 2. --on-nonfinite skip, default and deterministic mode
for mode in default det; do
  extra=""; [ $mode = det ] && extra="--deterministic 1 --micro-shards 4"
  DPT_FAULT=nan:1@4 train skip-$mode --on-nonfinite skip $extra > skip-$mode.out 2>&1 \
    || { cat skip-$mode.out; fail "skip ($mode): the run failed"; }
  grep -q "1 step skipped (non-finite values)" skip-$mode.out \
    || { cat skip-$mode.out; fail "skip ($mode): the summary does not count the skipped step"; }
  [ "$(grep -c '"skipped":true' skip-$mode/metrics.jsonl)" = 1 ] \
    || fail "skip ($mode): the metrics do not mark one skipped step"
  grep '"skipped":true' skip-$mode/metrics.jsonl | grep -q '"step":5,.*"loss":null' \
    || fail "skip ($mode): step 5 is not the skipped one with a null loss"
  $py - skip-$mode/ckpt/ckpt-0000000016.h5 <<'PY' || fail "skip ($mode): parameters not finite"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    for g in ("model", "optim"):
        f[g].visititems(lambda n, d: None if not isinstance(d, h5py.Dataset) or np.isfinite(d[()]).all() else sys.exit(1))
PY
  echo "skip ($mode): step 5 skipped, counted, parameters and state finite"
done

# 3. a run that diverges on its own
train diverge --solver sgd --lr 1e30 > diverge.out 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "non-finite" diverge.out || { cat diverge.out; fail "divergence not caught"; }

# 4. a NaN or Inf in the data itself is named where it enters: the dataset, split and sample
#    (not reported as a gradient problem), whether the split is cached or read per batch
$py - <<'PY' || fail "could not write the non-finite datasets"
import h5py, numpy as np
rng = np.random.default_rng(1)
for name, bad in (("nan.h5", np.nan), ("inf.h5", -np.inf)):
    x = rng.standard_normal((256, 16)).astype(np.float32)
    x[37, 5] = bad
    with h5py.File(name, "w") as f:
        f["train/x"] = x
        f["train/y"] = rng.integers(0, 3, 256).astype(np.int32)
PY
for data in nan.h5 inf.h5; do
  for cache in 1024 0; do
    timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data $data --model mlp:16-24-3 \
      --batch 32 --epochs 1 --cache-mb $cache --run-dir in-$data-$cache --progress none \
      > in.out 2>&1; rc=$?
    [ $rc -eq 1 ] || { cat in.out; fail "$data (cache $cache): status $rc, expected 1"; }
    want="NaN"; [ $data = inf.h5 ] && want="-Inf"
    grep -q "^dpt train: $data: /train/x: training sample 37 holds $want at feature 5" in.out \
      || { cat in.out; fail "$data (cache $cache): the message does not name the sample"; }
    ! grep -q "smaller --lr" in.out || fail "$data (cache $cache): reported as a gradient problem"
  done
done
echo "input: $(grep '^dpt train' in.out)"
echo ok

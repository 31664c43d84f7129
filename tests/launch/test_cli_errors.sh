#!/usr/bin/env bash
# Every error a user can reach from the command line: one line naming the input, a non-zero
# exit status, no hang. Usage: test_cli_errors.sh DPT WORKDIR
set -u
dpt=$1; work=$2
rm -rf "$work"; mkdir -p "$work"; cd "$work"
py=/usr/bin/python3
"$dpt" data synth --out good.h5 --train 256 --test 64 --features 12 --classes 3 >/dev/null 2>&1 \
  || { echo "FAIL: could not make the synthetic dataset"; exit 1; }
echo "not hdf5" > notes.txt
$py - <<'PY' || { echo "FAIL: h5py could not write fixtures"; exit 1; }
import h5py, numpy as np
with h5py.File("nox.h5", "w") as f:
    f["train/y"] = np.zeros(10, np.int32)
with h5py.File("badlabel.h5", "w") as f:
    f["train/x"] = np.zeros((16, 12), np.float32)
    f["train/y"] = np.array([0]*15 + [7], np.int32)
PY
printf '[train]\nbatch = 8\n[solver]\nname = adam\nlr = -3\n' > badlr.ini
printf '[train]\nbatch 8\n' > malformed.ini

pass=0; fail=0
# case: expected-status | expected substring | ranks | args...
check() {
  local want=$1 sub=$2 ranks=$3; shift 3
  local out rc
  out=$(timeout 60 mpirun --oversubscribe -n "$ranks" "$dpt" "$@" 2>&1 </dev/null); rc=$?
  # dpt's own lines start with "dpt"; exactly one of them, whatever the rank count.
  local lines; lines=$(printf '%s\n' "$out" | grep -c '^dpt' || true)
  if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ] && printf '%s' "$out" | grep -qF -- "$sub"; then
    pass=$((pass+1))
  else
    fail=$((fail+1))
    echo "FAIL: dpt $* (np=$ranks): want status $want and one line with '$sub'; got status $rc:"
    printf '%s\n' "$out" | sed 's/^/    /' | head -8
  fi
}
check 2 "unknown command"        1 frobnicate
check 2 "--data"                 1 train
check 2 "--batch"                1 train --data good.h5 --batch 0
check 2 "--batch"                1 train --data good.h5 --batch -5
check 2 "--epochs"               1 train --data good.h5 --epochs abc
check 2 "--solver"               1 train --data good.h5 --solver nope
check 2 "lr"                     1 train --data good.h5 --lr -1
check 2 "beta"                   1 train --data good.h5 --betas 0.9,1.5
check 2 "--sched"                1 train --data good.h5 --sched nope
check 2 "frobnicate"             1 train --data good.h5 --frobnicate 3
check 2 "--config"               1 train --config does-not-exist.ini
check 2 "badlr.ini"              1 train --data good.h5 --config badlr.ini
check 2 "malformed.ini"          1 train --data good.h5 --config malformed.ini
check 2 "--activation"           1 train --data good.h5 --activation swish
check 1 "missing.h5"             2 train --data missing.h5
check 1 "notes.txt"              2 train --data notes.txt
check 1 "train/x"                2 train --data nox.h5
check 1 "12"                     2 train --data good.h5 --model mlp:784-10
check 1 "mlp:abc"                1 train --data good.h5 --model mlp:abc
check 1 "label"                  2 train --data badlabel.h5 --model mlp:12-4 --batch 8
check 1 "divisible"              2 train --data good.h5 --model mlp:12-3 --batch 7
check 1 "--accum 3"              4 train --data good.h5 --model mlp:12-3 --batch 8 --accum 3
check 1 "batch"                  1 train --data good.h5 --model mlp:12-3 --batch 1000
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

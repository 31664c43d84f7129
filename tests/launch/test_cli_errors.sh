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
printf '[train]\nbatch = 8\nepoch = 3\n' > typo.ini
printf '[train]\nbatch = 8\n[solver]\nname = sgd\nlr = 0.1\n\nlr = 0.2\n' > dup.ini
printf '[train]\nbatch = 8\n[optimizer]\nlr = 1\n' > section.ini

# The cases run DPT_TEST_JOBS at a time (default 4: mpirun's start-up is mostly waiting), each
# writing its verdict to case.N; the tally comes at the end.
jobs_max=${DPT_TEST_JOBS:-4}; ncase=0
# case: expected-status | expected substring | ranks | args...
one_case() {
  local id=$1 want=$2 sub=$3 ranks=$4; shift 4
  local out rc
  out=$(timeout 60 mpirun --oversubscribe -n "$ranks" "$dpt" "$@" 2>&1 </dev/null); rc=$?
  # dpt's own lines start with "dpt"; exactly one of them, whatever the rank count.
  local lines; lines=$(printf '%s\n' "$out" | grep -c '^dpt' || true)
  if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ] && printf '%s' "$out" | grep -qF -- "$sub"; then
    echo pass > "case.$id"
  else
    { echo "FAIL: dpt $* (np=$ranks): want status $want and one line with '$sub'; got status $rc:"
      printf '%s\n' "$out" | sed 's/^/    /' | head -8; } > "case.$id"
  fi
}
check() {
  ncase=$((ncase + 1))
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  one_case "$ncase" "$@" &
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
check 2 "typo.ini:3: [train] --epoch: unknown option" 1 train --data good.h5 --config typo.ini
check 2 "dup.ini:7: 'lr' is set twice in this file (first at line 5)" 1 train --data good.h5 --config dup.ini
check 2 "section.ini:3: unknown section [optimizer]" 1 train --data good.h5 --config section.ini
check 2 "--config: needs a value" 1 train --data good.h5 --config
check 2 "--lr: needs a value"    1 train --data good.h5 --lr --max-steps 3
check 2 "--max-steps: needs a value" 1 train --data good.h5 --max-steps
check 2 "--overlap: 'maybe' is not a boolean" 1 train --data good.h5 --overlap maybe
check 2 "--bucket-mb"            1 train --data good.h5 --bucket-mb 0.000001
check 2 "'good.h5' exists (--force replaces it)" 1 data synth --out good.h5
check 2 "--train: needs a value" 1 data synth --out other.h5 --train
check 2 "unknown flag '--frob'"  1 data import-idx --dir . --out other.h5 --frob 1
check 1 "missing.h5"             2 train --data missing.h5
check 1 "notes.txt"              2 train --data notes.txt
check 1 "train/x"                2 train --data nox.h5
check 1 "12"                     2 train --data good.h5 --model mlp:784-10
check 2 "mlp:abc"                1 train --data good.h5 --model mlp:abc
check 2 "mlp:784--10"            1 train --data good.h5 --model mlp:784--10
check 2 "unknown kind 'rnn'"     1 train --data good.h5 --model rnn:32
check 1 "label"                  2 train --data badlabel.h5 --model mlp:12-4 --batch 8
check 1 "divisible"              2 train --data good.h5 --model mlp:12-3 --batch 7
check 1 "--accum 3"              4 train --data good.h5 --model mlp:12-3 --batch 8 --accum 3
check 1 "batch"                  1 train --data good.h5 --model mlp:12-3 --batch 1000
check 2 "--time-limit: 'soon'"    1 train --data good.h5 --time-limit soon
check 2 "--stop-signals: 'KILL'" 1 train --data good.h5 --stop-signals USR1,KILL
check 2 "--on-nonfinite"         1 train --data good.h5 --on-nonfinite ignore
check 2 "--watchdog"             1 train --data good.h5 --watchdog -1
check 2 "--micro-shards"         1 train --data good.h5 --micro-shards 0
check 1 "must divide --micro-shards 6" 4 train --data good.h5 --model mlp:12-3 --batch 24 --deterministic 1 --micro-shards 6
check 1 "--accum 2: not used with --deterministic" 2 train --data good.h5 --model mlp:12-3 --batch 8 --deterministic 1 --accum 2
DPT_FAULT=bogus check 1 "DPT_FAULT='bogus'" 2 train --data good.h5 --model mlp:12-3
check 1 "--resume latest: no checkpoint" 2 train --data good.h5 --model mlp:12-3 --run-dir empty --resume latest
check 1 "missing.h5"             2 train --data good.h5 --model mlp:12-3 --init missing.h5
check 1 "cannot open checkpoint 'notes.txt'" 1 ckpt inspect notes.txt
check 2 "usage: dpt ckpt inspect" 1 ckpt frobnicate
check 2 "--solvers"              2 compare --data good.h5
check 2 "'nope'"                 2 compare --solvers adam,nope --data good.h5
check 2 "--group-ranks 3"        4 compare --solvers adam,sgd --group-ranks 3 --data good.h5
check 2 "--steps"                1 compare --problem quadratic --solvers gd --steps 0
check 2 "quadratic"              1 compare --problem rosenbrok --solvers gd
check 2 "--x0"                   1 compare --problem rosenbrock --solvers gd --x0 1,2,3
check 2 "no metrics files"       1 plot
check 2 "unknown option"         1 plot --frobnicate x.jsonl
check 1 "missing.jsonl"          1 plot missing.jsonl
check 1 "notes.txt:1"            1 plot notes.txt
wait
pass=0; fail=0
for id in $(seq 1 "$ncase"); do
  if [ "$(cat "case.$id" 2>/dev/null)" = pass ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    cat "case.$id" 2>/dev/null || echo "FAIL: case $id left no verdict"
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -eq "$ncase" ]

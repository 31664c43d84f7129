#!/usr/bin/env bash
# Schedules that move lr and momentum every step survive a resume bitwise (issue 15): ASGD and
# Rprop under onecycle (their eta and step sizes start from the lr of the first step), SGD and
# RMSprop under cyclic with base_momentum 0, SGD-Nesterov under onecycle with base_momentum 0
# (momentum reaches 0 and must come back). Each run stops half-way, mid-epoch (--max-steps,
# with a checkpoint there), resumes with --resume latest, and must end with parameters,
# optimizer state and solver/scheduler scalars bitwise equal to the uninterrupted run's; also
# at W = 2 with ZeRO 1 (each rank restores its shard).
# Usage: test_sched_resume.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 160 40 12 3
final=ckpt-0000000030.h5 # 3 epochs of 10 steps; the half-way stop is at step 15
common=(--data d.h5 --model mlp:12-16-3 --batch 16 --epochs 3 --ckpt 1 --progress none)
# onecycle's length is given, so the half-way run (--max-steps 15) has the same schedule
onecycle=(--sched onecycle --sched-max_lr 0.05 --sched-total_steps 30 --sched-base_momentum 0)
cyclic=(--sched cyclic --sched-base_lr 0.005 --sched-max_lr 0.05 --sched-step_size_up 4
        --sched-base_momentum 0 --sched-max_momentum 0.9)
declare -A cfg=(
  [asgd-onecycle]="--solver asgd --lambd 0.05 --t0 5 ${onecycle[*]} --sched-cycle_momentum 0"
  [rprop-onecycle]="--solver rprop --lr 0.01 ${onecycle[*]} --sched-cycle_momentum 0"
  [sgd-cyclic]="--solver sgd --momentum 0.9 ${cyclic[*]}"
  [rmsprop-cyclic]="--solver rmsprop --lr 0.01 --momentum 0.5 ${cyclic[*]}"
  [sgd-onecycle-nesterov]="--solver sgd --momentum 0.9 --nesterov 1 ${onecycle[*]}"
)
run() { # NAME RUN_DIR [options]
  local name=$1 dir=$2; shift 2
  timeout 120 "$dpt" train "${common[@]}" ${cfg[$name]} --run-dir "$dir" "$@" \
    > "$dir.out" 2>&1 || { cat "$dir.out"; fail "$name: training $dir"; }
}
# the scalars a checkpoint holds for the solver and scheduler, by name
scalars() { "$dpt" ckpt inspect "$1" | grep -E '^ +(solver|sched|train\.step)' ; }
same() { # A B
  for g in /model /optim; do
    h5diff "$1" "$2" "$g" "$g" > /dev/null || return 1
  done
  diff <(scalars "$1") <(scalars "$2") > /dev/null
}
for name in asgd-onecycle rprop-onecycle sgd-cyclic rmsprop-cyclic sgd-onecycle-nesterov; do
  run "$name" "$name-full"
  run "$name" "$name-half" --max-steps 15 --ckpt-every 5
  run "$name" "$name-half" --resume latest
  grep -q "resuming from .* at step 15" "$name-half.out" || fail "$name: did not resume at 15"
  same "$name-full/ckpt/$final" "$name-half/ckpt/$final" \
    || fail "$name: resumed at step 15, the end differs from the uninterrupted run" \
            "(h5diff -r $work/$name-full/ckpt/$final $work/$name-half/ckpt/$final)"
  echo "$name: resumed half-way, bitwise equal to the uninterrupted run"
done

# Rprop's step sizes start from the lr of the first step, onecycle's max_lr / div_factor (25),
# not from --lr: after one step (prev = 0, factor 1) every step size is float32(0.002)
run rprop-onecycle rprop-one-step --max-steps 1
$py - rprop-one-step/ckpt/ckpt-0000000001.h5 <<'PY' || fail "rprop: step sizes after step 1"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    g = f["optim/step_size"]
    v = np.concatenate([g[k][()].ravel() for k in g])
bad = v[v != np.float32(0.05 / 25)]
if bad.size:
    sys.exit("%d of %d step sizes are not 0.002, e.g. %r" % (bad.size, v.size, bad[0]))
PY
echo "rprop-onecycle: step sizes start from the first step's lr"

# ZeRO 1 at W = 2: each rank restores its shard of the state, has_momentum_buffer included
mpi() { # RUN_DIR [options]
  local dir=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train "${common[@]}" ${cfg[sgd-cyclic]} \
    --zero 1 --run-dir "$dir" "$@" > "$dir.out" 2>&1 || { cat "$dir.out"; fail "W=2 $dir"; }
}
mpi w2-full
mpi w2-half --max-steps 15 --ckpt-every 5
mpi w2-half --resume latest
same w2-full/ckpt/$final w2-half/ckpt/$final \
  || fail "sgd cyclic at W=2 ZeRO 1: resumed at 15, the end differs from the uninterrupted run"
echo "sgd-cyclic at W = 2, ZeRO 1: resumed half-way, bitwise equal"
echo ok

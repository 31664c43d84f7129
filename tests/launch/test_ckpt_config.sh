#!/usr/bin/env bash
# A resumed run told another configuration lists what differs from the checkpoint and
# refuses where the results would change (lr, activation, scheduler), unless
# --allow-config-change, which it then says; a difference that does not change the results
# (the bucket size) is listed. Usage: test_ckpt_config.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 16 3
train() { # RUN_DIR [options]: 8 steps an epoch
  local dir=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:16-24-3 \
    --batch 32 --epochs 4 --ckpt-every 4 --keep 2 --sched cosine --run-dir "$dir" \
    --progress none "$@"
}


# 3. a resumed run with another configuration
train runs/c --max-steps 12 > c1.out 2>&1 || { cat c1.out; fail "run c"; }
train runs/c --resume auto --lr 0.01 --activation tanh --bucket-mb 1 > c2.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat c2.out; fail "a changed configuration: status $rc, expected 1"; }
for d in "--activation tanh (checkpoint: relu)" "--lr 0.01 (checkpoint: 0.001)"; do
  grep -q "differs from the checkpoint in what it computes: .*$d.*--allow-config-change" c2.out \
    || { cat c2.out; fail "the refusal does not list '$d'"; }
done
echo "config: $(grep '^dpt train' c2.out | cut -c1-120)..."
timeout 120 mpirun --oversubscribe -n 1 "$dpt" train --data d.h5 --model mlp:16-24-3 \
  --batch 32 --epochs 4 --ckpt-every 4 --keep 2 --sched none --run-dir runs/c --resume auto \
  --progress none > c3.out 2>&1 && fail "another scheduler was accepted"
grep -q -- "--sched none (checkpoint: cosine)" c3.out || { cat c3.out; fail "--sched not listed"; }
train runs/c --resume auto --lr 0.01 --allow-config-change --bucket-mb 1 > c4.out 2>&1 \
  || { cat c4.out; fail "--allow-config-change"; }
grep -q "with a changed configuration (--allow-config-change): --lr 0.01 (checkpoint: 0.001)" c4.out \
  || { cat c4.out; fail "the accepted change is not said"; }
grep -q "resuming .*: --bucket-mb 1 (checkpoint: 25); this does not change the results" c4.out \
  || { cat c4.out; fail "a difference that does not change the results is not listed"; }
echo ok

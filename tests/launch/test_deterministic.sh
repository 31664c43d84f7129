#!/usr/bin/env bash
# --deterministic: the same job at W = 1, 2, 4 and 8 (oversubscribed), ZeRO stages 0 to 3,
# for Adam (with gradient clipping and ReduceLROnPlateau, which reads the evaluation loss), Lion
# and SGD-Nesterov, ends with bitwise identical parameters and optimizer state (h5diff, exact);
# a checkpoint written at W = 2 and resumed at W = 4 ends bitwise where W = 1 ends, and so do
# a stage-2 checkpoint at W = 4 resumed at W = 2 in stage 1 and the reverse, and the same for
# stage 3 (checkpoints are W- and stage-independent); and bad shard counts are refused. Usage: test_deterministic.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 512 200 24 5
final=ckpt-0000000048.h5   # 3 epochs of 16 steps
train() { # W RUN_DIR [options]
  local w=$1 dir=$2; shift 2
  timeout 120 mpirun --oversubscribe -n "$w" "$dpt" train --data d.h5 --model mlp:24-40-32-5 \
    --batch 32 --epochs 3 --deterministic 1 --micro-shards 8 --ckpt 1 --run-dir "$dir" \
    --progress none "$@" > "$dir.out" 2>&1 || { cat "$dir.out"; fail "training $dir"; }
}
same() { # A B: parameters and optimizer state bitwise equal
  for g in /model /optim; do
    h5diff "$1" "$2" "$g" "$g" >/dev/null || return 1
  done
}

declare -A cfg=(
  [adam]="--solver adam --lr 0.01 --clip-norm 0.5 --sched plateau --sched-patience 0"
  [lion]="--solver lion --lr 0.001 --weight-decay 0.1 --sched cosine"
  [nesterov]="--solver sgd --lr 0.05 --momentum 0.9 --nesterov 1 --sched step --sched-step-size 1"
)
checked=0
for name in adam lion nesterov; do
  train 1 "$name-w1-z0" ${cfg[$name]} --zero 0
  ref=$name-w1-z0/ckpt/$final
  for w in 1 2 4 8; do
    for z in 0 1 2 3; do
      [ "$w$z" = 10 ] && continue
      [ "$w" = 8 ] && [ "$z" != 1 ] && continue   # W = 8 on 2 cores: one stage is enough
      [ "$z" = 3 ] && [ "$name" != adam ] && [ "$w" != 4 ] && continue  # stage 3: adam, or W = 4
      train $w "$name-w$w-z$z" ${cfg[$name]} --zero $z
      same "$ref" "$name-w$w-z$z/ckpt/$final" \
        || fail "$name: W=$w ZeRO $z differs from W=1 (h5diff $ref $name-w$w-z$z/ckpt/$final)"
      checked=$((checked + 1))
    done
  done
  # the per-epoch test loss (which ReduceLROnPlateau reads) is the same too
  for w in 2 4; do
    diff <(grep -o '"test_loss":[^,]*' "$name-w1-z0/metrics.jsonl") \
         <(grep -o '"test_loss":[^,]*' "$name-w$w-z1/metrics.jsonl") >/dev/null \
      || fail "$name: the evaluation loss at W=$w differs from W=1"
  done
  # stage 3 evaluates with each layer's parameters gathered: the same losses
  diff <(grep -o '"test_loss":[^,]*' "$name-w1-z0/metrics.jsonl") \
       <(grep -o '"test_loss":[^,]*' "$name-w4-z3/metrics.jsonl") >/dev/null \
    || fail "$name: the evaluation loss at W=4 in stage 3 differs from W=1"
  echo "$name: W = 1, 2, 4, 8 and ZeRO 0 to 3 all bitwise identical"
done

# checkpoint at W = 2, resume at W = 4
train 2 resume ${cfg[adam]} --max-steps 20
train 4 resume ${cfg[adam]} --resume latest
grep -q "resuming from .* at step 20" resume.out || fail "the W=4 run did not resume at step 20"
same adam-w1-z0/ckpt/$final resume/ckpt/$final || fail "W=2 then W=4 differs from W=1"
echo "W = 2 to step 20, resumed at W = 4: bitwise identical to W = 1"

# across ZeRO stages: stage 2 at W = 4, resumed in stage 1 at W = 2, and the reverse
train 4 z2to1 ${cfg[adam]} --max-steps 20 --zero 2
train 2 z2to1 ${cfg[adam]} --resume latest --zero 1
grep -q "resuming from .* at step 20" z2to1.out || fail "the stage-1 run did not resume at step 20"
same adam-w1-z0/ckpt/$final z2to1/ckpt/$final || fail "W=4 stage 2 then W=2 stage 1 differs"
train 2 z1to2 ${cfg[adam]} --max-steps 20 --zero 1
train 4 z1to2 ${cfg[adam]} --resume latest --zero 2
same adam-w1-z0/ckpt/$final z1to2/ckpt/$final || fail "W=2 stage 1 then W=4 stage 2 differs"
echo "W = 4 stage 2 to step 20, resumed at W = 2 stage 1, and the reverse: bitwise identical"
train 4 z3to1 ${cfg[adam]} --max-steps 20 --zero 3
train 2 z3to1 ${cfg[adam]} --resume latest --zero 1
grep -q "resuming from .* at step 20" z3to1.out || fail "the stage-1 run did not resume at step 20"
same adam-w1-z0/ckpt/$final z3to1/ckpt/$final || fail "W=4 stage 3 then W=2 stage 1 differs"
train 2 z1to3 ${cfg[adam]} --max-steps 20 --zero 1
train 4 z1to3 ${cfg[adam]} --resume latest --zero 3
same adam-w1-z0/ckpt/$final z1to3/ckpt/$final || fail "W=2 stage 1 then W=4 stage 3 differs"
echo "W = 4 stage 3 to step 20, resumed at W = 2 stage 1, and the reverse: bitwise identical"

# bad shard counts: one line naming the flags
out=$(mpirun --oversubscribe -n 4 "$dpt" train --data d.h5 --model mlp:24-5 --batch 32 \
  --deterministic 1 --micro-shards 6 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "must divide --micro-shards 6" \
  || { echo "$out"; fail "W=4 with 6 micro-shards was not refused"; }
out=$("$dpt" train --data d.h5 --model mlp:24-5 --batch 30 --deterministic 1 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "must divide --batch 30" \
  || { echo "$out"; fail "8 micro-shards of a batch of 30 was not refused"; }
echo "ok ($checked runs compared bitwise)"

#!/usr/bin/env bash
# A second run in the directory of a longer one refuses (naming its checkpoints) instead of
# losing every checkpoint it writes to pruning; --fresh starts it anyway, and pruning then
# removes only its own checkpoints (by run identity), so `latest` always names a file.
# Usage: test_ckpt_second_run.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 16 3
train() { # RUN_DIR [options]: 8 steps an epoch
  local dir=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:16-24-3 \
    --batch 32 --epochs 4 --ckpt-every 4 --keep 2 --sched cosine --run-dir "$dir" \
    --progress none "$@"
}
stamp() { stat -c '%n %Y %s' "$1"/ckpt/* | sort; }

# 1. a second run in the directory of a longer one
train runs/a > a1.out 2>&1 || { cat a1.out; fail "the first run"; }
before=$(stamp runs/a)
train runs/a --max-steps 8 > a2.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat a2.out; fail "a second run in the same directory: status $rc, expected 1"; }
grep -q "^dpt train: 'runs/a/ckpt' holds checkpoints of another run (ckpt-0000000032.h5, ckpt-0000000028.h5): pass --resume auto .* or --fresh" a2.out \
  || { cat a2.out; fail "the refusal does not name the other run's checkpoints and the ways on"; }
[ "$before" = "$(stamp runs/a)" ] || fail "the refused run touched the checkpoints"
echo "second run: $(grep '^dpt train' a2.out | cut -c1-110)..."
train runs/a --max-steps 12 --fresh > a3.out 2>&1 || { cat a3.out; fail "--fresh"; }
latest=$(cat runs/a/ckpt/latest)
[ "$latest" = ckpt-0000000012.h5 ] || fail "--fresh: latest is $latest, expected step 12"
[ -f runs/a/ckpt/$latest ] || fail "--fresh: latest names $latest, which does not exist"
ls runs/a/ckpt/ckpt-0000000032.h5 runs/a/ckpt/ckpt-0000000028.h5 >/dev/null \
  || fail "--fresh: the other run's checkpoints were pruned"
[ -f runs/a/ckpt/ckpt-0000000008.h5 ] && [ ! -f runs/a/ckpt/ckpt-0000000004.h5 ] \
  || fail "--fresh: --keep 2 did not keep the new run's two newest (8, 12)"
train runs/a --resume latest --max-steps 16 > a4.out 2>&1 || { cat a4.out; fail "resume after --fresh"; }
grep -q "resuming from runs/a/ckpt/ckpt-0000000012.h5 at step 12" a4.out || fail "did not resume at 12"
[ ! -f runs/a/ckpt/ckpt-0000000008.h5 ] && [ -f runs/a/ckpt/ckpt-0000000032.h5 ] \
  || fail "pruning after the resume removed the wrong run's checkpoints"
echo "--fresh: new run at steps 12, 16; the other run's 28 and 32 kept"

echo ok

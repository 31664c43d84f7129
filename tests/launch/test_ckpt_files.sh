#!/usr/bin/env bash
# Checkpoint files from the outside: h5py reads them and the README's PyTorch snippet works;
# `dpt ckpt inspect` verifies them; a run killed with SIGKILL at random moments (mid-write
# included) always leaves `latest` naming a complete, valid checkpoint that a run resumes from.
# Usage: test_ckpt_files.sh DPT WORKDIR README
set -u
dpt=$1; work=$2; readme=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work"
py=/usr/bin/python3
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
"$dpt" data synth --out d.h5 --train 2048 --test 256 --features 32 --classes 4 >/dev/null \
  || fail "synth"

# 1. the README snippet, verbatim, on a real checkpoint (model names match the README's path)
mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-64-48-4 --epochs 1 \
  --run-dir runs/demo --ckpt 1 --progress none >/dev/null 2>&1 || fail "training with --ckpt"
awk '/^## Checkpoints/{s=1} s&&/^```python/{p=1;next} p&&/^```/{exit} p' "$readme" > snippet.py
[ -s snippet.py ] || fail "no python snippet under '## Checkpoints' in the README"
cat snippet.py - > check.py <<'PY'
import torch.nn as nn
m = nn.Module()
m.fc1, m.fc2, m.fc3 = nn.Linear(32, 64), nn.Linear(64, 48), nn.Linear(48, 4)
m.load_state_dict(state, strict=True)
print("snippet ok")
PY
$py check.py > snippet.out 2>&1 || { cat snippet.out; fail "README snippet"; }
grep -q "snippet ok" snippet.out || fail "README snippet did not load the state dict"
grep -q "^adam" snippet.out || fail "snippet did not print the solver"
"$dpt" ckpt inspect "runs/demo/ckpt/$(cat runs/demo/ckpt/latest)" > inspect.out \
  || fail "dpt ckpt inspect on a good checkpoint"
grep -q "/optim/exp_avg_sq/fc3.weight *\[4, 48\] checksum ok" inspect.out \
  || fail "inspect does not list the optimizer state"

# 2. SIGKILL at random moments while checkpointing every step
killed=0
for delay in 0.7 1.1 1.6; do
  rm -rf runs/kill
  setsid mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-512-512-4 \
    --batch 8 --epochs 50 --ckpt-every 1 --keep 2 --run-dir runs/kill --progress none \
    >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 -- -"$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pkill -9 -f "run-dir runs/kill --progress" 2>/dev/null
  [ -f runs/kill/ckpt/latest ] || continue   # killed before the first checkpoint: nothing to check
  latest=runs/kill/ckpt/$(cat runs/kill/ckpt/latest)
  "$dpt" ckpt inspect "$latest" >/dev/null || fail "after kill at ${delay}s, $latest is not valid"
  for f in runs/kill/ckpt/ckpt-*.h5; do
    "$dpt" ckpt inspect "$f" >/dev/null || fail "after kill at ${delay}s, $f is not valid"
  done
  step=$(sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.h5$/\1/p' runs/kill/ckpt/latest)
  mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-512-512-4 --batch 8 \
    --epochs 50 --max-steps $((step + 2)) --run-dir runs/kill --resume latest \
    --progress none >/dev/null 2>&1 || fail "resume after kill at ${delay}s"
  killed=$((killed + 1))
done
echo "ok (killed runs checked: $killed)"
[ "${killed:-0}" -ge 1 ] || fail "no kill landed after a checkpoint existed"

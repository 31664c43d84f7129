#!/usr/bin/env bash
# Injected crashes (DPT_FAULT, test-only): one rank killed with SIGKILL before a step, or in the
# middle of writing a checkpoint (rank 1, then rank 0). Each time the job must end with a
# non-zero status within 30 s, leave `latest` naming the last committed checkpoint, which
# `dpt ckpt inspect` verifies, and a resumed run must end bitwise where the uninterrupted run
# ends (parameters and optimizer state, compared with h5diff). Usage: test_faults.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 32 4
# 16 steps; checkpoints after steps 4, 8, 12, 16
train() { # RUN_DIR [more options]
  local dir=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-64-48-4 \
    --batch 16 --epochs 1 --solver adam --sched cosine --ckpt-every 4 --run-dir "$dir" \
    --progress none "$@"
}
train runs/ref >/dev/null 2>&1 || fail "the uninterrupted run"
ref=runs/ref/ckpt/ckpt-0000000016.h5
[ -f "$ref" ] || fail "no final checkpoint of the uninterrupted run"

survived=0
check() { # FAULT EXPECTED_LATEST_STEP
  local fault=$1 want=$2 dir=runs/$(echo "$1" | tr ':@' '__')
  local t0 ms rc
  t0=$(date +%s%N)
  DPT_FAULT=$fault train "$dir" > "$dir.out" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  [ "$rc" -ne 0 ] || fail "$fault: the job exited 0"
  [ "$rc" -ne 124 ] || fail "$fault: the job hung (killed by timeout)"
  [ "$ms" -lt 30000 ] || fail "$fault: the job took ${ms} ms to end"
  grep -q "DPT_FAULT: killing" "$dir.out" || fail "$fault: the fault was not injected"
  local latest
  latest=$(cat "$dir/ckpt/latest" 2>/dev/null) || fail "$fault: no latest checkpoint"
  [ "$latest" = "$(printf 'ckpt-%010d.h5' "$want")" ] \
    || fail "$fault: latest is $latest, expected step $want"
  case $fault in kill-ckpt:*) # the file being written is there, unfinished, under its tmp name
    [ -n "$(ls "$dir"/ckpt/*.h5.tmp 2>/dev/null)" ] || fail "$fault: the kill was not mid-write";;
  esac
  "$dpt" ckpt inspect "$dir/ckpt/$latest" >/dev/null || fail "$fault: $latest does not verify"
  for f in "$dir"/ckpt/ckpt-*.h5; do
    "$dpt" ckpt inspect "$f" >/dev/null || fail "$fault: $f does not verify"
  done
  train "$dir" --resume latest > "$dir.resume.out" 2>&1 \
    || { cat "$dir.resume.out"; fail "$fault: resume"; }
  [ -z "$(ls "$dir"/ckpt/*.tmp 2>/dev/null)" ] || fail "$fault: temporary files left after resume"
  for g in /model /optim; do
    h5diff "$ref" "$dir/ckpt/ckpt-0000000016.h5" "$g" "$g" >/dev/null \
      || fail "$fault: $g after resume differs from the uninterrupted run"
  done
  echo "$fault: ended in ${ms} ms with status $rc; resumed from $latest to bitwise the same end"
  survived=$((survived + 1))
}
check kill:1@6 4
check kill-ckpt:1@8 4
check kill-ckpt:0@8 4
check kill:0@13 12

# a bad value is refused, naming the variable
DPT_FAULT=bogus train runs/bad > bad.out 2>&1 && fail "DPT_FAULT=bogus accepted"
grep -q "DPT_FAULT='bogus'" bad.out || { cat bad.out; fail "no message naming DPT_FAULT"; }
echo "ok (faults injected and survived: $survived)"

#!/usr/bin/env bash
# Stopping on request: a stop signal delivered to ONE rank, to mpirun (which forwards it to every
# rank), and --time-limit each make all ranks stop after the same step with a valid checkpoint
# and exit status 3; the same command with --resume auto then ends bitwise where the
# uninterrupted run ends. Usage: test_stop.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 2048 64 32 4
steps=768   # 3 epochs of 256 steps: about 6 s on 2 oversubscribed ranks
train() { # RUN_DIR [more options]
  local dir=$1; shift
  timeout 300 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-1024-1024-4 \
    --batch 8 --epochs 3 --solver adam --sched cosine --ckpt 1 --run-dir "$dir" \
    --progress none "$@"
}
final=$(printf 'ckpt-%010d.h5' $steps)
train ref > ref.out 2>&1 || { cat ref.out; fail "the uninterrupted run"; }
[ -f ref/ckpt/$final ] || fail "no final checkpoint of the uninterrupted run"

# waits until the run writing OUT has started training (its start-up line), then a second
wait_started() {
  for _ in $(seq 1 600); do
    if grep -q "^dpt: 2 ranks on" "$1" 2>/dev/null; then sleep 1; return 0; fi
    sleep 0.05
  done
  return 1
}

# after a stopped run in DIR (status RC, output OUT): status 3, one agreed step, a valid
# checkpoint of it, and a resume that ends bitwise like the reference
check_stopped() { # NAME DIR RC OUT
  local name=$1 dir=$2 rc=$3 out=$4
  [ "$rc" -eq 3 ] || { cat "$out"; fail "$name: exit status $rc, expected 3"; }
  local step
  step=$(sed -n 's/^dpt train: stopped after step \([0-9]*\) of.*/\1/p' "$out")
  [ -n "$step" ] || { cat "$out"; fail "$name: no 'stopped after step' line"; }
  [ "$step" -lt $steps ] || fail "$name: stopped only at the end"
  [ "$(cat "$dir/ckpt/latest")" = "$(printf 'ckpt-%010d.h5' "$step")" ] \
    || fail "$name: latest is not the checkpoint of step $step"
  "$dpt" ckpt inspect "$dir/ckpt/$(cat "$dir/ckpt/latest")" > "$dir.inspect" \
    || fail "$name: the checkpoint of step $step does not verify"
  grep -q "train.step *$step\$" "$dir.inspect" || fail "$name: the checkpoint is not of step $step"
  train "$dir" --resume auto > "$dir.resume.out" 2>&1 \
    || { cat "$dir.resume.out"; fail "$name: resume"; }
  grep -q "resuming from .* at step $step" "$dir.resume.out" || fail "$name: did not resume"
  # the metrics file continues: one record per step, 1 .. 768, across the stop
  [ "$(grep -c '"type":"step"' "$dir/metrics.jsonl")" = $steps ] \
    || fail "$name: the metrics file does not hold every step once"
  for g in /model /optim; do
    h5diff ref/ckpt/$final "$dir/ckpt/$final" "$g" "$g" >/dev/null \
      || fail "$name: $g after resume differs from the uninterrupted run"
  done
  echo "$name: all ranks stopped after step $step with status 3; resumed to bitwise the same end"
}

# 1. SIGUSR1 to rank 1 only
train one > one.out 2>&1 &
job=$!
wait_started one.out || fail "the run did not start"
r1=$(rank_pid "$(job_mpirun "$job")" 1) || fail "rank 1's process not found"
kill -USR1 "$r1"
wait $job; rc=$?
check_stopped "SIGUSR1 to rank 1 only" one $rc one.out

# 2. SIGUSR1 to mpirun, which forwards it to every rank
train all > all.out 2>&1 &
job=$!
wait_started all.out || fail "the run did not start"
mp=$(job_mpirun "$job") || fail "mpirun's process not found"
kill -USR1 "$mp"
wait $job; rc=$?
check_stopped "SIGUSR1 to mpirun" all $rc all.out

# 3. --time-limit, in SLURM's format: stops in time on its own
t0=$(date +%s%N)
train lim --time-limit 0:02 > lim.out 2>&1; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q "time-limit 0:02" lim.out || { cat lim.out; fail "--time-limit: not the reason given"; }
[ "$ms" -lt 6000 ] || fail "--time-limit 0:02: the command took $ms ms"
check_stopped "--time-limit 0:02 ($ms ms with start-up)" lim $rc lim.out

# 4. Ctrl-C on a run started without mpirun: SIGINT to its process group, as a terminal sends
# it, stops it with a checkpoint and status 3, naming the signal; a second Ctrl-C ends it at once
solo() { # RUN_DIR: one rank, no mpirun, in a process group of its own
  setsid "$dpt" train --data d.h5 --model mlp:32-1024-1024-4 --batch 8 --epochs 3 --solver adam \
    --sched cosine --ckpt 1 --run-dir "$1" --progress none > "$1.out" 2>&1 < /dev/null
}
solo_pgid() { # RUN_DIR: the process group of the one-rank run writing into it
  local p
  for _ in $(seq 1 200); do
    p=$(pgrep -f -- "--run-dir $1 " | head -1)
    [ -n "$p" ] && grep -q "^dpt: 1 rank on" "$1.out" 2>/dev/null && { ps -o pgid= "$p" | tr -d ' '; return 0; }
    sleep 0.05
  done
  return 1
}
solo ctrlc & job=$!
pg=$(solo_pgid ctrlc) || fail "the one-rank run did not start"
sleep 1; kill -INT -- "-$pg"
wait $job; rc=$?
[ "$rc" -eq 3 ] || { cat ctrlc.out; fail "Ctrl-C: exit status $rc, expected 3"; }
grep -q "stopped after step [0-9]* of $steps: SIGINT (Ctrl-C) reached 1 of 1 ranks" ctrlc.out \
  || { cat ctrlc.out; fail "Ctrl-C: the message does not name SIGINT"; }
"$dpt" ckpt inspect "ctrlc/ckpt/$(cat ctrlc/ckpt/latest)" > /dev/null || fail "Ctrl-C: checkpoint"
"$dpt" train --data d.h5 --model mlp:32-1024-1024-4 --batch 8 --epochs 3 --solver adam \
  --sched cosine --ckpt 1 --run-dir ctrlc --progress none --resume auto > ctrlc.resume.out 2>&1 \
  || { cat ctrlc.resume.out; fail "Ctrl-C: resume"; }
[ "$(grep -c '"type":"step"' ctrlc/metrics.jsonl)" = $steps ] || fail "Ctrl-C: metrics after resume"
echo "Ctrl-C without mpirun: stopped with status 3 naming SIGINT; resumed to the end"
solo twice & job=$!
pg=$(solo_pgid twice) || fail "the one-rank run did not start"
sleep 1; kill -INT -- "-$pg"; sleep 0.02 # two signals at the same instant would merge into one
t0=$(date +%s%N); kill -INT -- "-$pg"
wait $job; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$rc" -eq 130 ] || { cat twice.out; fail "a second Ctrl-C: exit status $rc, expected 130 (SIGINT)"; }
[ "$ms" -lt 3000 ] || fail "a second Ctrl-C took $ms ms to end the run"
echo "a second Ctrl-C ended the run in $ms ms"
echo ok

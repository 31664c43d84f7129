#!/usr/bin/env bash
# A hung peer: one rank of a 2-rank job is stopped (SIGSTOP); with --watchdog 3 the other rank
# ends the job within 30 s with one line naming the collective it blocked in and the step.
# Usage: test_watchdog.sh DPT WORKDIR
set -u
dpt=$1; work=$2
rm -rf "$work"; mkdir -p "$work"; cd "$work"
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset DPT_FAULT
"$dpt" data synth --out d.h5 --train 2048 --test 64 --features 32 --classes 4 >/dev/null \
  || fail "synth"
(timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-1024-1024-4 \
   --batch 8 --epochs 20 --watchdog 3 --run-dir run --progress none > run.out 2>&1) &
job=$!
for _ in $(seq 1 600); do grep -q "ranks on 1 node" run.out 2>/dev/null && break; sleep 0.05; done
sleep 1
to=$job; [ "$(cat /proc/$job/comm 2>/dev/null)" = timeout ] || to=$(pgrep -x timeout -P "$job")
mp=$(pgrep -x mpirun -P "$to")
r1=""
for p in $(pgrep -P "$mp"); do
  tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && r1=$p
done
[ -n "$r1" ] || fail "rank 1 not found"
t0=$(date +%s%N)
kill -STOP "$r1"
wait $job; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kill -9 "$r1" 2>/dev/null   # in case it outlived the job
[ $rc -ne 0 ] || fail "the job exited 0"
[ $rc -ne 124 ] || { cat run.out; fail "the job hung until the timeout"; }
[ $ms -lt 30000 ] || fail "the job took $ms ms to end"
grep -q "^dpt\[rank 0\]: watchdog: step [0-9]*: blocked [0-9]* s in the " run.out \
  || { cat run.out; fail "no watchdog line naming the step and the collective"; }
echo "$(grep -m1 watchdog run.out)"
echo "ok: the job ended $ms ms after rank 1 stopped (status $rc)"

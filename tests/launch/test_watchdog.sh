#!/usr/bin/env bash
# A hung peer: one rank of a 2-rank job is stopped (SIGSTOP); with --watchdog 3 the other rank
# ends the job within 30 s with one line naming the collective it blocked in and the step.
# Usage: test_watchdog.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 2048 64 32 4
(timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-1024-1024-4 \
   --batch 8 --epochs 20 --watchdog 3 --run-dir run --progress none > run.out 2>&1) &
job=$!
for _ in $(seq 1 600); do grep -q "ranks on 1 node" run.out 2>/dev/null && break; sleep 0.05; done
sleep 1
r1=$(rank_pid "$(job_mpirun "$job")" 1) || fail "rank 1 not found"
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

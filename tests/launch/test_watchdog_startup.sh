#!/usr/bin/env bash
# The watchdog covers the start of a job: rank 1 of a 2-rank job is stopped (SIGSTOP) as soon
# as its process exists, before its first step (in MPI's set-up or the trainer's start-up);
# with --watchdog 3 rank 0 ends the job within 30 s with one line naming the phase it blocked
# in. Usage: test_watchdog_startup.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 2048 64 32 4
(timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-64-4 \
   --batch 8 --epochs 20 --watchdog 3 --run-dir run --progress none > run.out 2>&1) &
job=$!
r1=
for _ in $(seq 1 2000); do
  m=$(job_mpirun "$job" 2>/dev/null) && r1=$(rank_pid "$m" 1 2>/dev/null) && break
  sleep 0.005
done
[ -n "$r1" ] || fail "rank 1 not found"
t0=$(date +%s%N)
kill -STOP "$r1"
grep -q "ranks on 1 node" run.out && echo "note: the job had started its steps already"
wait $job; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kill -9 "$r1" 2>/dev/null   # in case it outlived the job
[ $rc -ne 0 ] || fail "the job exited 0"
[ $rc -ne 124 ] || { cat run.out; fail "the job hung until the timeout"; }
[ $ms -lt 30000 ] || fail "the job took $ms ms to end"
grep -q "^dpt\[rank 0\]: watchdog: step 0: blocked [0-9]* s in the " run.out \
  || { cat run.out; fail "no watchdog line naming the phase before step 1"; }
echo "$(grep -m1 watchdog run.out)"
echo "ok: the job ended $ms ms after rank 1 stopped before its first step (status $rc)"

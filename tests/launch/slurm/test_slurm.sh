#!/usr/bin/env bash
# dpt under a real one-node SLURM cluster (started here, stopped by pid on any exit):
# 1. a small job through each batch script (mpirun, srun) finishes with a valid checkpoint;
# 2. a running job of each script is preempted with USR1 (to the batch shell for the mpirun
#    script, to the ranks for srun), stops with status 3, is requeued by its script, resumes by
#    itself (--resume auto) and ends with parameters and optimizer state bitwise equal to the
#    same job run uninterrupted with plain mpirun.
# Exit 77 (skipped) where SLURM cannot run. Usage: test_slurm.sh DPT WORKDIR REPO
set -u
dpt=$1; work=$2; repo=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work"
fail() { echo "FAIL: $*"; for f in slurm-*.out; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 DPT=$dpt
unset DPT_FAULT SLURM_JOB_ID
cluster=$work/cluster
out=$(bash "$repo/tests/launch/slurm/cluster.sh" start "$cluster"); rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: could not start the SLURM cluster"; exit 1; }
trap 'bash "$repo/tests/launch/slurm/cluster.sh" stop "$cluster"' EXIT
eval "$out"

"$dpt" data synth --out d.h5 --train 2048 --test 64 --features 32 --classes 4 >/dev/null \
  || fail "synth"

. "$(dirname "$0")/jobs.sh" # wait_job, check_requeued

# 1. small jobs through each script
small="--data d.h5 --model mlp:32-64-4 --epochs 1 --batch 16 --progress none"
for s in mpirun srun; do
  j=$(sbatch --parsable -n 2 -o "slurm-small-$s.out" "$repo/launch/slurm-$s.sbatch" $small) \
    || fail "sbatch $s"
  echo "$j" >> "$cluster/jobs" # the clean-up cancels only these
  state=$(wait_job "$j")
  [ "$state" = "JobState=COMPLETED ExitCode=0:0" ] || fail "$s job $j ended as: $state"
  grep -q "^dpt: 128 steps, 1 epochs" "slurm-small-$s.out" || fail "$s job $j did not finish"
  grep -q "^dpt\[job $j\]: 2 ranks on 1 node" "slurm-small-$s.out" \
    || fail "$s job $j: no start-up line naming the job"
  ck=runs/slurm-$j/ckpt/$(cat "runs/slurm-$j/ckpt/latest" 2>/dev/null)
  "$dpt" ckpt inspect "$ck" > /dev/null || fail "$s job $j: checkpoint '$ck' does not verify"
  echo "$s script: job $j completed, checkpoint $ck verifies"
done

# 2. preempt -> requeue -> resume, against the uninterrupted run
long="--data d.h5 --model mlp:32-1024-1024-4 --epochs 3 --batch 8 --solver adam --sched cosine --progress none"
final=ckpt-0000000768.h5
mpirun --oversubscribe -n 2 "$dpt" train $long --ckpt 1 --run-dir ref > ref.out 2>&1 \
  || { cat ref.out; fail "the uninterrupted run"; }
declare -A job
for s in mpirun srun; do
  job[$s]=$(sbatch --parsable -n 2 -o "slurm-long-$s.out" "$repo/launch/slurm-$s.sbatch" $long) \
    || fail "sbatch $s"
  echo "${job[$s]}" >> "$cluster/jobs"
done
for s in mpirun srun; do # preempt each once it trains
  j=${job[$s]}
  for _ in $(seq 1 600); do grep -q "ranks on 1 node" "slurm-long-$s.out" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  if [ $s = mpirun ]; then scancel --batch -s USR1 "$j"; else scancel -s USR1 "$j"; fi
done
for s in mpirun srun; do
  j=${job[$s]}
  state=$(wait_job "$j")
  [ "$state" = "JobState=COMPLETED ExitCode=0:0" ] || fail "$s job $j ended as: $state"
  f=slurm-long-$s.out
  check_requeued "$s" "$j" "$f" 768 ref "$final"
  step=$stopped_step
  echo "$s script: job $j stopped at step $step on USR1, requeued, resumed, bitwise equal at the end"
done
echo ok

# jobs.sh — sourced by the SLURM tests (tests/launch/slurm/test_slurm.sh, the namespace
# cluster's tests/netns/test_netns_slurm.sh): waiting for a job and checking a preempted one.
# The caller defines fail MESSAGE; SCONTROL is the scontrol command (default scontrol; a
# namespace cluster's wrapper, e.g. "sl scontrol").

# wait_job J [TRIES]: waits (TRIES x 0.2 s, default 900) for job J to end for good; prints its
# final state and exit code ("JobState=COMPLETED ExitCode=0:0"), or TIMEOUT and returns 1.
wait_job() {
  local j=$1 tries=${2:-900} info
  for _ in $(seq 1 "$tries"); do
    info=$(${SCONTROL:-scontrol} show job "$j" -o 2>/dev/null)
    case $info in
      *JobState=COMPLETED*|*JobState=FAILED*|*JobState=CANCELLED*|*JobState=TIMEOUT*)
        echo "$info" | grep -o 'JobState=[A-Z]* .*ExitCode=[0-9:]*' | sed 's/ Reason.*ExitCode/ ExitCode/'
        return 0;;
    esac
    sleep 0.2
  done
  echo "TIMEOUT"; return 1
}

# check_requeued WHAT J OUT STEPS REF FINAL: job J (output OUT, a run of STEPS steps) was stopped
# by SIGUSR1, requeued, restarted and resumed from the checkpoint of the step it stopped at, and
# its final checkpoint FINAL's /model and /optim are bitwise REF/ckpt/FINAL's (the uninterrupted
# run). WHAT names the job in failures. Sets stopped_step to the step it stopped at.
check_requeued() {
  local what=$1 j=$2 f=$3 steps=$4 ref=$5 final=$6 step g
  grep -q "^dpt train: stopped after step [0-9]* of $steps: SIGUSR1 reached" "$f" \
    || fail "$what job $j was not stopped by the signal"
  grep -q "requeueing job $j" "$f" || fail "$what job $j was not requeued"
  grep -q "restart 1" "$f" || fail "$what job $j did not restart"
  step=$(sed -n 's/^dpt train: stopped after step \([0-9]*\) of.*/\1/p' "$f")
  grep -q "resuming from runs/slurm-$j/ckpt/ckpt-0*$step.h5 at step $step" "$f" \
    || fail "$what job $j did not resume from step $step"
  for g in /model /optim; do
    h5diff "$ref/ckpt/$final" "runs/slurm-$j/ckpt/$final" "$g" "$g" >/dev/null \
      || fail "$what job $j: $g differs from the uninterrupted run"
  done
  stopped_step=$step
}

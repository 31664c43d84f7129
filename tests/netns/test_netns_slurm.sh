#!/usr/bin/env bash
# Both batch scripts run a 2-node SLURM job across the netns test bed (bed.sh): the test starts
# its own munged, slurmctld and one slurmd per node namespace (`slurmd -N NODE`, each in its
# node's network and UTS namespace), with its own config, ports, state and spool directories
# of its own. A job of launch/slurm-mpirun.sbatch and one of launch/slurm-srun.sbatch, each
# -N 2 -n 2 (one rank per node), train as "2 ranks on 2 nodes"; each is preempted with USR1
# (to the batch shell for the mpirun script, to the ranks for srun) once it trains, stops with
# status 3, is requeued by its script, resumes by itself (--resume auto), and ends with
# parameters and optimizer state bitwise equal to the same run uninterrupted (plain mpirun on
# one host). Every daemon runs inside the bed's namespaces, so ports cannot meet another
# cluster's, and the EXIT trap stops them (by pid) and removes the namespaces, also on failure.
# Skipped (77) where the bed or SLURM cannot be had. Usage: test_netns_slurm.sh DPT WORKDIR
set -u
dpt=$1; work=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/bed.sh"
fail() {
  echo "FAIL: $*"
  for f in "$work"/slurm-*.out; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done
  for f in "$cl"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -15 "$f"; }; done
  exit 1
}
for b in slurmctld slurmd munged sbatch squeue scontrol scancel; do
  command -v $b >/dev/null || { echo "skipped: $b is not installed (slurmctld slurmd slurm-client munge)"; exit 77; }
done
[ -r /etc/munge/munge.key ] || { echo "skipped: no /etc/munge/munge.key"; exit 77; }
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 DPT=$dpt
unset DPT_FAULT SLURM_JOB_ID SLURM_CONF
bed_up 2 10gbit "$work/bed"; rc=$?
[ $rc -eq 0 ] || exit $rc

# --- the cluster: every daemon in node 1's or node I's namespaces, stopped by its pid ---
# state, spool and sockets in a short directory of their own (a Unix socket's path must be
# under 108 bytes); its logs are copied to WORKDIR/cluster-log at the end
cl=$(mktemp -d /tmp/dpt-slurm.XXXXXX) && chmod 755 "$cl" # munged (user munge) enters it
CTLD_PORT=16917 SLURMD_PORT=16918 # inside the bed's namespaces: no other cluster's ports
mkdir -p "$cl/state" "$cl/log" "$cl/munge"
: > "$cl/jobs"
in_node() { # I CMD...: CMD in node I's network and UTS namespaces (nsenter: /sys stays as it is)
  local i=$1; shift
  nsenter --net="/run/netns/$(bed_ns "$i")" unshare --uts sh -c 'hostname "$0" && exec "$@"' \
    "$(bed_host "$i")" "$@"
}
sl() { nsenter --net="/run/netns/$(bed_ns 1)" "$@"; } # a SLURM client, where the controller is
slurm_down() {
  local j f pid
  if [ -s "$cl/jobs" ]; then
    for j in $(cat "$cl/jobs"); do sl scancel --full "$j" >/dev/null 2>&1; done
  fi
  for f in "$cl"/slurmd-*.pid "$cl/slurmctld.pid" "$cl/munge/munged.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$f"
  done
}
trap 'slurm_down; bed_down; cp -r "$cl/log" "$work/cluster-log" 2>/dev/null; rm -rf "$cl"' EXIT
for i in 1 2; do
  for p in $CTLD_PORT $SLURMD_PORT; do
    [ -z "$(ip netns exec "$(bed_ns "$i")" ss -Hltn "sport = :$p" 2>/dev/null)" ] \
      || fail "port $p is taken in $(bed_ns "$i")"
  done
done
chown munge:munge "$cl/munge"; chmod 700 "$cl/munge"
in_node 1 runuser -u munge -- munged --socket="$cl/munge/munge.socket" \
  --pid-file="$cl/munge/munged.pid" --log-file="$cl/munge/munged.log" \
  --seed-file="$cl/munge/munged.seed" --force 2> "$cl/munge/munged.err" || { echo "skipped: munged does not start"; exit 77; }
h1=$(bed_host 1) h2=$(bed_host 2)
cat > "$cl/slurm.conf" <<CONF
ClusterName=dptnetns
SlurmctldHost=$h1($(bed_ip 1))
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$cl/munge/munge.socket,cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$cl/state
SlurmdSpoolDir=$cl/spool-%n
TmpFS=$cl/tmp-%n
SlurmctldPidFile=$cl/slurmctld.pid
SlurmdPidFile=$cl/slurmd-%n.pid
SlurmctldLogFile=$cl/log/slurmctld.log
SlurmdLogFile=$cl/log/slurmd-%n.log
SlurmdParameters=config_overrides
JobRequeue=1
KillWait=30
NodeName=$h1 NodeAddr=$(bed_ip 1) CPUs=4 RealMemory=1000 State=UNKNOWN
NodeName=$h2 NodeAddr=$(bed_ip 2) CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=bed Nodes=$h1,$h2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
mkdir -p "$cl/spool-$h1" "$cl/spool-$h2" "$cl/tmp-$h1" "$cl/tmp-$h2"
export SLURM_CONF=$cl/slurm.conf
for _ in $(seq 1 50); do [ -S "$cl/munge/munge.socket" ] && break; sleep 0.1; done
in_node 1 slurmctld -f "$SLURM_CONF" || fail "slurmctld does not start"
for i in 1 2; do in_node "$i" slurmd -N "$(bed_host "$i")" -f "$SLURM_CONF" || fail "slurmd $i does not start"; done
for _ in $(seq 1 150); do
  state=$(sl sinfo -h -N -o '%N %t' 2>/dev/null | sort | paste -sd' ')
  [ "$state" = "$h1 idle $h2 idle" ] && break
  sleep 0.2
done
[ "$state" = "$h1 idle $h2 idle" ] || fail "the nodes did not become idle ($state)"
sl scontrol show config 2>/dev/null | grep -q '^ClusterName *= dptnetns$' \
  || fail "the controller answering is not this test's"
t_up=$SECONDS
echo "cluster up: slurmctld and slurmd on $h1, slurmd on $h2 (ports $CTLD_PORT/$SLURMD_PORT in the bed)"

# --- the jobs ---
"$dpt" data synth --out d.h5 --train 2048 --test 64 --features 32 --classes 4 >/dev/null \
  || fail "synth"
long=(--data "$work/d.h5" --model mlp:32-256-256-4 --epochs 4 --batch 8 --solver adam
      --sched cosine --progress none)
final=ckpt-0000001024.h5
# the jobs' Open MPI settings travel in the environment sbatch passes on (not srun --export):
# TCP on the bed's subnet, no binding (both nodes share 2 cores), idle ranks yield
export OMPI_MCA_btl=tcp,self,vader OMPI_MCA_btl_tcp_if_include=$BED_NET.0/24 \
  OMPI_MCA_oob_tcp_if_include=$BED_NET.0/24 OMPI_MCA_hwloc_base_binding_policy=none \
  OMPI_MCA_mpi_yield_when_idle=1
declare -A job
for s in mpirun srun; do
  job[$s]=$(sl sbatch --parsable -N 2 -n 2 --ntasks-per-node=1 -o "$work/slurm-$s.out" \
    -D "$work" "$repo/launch/slurm-$s.sbatch" "${long[@]}") || fail "sbatch $s"
  echo "${job[$s]}" >> "$cl/jobs"
done
# meanwhile the uninterrupted run, on one host
timeout 120 mpirun --oversubscribe --bind-to none -n 2 "$dpt" train "${long[@]}" --ckpt 1 \
  --run-dir ref > ref.out 2>&1 &
ref=$!
# preempt each as soon as it trains (30 steps of 1024 recorded)
declare -A sent
for _ in $(seq 1 300); do
  for s in mpirun srun; do
    j=${job[$s]}
    [ -n "${sent[$s]:-}" ] && continue
    n=$(grep -c '"type":"step"' "runs/slurm-$j/metrics.jsonl" 2>/dev/null)
    [ "${n:-0}" -ge 30 ] || continue
    if [ $s = mpirun ]; then sl scancel --batch -s USR1 "$j"; else sl scancel -s USR1 "$j"; fi
    sent[$s]=1
  done
  [ -n "${sent[mpirun]:-}" ] && [ -n "${sent[srun]:-}" ] && break
  sleep 0.1
done
for s in mpirun srun; do [ -n "${sent[$s]:-}" ] || fail "$s job ${job[$s]} did not train"; done
wait $ref || { cat ref.out; fail "the uninterrupted run"; }
SCONTROL="sl scontrol"
. "$here/../launch/slurm/jobs.sh" # wait_job, check_requeued
for s in mpirun srun; do
  j=${job[$s]} f=slurm-$s.out
  state=$(wait_job "$j")
  [ "$state" = "JobState=COMPLETED ExitCode=0:0" ] || fail "$s job $j ended as: $state"
  [ "$(grep -c "^dpt\[job $j\]: 2 ranks on 2 nodes (1 per node)" "$f")" = 2 ] \
    || fail "$s job $j: its two runs did not both train as 2 ranks on 2 nodes"
  check_requeued "$s" "$j" "$f" 1024 ref "$final"
  step=$stopped_step
  echo "$s script: job $j on $h1,$h2 stopped at step $step on USR1, requeued, resumed, bitwise the uninterrupted run"
done
echo "jobs done $((SECONDS - t_up)) s after the cluster was up"
echo ok

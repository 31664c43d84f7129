#!/usr/bin/env bash
# A one-node SLURM cluster on loopback, for tests: munged, slurmctld and slurmd started by hand
# (no systemd), all state under DIR, every daemon stopped by its pid.
#   cluster.sh start DIR   prints "export SLURM_CONF=DIR/slurm.conf"; exit 77 if SLURM cannot run
#   cluster.sh stop DIR    cancels the jobs listed in DIR/jobs (the test's own), stops the
#                          daemons this script started
# It never touches another cluster: it refuses (exit 77) when SLURM daemons it did not start
# are running, listens on two free ports of its own, and checks that the controller answering
# is its own (cluster name and pid) before it reports the cluster up.
# Facts it relies on: ../shared/notes/slurm.md (Slurm 22.05 on Debian 12).
set -u
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }
skip() { echo "SKIP: $*" >&2; exit 77; }

stop() {
  export SLURM_CONF=$dir/slurm.conf
  if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null \
     && [ -s "$dir/jobs" ]; then
    local j
    for j in $(cat "$dir/jobs"); do scancel --full "$j" >/dev/null 2>&1 || true; done
    for _ in $(seq 1 50); do
      [ -z "$(squeue -h -j "$(paste -sd, "$dir/jobs")" 2>/dev/null)" ] && break; sleep 0.1
    done
  fi
  for d in slurmd slurmctld munged; do
    local f=$dir/$d.pid
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

start() {
  [ "$(id -u)" = 0 ] || skip "not root: cannot start slurmd"
  for b in slurmctld slurmd munged sbatch squeue scontrol; do
    command -v $b >/dev/null || skip "$b is not installed (apt-get install slurmctld slurmd slurm-client munge)"
  done
  local other; other=$( (pgrep -x slurmctld; pgrep -x slurmd; pgrep -f "^slurmstepd") | paste -sd, -)
  [ -z "$other" ] || skip "SLURM daemons this test did not start are running (pids $other): not touching another cluster"
  rm -rf "$dir"; mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  : > "$dir/jobs"
  # two free ports of our own (the kernel picks them), unless the caller chose
  local ports; ports=$(/usr/bin/python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])') || skip "cannot pick free ports"
  local ctld_port=${DPT_SLURMCTLD_PORT:-${ports% *}} slurmd_port=${DPT_SLURMD_PORT:-${ports#* }}
  chown munge:munge "$dir/munge"; chmod 700 "$dir/munge"
  local host; host=$(hostname -s)
  # our own munged on our own socket: nothing shared with a munged the machine may run
  [ -f /etc/munge/munge.key ] || skip "no /etc/munge/munge.key"
  runuser -u munge -- munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force \
    || skip "munged does not start"
  for _ in $(seq 1 50); do [ -f "$dir/munge/munged.pid" ] && break; sleep 0.1; done
  cp "$dir/munge/munged.pid" "$dir/munged.pid"
  cat > "$dir/slurm.conf" <<CONF
ClusterName=dpttest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmdParameters=config_overrides
JobRequeue=1
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" || { stop; skip "slurmctld does not start (see $dir/log)"; }
  slurmd -f "$SLURM_CONF" || { stop; skip "slurmd does not start (see $dir/log)"; }
  for _ in $(seq 1 100); do
    state=$(sinfo -h -o %t 2>/dev/null)
    if [ "$state" = idle ]; then
      # the controller that answers must be ours: our cluster name, our pid alive
      scontrol show config 2>/dev/null | grep -q '^ClusterName *= dpttest$' \
        && kill -0 "$(cat "$dir/slurmctld.pid" 2>/dev/null)" 2>/dev/null \
        || { stop; echo "the controller answering on port $ctld_port is not this test's" >&2; exit 1; }
      echo "export SLURM_CONF=$SLURM_CONF"; return 0
    fi
    sleep 0.2
  done
  echo "cluster did not become idle (state '$state'); logs in $dir/log" >&2
  stop
  exit 1
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR" >&2; exit 2 ;;
esac

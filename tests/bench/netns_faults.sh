#!/usr/bin/env bash
# The fault table (issue 20) in the netns test bed: 2 nodes x 1 rank at 1 Gbit/s, dpt's defaults
# (no --watchdog); each fault on node 2 at a random moment after the first checkpoint, under
# two Open MPI settings: bare mpirun, and the OOB keepalive launch/slurm-mpirun.sbatch exports.
# Per row: time from the fault to every process of the job gone, mpirun's status, the first
# line naming the fault, whether `latest` verifies and the resume on one host is bitwise.
# As root. Usage: tests/bench/netns_faults.sh BUILD_DIR [FAULTS...]   (default: all five)
set -u
build=$(cd "${1:-build}" && pwd); shift || true
faults=${*:-cut loss stop kill crash}
here=$(cd "$(dirname "$0")/../netns" && pwd)
. "$here/bed.sh"
. "$here/faults.sh"
FAULT_BOUND=60
work=$(mktemp -d /tmp/dpt-faults.XXXXXX); cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
bed_up 2 1gbit "$work/bed" || exit $?
fault_setup "$build/dpt" || exit 1
keep=$(grep '^export OMPI_MCA_oob_tcp_keepalive' "$here/../../launch/slurm-mpirun.sbatch" \
  | sed -E 's/^export OMPI_MCA_([a-z_]+)=\$\{[A-Za-z_]+:-([0-9]+)\}/--mca \1 \2/' | tr '\n' ' ')
echo "| fault | Open MPI settings | all gone after | mpirun status | line naming the fault | latest verifies, resume bitwise |"
echo "|---|---|---|---|---|---|"
for f in $faults; do
  for setting in bare keepalive; do
    FAULT_MCA=""; [ $setting = keepalive ] && FAULT_MCA=$keep
    fault_run "$f"
    ok=${FAULT_OK#"not gone within $FAULT_BOUND s"}; ok=${ok#; }   # the time has its column
    [ -z "$ok" ] && ok=yes || ok="no: $ok"
    printf '| %s | %s | %.1f s | %d | %s | %s |\n' "$f" "$setting" \
      "$(echo "$FAULT_MS / 1000" | bc -l)" "$FAULT_RC" "$(echo "$FAULT_LINE" | cut -c1-200)" "$ok"
  done
done
echo "(work: $work)"

#!/usr/bin/env bash
# A job that loses a peer really ends, with dpt's defaults (no --watchdog) and the OOB keepalive
# that launch/slurm-mpirun.sbatch sets: in the netns test bed (2 nodes x 1 rank, 1 Gbit/s),
# a rank killed (kill -9) and a node's link cut, each at a random moment after the first
# checkpoint: every process of the job (mpirun, orted, ranks) is gone within 60 s, Open MPI's
# line names the fault and dpt's the last good checkpoint, `latest` verifies (dpt ckpt inspect),
# and resuming from it on one host ends bitwise where the uninterrupted run ends. The full table (100% loss, SIGSTOP, without keepalive):
# tests/bench/netns_faults.sh. Skipped (77) where the bed cannot be made.
# Usage: test_netns_faults.sh DPT WORKDIR
dpt=$1; work=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bed.sh"
. "$here/faults.sh"
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset OMPI_MCA_oob_tcp_keepalive_time OMPI_MCA_oob_tcp_keepalive_intvl OMPI_MCA_oob_tcp_keepalive_probes
eval "$(grep '^export OMPI_MCA_oob_tcp_keepalive' "$here/../../launch/slurm-mpirun.sbatch")"
[ -n "${OMPI_MCA_oob_tcp_keepalive_time:-}" ] || { echo "FAIL: no keepalive in slurm-mpirun.sbatch"; exit 1; }
bed_up 2 1gbit "$work/bed"; rc=$?
[ $rc -eq 0 ] || exit $rc
fault_setup "$dpt" || exit 1
failed=0
for f in kill cut; do
  fault_run "$f"
  printf '%-5s gone after %6d ms (mpirun status %d): %s; latest %s\n' "$f" "$FAULT_MS" \
    "$FAULT_RC" "$FAULT_LINE" "${FAULT_LATEST##*/}"
  [ -z "$FAULT_OK" ] || { echo "FAIL: $f: $FAULT_OK"; cat "f-$f.out"; failed=1; }
  grep -q "^dpt\[rank 0\]: .*last good checkpoint: $FAULT_LATEST" "f-$f.out" \
    || { echo "FAIL: $f: no line of dpt's naming the last good checkpoint $FAULT_LATEST"; failed=1; }
done
case "$(grep -m1 -E 'noticed that|lost communication|watchdog:' f-kill.out)" in
  *"rank 1"*"signal 9"*) ;;
  *) echo "FAIL: kill: no line naming the dead rank"; failed=1 ;;
esac
grep -q -E "lost communication|watchdog:.*link is lost" f-cut.out \
  || { echo "FAIL: cut: no line naming the lost link"; failed=1; }
[ $failed = 0 ] && echo ok
exit $failed

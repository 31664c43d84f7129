#!/usr/bin/env bash
# Reduction bandwidth across the netns test bed's nodes (issue 20): dpt's reducer (rank-order
# and node-aware, allreduce and reduce-scatter) against raw MPI_Allreduce under Open MPI's
# default, the ring algorithm forced (the best Open MPI does over TCP here) and coll han, and
# iperf3 over the same links in the same run (a ring of flows, node i -> node i+1, all at
# once: every link carries one flow each way, as a ring allreduce loads it).
# Layouts: 2 x 1, 4 x 1, 2 x 2 at RATE (default 1gbit). As root.
# Usage: [LAYOUTS="2x2 ..."] tests/bench/netns_reduce.sh BUILD_DIR [RATE [MIB]]
set -u
build=$(cd "${1:-build}" && pwd)
rate=${2:-1gbit}; mib=${3:-64}
bench=$build/tests/bench/bench_reduce
[ -x "$bench" ] || { echo "build bench_reduce first (cmake -DDPT_BUILD_BENCH=ON)"; exit 2; }
here=$(cd "$(dirname "$0")/../netns" && pwd)
. "$here/bed.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
command -v iperf3 >/dev/null || { echo "no iperf3 (launch/install-deps.sh test)"; exit 2; }

iperf_ring() { # K: the slowest of K simultaneous flows node i -> i+1, Gbit/s
  local k=$1 i d=$BED_WORK/iperf
  mkdir -p "$d"
  for i in $(seq 1 "$k"); do bed_exec "$i" iperf3 -s -1 -p 5201 > /dev/null 2>&1 & done
  sleep 1
  for i in $(seq 1 "$k"); do
    bed_exec "$i" iperf3 -c "$(bed_ip $((i % k + 1)))" -p 5201 -t 5 -J > "$d/$i.json" 2>&1 &
  done
  wait
  python3 - "$d" "$k" <<'PY'
import json, sys
d, k = sys.argv[1], int(sys.argv[2])
rates = [json.load(open(f"{d}/{i}.json"))["end"]["sum_received"]["bits_per_second"] / 1e9 for i in range(1, k + 1)]
print(f"{min(rates):.3f}")
PY
}

for layout in ${LAYOUTS:-2x1 4x1 2x2}; do
  k=${layout%x*}; s=${layout#*x}
  bed_up "$k" "$rate" || exit $?
  echo "## $k nodes x $s ranks, links $rate"
  echo "iperf3, ring of $k flows: slowest $(iperf_ring "$k") Gbit/s per flow"
  for mpi in default ring han; do
    case $mpi in
      default) mca=() ;;
      ring) mca=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 4) ;;
      han) mca=(--mca coll_han_priority 100) ;;
    esac
    echo "# MPI_Allreduce: Open MPI $mpi"
    only=mpi; [ $mpi = default ] && only=all
    BED_TIMEOUT=600 bed_mpirun "$s" "${mca[@]}" -n $((k * s)) "$bench" "$mib" 3 $only 2>&1
  done
  bed_down
done

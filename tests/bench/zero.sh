#!/usr/bin/env bash
# ZeRO benchmark tables: memory and step time per stage at W = 1, 2, 4, then collective
# bandwidth against raw MPI at W = 2, 4. Usage: tests/bench/zero.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
bin=$build/tests/bench/bench_zero
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
echo "MLP 1024-4096-4096-1024 (25.2M parameters), Adam, global batch 32, 6 steps"
printf '%3s %6s %14s %16s %13s\n' W stage "peak RSS MiB" "state MiB/rank" "ms/step"
for w in 1 2 4; do
  for stage in 0 1 2; do
    mpirun --oversubscribe -n "$w" "$bin" mem "$stage"
  done
done
echo
for w in 2 4; do
  mpirun --oversubscribe -n "$w" "$bin" bw
done

#!/usr/bin/env bash
# Checkpoint benchmark table at W = 1, 2, 4. Usage: tests/bench/ckpt.sh [BUILD_DIR] [DIR]
set -euo pipefail
build=${1:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
echo "checkpoint of MLP 1024-4096-4096-1024 with Adam state; ratio = dpt write / plain write+fsync"
for w in 1 2 4; do
  mpirun --oversubscribe -n "$w" "$build/tests/bench/bench_ckpt" ${2:-}
done

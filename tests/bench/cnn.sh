#!/usr/bin/env bash
# cnn.sh — the CNN microbenchmark of issue 19: dpt's bench_cnn against tests/bench/bench_cnn.py
# (the same net in PyTorch 1.13, oneDNN convolutions) in the same run, one thread each,
# alternately (dpt, torch, dpt, torch, ...) REPS times, best of each kept; both time forward +
# backward of one batch in CPU time of their process (the machine is shared), and bench_cnn
# measures the single-core sgemm rate in the same run for the MFU.
#
# Usage: bash tests/bench/cnn.sh [BUILD_DIR]   (default build; DPT_BUILD_BENCH=ON)
# Environment: NETS ("c32-c64-f128 c32-c64-c128-f128"), BATCHES ("128"), REPS (3), ITERS (20),
# PEER_CORETYPE (OpenBLAS kernels of both sides; default SkylakeX on AVX-512 CPUs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
nets=${NETS:-"c32-c64-f128 c32-c64-c128-f128"}
batches=${BATCHES:-128}
reps=${REPS:-3}
iters=${ITERS:-20}
py=/usr/bin/python3 # Debian's python3 with python3-torch
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ -n "${PEER_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=$PEER_CORETYPE
elif grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
bench=$build/tests/bench/bench_cnn
[ -x "$bench" ] || { echo "cnn.sh: $bench is missing (configure with -DDPT_BUILD_BENCH=ON)" >&2; exit 1; }
printf "%-20s %5s %10s %10s %9s %7s %9s\n" net batch "dpt s/s" "torch s/s" dpt/torch MFU "sgemm GF"
for net in $nets; do
  for b in $batches; do
    bd=0 bt=0 mfu=0 sg=0
    for _ in $(seq 1 "$reps"); do
      out=$("$bench" --net "$net" --batch "$b" --reps "$iters")
      s=$(sed -n 's/^dpt fwd+bwd: .*ms\/batch, \([0-9]*\) samples\/s.*MFU \([0-9.]*\).*/\1 \2/p' <<<"$out")
      g=$(sed -n 's/^sgemm [0-9^]*: \([0-9.]*\) GFLOP.*/\1/p' <<<"$out")
      if [ "${s% *}" -gt "$bd" ]; then bd=${s% *} mfu=${s#* } sg=$g; fi
      t=$("$py" "$here/bench_cnn.py" --net "$net" --batch "$b" --reps "$iters" |
        sed -n 's/^torch fwd+bwd: .*ms\/batch, \([0-9]*\) samples\/s.*/\1/p')
      [ "$t" -gt "$bt" ] && bt=$t
    done
    printf "%-20s %5s %10s %10s %9s %7s %9s\n" "$net" "$b" "$bd" "$bt" \
      "$(awk -v a="$bd" -v b="$bt" 'BEGIN { printf "%.2f", a / b }')" "$mfu" "$sg"
  done
done
echo "cnn.sh: forward + backward of one batch, CPU time, best of $reps alternating runs of $iters" \
     "iterations; MFU = dpt's model FLOP/s over sgemm 1024^3 in the same bench_cnn run;" \
     "OpenBLAS ${OPENBLAS_CORETYPE:-(detected)}"

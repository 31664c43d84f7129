# peer_lib.sh — what the dpt-vs-PyTorch benchmarks share (peer.sh, peer_cnn.sh, peer_gpt.sh),
# sourced after they set `here` (this folder) and `build`:
#   peer_env          both sides' environment: Debian's python3 ($py), MPI as root, one BLAS/OMP
#                     thread, the same OpenBLAS kernels (PEER_CORETYPE, else SkylakeX on AVX-512
#                     CPUs, else detected), torch's malloc tunables ($torch_malloc, see below)
#   peer_cache NAME   $cache: PEER_CACHE, or a new directory of the run's own, removed at exit
#   free_port         a free TCP port for torch's gloo rendezvous
#   launch W PREFIX cmd...   mpirun -n W, each rank under /usr/bin/time writing its peak RSS
#                     (KiB) to PREFIX.<rank>: the same launcher, binding and RSS for both sides
#   peer_dpt_record OUT W REP B [KEY=JSON...]    one JSON record of a dpt run from OUT.jsonl
#                     (its metrics), OUT.log and OUT.rss.* (peer_lib.py dpt)
#   peer_torch_record OUT REP [KEY=JSON...]      the same from a torch run's OUT.log line
#                     {"peer": "torch", ...} and OUT.rss.* (peer_lib.py torch)
#   peer_sgemm        bench_cnn's single-core sgemm 1024^3 line (for the MFU denominators)

peer_env() {
  py=/usr/bin/python3 # Debian's python3 with python3-torch; the pyenv python3 on PATH has none
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  # The same OpenBLAS kernels on both sides (Debian's torch calls the system BLAS too): the
  # ones dpt picks by itself, SkylakeX where the CPU has AVX-512 (Debian's OpenBLAS 0.3.21
  # would fall back to Haswell). PEER_CORETYPE overrides.
  if [ -n "${PEER_CORETYPE:-}" ]; then
    export OPENBLAS_CORETYPE=$PEER_CORETYPE
  elif grep -qw avx512f /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=SkylakeX
  else
    unset OPENBLAS_CORETYPE
  fi
  # PyTorch allocates temporaries of the parameters' size on every optimizer step and frees
  # them; glibc returns such blocks to the kernel, so the next step faults every page in again
  # (on a virtual machine, microseconds per fault). The torch side therefore runs with glibc
  # keeping freed memory (no mmap for large blocks, no trimming): its best case.
  # PEER_TORCH_MALLOC= (empty) runs it with glibc's defaults instead.
  torch_malloc=GLIBC_TUNABLES=${PEER_TORCH_MALLOC-glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736}
}

peer_cache() { # NAME
  cache=${PEER_CACHE:-}
  if [ -z "$cache" ]; then
    cache=$(mktemp -d "${TMPDIR:-/tmp}/dpt-$1.XXXXXX") || exit 1
    trap 'rm -rf "$cache"' EXIT
  fi
  mkdir -p "$cache"
}

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

launch() { # W PREFIX cmd...
  local w=$1 prefix=$2
  shift 2
  rm -f "$prefix".*
  mpirun --oversubscribe -n "$w" \
    sh -c 'exec /usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$prefix" "$@"
}

peer_dpt_record() { "$py" "$here/peer_lib.py" dpt "$@"; }
peer_torch_record() { "$py" "$here/peer_lib.py" torch "$@"; }

peer_sgemm() {
  local bench=$build/tests/bench/bench_cnn
  [ -x "$bench" ] || { echo "peer: $bench is missing (configure with -DDPT_BUILD_BENCH=ON)" >&2; return 1; }
  "$bench" --reps 3
}

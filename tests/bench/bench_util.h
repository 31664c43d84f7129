/* bench_util.h — what the benchmarks share: a monotonic clock and the dpt command's BLAS
 * set-up (one thread per rank, AVX-512 kernels where the CPU has them, applied before
 * OpenBLAS initialises, hence a re-exec). Header-only: each benchmark is one executable. */
#ifndef DPT_BENCH_UTIL_H
#define DPT_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_blas_env(char **argv) {
  int changed = 0;
  if (!getenv("OPENBLAS_NUM_THREADS")) changed = !setenv("OPENBLAS_NUM_THREADS", "1", 1);
  __builtin_cpu_init();
  if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f"))
    changed = !setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  if (changed && !getenv("DPT_REEXECED")) {
    setenv("DPT_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
  }
}

#endif

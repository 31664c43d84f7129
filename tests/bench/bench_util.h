/* bench_util.h — what the benchmarks share: a monotonic clock. (They call dpt_env_setup
 * first, as the dpt command does.) Header-only: each benchmark is one executable. */
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

#endif

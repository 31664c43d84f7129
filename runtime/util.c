/* util.c — small shared helpers of runtime/: the clock. */
#include "internal.h"

#include <time.h>

double dpt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

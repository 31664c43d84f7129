/* util.c — small shared helpers of runtime/: the clock, the job's identity, progress. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double dpt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dpt_job_id(char *buf, size_t len) {
  const char *job = getenv("SLURM_JOB_ID"), *array = getenv("SLURM_ARRAY_JOB_ID"),
             *task = getenv("SLURM_ARRAY_TASK_ID");
  if (array && task && *array && *task)
    snprintf(buf, len, "%s_%s", array, task);
  else
    snprintf(buf, len, "%s", job ? job : "");
}

/* --- progress (read by the dpt command's watchdog thread) --- */

static _Atomic long g_step;
static _Atomic(const char *) g_waiting;
static _Atomic double g_since;

void dpt_progress_wait(long step, const char *what) {
  g_step = step;
  g_since = dpt_now();
  g_waiting = what;
}

void dpt_progress_done(void) {
  g_waiting = NULL;
}

void dpt_progress_get(dpt_progress *p) {
  p->waiting_in = g_waiting;
  p->since = g_since;
  p->step = g_step;
}

double dpt_clock(void) {
  return dpt_now();
}

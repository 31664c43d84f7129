/* util.c — small shared helpers of runtime/: the clock, mkdir -p, the job's identity. */
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

int dpt_mkdirs(const char *path, const char *flag, char *err, size_t errlen) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p)
      continue;
    char c = *p;
    *p = 0;
    if (mkdir(buf, 0777) && errno != EEXIST) {
      snprintf(err, errlen, "%s: cannot create '%s': %s", flag, buf, strerror(errno));
      return DPT_EIO;
    }
    if (!c)
      break;
    *p = c;
  }
  return DPT_OK;
}

void dpt_job_id(char *buf, size_t len) {
  const char *job = getenv("SLURM_JOB_ID"), *array = getenv("SLURM_ARRAY_JOB_ID"),
             *task = getenv("SLURM_ARRAY_TASK_ID");
  if (array && task && *array && *task) snprintf(buf, len, "%s_%s", array, task);
  else snprintf(buf, len, "%s", job ? job : "");
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

void dpt_progress_done(void) { g_waiting = NULL; }

void dpt_progress_get(dpt_progress *p) {
  p->waiting_in = g_waiting;
  p->since = g_since;
  p->step = g_step;
}

double dpt_clock(void) { return dpt_now(); }

/* --- files written atomically --- */

int dpt_afile_open(dpt_afile *a, const char *path, char *err, size_t errlen) {
  if ((size_t)snprintf(a->path, sizeof a->path, "%s", path) >= sizeof a->path) {
    snprintf(err, errlen, "path too long: '%.200s...'", path);
    return DPT_EINVAL;
  }
  snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path);
  a->f = fopen(a->tmp, "w");
  if (!a->f) {
    snprintf(err, errlen, "cannot write '%s': %s", a->tmp, strerror(errno));
    return DPT_EIO;
  }
  return DPT_OK;
}

int dpt_afile_commit(dpt_afile *a, char *err, size_t errlen) {
  int bad = fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) != 0;
  int e = errno;
  if (fclose(a->f) != 0 && !bad) bad = 1, e = errno;
  a->f = NULL;
  if (!bad && rename(a->tmp, a->path) != 0) bad = 1, e = errno;
  if (bad) {
    unlink(a->tmp);
    snprintf(err, errlen, "cannot write '%s': %s", a->path, strerror(e));
    return DPT_EIO;
  }
  return DPT_OK;
}

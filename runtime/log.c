/* log.c — dpt's one logger. Rank 0 speaks by default; every rank on request. Messages at or
 * below the configured level go to stderr, prefixed by the rank when every rank speaks.
 * The only global state of the library besides nothing else: the logger's settings. */
#include "runtime.h"

#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static struct {
  int rank;
  int level;
  int all_ranks;
  char job[64]; /* " job 1234" in a SLURM job, else "" */
} g_log = {0, DPT_LOG_INFO, 0, ""};

void dpt_log_init(int rank, int level, int all_ranks) {
  g_log.rank = rank;
  g_log.level = level;
  g_log.all_ranks = all_ranks;
  char id[48];
  dpt_job_id(id, sizeof id);
  snprintf(g_log.job, sizeof g_log.job, "%s%s", id[0] ? " job " : "", id);
}

int dpt_log_enabled(int level) {
  return level <= g_log.level && (g_log.all_ranks || g_log.rank == 0 || level == DPT_LOG_ERROR);
}

void dpt_log(int level, const char *fmt, ...) {
  if (!dpt_log_enabled(level)) return;
  static const char *const tag[] = {"error", "warning", "", "debug"};
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (g_log.all_ranks || level == DPT_LOG_ERROR)
    fprintf(stderr, "dpt[%s%srank %d]: %s%s%s\n", g_log.job + (g_log.job[0] ? 1 : 0),
            g_log.job[0] ? " " : "", g_log.rank, tag[level], tag[level][0] ? ": " : "", line);
  else if (g_log.job[0])
    fprintf(stderr, "dpt[%s]: %s%s%s\n", g_log.job + 1, tag[level], tag[level][0] ? ": " : "",
            line);
  else
    fprintf(stderr, "dpt: %s%s%s\n", tag[level], tag[level][0] ? ": " : "", line);
}

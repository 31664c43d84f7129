/* util.c — small shared helpers of runtime/: the clock and mkdir -p. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

/* fault.c — test-only fault injection, from the environment variable DPT_FAULT:
 *   DPT_FAULT=kill:RANK@STEP        rank RANK kills itself (SIGKILL) before optimizer step STEP+1
 *   DPT_FAULT=kill-ckpt:RANK@STEP   rank RANK kills itself while writing the checkpoint of step
 *                                   STEP, after its data went out and before the file is closed
 *   DPT_FAULT=nan:RANK@STEP         rank RANK puts a NaN into its input of step STEP+1
 * It exists so that tests can show what a crash leaves behind; nothing else reads it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int dpt_fault_from_env(dpt_fault *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  f->rank = -1;
  const char *s = getenv("DPT_FAULT");
  if (!s || !*s) return DPT_OK;
  int rank, n = 0;
  long step;
  const char *spec = s;
  if (!strncmp(s, "kill-ckpt:", 10))
    f->in_ckpt = 1, spec = s + 10;
  else if (!strncmp(s, "kill:", 5))
    spec = s + 5;
  else if (!strncmp(s, "nan:", 4))
    f->nan = 1, spec = s + 4;
  else
    n = -1;
  if (n < 0 || sscanf(spec, "%d@%ld%n", &rank, &step, &n) != 2 || spec[n] || rank < 0 || step < 0) {
    snprintf(err, errlen,
             "DPT_FAULT='%s': expected kill:RANK@STEP, kill-ckpt:RANK@STEP or nan:RANK@STEP", s);
    return DPT_EINVAL;
  }
  f->rank = rank;
  f->step = step;
  return DPT_OK;
}

void dpt_fault_kill(void *unused) {
  (void)unused;
  fprintf(stderr, "dpt: DPT_FAULT: killing this rank\n");
  fflush(stderr);
  raise(SIGKILL);
}

/* report.c — what rank 0 tells the user during a run: a live progress bar on a terminal, one
 * plain line per interval otherwise (SLURM logs), and per-step and per-epoch metrics as JSONL.
 * Only rank 0 creates a reporter with output; other ranks pass NULL everywhere. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dpt_report {
  FILE *jsonl;
  int bar;        /* live bar on stderr */
  int plain;      /* plain lines */
  long log_every; /* plain-line interval */
  long total_steps;
  int epochs;
  double t0;
  double last_draw;
};

int dpt_report_open(const dpt_train_opts *o, long total_steps, int resumed, dpt_report **out,
                    char *err, size_t errlen) {
  *out = NULL;
  dpt_report *r = calloc(1, sizeof *r);
  if (!r) {
    snprintf(err, errlen, "out of memory");
    return DPT_ENOMEM;
  }
  char path[2100];
  if (o->metrics[0]) {
    snprintf(path, sizeof path, "%s", o->metrics);
  } else {
    int rc = dpt_mkdirs(o->run_dir, "--run-dir", err, errlen);
    if (rc) {
      free(r);
      return rc;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->run_dir);
  }
  r->jsonl = fopen(path, resumed ? "a" : "w");
  if (!r->jsonl) {
    snprintf(err, errlen, "--metrics: cannot write '%s': %s", path, strerror(errno));
    free(r);
    return DPT_EIO;
  }
  int tty = isatty(STDERR_FILENO);
  r->bar = !strcmp(o->progress, "bar") || (!strcmp(o->progress, "auto") && tty);
  r->plain = !strcmp(o->progress, "plain") || (!strcmp(o->progress, "auto") && !tty);
  r->log_every = o->log_every;
  r->total_steps = total_steps;
  r->epochs = o->epochs;
  r->t0 = dpt_now();
  r->last_draw = -1;
  *out = r;
  return DPT_OK;
}

void dpt_report_close(dpt_report *r) {
  if (!r)
    return;
  if (r->bar)
    fputc('\n', stderr);
  if (r->jsonl)
    fclose(r->jsonl);
  free(r);
}

static void fmt_eta(double s, char *buf, size_t len) {
  if (!isfinite(s) || s < 0)
    snprintf(buf, len, "?");
  else if (s >= 3600)
    snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
  else
    snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static void json_num(char *buf, size_t len, double v) {
  if (isfinite(v))
    snprintf(buf, len, "%.9g", v);
  else
    snprintf(buf, len, "null");
}

void dpt_report_step(dpt_report *r, const dpt_step_info *s) {
  if (!r)
    return;
  double t = dpt_now() - r->t0;
  char loss[32], norm[32]; /* JSON has no NaN: null */
  json_num(loss, sizeof loss, s->loss);
  json_num(norm, sizeof norm, s->grad_norm);
  fprintf(r->jsonl,
          "{\"type\":\"step\",\"step\":%ld,\"epoch\":%d,\"loss\":%s,\"lr\":%.9g,"
          "\"grad_norm\":%s,\"samples_per_s\":%.6g,\"comm_wait_s\":%.6g,\"time\":%.6f%s}\n",
          s->step, s->epoch, loss, s->lr, norm, s->samples_per_s, s->comm_wait, t,
          s->skipped ? ",\"skipped\":true" : "");
  double eta = s->step > 0 ? t / (double)s->step * (double)(r->total_steps - s->step) : NAN;
  char etas[32];
  fmt_eta(eta, etas, sizeof etas);
  if (r->bar && (t - r->last_draw >= 0.1 || s->step == r->total_steps)) {
    r->last_draw = t;
    int width = 24, fill = (int)((double)width * (double)s->step / (double)r->total_steps);
    char bar[32];
    for (int i = 0; i < width; i++)
      bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] step %ld/%ld loss %.4f lr %.3g %.0f samples/s ETA %s  ",
            s->epoch + 1, r->epochs, bar, s->step, r->total_steps, s->loss, s->lr,
            s->samples_per_s, etas);
    fflush(stderr);
  }
  if (r->plain && (s->step % r->log_every == 0 || s->step == r->total_steps))
    fprintf(stderr, "dpt: epoch %d step %ld/%ld loss %.4f lr %.4g samples/s %.0f eta %s\n",
            s->epoch + 1, s->step, r->total_steps, s->loss, s->lr, s->samples_per_s, etas);
}

void dpt_report_run(dpt_report *r, const char *label, int ranks, int zero, size_t nparams,
                    double state_max, double state_total) {
  if (!r)
    return;
  fprintf(r->jsonl, "{\"type\":\"run\",\"label\":\"");
  dpt_json_escape(r->jsonl, label);
  fprintf(r->jsonl,
          "\",\"ranks\":%d,\"zero\":%d,\"params\":%zu,"
          "\"state_bytes_per_rank_max\":%.0f,\"state_bytes_total\":%.0f}\n",
          ranks, zero, nparams, state_max, state_total);
}


void dpt_report_epoch(dpt_report *r, const dpt_epoch_info *e) {
  if (!r)
    return;
  double t = dpt_now() - r->t0;
  char tl[32], ta[32]; /* JSON has no NaN: absent evaluations are null */
  json_num(tl, sizeof tl, e->test_loss);
  json_num(ta, sizeof ta, e->test_accuracy);
  fprintf(r->jsonl,
          "{\"type\":\"epoch\",\"epoch\":%d,\"step\":%ld,\"train_loss\":%.9g,"
          "\"test_loss\":%s,\"test_accuracy\":%s,\"lr\":%.9g,\"time\":%.6f}\n",
          e->epoch, e->step, e->train_loss, tl, ta, e->lr, t);
  fflush(r->jsonl);
  if (r->bar)
    fputc('\n', stderr);
  if (!r->bar && !r->plain)
    return;
  if (isnan(e->test_loss))
    fprintf(stderr, "dpt: epoch %d done: train loss %.4f (%.1f s)\n", e->epoch + 1,
            e->train_loss, t);
  else if (isnan(e->test_accuracy))
    fprintf(stderr, "dpt: epoch %d done: train loss %.4f test loss %.4f (%.1f s)\n",
            e->epoch + 1, e->train_loss, e->test_loss, t);
  else
    fprintf(stderr, "dpt: epoch %d done: train loss %.4f test loss %.4f test accuracy %.4f "
            "(%.1f s)\n", e->epoch + 1, e->train_loss, e->test_loss, e->test_accuracy, t);
}

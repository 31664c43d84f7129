/* report.c — what rank 0 tells the user during a run: a live progress bar on a terminal, one
 * plain line per interval otherwise (SLURM logs), and per-step and per-epoch metrics as JSONL.
 * Only rank 0 creates a reporter with output; other ranks pass NULL everywhere.
 *
 * Invariant: the metrics file only ever holds whole records. Each record is one write() of a
 * whole line; a failed or short write (a full disk) cuts the file back to the last whole line,
 * stops further records, and is reported at the end of the run (dpt_report_finish). */
#include "internal.h"
#include "comm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dpt_report {
  int fd;         /* the metrics file (-1: none) */
  off_t good;     /* its length after the last whole record */
  int failed;     /* a write failed: no more records; message in error */
  char path[2100];
  char error[DPT_ERR_LEN];
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
  /* only regular files: stat first, and O_NONBLOCK so that a FIFO made meanwhile fails */
  struct stat st;
  if (!stat(path, &st) && !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "--metrics: cannot write '%s': not a regular file", path);
    free(r);
    return DPT_EIO;
  }
  r->fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | (resumed ? O_APPEND : O_TRUNC),
               0666);
  int e = r->fd < 0 ? errno : 0;
  if (!e && (fstat(r->fd, &st) || !S_ISREG(st.st_mode))) e = EINVAL;
  if (!e && fcntl(r->fd, F_SETFL, resumed ? O_APPEND : 0)) e = errno;
  if (e) {
    snprintf(err, errlen, "--metrics: cannot write '%s': %s", path,
             e == EINVAL ? "not a regular file" : strerror(e));
    if (r->fd >= 0) close(r->fd);
    free(r);
    return DPT_EIO;
  }
  r->good = lseek(r->fd, 0, SEEK_END);
  snprintf(r->path, sizeof r->path, "%s", path);
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
  if (r->fd >= 0)
    close(r->fd);
  free(r);
}

/* Appends one whole record (a line) to the metrics file, or nothing: see the invariant. */
static void record(dpt_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record(dpt_report *r, const char *fmt, ...) {
  if (r->failed || r->fd < 0)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line)
    n = (int)strlen(line);
  size_t done = 0;
  int e = 0;
  while (done < (size_t)n && !e) {
    ssize_t k = write(r->fd, line + done, (size_t)n - done);
    if (k > 0)
      done += (size_t)k;
    else if (k < 0 && errno != EINTR)
      e = errno;
    else if (k == 0)
      e = EIO;
  }
  if (!e) {
    r->good += n;
    return;
  }
  r->failed = 1;
  if (ftruncate(r->fd, r->good)) { /* the cut-off record goes; nothing else can be done */
  }
  snprintf(r->error, sizeof r->error, "--metrics: cannot write '%.300s': %s (it holds the records "
           "up to the last whole line)", r->path, strerror(e));
}

int dpt_report_finish(dpt_report *r, MPI_Comm comm, int rc, char *err, size_t errlen) {
  int failed = r && r->failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm);
  if (!failed || (rc && rc != DPT_ESTOPPED))
    return rc;
  char msg[DPT_ERR_LEN] = "";
  if (r)
    snprintf(msg, sizeof msg, "%s", r->error);
  MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, 0, comm); /* only rank 0 has a reporter */
  snprintf(err, errlen, "%s", msg);
  return DPT_EIO;
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
  record(r,
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

/* s as a JSON string body into out: quotes, backslashes and control characters escaped. */
static void json_text(char *out, size_t len, const char *s) {
  size_t k = 0;
  for (; *s && k + 7 < len; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') k += (size_t)snprintf(out + k, len - k, "\\%c", c);
    else if (c < 0x20) k += (size_t)snprintf(out + k, len - k, "\\u%04x", c);
    else out[k++] = (char)c;
  }
  out[k] = 0;
}

void dpt_report_run(dpt_report *r, const char *label, int ranks, int zero, size_t nparams,
                    double state_max, double state_total) {
  if (!r)
    return;
  char text[512];
  json_text(text, sizeof text, label);
  record(r,
          "{\"type\":\"run\",\"label\":\"%s\",\"ranks\":%d,\"zero\":%d,\"params\":%zu,"
          "\"state_bytes_per_rank_max\":%.0f,\"state_bytes_total\":%.0f}\n",
          text, ranks, zero, nparams, state_max, state_total);
}


void dpt_report_epoch(dpt_report *r, const dpt_epoch_info *e) {
  if (!r)
    return;
  double t = dpt_now() - r->t0;
  char tl[32], ta[32]; /* JSON has no NaN: absent evaluations are null */
  json_num(tl, sizeof tl, e->test_loss);
  json_num(ta, sizeof ta, e->test_accuracy);
  record(r,
          "{\"type\":\"epoch\",\"epoch\":%d,\"step\":%ld,\"train_loss\":%.9g,"
          "\"test_loss\":%s,\"test_accuracy\":%s,\"lr\":%.9g,\"time\":%.6f}\n",
          e->epoch, e->step, e->train_loss, tl, ta, e->lr, t);
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

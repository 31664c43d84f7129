/* report.c — what rank 0 tells the user during a run: a live progress bar on a terminal, one
 * plain line per interval otherwise (SLURM logs), and the metrics file (JSONL).
 * Only rank 0 creates a reporter with output; other ranks pass NULL everywhere.
 *
 * Invariants:
 * - The metrics file holds whole records only: each is formatted in full and then written with
 *   one write() of the whole line, so a reader never sees half a line while the run is alive,
 *   and a crash can tear at most the last line. A failed or short write (a full disk) cuts the
 *   file back to the last whole line, stops further records, and ends the run with a message
 *   naming the file and the OS error (dpt_report_finish).
 * - A resumed run rewrites the file (atomically) to what its checkpoint's step knows: records
 *   of later steps (written before a crash, now to be redone) and a torn last line are dropped,
 *   so every step appears once; `time` goes on from the last record kept, never backwards.
 * - The first record of a fresh run is its effective configuration ("type":"config").
 * - The bar never grows wider than the terminal (redrawn with \r, a wrapped line would leave
 *   stale copies); its rate, loss and ETA are smoothed (exponential moving averages, as tqdm)
 *   and count only this session's steps, so they are right after a resume.
 */
#include "comm.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The smoothed rate is an exponential moving average over time with this time constant
 * (seconds): steady over a few redraws, yet it follows a real change within seconds. The loss
 * is smoothed over steps with this weight of the newest. */
#define RATE_TAU 2.0
#define LOSS_SMOOTHING 0.1
/* Seconds between two redraws of the bar. */
#define BAR_INTERVAL 0.1

struct dpt_report {
  int fd;     /* the metrics file (-1: none) */
  off_t good; /* its length after the last whole record */
  int failed; /* a write failed: no more records; the message in error */
  char error[DPT_ERR_LEN];
  char *path;
  int bar;        /* live bar on stderr */
  int tty_fd;     /* where the terminal's width is asked (-1: stderr itself or none) */
  int plain;      /* plain lines */
  long log_every; /* plain-line interval */
  long total_steps;
  long first_step; /* steps done before this session (a resume) */
  long batch;
  int epochs;
  double t0; /* dpt_now() at time 0 of the run (earlier than now after a resume) */
  double last_draw, last_draw_step; /* time and step of the last rate update */
  double rate;                      /* smoothed steps per second (NAN until known) */
  double loss;                      /* smoothed training loss (NAN until known) */
  char prefix[64];                  /* "dpt" or "dpt[job 1234]" */
};

/* --- the metrics file --- */

/* The value of "key":NUMBER in a record, or NAN. */
static double field(const char *line, const char *key) {
  char pat[40];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(line, pat);
  return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* Keeps the records of steps up to `upto` (and those without a step), drops a torn line;
 * returns the largest time kept. The file is rewritten atomically. */
static int trim_metrics(const char *path, long upto, double *time_kept, char *err, size_t errlen) {
  *time_kept = 0;
  FILE *in = fopen(path, "r");
  if (!in) return DPT_OK; /* nothing yet: a new file */
  dpt_afile out;
  int rc = dpt_afile_open(&out, path, err, errlen);
  if (rc) {
    fclose(in);
    return rc;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, in)) > 0) {
    int whole = line[n - 1] == '\n' && n >= 3 && line[0] == '{' && line[n - 2] == '}';
    if (!whole) continue; /* torn by a crash */
    double step = field(line, "step");
    if (!isnan(step) && step > (double)upto) continue; /* to be redone */
    double t = field(line, "time");
    if (t > *time_kept) *time_kept = t;
    fwrite(line, 1, (size_t)n, out.f);
  }
  free(line);
  fclose(in);
  return dpt_afile_commit(&out, err, errlen);
}

/* One record: one whole line, or nothing (see the invariant). */
static void put(dpt_report *r, const char *rec, size_t len) {
  if (r->failed || r->fd < 0) return;
  size_t done = 0;
  int e = 0;
  while (done < len && !e) {
    ssize_t k = write(r->fd, rec + done, len - done);
    if (k > 0)
      done += (size_t)k;
    else if (k < 0 && errno != EINTR)
      e = errno;
    else if (k == 0)
      e = EIO;
  }
  if (!e) {
    r->good += (off_t)len;
    return;
  }
  r->failed = 1;
  if (ftruncate(r->fd, r->good)) { /* the cut-off record goes; nothing else can be done */
  }
  snprintf(r->error, sizeof r->error,
           "--metrics: cannot write '%.300s': %s (it holds the records up to the last whole "
           "line)",
           r->path, strerror(e));
}

int dpt_report_finish(dpt_report *r, MPI_Comm comm, int rc, char *err, size_t errlen) {
  double failed = r && r->failed;
  int mrc = dpt_comm_max(comm, &failed, 1, err, errlen);
  if (mrc) return mrc;
  if (!failed || (rc && rc != DPT_ESTOPPED)) return rc;
  int mine = r && r->failed ? DPT_EIO : DPT_OK; /* only rank 0 has a reporter */
  if (mine) snprintf(err, errlen, "%s", r->error);
  mrc = dpt_comm_agree_error(comm, mine, err, errlen);
  return mrc ? mrc : DPT_EIO;
}

typedef struct {
  char *buf;
  size_t len, cap;
  int first;
} jbuf;

static void jb_add(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_add(jbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = 2 * (b->cap + (size_t)n);
    char *p = realloc(b->buf, cap);
    if (!p) return;
    b->buf = p, b->cap = cap;
  }
}

static void jb_text(jbuf *b, const char *s) {
  char *mem = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&mem, &len);
  if (!f) return;
  dpt_json_escape(f, s);
  fclose(f);
  jb_add(b, "\"%s\"", mem);
  free(mem);
}

/* A configuration value as JSON: booleans and numbers as such, the rest as text. */
static void config_value(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  jbuf *b = ctx;
  double d;
  jb_add(b, "%s\"%s\":", b->first ? "" : ",", name);
  b->first = 0;
  if (!strcmp(value, "true") || !strcmp(value, "false"))
    jb_add(b, "%s", value);
  else if (!dpt_parse_double(value, &d) && !strchr(value, ','))
    jb_add(b, "%s", value);
  else
    jb_text(b, value);
}

static void write_config(dpt_report *r, const dpt_train_opts *o) {
  jbuf b = {malloc(4096), 0, 4096, 1};
  if (!b.buf) return;
  jb_add(&b, "{\"type\":\"config\",\"dpt_version\":\"%s\",\"train\":{", DPT_VERSION);
  dpt_train_describe(o, config_value, &b);
  jb_add(&b, "},\"solver\":{\"name\":\"%s\"", dpt_optim_solver_name(o->solver.kind));
  b.first = 0;
  dpt_optim_solver_describe(&o->solver, config_value, &b);
  jb_add(&b, "},\"sched\":{\"name\":\"%s\"", dpt_optim_sched_name(o->sched.kind));
  dpt_optim_sched_describe(&o->sched, config_value, &b);
  jb_add(&b, "}}\n");
  put(r, b.buf, b.len);
  free(b.buf);
}

/* --- the terminal --- */

/* Columns of the terminal the bar is drawn on (80 when it cannot be asked). */
static int term_width(const dpt_report *r) {
  struct winsize ws;
  int fd = r->tty_fd >= 0 ? r->tty_fd : STDERR_FILENO;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  const char *c = getenv("COLUMNS");
  long w = c ? strtol(c, NULL, 10) : 0;
  return w >= 20 && w < 10000 ? (int)w : 80;
}

/* Is there a terminal to draw on? stderr itself, or, under mpirun (which forwards rank 0's
 * stderr through a pipe to its own terminal), the controlling terminal of the job. */
static int find_terminal(dpt_report *r) {
  r->tty_fd = -1;
  if (isatty(STDERR_FILENO)) return 1;
  if (!getenv("OMPI_COMM_WORLD_RANK")) return 0;
  r->tty_fd = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC);
  return r->tty_fd >= 0;
}

int dpt_report_open(const dpt_train_opts *o, long total_steps, long start_step, dpt_report **out,
                    char *err, size_t errlen) {
  *out = NULL;
  dpt_report *r = calloc(1, sizeof *r);
  if (!r) return snprintf(err, errlen, "out of memory"), DPT_ENOMEM;
  r->fd = r->tty_fd = -1; /* none opened (0 would be stdin, closed by dpt_report_close) */
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
  int rc = dpt_check_regular(path, "--metrics", err, errlen);
  double time_kept = 0;
  if (!rc && start_step > 0) rc = trim_metrics(path, start_step, &time_kept, err, errlen);
  if (rc) {
    free(r);
    return rc;
  }
  r->path = strdup(path);
  /* O_NONBLOCK: a FIFO put there since the check fails instead of blocking the open */
  r->fd = open(path,
               O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | (start_step > 0 ? O_APPEND : O_TRUNC),
               0666);
  int e = r->fd < 0 ? errno : !r->path ? ENOMEM : 0;
  struct stat st;
  if (!e && (fstat(r->fd, &st) || !S_ISREG(st.st_mode))) e = EINVAL;
  if (!e && fcntl(r->fd, F_SETFL, start_step > 0 ? O_APPEND : 0)) e = errno;
  if (e) {
    snprintf(err, errlen, "--metrics: cannot write '%s': %s", path,
             e == EINVAL ? "not a regular file" : strerror(e));
    if (r->fd >= 0) close(r->fd);
    free(r->path);
    free(r);
    return DPT_EIO;
  }
  r->good = lseek(r->fd, 0, SEEK_END);
  int tty = 0;
  if (!strcmp(o->progress, "bar") || !strcmp(o->progress, "auto")) tty = find_terminal(r);
  r->bar = !strcmp(o->progress, "bar") || (!strcmp(o->progress, "auto") && tty);
  r->plain = !strcmp(o->progress, "plain") || (!strcmp(o->progress, "auto") && !tty);
  r->log_every = o->log_every;
  r->total_steps = total_steps;
  r->first_step = start_step;
  r->batch = o->batch;
  r->epochs = o->epochs;
  r->t0 = dpt_now() - time_kept;
  r->last_draw = dpt_now();
  r->last_draw_step = (double)start_step;
  r->rate = r->loss = NAN;
  char id[48];
  dpt_job_id(id, sizeof id);
  snprintf(r->prefix, sizeof r->prefix, id[0] ? "dpt[job %s]" : "dpt", id);
  if (start_step == 0) write_config(r, o);
  *out = r;
  return DPT_OK;
}

void dpt_report_close(dpt_report *r) {
  if (!r) return;
  if (r->bar) fputc('\n', stderr);
  if (r->fd >= 0) close(r->fd);
  if (r->tty_fd >= 0) close(r->tty_fd);
  free(r->path);
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

/* Draws the bar: the whole line fitted to the terminal, padded so nothing of a longer earlier
 * line stays visible. */
static void draw(dpt_report *r, const dpt_step_info *s, const char *eta) {
  int width = term_width(r) - 1; /* the last column would wrap on some terminals */
  char tail[160];
  int nt = snprintf(tail, sizeof tail, " %ld/%ld loss %.4f lr %.3g %.0f samples/s ETA %s", s->step,
                    r->total_steps, r->loss, s->lr, r->rate * (double)r->batch, eta);
  char head[32];
  int nh = snprintf(head, sizeof head, "epoch %d/%d ", s->epoch + 1, r->epochs);
  char line[1024];
  int barw = width - nh - nt - 2;
  if (barw > 40) barw = 40;
  if (barw >= 5) {
    int fill = (int)((double)barw * (double)s->step / (double)r->total_steps);
    char bar[48];
    for (int i = 0; i < barw; i++) bar[i] = i < fill ? '#' : '.';
    bar[barw] = 0;
    snprintf(line, sizeof line, "%s[%s]%s", head, bar, tail);
  } else {
    snprintf(line, sizeof line, "%s%s", head, tail + 1);
  }
  if (width >= (int)sizeof line) width = (int)sizeof line - 1;
  fprintf(stderr, "\r%-*.*s", width, width, line);
  fflush(stderr);
}

void dpt_report_step(dpt_report *r, const dpt_step_info *s) {
  if (!r) return;
  double now = dpt_now(), t = now - r->t0;
  const dpt_step_timing *tm = &s->timing;
  char loss[32], norm[32], hidden[32], rec[1024]; /* JSON has no NaN: null */
  json_num(loss, sizeof loss, s->loss);
  json_num(norm, sizeof norm, s->grad_norm);
  json_num(hidden, sizeof hidden, tm->hidden);
  int n = snprintf(rec, sizeof rec,
                   "{\"type\":\"step\",\"step\":%ld,\"epoch\":%d,\"loss\":%s,\"lr\":%.9g,"
                   "\"grad_norm\":%s,\"samples_per_s\":%.6g,\"comm_wait_s\":%.6g,"
                   "\"step_s\":%.6g,\"compute_s\":%.6g,\"wait_grad_s\":%.6g,"
                   "\"wait_gather_s\":%.6g,\"wait_small_s\":%.6g,\"wait_stats_s\":%.6g,"
                   "\"comm_hidden\":%s,\"time\":%.6f%s}\n",
                   s->step, s->epoch, loss, s->lr, norm, s->samples_per_s, s->comm_wait, tm->step,
                   tm->compute, tm->wait[DPT_WAIT_GRAD], tm->wait[DPT_WAIT_GATHER],
                   tm->wait[DPT_WAIT_SMALL], tm->wait[DPT_WAIT_STATS], hidden, t,
                   s->skipped ? ",\"skipped\":true" : "");
  put(r, rec, (size_t)n < sizeof rec ? (size_t)n : sizeof rec - 1);
  if (isfinite(s->loss))
    r->loss = isnan(r->loss) ? s->loss : LOSS_SMOOTHING * s->loss + (1 - LOSS_SMOOTHING) * r->loss;
  /* the rate over the steps since the last update, smoothed; the first interval starts when
   * the reporter opened (this session's start, so a resume does not count earlier steps) */
  int last = s->step == r->total_steps;
  double dt = now - r->last_draw;
  if (dt >= BAR_INTERVAL || last) {
    double steps = (double)s->step - r->last_draw_step;
    if (dt > 0 && steps > 0) {
      double inst = steps / dt, w = 1 - exp(-dt / RATE_TAU);
      r->rate = isnan(r->rate) ? inst : w * inst + (1 - w) * r->rate;
    }
    r->last_draw = now;
    r->last_draw_step = (double)s->step;
    if (r->bar) {
      char etas[32];
      fmt_eta((double)(r->total_steps - s->step) / r->rate, etas, sizeof etas);
      draw(r, s, etas);
    }
  }
  if (r->plain && (s->step % r->log_every == 0 || last)) {
    char etas[32];
    double rate = isnan(r->rate) ? s->samples_per_s / (double)r->batch : r->rate;
    fmt_eta((double)(r->total_steps - s->step) / rate, etas, sizeof etas);
    fprintf(stderr, "%s: epoch %d step %ld/%ld loss %.4f lr %.4g samples/s %.0f eta %s\n",
            r->prefix, s->epoch + 1, s->step, r->total_steps, r->loss, s->lr,
            rate * (double)r->batch, etas);
  }
}

void dpt_report_run(dpt_report *r, const char *label, int ranks, int zero, size_t nparams,
                    double state_max, double state_total) {
  if (!r) return;
  jbuf b = {malloc(512), 0, 512, 1};
  if (!b.buf) return;
  jb_add(&b, "{\"type\":\"run\",\"label\":");
  jb_text(&b, label);
  jb_add(&b,
         ",\"ranks\":%d,\"zero\":%d,\"params\":%zu,"
         "\"state_bytes_per_rank_max\":%.0f,\"state_bytes_total\":%.0f}\n",
         ranks, zero, nparams, state_max, state_total);
  put(r, b.buf, b.len);
  free(b.buf);
}

/* The names of the timing values (timing.h's DPT_TIMING_* order) in the "timing" record. */
static const char *const timing_names[DPT_TIMING_VALUES] = {
    [DPT_TIMING_STEP] = "step_s",
    [DPT_TIMING_COMPUTE] = "compute_s",
    [DPT_TIMING_WAIT0 + DPT_WAIT_GRAD] = "wait_grad_s",
    [DPT_TIMING_WAIT0 + DPT_WAIT_GATHER] = "wait_gather_s",
    [DPT_TIMING_WAIT0 + DPT_WAIT_SMALL] = "wait_small_s",
    [DPT_TIMING_WAIT0 + DPT_WAIT_STATS] = "wait_stats_s",
    [DPT_TIMING_WAIT_TOTAL] = "comm_wait_s",
    [DPT_TIMING_HIDDEN] = "comm_hidden",
};

void dpt_report_timing(dpt_report *r, const dpt_timing_table *t) {
  if (!r) return;
  jbuf b = {malloc(4096), 0, 4096, 1};
  if (!b.buf) return;
  char num[32];
  jb_add(&b,
         "{\"type\":\"timing\",\"step\":%ld,\"first_step\":%ld,\"steps\":%ld,\"ranks\":%d,"
         "\"slowest_rank\":%d,\"per_rank\":{",
         t->step, t->first_step, t->steps, t->ranks, t->slowest);
  for (int j = 0; j < DPT_TIMING_VALUES; j++) {
    jb_add(&b, "%s\"%s\":[", j ? "," : "", timing_names[j]);
    for (int k = 0; k < t->ranks; k++) {
      json_num(num, sizeof num, t->values[(size_t)k * DPT_TIMING_VALUES + j]);
      jb_add(&b, "%s%s", k ? "," : "", num);
    }
    jb_add(&b, "]");
  }
  jb_add(&b, "},\"max\":{");
  for (int j = 0; j < DPT_TIMING_VALUES; j++) {
    if (j == DPT_TIMING_HIDDEN) continue; /* its worst is the smallest */
    json_num(num, sizeof num, t->max[j]);
    jb_add(&b, "%s\"%s\":%s", j ? "," : "", timing_names[j], num);
  }
  json_num(num, sizeof num, t->hidden_min);
  jb_add(&b, "},\"comm_hidden_min\":%s,\"time\":%.6f}\n", num, dpt_now() - r->t0);
  put(r, b.buf, b.len);
  free(b.buf);
}

void dpt_report_memory(dpt_report *r, int ranks, int zero, const double *rows) {
  if (!r) return;
  jbuf b = {malloc(256), 0, 256, 1};
  if (!b.buf) return;
  jb_add(&b, "{\"type\":\"memory\",\"zero\":%d,\"ranks\":[", zero);
  for (int q = 0; q < ranks; q++) {
    const double *v = rows + (size_t)q * DPT_REPORT_MEM_FIELDS;
    jb_add(&b,
           "%s{\"rank\":%d,\"param_bytes\":%.0f,\"grad_bytes\":%.0f,\"state_bytes\":%.0f,"
           "\"buffer_bytes\":%.0f,\"peak_rss_bytes\":%.0f}",
           q ? "," : "", q, v[0], v[1], v[2], v[3], v[4]);
  }
  jb_add(&b, "]}\n");
  put(r, b.buf, b.len);
  free(b.buf);
}

void dpt_report_epoch(dpt_report *r, const dpt_epoch_info *e) {
  if (!r) return;
  double t = dpt_now() - r->t0;
  char tl[32], ta[32], rec[512]; /* JSON has no NaN: absent evaluations are null */
  json_num(tl, sizeof tl, e->test_loss);
  json_num(ta, sizeof ta, e->test_accuracy);
  int n = snprintf(rec, sizeof rec,
                   "{\"type\":\"epoch\",\"epoch\":%d,\"step\":%ld,\"train_loss\":%.9g,"
                   "\"test_loss\":%s,\"test_accuracy\":%s,\"lr\":%.9g,\"time\":%.6f}\n",
                   e->epoch, e->step, e->train_loss, tl, ta, e->lr, t);
  if (e->per_token && (size_t)n < sizeof rec) { /* nats per token, and bits per character */
    char bits[32];
    json_num(bits, sizeof bits, e->test_loss / log(2.0));
    int at = n - 2; /* over the record's closing "}\n" */
    n = at + snprintf(rec + at, sizeof rec - (size_t)at,
                      ",\"train_bits_per_token\":%.9g,\"test_bits_per_token\":%s}\n",
                      e->train_loss / log(2.0), bits);
  }
  put(r, rec, (size_t)n < sizeof rec ? (size_t)n : sizeof rec - 1);
  if (r->bar) fputc('\n', stderr);
  if (!r->bar && !r->plain) return;
  if (e->per_token && !isnan(e->test_loss))
    fprintf(stderr,
            "%s: epoch %d done: train loss %.4f test loss %.4f nats/token (%.4f bits/char) "
            "test accuracy %.4f (%.1f s)\n",
            r->prefix, e->epoch + 1, e->train_loss, e->test_loss, e->test_loss / log(2.0),
            e->test_accuracy, t);
  else if (isnan(e->test_loss))
    fprintf(stderr, "%s: epoch %d done: train loss %.4f (%.1f s)\n", r->prefix, e->epoch + 1,
            e->train_loss, t);
  else if (isnan(e->test_accuracy))
    fprintf(stderr, "%s: epoch %d done: train loss %.4f test loss %.4f (%.1f s)\n", r->prefix,
            e->epoch + 1, e->train_loss, e->test_loss, t);
  else
    fprintf(stderr,
            "%s: epoch %d done: train loss %.4f test loss %.4f test accuracy %.4f (%.1f s)\n",
            r->prefix, e->epoch + 1, e->train_loss, e->test_loss, e->test_accuracy, t);
}

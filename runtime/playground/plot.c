/* plot.c — the standard plots of dpt metrics files (the JSONL report.c writes): training loss
 * against step and wall time, test accuracy per epoch against step and wall time, and the
 * learning rate against step; one series per file, named after its run.
 *
 * Invariants:
 * - Every file is read and checked before any chart is written: a line that is not a JSON
 *   object, or a known field of the wrong type, is an error naming file:line, and then nothing
 *   is written.
 * - Unknown record types and fields are ignored; null and absent values become NaN, which
 *   break the lines, so a run without evaluations still plots.
 * - Step losses are noisy: a run of SMOOTH_MIN_STEPS or more shows its per-step loss faint and
 *   a centred moving average in full colour, so several runs stay comparable.
 * - A resumed run appends to its file: a record whose step or time goes back starts a new
 *   segment, which supersedes every earlier record of its steps (the last record per step is
 *   plotted), and whose times, if they restarted, continue from the last kept record's time.
 * - One run cannot squash the others: a diverged run (DIVERGED_FACTOR) is named so in the
 *   legends and leaves the loss axis at its top; the learning rate goes on a log axis when the
 *   runs' rates span a decade; every legend label is unique.
 */
#include "playground.h"
#include "svg.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many steps a loss curve is readable as it is; from it on a moving average over
 * SMOOTH_FRACTION of the steps (at least SMOOTH_MIN_WINDOW) is drawn over the raw losses. */
#define SMOOTH_MIN_STEPS 200
#define SMOOTH_FRACTION 0.02
#define SMOOTH_MIN_WINDOW 5
/* A run diverged when its last recorded loss is not finite or exceeds its first finite loss
 * this many times: then training made things ten times worse (the trainer itself stops at the
 * first NaN/Inf, so a diverged run usually ends at a huge finite loss). */
#define DIVERGED_FACTOR 10.0
/* The learning rate goes on a log axis when its positive values span at least this ratio (a
 * decade: the defaults of sgd, adam and lion are 1e-2, 1e-3, 1e-4), and the axis then reaches
 * down to LR_FLOOR times the smallest run's peak rate, so that a schedule that decays to 0
 * (cosine) leaves through the bottom instead of stretching the axis over ten decades. */
#define LR_LOG_RATIO 10.0
#define LR_FLOOR 1e-3

/* --- one metrics file as columns --- */

typedef struct {
  double *v;
  size_t n, cap;
} column;

typedef struct {
  char label[256];                 /* the "run" record's label; "" if none */
  column step, loss, lr, time;     /* one entry per step record */
  column ep_step, ep_acc, ep_time; /* one per epoch record; accuracy in percent */
  column ep_loss;                  /* the epoch's test loss */
  double *smooth;                  /* moving average of loss, or NULL when not smoothed */
  int diverged;                    /* see DIVERGED_FACTOR */
  /* reading: the last record's step and time as written, and the offset added to the time of
   * the records of the current segment (see resume) */
  int seen;
  double last_step, last_time, time_offset; /* last_time: of the last step record */
} run_metrics;

static int push(column *c, double v) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 256;
    double *p = realloc(c->v, cap * sizeof *p);
    if (!p) return DPT_ENOMEM;
    c->v = p, c->cap = cap;
  }
  c->v[c->n++] = v;
  return DPT_OK;
}

static void run_free(run_metrics *m) {
  column *c[] = {&m->step,    &m->loss,   &m->lr,      &m->time,
                 &m->ep_step, &m->ep_acc, &m->ep_time, &m->ep_loss};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) free(c[i]->v);
  free(m->smooth);
}

/* m->smooth[i]: the mean of the finite losses in the window centred on step record i (NaN if
 * none), from prefix sums. Leaves m->smooth NULL for short runs. */
static int smooth_loss(run_metrics *m) {
  size_t n = m->loss.n;
  if (n < SMOOTH_MIN_STEPS) return DPT_OK;
  size_t half = (size_t)(SMOOTH_FRACTION * (double)n) / 2;
  if (2 * half + 1 < SMOOTH_MIN_WINDOW) half = SMOOTH_MIN_WINDOW / 2;
  double *sum = malloc((n + 1) * sizeof *sum), *cnt = malloc((n + 1) * sizeof *cnt);
  m->smooth = malloc(n * sizeof *m->smooth);
  if (!sum || !cnt || !m->smooth) {
    free(sum), free(cnt);
    return DPT_ENOMEM;
  }
  sum[0] = cnt[0] = 0;
  for (size_t i = 0; i < n; i++) {
    int ok = isfinite(m->loss.v[i]);
    sum[i + 1] = sum[i] + (ok ? m->loss.v[i] : 0), cnt[i + 1] = cnt[i] + ok;
  }
  for (size_t i = 0; i < n; i++) {
    size_t a = i > half ? i - half : 0, b = i + half + 1 < n ? i + half + 1 : n;
    double k = cnt[b] - cnt[a];
    m->smooth[i] = k > 0 ? (sum[b] - sum[a]) / k : NAN;
  }
  free(sum), free(cnt);
  return DPT_OK;
}

/* --- parsing --- */

/* Where a line came from, for messages. */
typedef struct {
  const char *file;
  long line;
  char *err;
  size_t errlen;
} where;

/* Field key of record o as a number: absent or null is NaN, or an error when required. */
static int get_num(json_t *o, const char *key, int required, double *v, const where *w) {
  json_t *j = json_object_get(o, key);
  *v = NAN;
  if (!j || json_is_null(j)) {
    if (!required) return DPT_OK;
    snprintf(w->err, w->errlen, "%s:%ld: %s record without \"%s\"", w->file, w->line,
             json_string_value(json_object_get(o, "type")), key);
    return DPT_EINVAL;
  }
  if (!json_is_number(j)) {
    snprintf(w->err, w->errlen, "%s:%ld: field \"%s\" is not a number", w->file, w->line, key);
    return DPT_EINVAL;
  }
  *v = json_number_value(j);
  return DPT_OK;
}

/* --- resumed runs --- */

/* The time of the last record kept (NaN if none has one). */
static double last_kept_time(const run_metrics *m) {
  double t = NAN;
  for (size_t i = m->time.n; i-- > 0 && isnan(t);) t = m->time.v[i];
  for (size_t i = m->ep_time.n; i-- > 0;)
    if (isfinite(m->ep_time.v[i])) {
      t = isnan(t) || m->ep_time.v[i] > t ? m->ep_time.v[i] : t;
      break;
    }
  return t;
}

/* Called with each step (is_step) or epoch record's step and time as written, before it is
 * added. A resumed run appends to the metrics file of the run it continues: its first step
 * record goes back in step (to the checkpoint's step + 1: the steps after the checkpoint were
 * written twice) or in time against the last step record (older trainers restarted the clock at
 * 0). Such a record starts a segment: the records of its step and later ones are dropped (for
 * an epoch record that goes back, the step records of later steps), and if its time went back,
 * the segment's times are counted from the time of the last record kept. Kept records stay
 * sorted by step, so the superseded ones are at the end of the columns. */
static void resume(run_metrics *m, double step, double t, int is_step) {
  if (!m->seen) {
    m->seen = 1, m->last_step = step, m->last_time = is_step ? t : NAN;
    return;
  }
  int back =
      is_step ? step <= m->last_step || (isfinite(t) && isfinite(m->last_time) && t < m->last_time)
              : step < m->last_step;
  m->last_step = step;
  if (is_step && isfinite(t)) m->last_time = t;
  if (!back) return;
  while (m->step.n &&
         (m->step.v[m->step.n - 1] > step || (is_step && m->step.v[m->step.n - 1] == step)))
    m->step.n--, m->loss.n--, m->lr.n--, m->time.n--;
  while (m->ep_step.n && m->ep_step.v[m->ep_step.n - 1] >= step)
    m->ep_step.n--, m->ep_acc.n--, m->ep_time.n--, m->ep_loss.n--;
  double kept = last_kept_time(m);
  m->time_offset = isfinite(t) && isfinite(kept) && t < kept ? kept : 0;
}

static int add_step(json_t *o, run_metrics *m, const where *w) {
  double step, loss, lr, t;
  int rc = get_num(o, "step", 1, &step, w);
  if (!rc) rc = get_num(o, "loss", 0, &loss, w);
  if (!rc) rc = get_num(o, "lr", 0, &lr, w);
  if (!rc) rc = get_num(o, "time", 0, &t, w);
  if (rc) return rc;
  resume(m, step, t, 1);
  t += m->time_offset;
  if (push(&m->step, step) || push(&m->loss, loss) || push(&m->lr, lr) || push(&m->time, t))
    return DPT_ENOMEM;
  return DPT_OK;
}

static int add_epoch(json_t *o, run_metrics *m, const where *w) {
  double step, acc, t, tl;
  int rc = get_num(o, "step", 1, &step, w);
  if (!rc) rc = get_num(o, "test_accuracy", 0, &acc, w);
  if (!rc) rc = get_num(o, "test_loss", 0, &tl, w);
  if (!rc) rc = get_num(o, "time", 0, &t, w);
  if (rc) return rc;
  resume(m, step, t, 0);
  t += m->time_offset;
  if (push(&m->ep_step, step) || push(&m->ep_acc, 100 * acc) || push(&m->ep_time, t) ||
      push(&m->ep_loss, tl))
    return DPT_ENOMEM;
  return DPT_OK;
}

static int add_run(json_t *o, run_metrics *m, const where *w) {
  json_t *j = json_object_get(o, "label");
  if (!j || json_is_null(j)) return DPT_OK;
  if (!json_is_string(j)) {
    snprintf(w->err, w->errlen, "%s:%ld: field \"label\" is not a string", w->file, w->line);
    return DPT_EINVAL;
  }
  snprintf(m->label, sizeof m->label, "%s", json_string_value(j));
  return DPT_OK;
}

/* One line: blank lines are skipped, records of unknown type ignored. */
static int parse_line(const char *buf, size_t len, run_metrics *m, const where *w) {
  size_t i = 0;
  while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
  if (i == len) return DPT_OK;
  json_error_t je;
  json_t *o = json_loadb(buf, len, 0, &je);
  if (!o || !json_is_object(o)) {
    snprintf(w->err, w->errlen, "%s:%ld: not a JSON object: %s", w->file, w->line,
             o ? "another JSON value" : je.text);
    json_decref(o);
    return DPT_EINVAL;
  }
  const char *type = json_string_value(json_object_get(o, "type"));
  int rc = DPT_OK;
  if (type && !strcmp(type, "step"))
    rc = add_step(o, m, w);
  else if (type && !strcmp(type, "epoch"))
    rc = add_epoch(o, m, w);
  else if (type && !strcmp(type, "run"))
    rc = add_run(o, m, w);
  json_decref(o);
  if (rc == DPT_ENOMEM) snprintf(w->err, w->errlen, "%s:%ld: out of memory", w->file, w->line);
  return rc;
}

/* See DIVERGED_FACTOR. */
static int diverged(const run_metrics *m) {
  size_t n = m->loss.n, i = 0;
  if (!n) return 0;
  double last = m->loss.v[n - 1];
  while (i < n && !isfinite(m->loss.v[i])) i++;
  return i < n && (!isfinite(last) || last > DIVERGED_FACTOR * m->loss.v[i]);
}

static int read_metrics(const char *file, run_metrics *m, char *err, size_t errlen) {
  FILE *f = fopen(file, "r");
  if (!f) {
    snprintf(err, errlen, "metrics file '%s': cannot read: %s", file, strerror(errno));
    return DPT_EIO;
  }
  where w = {file, 0, err, errlen};
  char *buf = NULL;
  size_t cap = 0;
  ssize_t len;
  int rc = DPT_OK;
  while (!rc && (len = getline(&buf, &cap, f)) >= 0) {
    w.line++;
    rc = parse_line(buf, (size_t)len, m, &w);
    /* a last line without its newline that does not parse is a record a crash cut short (dpt
     * writes whole lines, but a file may come from elsewhere): it is left out, the rest drawn */
    if (rc == DPT_EINVAL && len > 0 && buf[len - 1] != '\n') rc = DPT_OK;
  }
  if (!rc && ferror(f)) {
    snprintf(err, errlen, "%s:%ld: read error: %s", file, w.line + 1, strerror(errno));
    rc = DPT_EIO;
  }
  free(buf);
  fclose(f);
  if (!rc) m->diverged = diverged(m);
  return rc;
}

/* --- names --- */

/* The file's name without directory and extension; with parent, "dir/name". */
static void file_label(const char *file, int parent, char *buf, size_t len) {
  const char *end = file + strlen(file), *base = file;
  for (const char *p = file; p < end; p++)
    if (*p == '/' && p + 1 < end) base = p + 1;
  const char *dot = strrchr(base, '.');
  const char *stop = dot && dot > base ? dot : end;
  if (parent && base > file + 1) { /* back over the '/' to the start of the parent */
    const char *p = base - 1;
    while (p > file && p[-1] != '/') p--;
    base = p;
  }
  snprintf(buf, len, "%.*s", (int)(stop - base), base);
}

/* Is names[i] also the name of another of the n runs? */
static int name_taken(char (*names)[256], int n, int i, const char *name) {
  for (int j = 0; j < n; j++)
    if (j != i && !strcmp(names[j], name)) return 1;
  return 0;
}

/* labels[i], else the run's label, else the file's name; two files that would get the same
 * file name (runs/a/metrics.jsonl, runs/b/metrics.jsonl) both keep their parent directory.
 * A name still given twice gets " #2", " #3", ... from its second run on, so every legend entry
 * names one run; a diverged run's name ends in " (diverged)". */
static void name_runs(const char *const *files, const char *const *labels, int n, run_metrics *runs,
                      char (*names)[256]) {
  for (int i = 0; i < n; i++) {
    if (labels && labels[i])
      snprintf(names[i], sizeof names[i], "%s", labels[i]);
    else if (runs[i].label[0])
      snprintf(names[i], sizeof names[i], "%s", runs[i].label);
    else
      names[i][0] = 0;
  }
  for (int i = 0; i < n; i++) {
    if (names[i][0]) continue;
    char mine[256], other[256];
    int clash = 0;
    file_label(files[i], 0, mine, sizeof mine);
    for (int j = 0; j < n && !clash; j++) {
      if (j == i || (labels && labels[j]) || runs[j].label[0]) continue;
      file_label(files[j], 0, other, sizeof other);
      clash = !strcmp(mine, other);
    }
    file_label(files[i], clash, names[i], sizeof names[i]);
  }
  for (int i = 1; i < n; i++) {
    int dup = 0;
    for (int j = 0; j < i && !dup; j++) dup = !strcmp(names[i], names[j]);
    if (!dup) continue;
    char base[256], name[256];
    snprintf(base, sizeof base, "%s", names[i]);
    for (int k = 2;; k++) { /* at most n - 1 other names: some k <= n + 1 is free */
      snprintf(name, sizeof name, "%.236s #%d", base, k);
      if (!name_taken(names, n, i, name)) break;
    }
    snprintf(names[i], sizeof names[i], "%s", name);
  }
  for (int i = 0; i < n; i++)
    if (runs[i].diverged) {
      char name[256];
      snprintf(name, sizeof name, "%.240s (diverged)", names[i]);
      snprintf(names[i], sizeof names[i], "%s", name);
    }
}

/* --- the charts --- */

/* How a plot's y axis is chosen: the data's range; the losses' range without the blow-up of
 * diverged runs (log); log or linear by the learning rates' span. */
enum { Y_DATA, Y_LOSS, Y_LR };

typedef struct {
  const char *file, *title, *xlabel, *ylabel;
  int y, markers;
} plot_spec;

static const plot_spec PLOTS[] = {
    {"loss_step.svg", "Training loss", "optimizer step", "training loss (batch mean)", Y_LOSS, 0},
    {"loss_time.svg", "Training loss", "wall time (s)", "training loss (batch mean)", Y_LOSS, 0},
    {"accuracy_step.svg", "Test accuracy after each epoch", "optimizer step", "test accuracy (%)",
     Y_DATA, 1},
    {"accuracy_time.svg", "Test accuracy after each epoch", "wall time (s)", "test accuracy (%)",
     Y_DATA, 1},
    {"lr_step.svg", "Learning rate", "optimizer step", "learning rate", Y_LR, 0},
};
#define NPLOTS ((int)(sizeof PLOTS / sizeof PLOTS[0]))

/* The columns plot p draws from run m. */
static void plot_columns(int p, const run_metrics *m, const column **x, const column **y) {
  switch (p) {
  case 0: *x = &m->step, *y = &m->loss; break;
  case 1: *x = &m->time, *y = &m->loss; break;
  case 2: *x = &m->ep_step, *y = &m->ep_acc; break;
  case 3: *x = &m->ep_time, *y = &m->ep_acc; break;
  default: *x = &m->step, *y = &m->lr; break;
  }
}

/* The loss axis (log): every positive loss of the runs that did not diverge, and of a diverged
 * run only up to its first loss, so that its blow-up leaves through the top of the plot instead
 * of squashing the others into the bottom. Leaves *lo >= *hi when there is nothing to draw. */
static void loss_range(const run_metrics *runs, int n, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int r = 0; r < n; r++) {
    const column *l = &runs[r].loss;
    double first = NAN;
    for (size_t i = 0; i < l->n; i++) {
      double v = l->v[i];
      if (!(isfinite(v) && v > 0)) continue;
      if (isnan(first)) first = v;
      *lo = fmin(*lo, v);
      if (!runs[r].diverged) *hi = fmax(*hi, v);
    }
    if (runs[r].diverged && isfinite(first)) *hi = fmax(*hi, first);
  }
}

/* The learning-rate axis: log when the positive rates span LR_LOG_RATIO, and then from no
 * lower than LR_FLOOR times the smallest run's peak. *logy = 0 and *lo >= *hi: the data's. */
static void lr_range(const run_metrics *runs, int n, int *logy, double *lo, double *hi) {
  double mn = INFINITY, mx = -INFINITY, least_peak = INFINITY;
  for (int r = 0; r < n; r++) {
    double peak = -INFINITY;
    for (size_t i = 0; i < runs[r].lr.n; i++) {
      double v = runs[r].lr.v[i];
      if (isfinite(v) && v > 0) mn = fmin(mn, v), mx = fmax(mx, v), peak = fmax(peak, v);
    }
    if (peak > 0) least_peak = fmin(least_peak, peak);
  }
  *logy = mx >= LR_LOG_RATIO * mn;
  *lo = *logy ? fmax(mn, LR_FLOOR * least_peak) : 0, *hi = *logy ? mx : 0;
}

static int same_column(const column *a, const column *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->v[i] != b->v[i] && !(isnan(a->v[i]) && isnan(b->v[i]))) return 0;
  return 1;
}

/* The legend label of run i in plot p: its name, and when a run drawn later (on top of it) has
 * the very same points, " (same as NAME)" after the last such run, so that a line hidden under
 * another one (adam's and adamw's learning rates) is not taken for missing. */
static void legend_label(int p, const run_metrics *runs, char (*names)[256], int n, int i,
                         char *buf, size_t len) {
  const column *x, *y, *xj, *yj;
  plot_columns(p, &runs[i], &x, &y);
  int top = -1;
  for (int j = i + 1; j < n && x->n; j++) {
    plot_columns(p, &runs[j], &xj, &yj);
    if (same_column(x, xj) && same_column(y, yj)) top = j;
  }
  if (top < 0)
    snprintf(buf, len, "%s", names[i]);
  else
    snprintf(buf, len, "%.200s (same as %.200s)", names[i], names[top]);
}

/* Writes plot p: one series per run, two (faint raw, smoothed) for smoothed losses; shown[i]
 * receives run i's legend label. */
static int write_plot(int p, const run_metrics *runs, char (*names)[256], char (*shown)[512], int n,
                      dpt_series *s, const char *outdir, char *err, size_t errlen) {
  const plot_spec *ps = &PLOTS[p];
  int ns = 0, smoothed = 0;
  for (int i = 0; i < n; i++) {
    const column *x, *y;
    plot_columns(p, &runs[i], &x, &y);
    if (x->n > INT_MAX) {
      snprintf(err, errlen, "metrics of '%s': too many records to plot", names[i]);
      return DPT_EINVAL;
    }
    legend_label(p, runs, names, n, i, shown[i], sizeof shown[i]);
    if (y == &runs[i].loss && runs[i].smooth) {
      s[ns++] = (dpt_series){shown[i], (int)x->n, x->v, y->v, 0, 1};
      s[ns++] = (dpt_series){shown[i], (int)x->n, x->v, runs[i].smooth, 0, 0};
      smoothed = 1;
    } else {
      s[ns++] = (dpt_series){shown[i], (int)x->n, x->v, y->v, ps->markers, 0};
    }
  }
  char title[128];
  snprintf(title, sizeof title, "%s%s", ps->title,
           smoothed ? " (faint: every step; bold: moving average)" : "");
  dpt_chart c = {title, ps->xlabel, ps->ylabel, ps->y == Y_LOSS, ns, s, 0, 0};
  if (ps->y == Y_LOSS) loss_range(runs, n, &c.ylo, &c.yhi);
  if (ps->y == Y_LR) lr_range(runs, n, &c.logy, &c.ylo, &c.yhi);
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", outdir, ps->file) >= sizeof path) {
    snprintf(err, errlen, "plot output directory too long: '%.200s...'", outdir);
    return DPT_EINVAL;
  }
  return dpt_svg_chart(path, &c, err, errlen);
}

int dpt_plot_metrics(const char *const *files, const char *const *labels, int nfiles,
                     const char *outdir, char *err, size_t errlen) {
  if (nfiles < 0 || (nfiles > 0 && !files) || !outdir) {
    snprintf(err, errlen, "plot: no %s given", outdir ? "metrics files" : "output directory");
    return DPT_EINVAL;
  }
  size_t n = nfiles > 0 ? (size_t)nfiles : 1;
  run_metrics *runs = calloc(n, sizeof *runs);
  char(*names)[256] = calloc(n, sizeof *names);
  char(*shown)[512] = calloc(n, sizeof *shown);
  dpt_series *s = calloc(2 * n, sizeof *s); /* up to two per run */
  int rc = runs && names && shown && s ? DPT_OK : DPT_ENOMEM;
  if (rc) snprintf(err, errlen, "plot: out of memory");
  for (int i = 0; i < nfiles && !rc; i++) {
    if (!files[i]) {
      snprintf(err, errlen, "plot: metrics file %d has no name", i + 1);
      rc = DPT_EINVAL;
    } else {
      rc = read_metrics(files[i], &runs[i], err, errlen);
      if (!rc && smooth_loss(&runs[i])) {
        snprintf(err, errlen, "plot: out of memory");
        rc = DPT_ENOMEM;
      }
    }
  }

  if (!rc) rc = dpt_mkdirs(outdir, "plot output directory", err, errlen);
  if (!rc) {
    name_runs(files, labels, nfiles, runs, names);
    for (int p = 0; p < NPLOTS && !rc; p++)
      rc = write_plot(p, runs, names, shown, nfiles, s, outdir, err, errlen);
  }
  for (int i = 0; runs && i < nfiles; i++) run_free(&runs[i]);
  free(runs), free(names), free(shown), free(s);
  return rc;
}

/* --- one run's summary (for dpt compare's table) --- */

int dpt_metrics_summarize(const char *file, double target_loss, dpt_metrics_summary *out, char *err,
                          size_t errlen) {
  run_metrics m;
  memset(&m, 0, sizeof m);
  int rc = read_metrics(file, &m, err, errlen);
  if (!rc && smooth_loss(&m)) {
    snprintf(err, errlen, "%s: out of memory", file);
    rc = DPT_ENOMEM;
  }
  if (!rc) {
    dpt_metrics_summary r = {NAN, NAN, NAN, NAN, NAN, 0, -1, 0};
    size_t ne = m.ep_step.n, ns = m.step.n;
    for (size_t i = 0; i < ne; i++) {
      double a = m.ep_acc.v[i] / 100, l = m.ep_loss.v[i];
      if (isfinite(a))
        r.final_acc = a, r.best_acc = isnan(r.best_acc) || a > r.best_acc ? a : r.best_acc;
      if (isfinite(l))
        r.final_loss = l, r.best_loss = isnan(r.best_loss) || l < r.best_loss ? l : r.best_loss;
    }
    if (ns) {
      r.steps = (long)m.step.v[ns - 1];
      r.seconds = m.time.v[ns - 1];
      /* the training loss as plotted: the moving average when there is one */
      const double *loss = m.smooth ? m.smooth : m.loss.v;
      r.final_train_loss = loss[ns - 1];
      for (size_t i = 0; i < ns && r.steps_to_target < 0; i++)
        if (isfinite(target_loss) && loss[i] <= target_loss) r.steps_to_target = (long)m.step.v[i];
    }
    if (ne && isfinite(m.ep_time.v[ne - 1]) && m.ep_time.v[ne - 1] > r.seconds)
      r.seconds = m.ep_time.v[ne - 1];
    *out = r;
  }
  run_free(&m);
  return rc;
}

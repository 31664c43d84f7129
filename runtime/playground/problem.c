/* problem.c — the solver playground (`dpt compare --problem NAME`): runs solvers and schedules
 * on small analytic test functions and writes what they did, for looking at, not for training.
 *
 * Invariants:
 * - The optimisation is the one training does: fp32 parameters in a flat buffer, one
 *   dpt_solver over all of them, the scheduler's lr (and cycled momentum) set before each solver
 *   step and the scheduler stepped after it (with f before the step as the metric), as in
 *   train.c. The scheduler is stepped once per step whatever its interval. Gradients are exact
 *   (analytic, in double from the fp32 parameters) and rounded to fp32 like any gradient.
 * - A run records x and f(x) before the first step and after every step; the first non-finite
 *   x or f ends the recording ("diverged at step k"), which is a result, not an error.
 * - Every run is computed (and its hyperparameters validated) before anything is written, so a
 *   bad run leaves outdir untouched. Each output file appears whole or not at all (tmp + rename).
 * - A problem is one row of the table below: name, dimension, f, gradient, start, plot window
 *   and its minima, so a new problem is one function pair and one row.
 */
#include "playground.h"
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* f - f* below this counts as reached in the summary: for a minimum with curvature ~1 it means
 * being within ~1e-3 of it, about what fp32 solvers with a fixed lr get on these problems. */
#define REACHED_TOL 1e-6
/* Every point of every run is kept in memory (dim + 1 doubles) and written to JSONL (~60 bytes):
 * a million steps is 24 MB and 60 MB per run, about the most a playground should make. */
#define MAX_STEPS 1000000L
/* Charts take in iterates outside the problem's window, growing it by at most this fraction of
 * its span on each side: a run that runs away does not shrink the rest of the picture to a dot
 * (points beyond are clipped; loss_step.svg and the summary still show them). */
#define WINDOW_GROW 0.5
#define CURVE_POINTS 256 /* samples of a 1-D function's curve */
/* trajectory.svg draws a path's points at least this fraction of the window apart (the contour
 * plot is about 640 x 330 px: 13 px across, 7 px up), so that a long run is a line with beads
 * rather than a solid chain of markers that hides the runs under it. The JSONL has every point. */
#define PATH_MIN_STEP 0.02
#define MAX_DIM 2
#define MAX_MINIMA 4

/* Text in UTF-8 for labels and the summary (the SVG writer escapes and checks it). */
#define MINUS "\xe2\x88\x92" /* U+2212 minus sign */
#define SQ "\xc2\xb2"        /* superscript two */
#define DASH "\xe2\x80\x94"  /* em dash: "none" in a table cell */

/* --- the problems --- */

typedef struct {
  const char *name, *formula, *desc;
  int dim;
  double (*f)(const double *x);
  void (*grad)(const double *x, double *g);
  double start[MAX_DIM];
  double lo[MAX_DIM], hi[MAX_DIM]; /* plot window */
  double fstar;                    /* the global minimum value */
  int nmin;
  double minima[MAX_MINIMA][MAX_DIM]; /* every point where f = fstar (distance column) */
} problem;

static double quadratic(const double *x) {
  return x[0] * x[0] - 4 * x[0] + 3;
}
static void quadratic_grad(const double *x, double *g) {
  g[0] = 2 * x[0] - 4;
}

static double rosenbrock(const double *x) {
  double a = 1 - x[0], b = x[1] - x[0] * x[0];
  return a * a + 100 * b * b;
}
static void rosenbrock_grad(const double *x, double *g) {
  double b = x[1] - x[0] * x[0];
  g[0] = -2 * (1 - x[0]) - 400 * x[0] * b;
  g[1] = 200 * b;
}

static double himmelblau(const double *x) {
  double a = x[0] * x[0] + x[1] - 11, b = x[0] + x[1] * x[1] - 7;
  return a * a + b * b;
}
static void himmelblau_grad(const double *x, double *g) {
  double a = x[0] * x[0] + x[1] - 11, b = x[0] + x[1] * x[1] - 7;
  g[0] = 4 * x[0] * a + 2 * b;
  g[1] = 2 * a + 4 * x[1] * b;
}

static double ellipse(const double *x) {
  return x[0] * x[0] + 10 * x[1] * x[1];
}
static void ellipse_grad(const double *x, double *g) {
  g[0] = 2 * x[0];
  g[1] = 20 * x[1];
}

static const problem problems[] = {
    {.name = "quadratic",
     .dim = 1,
     .f = quadratic,
     .grad = quadratic_grad,
     .formula = "f(x) = x" SQ " " MINUS " 4x + 3",
     .desc = "1-D parabola x" SQ " " MINUS " 4x + 3 from x = 0; minimum f(2) = " MINUS "1",
     .start = {0},
     .lo = {-1},
     .hi = {5},
     .fstar = -1,
     .nmin = 1,
     .minima = {{2}}},
    {.name = "rosenbrock",
     .dim = 2,
     .f = rosenbrock,
     .grad = rosenbrock_grad,
     .formula = "f = (1 " MINUS " x)" SQ " + 100 (y " MINUS " x" SQ ")" SQ,
     .desc = "curved narrow valley from (" MINUS "1.5, 2); minimum f(1, 1) = 0",
     .start = {-1.5, 2},
     .lo = {-2, -1},
     .hi = {2, 3},
     .fstar = 0,
     .nmin = 1,
     .minima = {{1, 1}}},
    /* minima other than (3, 2) by Newton's method on the gradient, in double */
    {.name = "himmelblau",
     .dim = 2,
     .f = himmelblau,
     .grad = himmelblau_grad,
     .formula = "f = (x" SQ " + y " MINUS " 11)" SQ " + (x + y" SQ " " MINUS " 7)" SQ,
     .desc = "four minima with f = 0, e.g. (3, 2); from (0, 0)",
     .start = {0, 0},
     .lo = {-5, -5},
     .hi = {5, 5},
     .fstar = 0,
     .nmin = 4,
     .minima = {{3, 2},
                {-2.805118086952745, 3.131312518250573},
                {-3.779310253377747, -3.283185991286169},
                {3.5844283403304917, -1.8481265269644034}}},
    {.name = "ellipse",
     .dim = 2,
     .f = ellipse,
     .grad = ellipse_grad,
     .formula = "f = x" SQ " + 10 y" SQ,
     .desc = "badly conditioned bowl (curvatures 2 and 20) from (" MINUS "4, 1.5); "
             "minimum f(0, 0) = 0",
     .start = {-4, 1.5},
     .lo = {-5, -2.5}, /* about the plot's aspect: the ellipses keep their shape */
     .hi = {5, 2.5},
     .fstar = 0,
     .nmin = 1,
     .minima = {{0, 0}}},
};
#define NPROBLEMS ((int)(sizeof problems / sizeof problems[0]))

static const problem *find_problem(const char *name, char *err, size_t errlen) {
  for (int i = 0; i < NPROBLEMS; i++)
    if (name && !strcasecmp(name, problems[i].name)) return &problems[i];
  char list[256] = "";
  for (int i = 0; i < NPROBLEMS; i++) {
    strncat(list, problems[i].name, sizeof list - strlen(list) - 1);
    if (i + 1 < NPROBLEMS) strncat(list, ", ", sizeof list - strlen(list) - 1);
  }
  snprintf(err, errlen, "unknown problem '%s' (expected one of: %s)", name ? name : "", list);
  return NULL;
}

static double dist_to_minimum(const problem *p, const double *x) {
  double best = INFINITY;
  for (int m = 0; m < p->nmin; m++) {
    double s = 0;
    for (int d = 0; d < p->dim; d++) s += (x[d] - p->minima[m][d]) * (x[d] - p->minima[m][d]);
    best = fmin(best, sqrt(s));
  }
  return best;
}

/* --- running one solver --- */

typedef struct {
  double *x;     /* n points of dim values: step k's x at [k * dim] */
  double *f;     /* n values */
  long n;        /* points recorded: steps + 1, or k when step k diverged */
  long diverged; /* the step whose x or f was non-finite; 0: none */
} trace;

static int all_finite(const float *x, int dim, double f) {
  for (int d = 0; d < dim; d++)
    if (!isfinite(x[d])) return 0;
  return isfinite(f);
}

static void record(trace *t, int dim, const float *x, double f) {
  for (int d = 0; d < dim; d++) t->x[t->n * dim + d] = x[d];
  t->f[t->n++] = f;
}

/* Creates the run's solver and scheduler as train.c does; errors name the run. */
static int make_optim(const dpt_problem_run *r, int dim, long steps, dpt_solver **solver,
                      dpt_sched **sched, char *err, size_t errlen) {
  char oerr[DPT_ERR_LEN];
  int rc = dpt_solver_create(&r->solver, (size_t)dim, solver, oerr, sizeof oerr);
  if (!rc)
    rc = dpt_sched_create(&r->sched, r->solver.lr, dpt_solver_has_momentum(*solver),
                          dpt_solver_momentum(*solver), steps, sched, oerr, sizeof oerr);
  if (rc) {
    snprintf(err, errlen, "run '%s': %s", r->name, oerr);
    dpt_solver_free(*solver);
    *solver = NULL;
    return rc;
  }
  return DPT_OK;
}

/* Runs r for `steps` steps from x0 (p->dim values) into t (allocated here; free with
 * trace_free, also on error). */
static int run_one(const problem *p, const dpt_problem_run *r, long steps, const double *x0,
                   trace *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  t->x = malloc((size_t)(steps + 1) * (size_t)p->dim * sizeof *t->x);
  t->f = malloc((size_t)(steps + 1) * sizeof *t->f);
  if (!t->x || !t->f) {
    snprintf(err, errlen, "run '%s': out of memory for %ld steps", r->name, steps);
    return DPT_ENOMEM;
  }
  dpt_solver *solver = NULL;
  dpt_sched *sched = NULL;
  int rc = make_optim(r, p->dim, steps, &solver, &sched, err, errlen);
  if (rc) return rc;
  float x[MAX_DIM], g[MAX_DIM];
  double xd[MAX_DIM], gd[MAX_DIM];
  for (int d = 0; d < p->dim; d++) x[d] = (float)x0[d], xd[d] = x[d];
  record(t, p->dim, x, p->f(xd));
  for (long k = 1; k <= steps; k++) {
    p->grad(xd, gd);
    for (int d = 0; d < p->dim; d++) g[d] = (float)gd[d];
    double f_before = t->f[t->n - 1];
    dpt_solver_set_lr(solver, dpt_sched_lr(sched));
    if (dpt_sched_cycles_momentum(sched))
      dpt_solver_set_momentum(solver, dpt_sched_momentum(sched));
    dpt_solver_step(solver, x, g);
    dpt_sched_step(sched, f_before);
    for (int d = 0; d < p->dim; d++) xd[d] = x[d];
    double fx = p->f(xd);
    if (!all_finite(x, p->dim, fx)) {
      t->diverged = k;
      break;
    }
    record(t, p->dim, x, fx);
  }
  dpt_sched_free(sched);
  dpt_solver_free(solver);
  return DPT_OK;
}

static void trace_free(trace *t) {
  free(t->x), free(t->f);
}

/* --- output files: <path>.tmp, renamed when complete --- */

typedef dpt_afile text_out;

static int text_open(text_out *o, const char *dir, const char *name, char *err, size_t errlen) {
  char path[2048];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
    snprintf(err, errlen, "output path too long: '%.200s...'", dir);
    return DPT_EINVAL;
  }
  return dpt_afile_open(o, path, err, errlen);
}

static int text_close(text_out *o, char *err, size_t errlen) {
  return dpt_afile_commit(o, err, errlen);
}

/* --- trajectories.jsonl --- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  dpt_json_escape(f, s);
  fputc('"', f);
}

static int write_jsonl(const char *dir, const problem *p, const dpt_problem_run *runs,
                       const trace *tr, int nruns, char *err, size_t errlen) {
  text_out o;
  int rc = text_open(&o, dir, "trajectories.jsonl", err, errlen);
  if (rc) return rc;
  for (int r = 0; r < nruns; r++)
    for (long k = 0; k < tr[r].n; k++) {
      fputs("{\"run\":", o.f);
      json_str(o.f, runs[r].name);
      fprintf(o.f, ",\"step\":%ld,\"x\":[", k);
      for (int d = 0; d < p->dim; d++)
        fprintf(o.f, "%s%.9g", d ? "," : "", tr[r].x[k * p->dim + d]);
      fprintf(o.f, "],\"f\":%.17g}\n", tr[r].f[k]);
    }
  return text_close(&o, err, errlen);
}

/* --- summary.md: one table row per run --- */

#define NCOLS 9
#define CELL 136 /* a run's name (64 bytes) with every byte escaped fits */

static const char *const col_head[NCOLS] = {"run",
                                            "steps",
                                            "final x",
                                            "f(x)",
                                            "f " MINUS " f*",
                                            "distance to x*",
                                            "f " MINUS " f* < 1e-6 at",
                                            "best f",
                                            "status"};
static const int col_right[NCOLS] = {0, 1, 1, 1, 1, 1, 1, 1, 0}; /* numbers align right */

/* Characters, not bytes: "−" and "—" are one column wide. */
static int text_cols(const char *s) {
  int n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
  return n;
}

/* A cell of text: '|' escaped for Markdown, control characters (a newline) made spaces. */
static void cell_text(char *c, const char *s) {
  size_t j = 0;
  for (; *s && j + 3 < CELL; s++) {
    if (*s == '|') c[j++] = '\\';
    c[j++] = (unsigned char)*s < 0x20 ? ' ' : *s;
  }
  c[j] = 0;
}

static void fill_row(char (*c)[CELL], const problem *p, const dpt_problem_run *run,
                     const trace *t) {
  long last = t->n - 1;
  const double *x = &t->x[last * p->dim];
  long reached = -1;
  double best = INFINITY;
  for (long k = 0; k < t->n; k++) {
    if (reached < 0 && t->f[k] - p->fstar < REACHED_TOL) reached = k;
    best = fmin(best, t->f[k]);
  }
  cell_text(c[0], run->name);
  snprintf(c[1], CELL, "%ld", last);
  if (p->dim == 1)
    snprintf(c[2], CELL, "%.6g", x[0]);
  else
    snprintf(c[2], CELL, "(%.6g, %.6g)", x[0], x[1]);
  snprintf(c[3], CELL, "%.6g", t->f[last]);
  snprintf(c[4], CELL, "%.3g", t->f[last] - p->fstar);
  snprintf(c[5], CELL, "%.3g", dist_to_minimum(p, x));
  if (reached >= 0)
    snprintf(c[6], CELL, "%ld", reached);
  else
    snprintf(c[6], CELL, DASH);
  snprintf(c[7], CELL, "%.6g", best);
  if (t->diverged)
    snprintf(c[8], CELL, "diverged at step %ld", t->diverged);
  else
    snprintf(c[8], CELL, "ok");
}

static void put_padded(FILE *f, const char *s, int width, int right) {
  int pad = width - text_cols(s);
  if (right)
    fprintf(f, "%*s%s", pad, "", s);
  else
    fprintf(f, "%s%*s", s, pad, "");
}

/* The Markdown table, columns padded so it reads as plain text too. rows[0] is the header. */
static void put_table(FILE *f, char (*rows)[NCOLS][CELL], int nrows) {
  int w[NCOLS];
  for (int j = 0; j < NCOLS; j++) {
    w[j] = 3;
    for (int i = 0; i < nrows; i++)
      w[j] = w[j] > text_cols(rows[i][j]) ? w[j] : text_cols(rows[i][j]);
  }
  for (int i = 0; i < nrows; i++) {
    for (int j = 0; j < NCOLS; j++) {
      fputs("| ", f);
      put_padded(f, rows[i][j], w[j], col_right[j]);
      fputc(' ', f);
    }
    fputs("|\n", f);
    if (i) continue;
    for (int j = 0; j < NCOLS; j++) {
      fputs("| ", f);
      for (int k = 0; k < w[j] - 1; k++) fputc('-', f);
      fputs(col_right[j] ? ": " : "- ", f);
    }
    fputs("|\n", f);
  }
}

static void put_summary(FILE *f, const problem *p, long steps, const double *x0,
                        char (*rows)[NCOLS][CELL], int nrows) {
  fprintf(f, "# %s: %s\n\n", p->name, p->formula);
  if (p->dim == 1)
    fprintf(f, "%ld steps from x = %.6g; minimum f* = %.6g at x* = %.6g", steps, x0[0], p->fstar,
            p->minima[0][0]);
  else
    fprintf(f, "%ld steps from (%.6g, %.6g); minimum f* = %.6g at", steps, x0[0], x0[1], p->fstar);
  for (int m = 0; p->dim == 2 && m < p->nmin; m++)
    fprintf(f, "%s (%.6g, %.6g)", m ? "," : "", p->minima[m][0], p->minima[m][1]);
  fputs(".\n\n", f);
  put_table(f, rows, nrows);
}

static int write_summary(const char *dir, const problem *p, const dpt_problem_run *runs,
                         const trace *tr, int nruns, long steps, const double *x0, FILE *out,
                         char *err, size_t errlen) {
  char(*rows)[NCOLS][CELL] = calloc((size_t)nruns + 1, sizeof *rows);
  if (!rows) {
    snprintf(err, errlen, "out of memory for the summary of %d runs", nruns);
    return DPT_ENOMEM;
  }
  for (int j = 0; j < NCOLS; j++) snprintf(rows[0][j], CELL, "%s", col_head[j]);
  for (int r = 0; r < nruns; r++) fill_row(rows[r + 1], p, &runs[r], &tr[r]);
  text_out o;
  int rc = text_open(&o, dir, "summary.md", err, errlen);
  if (!rc) {
    put_summary(o.f, p, steps, x0, rows, nruns + 1);
    rc = text_close(&o, err, errlen);
  }
  if (!rc && out) put_summary(out, p, steps, x0, rows, nruns + 1);
  free(rows);
  return rc;
}

/* --- charts: trajectory.svg and loss_step.svg --- */

/* The plot window: the problem's, grown to take in the recorded points by at most WINDOW_GROW
 * of its span on each side (see the constant). */
static void plot_window(const problem *p, const trace *tr, int nruns, double *lo, double *hi) {
  for (int d = 0; d < p->dim; d++) {
    double span = p->hi[d] - p->lo[d];
    double min = p->lo[d] - WINDOW_GROW * span, max = p->hi[d] + WINDOW_GROW * span;
    lo[d] = p->lo[d], hi[d] = p->hi[d];
    for (int r = 0; r < nruns; r++)
      for (long k = 0; k < tr[r].n; k++) {
        double v = tr[r].x[k * p->dim + d];
        if (v >= min && v <= max) lo[d] = fmin(lo[d], v), hi[d] = fmax(hi[d], v);
      }
  }
}

/* Column d of trace t (d == dim: f) as its own array; NAN outside [lo, hi] when clip. */
static double *column(const problem *p, const trace *t, int d, int clip, double lo, double hi) {
  double *v = malloc((size_t)t->n * sizeof *v);
  for (long k = 0; v && k < t->n; k++) {
    v[k] = d < p->dim ? t->x[k * p->dim + d] : t->f[k];
    if (clip && !(v[k] >= lo && v[k] <= hi)) v[k] = NAN;
  }
  return v;
}

static int finite2(double x, double y) {
  return isfinite(x) && isfinite(y);
}

/* Keeps the points at least PATH_MIN_STEP of the spans (sx, sy) away from the last kept one, the
 * first and the last, and one non-finite point per gap (a break in the line). Returns how many. */
static long thin_path(double *x, double *y, long n, double sx, double sy) {
  long m = 0;
  for (long k = 0; k < n; k++) {
    int keep = k == 0 || k == n - 1;
    if (!keep && !finite2(x[k], y[k]))
      keep = finite2(x[m - 1], y[m - 1]);
    else if (!keep && !finite2(x[m - 1], y[m - 1]))
      keep = 1;
    else if (!keep)
      keep = hypot((x[k] - x[m - 1]) / sx, (y[k] - y[m - 1]) / sy) >= PATH_MIN_STEP;
    if (keep) x[m] = x[k], y[m] = y[k], m++;
  }
  return m;
}

/* The runs' paths for trajectory.svg and one more series slot, `extra`: 1-D: the curve, first,
 * so that it is drawn under the iterates, whose points are (x, f) with x clipped to the window;
 * 2-D: the minima, last, drawn over the paths that end there; points (x, y). */
typedef struct {
  dpt_series *s; /* nruns + 1 */
  int extra;     /* the slot of the curve or the minima: 0 (1-D) or nruns (2-D) */
  double **v;    /* 2 * nruns arrays the run series point into */
  int nruns;
} path_set;

static void paths_free(path_set *ps) {
  for (int i = 0; ps->v && i < 2 * ps->nruns; i++) free(ps->v[i]);
  free(ps->v), free(ps->s);
}

static int paths_make(path_set *ps, const problem *p, const dpt_problem_run *runs, const trace *tr,
                      int nruns, const double *lo, const double *hi, double yspan) {
  ps->nruns = nruns;
  ps->extra = p->dim == 1 ? 0 : nruns;
  ps->s = calloc((size_t)nruns + 1, sizeof *ps->s);
  ps->v = calloc(2 * (size_t)nruns, sizeof *ps->v);
  if (!ps->s || !ps->v) return DPT_ENOMEM;
  for (int r = 0; r < nruns; r++) {
    double *x = ps->v[2 * r] = column(p, &tr[r], 0, p->dim == 1, lo[0], hi[0]);
    double *y = ps->v[2 * r + 1] = column(p, &tr[r], 1, 0, 0, 0);
    if (!x || !y) return DPT_ENOMEM;
    long n = thin_path(x, y, tr[r].n, hi[0] - lo[0], yspan);
    ps->s[r + (ps->extra == 0)] = (dpt_series){runs[r].name, (int)n, x, y, 1, 0};
  }
  return DPT_OK;
}

static int chart_1d(const char *path, const problem *p, const dpt_problem_run *runs,
                    const trace *tr, int nruns, char *err, size_t errlen) {
  double lo, hi, cx[CURVE_POINTS], cy[CURVE_POINTS], flo = INFINITY, fhi = -INFINITY;
  plot_window(p, tr, nruns, &lo, &hi);
  for (int i = 0; i < CURVE_POINTS; i++) {
    cx[i] = lo + (hi - lo) * i / (CURVE_POINTS - 1);
    cy[i] = p->f(&cx[i]);
    flo = fmin(flo, cy[i]), fhi = fmax(fhi, cy[i]);
  }
  path_set ps;
  int rc = paths_make(&ps, p, runs, tr, nruns, &lo, &hi, fhi - flo);
  if (!rc) {
    ps.s[ps.extra] = (dpt_series){p->formula, CURVE_POINTS, cx, cy, 0, 0};
    char title[160];
    snprintf(title, sizeof title, "%s: the iterates on f", p->name);
    dpt_chart c = {
        .title = title, .xlabel = "x", .ylabel = "f(x)", .nseries = nruns + 1, .series = ps.s};
    rc = dpt_svg_chart(path, &c, err, errlen);
  } else {
    snprintf(err, errlen, "out of memory for the chart '%s'", path);
  }
  paths_free(&ps);
  return rc;
}

typedef struct {
  const problem *p;
} contour_ctx;

static double contour_f(double x, double y, void *ctx) {
  double v[2] = {x, y};
  return ((const contour_ctx *)ctx)->p->f(v);
}

static int chart_2d(const char *path, const problem *p, const dpt_problem_run *runs,
                    const trace *tr, int nruns, char *err, size_t errlen) {
  double lo[2], hi[2], mx[2 * MAX_MINIMA], my[2 * MAX_MINIMA];
  plot_window(p, tr, nruns, lo, hi);
  /* the minima as one series of lone points: NAN between them breaks the line */
  for (int m = 0; m < p->nmin; m++) {
    mx[2 * m] = p->minima[m][0], my[2 * m] = p->minima[m][1];
    mx[2 * m + 1] = my[2 * m + 1] = NAN;
  }
  path_set ps;
  int rc = paths_make(&ps, p, runs, tr, nruns, lo, hi, hi[1] - lo[1]);
  if (!rc) {
    ps.s[ps.extra] =
        (dpt_series){p->nmin > 1 ? "minima" : "minimum", 2 * p->nmin - 1, mx, my, 1, 0};
    char title[160];
    snprintf(title, sizeof title, "%s: %s", p->name, p->formula);
    contour_ctx cc = {p};
    dpt_contour_chart c = {.title = title,
                           .xlabel = "x",
                           .ylabel = "y",
                           .xmin = lo[0],
                           .xmax = hi[0],
                           .ymin = lo[1],
                           .ymax = hi[1],
                           .f = contour_f,
                           .ctx = &cc,
                           .nseries = nruns + 1,
                           .paths = ps.s};
    rc = dpt_svg_contour(path, &c, err, errlen);
  } else {
    snprintf(err, errlen, "out of memory for the chart '%s'", path);
  }
  paths_free(&ps);
  return rc;
}

static int chart_loss(const char *path, const problem *p, const dpt_problem_run *runs,
                      const trace *tr, int nruns, char *err, size_t errlen) {
  path_set ps = {.s = calloc((size_t)nruns, sizeof *ps.s),
                 .v = calloc(2 * (size_t)nruns, sizeof *ps.v),
                 .nruns = nruns};
  int rc = ps.s && ps.v ? DPT_OK : DPT_ENOMEM;
  for (int r = 0; r < nruns && !rc; r++) {
    double *step = ps.v[2 * r] = malloc((size_t)tr[r].n * sizeof *step);
    double *gap = ps.v[2 * r + 1] = column(p, &tr[r], p->dim, 0, 0, 0);
    if (!step || !gap) {
      rc = DPT_ENOMEM;
      break;
    }
    for (long k = 0; k < tr[r].n; k++) step[k] = (double)k, gap[k] -= p->fstar;
    ps.s[r] = (dpt_series){runs[r].name, (int)tr[r].n, step, gap, 0, 0};
  }
  if (!rc) {
    char title[160];
    snprintf(title, sizeof title, "%s: f(x) " MINUS " f* by step", p->name);
    dpt_chart c = {.title = title,
                   .xlabel = "step",
                   .ylabel = "f(x) " MINUS " f*",
                   .logy = 1,
                   .nseries = nruns,
                   .series = ps.s};
    rc = dpt_svg_chart(path, &c, err, errlen);
  } else {
    snprintf(err, errlen, "out of memory for the chart '%s'", path);
  }
  paths_free(&ps);
  return rc;
}

static int write_charts(const char *dir, const problem *p, const dpt_problem_run *runs,
                        const trace *tr, int nruns, char *err, size_t errlen) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/trajectory.svg", dir) >= sizeof path) {
    snprintf(err, errlen, "output path too long: '%.200s...'", dir);
    return DPT_EINVAL;
  }
  int rc = p->dim == 1 ? chart_1d(path, p, runs, tr, nruns, err, errlen)
                       : chart_2d(path, p, runs, tr, nruns, err, errlen);
  snprintf(path, sizeof path, "%s/loss_step.svg", dir);
  return rc ? rc : chart_loss(path, p, runs, tr, nruns, err, errlen);
}

/* --- public --- */

static int check_args(const problem *p, const dpt_problem_run *runs, int nruns, long steps,
                      const double *x0, int dim, const char *outdir, char *err, size_t errlen) {
  if (nruns < 1 || !runs) {
    snprintf(err, errlen, "problem '%s': no solver to run", p->name);
    return DPT_EINVAL;
  }
  if (steps < 1 || steps > MAX_STEPS) {
    snprintf(err, errlen, "problem '%s': steps = %ld, expected 1 to %ld", p->name, steps,
             MAX_STEPS);
    return DPT_EINVAL;
  }
  if (x0 && dim != p->dim) {
    snprintf(err, errlen, "problem '%s' is %d-D: the start point needs %d value%s, got %d", p->name,
             p->dim, p->dim, p->dim > 1 ? "s" : "", dim);
    return DPT_EINVAL;
  }
  for (int d = 0; x0 && d < dim; d++)
    if (!isfinite(x0[d]) || !isfinite((float)x0[d])) {
      snprintf(err, errlen, "problem '%s': start value %d is %g, not a finite fp32 number", p->name,
               d + 1, x0[d]);
      return DPT_EINVAL;
    }
  if (!outdir || !*outdir) {
    snprintf(err, errlen, "problem '%s': no output directory", p->name);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

int dpt_problem_compare(const char *problem_name, const dpt_problem_run *runs, int nruns,
                        long steps, const double *x0, int dim, const char *outdir, FILE *out,
                        char *err, size_t errlen) {
  const problem *p = find_problem(problem_name, err, errlen);
  if (!p) return DPT_EINVAL;
  int rc = check_args(p, runs, nruns, steps, x0, dim, outdir, err, errlen);
  if (rc) return rc;
  if (!x0) x0 = p->start;
  trace *tr = calloc((size_t)nruns, sizeof *tr);
  if (!tr) {
    snprintf(err, errlen, "out of memory for %d runs", nruns);
    return DPT_ENOMEM;
  }
  for (int r = 0; r < nruns && !rc; r++) rc = run_one(p, &runs[r], steps, x0, &tr[r], err, errlen);
  if (!rc) rc = dpt_mkdirs(outdir, "output directory", err, errlen);
  if (!rc) rc = write_jsonl(outdir, p, runs, tr, nruns, err, errlen);
  if (!rc) rc = write_summary(outdir, p, runs, tr, nruns, steps, x0, out, err, errlen);
  if (!rc) rc = write_charts(outdir, p, runs, tr, nruns, err, errlen);
  for (int r = 0; r < nruns; r++) trace_free(&tr[r]);
  free(tr);
  return rc;
}

void dpt_problem_list(void (*fn)(void *ctx, const char *name, const char *desc), void *ctx) {
  for (int i = 0; i < NPROBLEMS; i++) fn(ctx, problems[i].name, problems[i].desc);
}

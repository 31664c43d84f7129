/* timing.c — where a step's time goes (timing.h), and the per-rank figures of a log interval.
 *
 * Invariants:
 * - compute + the waits = the step: every blocking collective of a step is bracketed by
 *   dpt_timing_wait / dpt_timing_done, and compute is what remains.
 * - The hidden fraction is the part of the gradient reduction's window (the start of its first
 *   bucket to the end of its wait) in which backward computed (before its end, outside the
 *   reducer's calls, whose MPI work backward waits for): near 1 when nothing was left to wait
 *   for, 0 when every bucket started in the wait (deterministic mode, --overlap 0) or the one
 *   bucket holds the whole gradient.
 * - Per-rank figures cost one small collective per log interval (--log-every steps, and the
 *   run's last step), none per step: every rank reaches the same interval ends (the step count
 *   and a stop are agreed), so the gather never waits for a rank that will not come.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* --- one step --- */

void dpt_timing_step_begin(dpt_timing *t, int overlap, size_t n, size_t bucket) {
  memset(&t->cur, 0, sizeof t->cur);
  t->t_step = dpt_now();
  t->t_wait = t->t_ready = t->t_bwd_end = 0;
  t->overlap = overlap;
  t->first_lo = bucket > 0 && n > 0 ? (n - 1) / bucket * bucket : 0;
  t->first_len = n - t->first_lo;
  t->first_done = 0;
  t->t_call = t->in_ready = 0;
}

void dpt_timing_wait(dpt_timing *t, int kind, long step, const char *what) {
  dpt_progress_wait(step, what);
  t->wait_kind = kind;
  t->t_wait = dpt_now();
}

void dpt_timing_done(dpt_timing *t) {
  dpt_progress_done();
  if (t->t_wait == 0) return;
  double now = dpt_now();
  t->cur.wait[t->wait_kind] += now - t->t_wait;
  if (t->wait_kind == DPT_WAIT_GRAD) { /* the window closes with the gradient's wait */
    double start = t->overlap && t->t_ready > 0 ? t->t_ready : t->t_wait;
    double hidden = t->overlap && t->t_ready > 0 ? t->t_bwd_end - start - t->in_ready : 0;
    t->cur.window += now - start;
    t->cur.hidden_s += hidden > 0 ? hidden : 0;
  }
  t->t_wait = 0;
}

void dpt_timing_ready(dpt_timing *t, size_t offset, size_t len) {
  if (t->t_ready == 0) {
    size_t lo = offset > t->first_lo ? offset : t->first_lo, hi = offset + len;
    if (hi > lo) t->first_done += hi - lo;
    if (t->first_done >= t->first_len) t->t_ready = dpt_now();
  }
  t->t_call = t->t_ready != 0 ? dpt_now() : 0;
}

void dpt_timing_ready_done(dpt_timing *t) {
  if (t->t_call != 0) t->in_ready += dpt_now() - t->t_call;
  t->t_call = 0;
}

void dpt_timing_backward_done(dpt_timing *t) {
  t->t_bwd_end = dpt_now();
}

void dpt_timing_step_end(dpt_timing *t, long step, dpt_step_timing *out) {
  dpt_step_timing *c = &t->cur;
  c->step = dpt_now() - t->t_step;
  c->wait_total = 0;
  for (int k = 0; k < DPT_WAIT_KINDS; k++) c->wait_total += c->wait[k];
  c->compute = c->step - c->wait_total;
  if (c->compute < 0) c->compute = 0; /* clock granularity */
  c->hidden = c->window > 0 ? c->hidden_s / c->window : NAN;
  *out = *c;
  if (t->steps == 0) t->first_step = step;
  t->steps++;
  t->sum_step += c->step;
  t->sum_compute += c->compute;
  for (int k = 0; k < DPT_WAIT_KINDS; k++) t->sum_wait[k] += c->wait[k];
  t->sum_window += c->window;
  t->sum_hidden += c->hidden_s;
}

void dpt_timing_take(dpt_timing *t, double *v) {
  double n = t->steps > 0 ? (double)t->steps : 1;
  v[DPT_TIMING_STEP] = t->sum_step / n;
  v[DPT_TIMING_COMPUTE] = t->sum_compute / n;
  v[DPT_TIMING_WAIT_TOTAL] = 0;
  for (int k = 0; k < DPT_WAIT_KINDS; k++) {
    v[DPT_TIMING_WAIT0 + k] = t->sum_wait[k] / n;
    v[DPT_TIMING_WAIT_TOTAL] += t->sum_wait[k] / n;
  }
  v[DPT_TIMING_HIDDEN] = t->sum_window > 0 ? t->sum_hidden / t->sum_window : NAN;
  t->steps = 0;
  t->sum_step = t->sum_compute = t->sum_window = t->sum_hidden = 0;
  memset(t->sum_wait, 0, sizeof t->sum_wait);
}

size_t dpt_train_bucket_floats(const dpt_train_opts *o) {
  size_t bucket = (size_t)(o->bucket_mb * 1048576.0) / sizeof(float); /* as make_reducer */
  return bucket > (size_t)1 << 30 ? (size_t)1 << 30 : bucket;         /* comm/reducer.c's cap */
}

/* --- the interval: every rank's figures on rank 0 --- */

/* The --verbose line: rank 0's figures, the slowest rank's, and the largest wait of each kind. */
static void log_interval(const dpt_timing_table *tab) {
  const double *me = tab->values, *slow = tab->values + (size_t)tab->slowest * DPT_TIMING_VALUES;
  const double *mx = tab->max;
  char hidden[32];
  if (isnan(me[DPT_TIMING_HIDDEN]))
    snprintf(hidden, sizeof hidden, "none");
  else
    snprintf(hidden, sizeof hidden, "%.0f%%", 100 * me[DPT_TIMING_HIDDEN]);
  dpt_log(DPT_LOG_INFO,
          "timings, steps %ld-%ld (ms per step, rank 0 / largest over %d ranks): step %.3f / "
          "%.3f, compute %.3f / %.3f (slowest rank %d), waits %.3f / %.3f: gradient %.3f / "
          "%.3f (%s of the reduction hidden behind backward), all-gather %.3f / %.3f, "
          "loss and norm %.3f / %.3f, batch statistics %.3f / %.3f",
          tab->first_step, tab->step, tab->ranks, 1e3 * me[DPT_TIMING_STEP],
          1e3 * mx[DPT_TIMING_STEP], 1e3 * me[DPT_TIMING_COMPUTE], 1e3 * slow[DPT_TIMING_COMPUTE],
          tab->slowest, 1e3 * me[DPT_TIMING_WAIT_TOTAL], 1e3 * mx[DPT_TIMING_WAIT_TOTAL],
          1e3 * me[DPT_TIMING_WAIT0 + DPT_WAIT_GRAD], 1e3 * mx[DPT_TIMING_WAIT0 + DPT_WAIT_GRAD],
          hidden, 1e3 * me[DPT_TIMING_WAIT0 + DPT_WAIT_GATHER],
          1e3 * mx[DPT_TIMING_WAIT0 + DPT_WAIT_GATHER], 1e3 * me[DPT_TIMING_WAIT0 + DPT_WAIT_SMALL],
          1e3 * mx[DPT_TIMING_WAIT0 + DPT_WAIT_SMALL], 1e3 * me[DPT_TIMING_WAIT0 + DPT_WAIT_STATS],
          1e3 * mx[DPT_TIMING_WAIT0 + DPT_WAIT_STATS]);
}

int dpt_train_timing_interval(run *r, const dpt_train_opts *o, const dpt_step_info *info, char *err,
                              size_t errlen) {
  dpt_timing *t = &r->timing;
  if (t->steps == 0) return DPT_OK;
  int end = r->pos.step % o->log_every == 0 || r->pos.step >= r->total_steps || info->stop;
  if (!end) return DPT_OK;
  size_t n = (size_t)r->size * DPT_TIMING_VALUES;
  double *v = calloc(n + DPT_TIMING_VALUES, sizeof *v);
  if (!v) {
    snprintf(err, errlen, "out of memory for %d ranks' timings", r->size);
    return DPT_ENOMEM;
  }
  dpt_timing_table tab = {.step = r->pos.step,
                          .first_step = t->first_step,
                          .steps = t->steps,
                          .ranks = r->size,
                          .values = v,
                          .max = v + n};
  /* each rank fills its own row, the others add zeros: the sum is exact, a gather */
  dpt_timing_take(t, v + (size_t)r->rank * DPT_TIMING_VALUES);
  /* NAN (no window) travels as -1: a sum must not meet a NaN */
  double *mine = v + (size_t)r->rank * DPT_TIMING_VALUES;
  if (isnan(mine[DPT_TIMING_HIDDEN])) mine[DPT_TIMING_HIDDEN] = -1;
  dpt_progress_wait(r->pos.step, "the timings gather");
  int rc = dpt_comm_sum(r->comm, v, (int)n, err, errlen);
  dpt_progress_done();
  if (rc) {
    free(v);
    return DPT_EMPI;
  }
  tab.slowest = 0;
  for (int k = 0; k < r->size; k++) {
    double *row = v + (size_t)k * DPT_TIMING_VALUES;
    if (row[DPT_TIMING_HIDDEN] < 0) row[DPT_TIMING_HIDDEN] = NAN;
    if (row[DPT_TIMING_COMPUTE] > v[(size_t)tab.slowest * DPT_TIMING_VALUES + DPT_TIMING_COMPUTE])
      tab.slowest = k;
    for (int j = 0; j < DPT_TIMING_VALUES; j++)
      if (k == 0 || row[j] > tab.max[j] || isnan(tab.max[j])) tab.max[j] = row[j];
  }
  /* the hidden fraction's worst rank is the smallest */
  tab.hidden_min = NAN;
  for (int k = 0; k < r->size; k++) {
    double h = v[(size_t)k * DPT_TIMING_VALUES + DPT_TIMING_HIDDEN];
    if (!isnan(h) && (isnan(tab.hidden_min) || h < tab.hidden_min)) tab.hidden_min = h;
  }
  dpt_report_timing(r->report, &tab);
  if (r->rank == 0 && o->verbose) log_interval(&tab);
  free(v);
  return DPT_OK;
}

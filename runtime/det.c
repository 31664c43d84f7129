/* det.c — deterministic mode: the step's gradient as an exact sum of micro-shard gradients.
 *
 * The global batch is cut into G fixed micro-shards; whichever rank holds a micro-shard
 * computes its gradient alone (from zero), so its bits do not depend on W. Each micro-shard
 * gradient is converted to fixed point, per tensor t at a scale 2^S_t shared by all ranks, and
 * added into 64-bit integers; integer sums are exact, so neither the split of micro-shards
 * over ranks nor MPI's reduction order can change the result.
 *
 * Invariants:
 * - S_t is a function of the run's history only (the global maxima of earlier steps), never of
 *   W: it is part of the training position and saved in checkpoints.
 * - No sum can overflow: a pass is accepted only if every micro-shard value is below
 *   2^(62 - g) (2^g >= G) after scaling, so the sum of G of them stays below 2^62. A pass that
 *   would break this is redone at a scale chosen from its own (agreed) maxima, which then fits.
 * - The next step's scale keeps HEADROOM bits above this step's largest value: gradients may
 *   grow 2^HEADROOM-fold from one step to the next before a pass has to be redone, and a value
 *   at the maximum keeps 62 - g - HEADROOM bits, far more than a float's 24.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "internal.h"

#define HEADROOM 8

struct dpt_det {
  int ntensors;
  size_t offset[DPT_MAX_TENSORS], numel[DPT_MAX_TENSORS];
  size_t n;
  int log2g;      /* smallest g with 2^g >= G */
  double *scale;  /* S_t per tensor (NAN: not known yet); the caller's storage */
  double *max;    /* this pass: largest |value| per tensor over this rank's micro-shards; then
                     over all ranks. One extra slot counts non-finite values. */
  int64_t *acc;   /* the fixed-point sum, n */
};

int dpt_det_create(const dpt_model *m, int shards, double *scales, dpt_det **out, char *err,
                   size_t errlen) {
  dpt_det *d = calloc(1, sizeof *d);
  if (d) {
    d->max = calloc((size_t)m->ntensors + 1, sizeof *d->max);
    d->acc = malloc((m->nparams ? m->nparams : 1) * sizeof *d->acc);
  }
  if (!d || !d->max || !d->acc) {
    dpt_det_free(d);
    snprintf(err, errlen, "out of memory for the deterministic mode's sums (%zu parameters)",
             m->nparams);
    return DPT_ENOMEM;
  }
  d->ntensors = m->ntensors;
  for (int t = 0; t < m->ntensors; t++) {
    d->offset[t] = m->tensors[t].offset;
    d->numel[t] = m->tensors[t].numel;
  }
  d->n = m->nparams;
  while ((1 << d->log2g) < shards) d->log2g++;
  d->scale = scales;
  *out = d;
  return DPT_OK;
}

void dpt_det_free(dpt_det *d) {
  if (!d) return;
  free(d->max);
  free(d->acc);
  free(d);
}

void dpt_det_begin(dpt_det *d) {
  memset(d->acc, 0, d->n * sizeof *d->acc);
  memset(d->max, 0, ((size_t)d->ntensors + 1) * sizeof *d->max);
}

/* S for a tensor whose largest value is mx > 0: mx * 2^S < 2^(62 - log2g - HEADROOM). */
static double scale_for(const dpt_det *d, double mx) {
  int e;
  frexp(mx, &e); /* mx < 2^e */
  return (double)(62 - d->log2g - HEADROOM - e);
}

void dpt_det_add(dpt_det *d, const float *g) {
  for (int t = 0; t < d->ntensors; t++) {
    const float *x = g + d->offset[t];
    size_t n = d->numel[t];
    float mx = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
      float a = fabsf(x[i]);
      bad |= !(a <= FLT_MAX); /* NaN or Inf */
      mx = a > mx ? a : mx;
    }
    if (bad) d->max[d->ntensors] += 1;
    if ((double)mx > d->max[t]) d->max[t] = mx;
    if (isnan(d->scale[t]) || bad) continue; /* this pass only measures */
    /* values beyond the limit are clamped here; the agreed maxima then redo the pass */
    const double s = ldexp(1.0, (int)d->scale[t]), lim = ldexp(1.0, 62 - d->log2g);
    int64_t *acc = d->acc + d->offset[t];
    for (size_t i = 0; i < n; i++) {
      double v = (double)x[i] * s;
      v = v > lim ? lim : v < -lim ? -lim : v;
      acc[i] += (int64_t)lrint(v);
    }
  }
}

int dpt_det_check(dpt_det *d, MPI_Comm comm, int *nonfinite, char *err, size_t errlen) {
  char cerr[DPT_COMM_ERR_LEN];
  if (dpt_comm_max(comm, d->max, d->ntensors + 1, cerr, sizeof cerr)) {
    snprintf(err, errlen, "%s", cerr);
    return DPT_EMPI;
  }
  *nonfinite = d->max[d->ntensors] > 0;
  if (*nonfinite) return 0;
  int redo = 0;
  for (int t = 0; t < d->ntensors; t++) {
    double mx = d->max[t];
    if (mx == 0) continue;
    if (isnan(d->scale[t]) || mx * ldexp(1.0, (int)d->scale[t]) >= ldexp(1.0, 62 - d->log2g)) {
      d->scale[t] = scale_for(d, mx);
      redo = 1;
    }
  }
  return redo;
}

int dpt_det_finish(dpt_det *d, MPI_Comm comm, float *g, char *err, size_t errlen) {
  char cerr[DPT_COMM_ERR_LEN];
  if (dpt_comm_sum_exact(comm, d->acc, d->n, cerr, sizeof cerr)) {
    snprintf(err, errlen, "%s", cerr);
    return DPT_EMPI;
  }
  for (int t = 0; t < d->ntensors; t++) {
    const int64_t *acc = d->acc + d->offset[t];
    float *x = g + d->offset[t];
    size_t n = d->numel[t];
    if (isnan(d->scale[t])) { /* nothing was ever non-zero here */
      memset(x, 0, n * sizeof *x);
      continue;
    }
    const double inv = ldexp(1.0, -(int)d->scale[t]);
    for (size_t i = 0; i < n; i++) x[i] = (float)((double)acc[i] * inv);
    if (d->max[t] > 0) d->scale[t] = scale_for(d, d->max[t]); /* for the next step */
  }
  return DPT_OK;
}

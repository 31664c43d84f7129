/* layernorm.c — torch.nn.LayerNorm over the last dimension: samples [D] or [T, D], each row of D
 * normalised by its own mean and biased variance, then scaled and shifted.
 *
 * Invariants:
 * - Parameters "<name>.weight" [D] (ones), "<name>.bias" [D] (zeros); option eps (1e-5).
 * - Row statistics are in double (two passes), each sum over DPT_LANES interleaved partial sums
 *   added in lane order (a fixed order that vectorises), y = (x - mean) * rstd * weight + bias
 *   rounded once; forward keeps each row's (mean, rstd) in the scratch. dx = rstd * (g -
 *   mean(g) - xhat * mean(g * xhat)) with g = dy * weight: param_grad (which sums dy * xhat and
 *   dy over the rows in order, in double) also takes each row's mean(g) and mean(g * xhat), in
 *   lanes, and keeps them in the scratch beside the statistics, so backward (which the net calls
 *   after param_grad with the same dy, as attention.c relies on) is one pass. Rows are
 *   independent, so segments do not change anything.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "vmath.h"

typedef struct {
  double eps;
  size_t d;    /* the normalised (last) dimension */
  double *acc; /* [2 * d] the parameter-gradient sums */
} ln_state;

static const char *const ln_keys[] = {"eps", NULL};

static int ln_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  double eps;
  int rc = dpt_layer_opt_known(l, opts, ln_keys, err, errlen);
  if (!rc) rc = dpt_layer_opt_double(l, opts, "eps", 1e-5, 0.0, 1.0, &eps, err, errlen);
  if (rc) return rc;
  if (l->in.rank != 1 && l->in.rank != 2) {
    char got[96];
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: layernorm expects a sample of shape [D] or [T, D], gets %s", l->name,
                    dpt_layer_shape_str(&l->in, got, sizeof got));
  }
  int64_t d[1] = {l->in.dims[l->in.rank - 1]};
  if ((rc = dpt_layer_param(l, "weight", 1, d, err, errlen)) < 0 ||
      (rc = dpt_layer_param(l, "bias", 1, d, err, errlen)) < 0)
    return rc;
  ln_state *s = malloc(sizeof *s);
  double *acc = malloc(2 * (size_t)d[0] * sizeof *acc);
  if (!s || !acc) {
    free(s), free(acc);
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  }
  s->eps = eps, s->d = (size_t)d[0], s->acc = acc;
  l->state = s;
  l->out = l->in;
  return DPT_OK;
}

static void ln_destroy(dpt_layer *l) {
  ln_state *s = l->state;
  if (s) free(s->acc);
  free(s);
  l->state = NULL;
}

static void ln_init(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  (void)rng;
  size_t d = l->tensors[0].numel;
  float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  for (size_t i = 0; i < d; i++) w[i] = 1.0f, b[i] = 0.0f;
}

/* mean and 1 / sqrt(biased var + eps) of one row */
static void row_stats(const float *restrict x, size_t d, double eps, double *mean, double *rstd) {
  double ps[DPT_LANES] = {0}, pq[DPT_LANES] = {0};
  size_t k = 0;
  for (; k + DPT_LANES <= d; k += DPT_LANES)
    for (int j = 0; j < DPT_LANES; j++) ps[j] += (double)x[k + (size_t)j];
  for (int j = 0; k < d; k++, j++) ps[j] += (double)x[k];
  double m = dpt_lanes_total(ps) / (double)d;
  for (k = 0; k + DPT_LANES <= d; k += DPT_LANES)
    for (int j = 0; j < DPT_LANES; j++) {
      double c = (double)x[k + (size_t)j] - m;
      pq[j] += c * c;
    }
  for (int j = 0; k < d; k++, j++) pq[j] += ((double)x[k] - m) * ((double)x[k] - m);
  *mean = m, *rstd = 1.0 / sqrt(dpt_lanes_total(pq) / (double)d + eps);
}

/* A row's (mean, rstd, mean(g), mean(g * xhat)) in the scratch: four doubles in 8 floats
 * (memcpy: the scratch is only float-aligned). Row r of the call's samples from sample `at`. */
#define STAT_FLOATS 8
static size_t ln_scratch(const dpt_layer *l, size_t n) {
  const ln_state *s = l->state;
  return n * (l->in_numel / s->d) * STAT_FLOATS;
}
static float *stat_at(const dpt_layer *l, size_t at, size_t r) {
  const ln_state *s = l->state;
  return l->scratch + (at * (l->in_numel / s->d) + r) * STAT_FLOATS;
}
static void stat_put(float *p, double m, double rs) {
  memcpy(p, &m, sizeof m), memcpy(p + 2, &rs, sizeof rs);
}
static void stat_get(const float *p, double *m, double *rs) {
  memcpy(m, p, sizeof *m), memcpy(rs, p + 2, sizeof *rs);
}

static void ln_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                       const dpt_layer_pass *p) {
  const ln_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  size_t d = s->d, rows = n * (l->in_numel / d);
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    float *yr = y + r * d;
    double m, rs;
    row_stats(xr, d, s->eps, &m, &rs);
    stat_put(stat_at(l, p->at, r), m, rs);
    for (size_t k = 0; k < d; k++) yr[k] = (float)(((double)xr[k] - m) * rs * w[k] + b[k]);
  }
}

static void ln_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                          const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)y;
  const ln_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0);
  size_t d = s->d, rows = n * (l->in_numel / d);
  float *gw = grad + dpt_layer_at(l, 0), *gb = grad + dpt_layer_at(l, 1);
  double *acc = s->acc; /* column sums in double, row by row in order */
  for (size_t k = 0; k < 2 * d; k++) acc[k] = 0.0;
  for (size_t r = 0; r < rows; r++) {
    const float *restrict xr = x + r * d, *restrict dr = dy + r * d;
    float *st = stat_at(l, p->at, r);
    double m, rs, pg[DPT_LANES], pgx[DPT_LANES];
    stat_get(st, &m, &rs);
    dpt_d8 vg = {0}, vgx = {0}; /* lanes j of pg and pgx */
    size_t k = 0;
    for (; k + DPT_LANES <= d; k += DPT_LANES) { /* element k + j into lane j */
      dpt_d8 dd = dpt_widen8(dr + k), xh = (dpt_widen8(xr + k) - m) * rs,
             g = dd * dpt_widen8(w + k);
      dpt_store_d8(acc + k, dpt_load_d8(acc + k) + dd * xh);
      dpt_store_d8(acc + d + k, dpt_load_d8(acc + d + k) + dd);
      vg += g, vgx += g * xh;
    }
    dpt_store_d8(pg, vg), dpt_store_d8(pgx, vgx);
    for (int j = 0; k < d; k++, j++) {
      double xh = ((double)xr[k] - m) * rs, g = (double)dr[k] * w[k];
      acc[k] += (double)dr[k] * xh;
      acc[d + k] += dr[k];
      pg[j] += g, pgx[j] += g * xh;
    }
    double sums[2] = {dpt_lanes_total(pg) / (double)d, dpt_lanes_total(pgx) / (double)d};
    memcpy(st + 4, sums, sizeof sums);
  }
  for (size_t k = 0; k < d; k++) gw[k] += (float)acc[k], gb[k] += (float)acc[d + k];
}

static void ln_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                        const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)y;
  const ln_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0);
  size_t d = s->d, rows = n * (l->in_numel / d);
  for (size_t r = 0; r < rows; r++) {
    const float *restrict xr = x + r * d, *restrict dr = dy + r * d;
    float *restrict out = dx + r * d;
    const float *st = stat_at(l, p->at, r);
    double m, rs, sums[2];
    stat_get(st, &m, &rs);
    memcpy(sums, st + 4, sizeof sums); /* mean(g), mean(g * xhat): param_grad's */
    double sg = sums[0], sgx = sums[1];
    for (size_t k = 0; k < d; k++) {
      double xh = ((double)xr[k] - m) * rs;
      out[k] = (float)(rs * ((double)dr[k] * w[k] - sg - xh * sgx));
    }
  }
}

const dpt_layer_ops dpt_layer_layernorm = {
    .kind = "layernorm",
    .help = "eps=F (1e-5); over the last dimension of [D] or [T, D] samples",
    .setup = ln_setup,
    .init = ln_init,
    .scratch = ln_scratch,
    .forward = ln_forward,
    .param_grad = ln_param_grad,
    .backward = ln_backward,
    .destroy = ln_destroy,
};

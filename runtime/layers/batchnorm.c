/* batchnorm.c — torch.nn.BatchNorm1d ([C] or [C, L] samples) and BatchNorm2d ([C, H, W]) with
 * SyncBatchNorm's semantics: training statistics are those of the global batch, summed across
 * segments and ranks through pass->batch_sum.
 *
 * Invariants:
 * - Parameters "<name>.weight" [C] (ones), "<name>.bias" [C] (zeros); buffers running_mean [C]
 *   (0), running_var [C] (1), num_batches_tracked [1] (0, a float here, int64 in torch).
 * - Training forward: per channel, the global count N and the sums of x - K and (x - K)^2 in
 *   one pass over x and one batch_sum, K = running_mean (the same on every rank; near the
 *   batch mean once it has moved, so E[(x - K)^2] - (mean - K)^2 in double keeps the two-pass
 *   variance's digits; torch's CPU kernel takes two passes); normalising uses the biased
 *   variance, running_var takes the unbiased one (N / (N - 1)), running = (1 - momentum) *
 *   running + momentum * batch, num_batches_tracked += 1; once per training forward (the net
 *   calls a batch kind once per pass).
 * - Backward as torch's (Sync)BatchNorm: the global sums of dy and dy * (x - mean) (one
 *   batch_sum), then dx = (dy - sum_dy / N - (x - mean) * invstd^2 * sum_dyxmu / N) * invstd *
 *   weight. param_grad is per segment: weight += sum dy * xhat, bias += sum dy, with the
 *   forward's global mean and invstd; its per-segment sums of dy and dy * (x - mean) are
 *   backward's rows, so backward (called after the segments' param_grad) reuses them.
 * - Evaluation (pass->train == 0): the running statistics, no buffer changes.
 * - Sums are in double, in a fixed order within a segment (sample by sample, LANES lanes over a
 *   sample's positions); rows are added by batch_sum (or in order here when it is NULL), so a
 *   call split into segments gives the same statistics up to the rounding of the per-segment
 *   partial sums. The elementwise passes are float, in torch's order: y = x * alpha + beta,
 *   dx = (dy - grad_mean - (x - mean) * k) * invstd * weight.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "vmath.h"

#define LANES 16

typedef struct {
  int c;    /* channels */
  size_t l; /* positions per channel in a sample (L, or H * W; 1 for [C]) */
  double eps, momentum;
  double *mean;   /* [c] the last training forward's batch mean */
  double *invstd; /* [c] and 1 / sqrt(biased var + eps) */
  double count;   /* and its global count N (samples * l) */
  double *acc;    /* [2][c][LANES] lane sums of a pass (two per channel), sample-major */
  float *k;       /* [5][c] a pass's per-channel constants */
  int pg_rows;    /* segments whose backward sums param_grad left in the scratch rows since the
                     last training forward (backward then reuses them); -1: none */
} bn_state;

static const char *const bn_keys[] = {"eps", "momentum", NULL};

static int bn_setup_common(dpt_layer *l, const char *opts, int want2d, char *err, size_t errlen) {
  int rc = dpt_layer_opt_known(l, opts, bn_keys, err, errlen);
  double eps, momentum;
  if (!rc) rc = dpt_layer_opt_double(l, opts, "eps", 1e-5, 0.0, 1.0, &eps, err, errlen);
  if (!rc) rc = dpt_layer_opt_double(l, opts, "momentum", 0.1, 0.0, 1.0, &momentum, err, errlen);
  if (rc) return rc;
  int ok = want2d ? l->in.rank == 3 : (l->in.rank == 1 || l->in.rank == 2);
  if (!ok) {
    char got[96];
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: %s expects a sample of shape %s, gets %s",
                    l->name, l->ops->kind, want2d ? "[C, H, W]" : "[C] or [C, L]",
                    dpt_layer_shape_str(&l->in, got, sizeof got));
  }
  int64_t c = l->in.dims[0], cd[1] = {c}, one[1] = {1};
  if ((rc = dpt_layer_param(l, "weight", 1, cd, err, errlen)) < 0 ||
      (rc = dpt_layer_param(l, "bias", 1, cd, err, errlen)) < 0 ||
      (rc = dpt_layer_buffer(l, "running_mean", 1, cd, err, errlen)) < 0 ||
      (rc = dpt_layer_buffer(l, "running_var", 1, cd, err, errlen)) < 0 ||
      (rc = dpt_layer_buffer(l, "num_batches_tracked", 1, one, err, errlen)) < 0)
    return rc;
  if (c > INT32_MAX) return dpt_errf(err, errlen, DPT_EINVAL, "%s: too many channels", l->name);
  bn_state *s = calloc(1, sizeof *s);
  double *m = malloc((2 + 2 * LANES) * (size_t)c * sizeof *m);
  float *k = malloc(5 * (size_t)c * sizeof *k);
  if (!s || !m || !k) {
    free(s), free(m), free(k);
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  }
  s->c = (int)c, s->l = l->in_numel / (size_t)c, s->eps = eps, s->momentum = momentum;
  s->mean = m, s->invstd = m + c, s->acc = m + 2 * c, s->k = k;
  l->state = s;
  l->out = l->in;
  return DPT_OK;
}

static int bn1d_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  return bn_setup_common(l, opts, 0, err, errlen);
}
static int bn2d_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  return bn_setup_common(l, opts, 1, err, errlen);
}

static void bn_destroy(dpt_layer *l) {
  bn_state *s = l->state;
  if (s) free(s->mean), free(s->k);
  free(s);
  l->state = NULL;
}

static void bn_init(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  (void)rng;
  size_t c = l->tensors[0].numel;
  float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  for (size_t i = 0; i < c; i++) w[i] = 1.0f, b[i] = 0.0f;
}

static void bn_reset(dpt_layer *l) {
  bn_state *s = l->state;
  float *rm = dpt_layer_buf(l, 0), *rv = dpt_layer_buf(l, 1), *nb = dpt_layer_buf(l, 2);
  for (int i = 0; i < s->c; i++) rm[i] = 0.0f, rv[i] = 1.0f;
  nb[0] = 0.0f;
}

/* Scratch: nseg rows of 2C + 1 doubles for batch_sum (nseg <= n), as floats plus one for the
 * alignment of doubles. */
static size_t bn_scratch(const dpt_layer *l, size_t n) {
  const bn_state *s = l->state;
  return 2 * (n ? n : 1) * (2 * (size_t)s->c + 1) + 2;
}

static double *bn_rows(const dpt_layer *l) {
  uintptr_t a = (uintptr_t)l->scratch;
  a = (a + sizeof(double) - 1) & ~(uintptr_t)(sizeof(double) - 1);
  return (double *)a;
}

/* v[0, len) = the sum of the nseg rows: through batch_sum (global), or here in order. */
static void bn_sum(const dpt_layer_pass *p, double *v, size_t len, int nseg) {
  if (p->batch_sum) {
    p->batch_sum(p->batch_ctx, v, len, nseg);
    return;
  }
  for (int j = 1; j < nseg; j++)
    for (size_t k = 0; k < len; k++) v[k] += v[(size_t)j * len + k];
}

static int bn_nseg(const dpt_layer_pass *p, size_t n, size_t *seg) {
  int nseg = p->nseg > 0 ? p->nseg : 1;
  *seg = p->seg ? p->seg : n / (size_t)nseg;
  return nseg;
}

/* --- sums in double over a run of L values, in LANES lanes (element k of a run into lane
 * k % LANES; the tail of a run from lane 0; the lanes added pairwise by lanes_total): a fixed
 * order that the compiler keeps in vector registers. A pass goes sample by sample, each
 * sample's channels in turn (one stream through memory), each channel's lanes kept in
 * bn_state.acc between samples: per channel the same additions in the same order as a loop over
 * the channel's runs alone. --- */

static double lanes_total(double a[LANES]) {
  for (int w = LANES / 2; w; w /= 2)
    for (int r = 0; r < w; r++) a[r] += a[r + w];
  return a[0];
}

/* Lanes 0-7 and 8-15 as two of vmath.h's vectors of 8 doubles (the same element-wise additions
 * as an array of LANES, which GCC 12 left half scalar). */
_Static_assert(LANES == 2 * DPT_LANES, "two vectors of lanes");

/* a += x - m, q += (x - m)^2 */
static void lanes_sum_sq(double *restrict a, double *restrict q, const float *restrict x, size_t L,
                         double m) {
  dpt_d8 v[4]; /* a[0, 8), a[8, 16), q[0, 8), q[8, 16) */
  memcpy(&v[0], a, 2 * sizeof v[0]), memcpy(&v[2], q, 2 * sizeof v[0]);
  size_t k = 0;
  for (; k + LANES <= L; k += LANES) {
    dpt_d8 d0 = dpt_widen8(x + k) - m, d1 = dpt_widen8(x + k + 8) - m;
    v[0] += d0, v[1] += d1, v[2] += d0 * d0, v[3] += d1 * d1;
  }
  memcpy(a, &v[0], 2 * sizeof v[0]), memcpy(q, &v[2], 2 * sizeof v[0]);
  for (size_t r = 0; k < L; k++, r++) {
    double d = (double)x[k] - m;
    a[r] += d, q[r] += d * d;
  }
}

/* a += dy, b += dy * (x - m) */
static void lanes_dot(double *restrict a, double *restrict b, const float *restrict x,
                      const float *restrict dy, size_t L, double m) {
  dpt_d8 v[4]; /* a[0, 8), a[8, 16), b[0, 8), b[8, 16) */
  memcpy(&v[0], a, 2 * sizeof v[0]), memcpy(&v[2], b, 2 * sizeof v[0]);
  size_t k = 0;
  for (; k + LANES <= L; k += LANES) {
    dpt_d8 g0 = dpt_widen8(dy + k), g1 = dpt_widen8(dy + k + 8);
    v[0] += g0, v[1] += g1;
    v[2] += g0 * (dpt_widen8(x + k) - m), v[3] += g1 * (dpt_widen8(x + k + 8) - m);
  }
  memcpy(a, &v[0], 2 * sizeof v[0]), memcpy(b, &v[2], 2 * sizeof v[0]);
  for (size_t r = 0; k < L; k++, r++) {
    a[r] += dy[k];
    b[r] += (double)dy[k] * ((double)x[k] - m);
  }
}

/* y = x * alpha[ch] + beta[ch] over n samples, sample by sample, in float as torch's
 * batch_norm_cpu_transform_input (alpha = invstd * weight, beta = bias - mean * alpha); with
 * relu, a following ReLU's max(y, 0) too, as act.c's (l->relu_out: the net fused it) */
static void transform(const float *x, float *y, size_t n, size_t c, size_t L, const float *alpha,
                      const float *beta, int relu) {
  for (size_t i = 0; i < n * c; i++) {
    const float *restrict xs = x + i * L;
    float *restrict ys = y + i * L;
    float a = alpha[i % c], b = beta[i % c];
    if (relu)
      for (size_t k = 0; k < L; k++) {
        float t = xs[k] * a + b;
        ys[k] = t <= 0.0f ? 0.0f : t;
      }
    else
      for (size_t k = 0; k < L; k++) ys[k] = xs[k] * a + b;
  }
}

/* The lanes of samples [i0, i1): acc[ch] += the sums of x - m[ch] and acc[c + ch] of its
 * squares (sq), or of dy and dy * (x - m[ch]) (dot), channel by channel within a sample. */
static void pass_sums(const bn_state *s, const float *x, const float *dy, size_t i0, size_t i1,
                      const double *m, const float *mf) {
  size_t c = (size_t)s->c, L = s->l;
  double *acc = s->acc;
  for (size_t i = i0; i < i1; i++)
    for (size_t ch = 0; ch < c; ch++) {
      size_t at = (i * c + ch) * L;
      double mc = m ? m[ch] : (double)mf[ch];
      if (dy)
        lanes_dot(acc + ch * LANES, acc + (c + ch) * LANES, x + at, dy + at, L, mc);
      else
        lanes_sum_sq(acc + ch * LANES, acc + (c + ch) * LANES, x + at, L, mc);
    }
}

static void zero_sums(const bn_state *s) {
  memset(s->acc, 0, 2 * (size_t)s->c * LANES * sizeof *s->acc);
}

static void bn_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                       const dpt_layer_pass *p) {
  bn_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  size_t c = (size_t)s->c, L = s->l;
  float *rm = dpt_layer_buf(l, 0), *rv = dpt_layer_buf(l, 1), *nb = dpt_layer_buf(l, 2);
  float *alpha = s->k, *beta = s->k + c;
  if (!p->train) {
    for (size_t ch = 0; ch < c; ch++) {
      alpha[ch] = (float)(1.0 / sqrt((double)rv[ch] + s->eps)) * w[ch];
      beta[ch] = b[ch] - rm[ch] * alpha[ch];
    }
    transform(x, y, n, c, L, alpha, beta, l->relu_out);
    return;
  }
  size_t seg;
  int nseg = bn_nseg(p, n, &seg);
  double *v = bn_rows(l);
  size_t len = 2 * c + 1;
  /* one pass: per segment, the sums of x - K and (x - K)^2 per channel and the count, shifted
   * by K = running_mean (the same on every rank and segment, and near the batch mean once it
   * has moved, so the variance E[(x-K)^2] - (mean-K)^2 loses nothing in double) */
  for (int j = 0; j < nseg; j++) {
    double *row = v + (size_t)j * len;
    zero_sums(s);
    pass_sums(s, x, NULL, (size_t)j * seg, (size_t)(j + 1) * seg, NULL, rm);
    for (size_t ch = 0; ch < c; ch++)
      row[ch] = lanes_total(s->acc + ch * LANES),
      row[c + ch] = lanes_total(s->acc + (c + ch) * LANES);
    row[2 * c] = (double)(seg * L);
  }
  bn_sum(p, v, len, nseg);
  double count = v[2 * c];
  s->count = count;
  double div = count > 0 ? count : 1.0; /* an empty batch: mean 0 */
  for (size_t ch = 0; ch < c; ch++) {
    double d = v[ch] / div, m2 = v[c + ch] / div - d * d;
    s->mean[ch] = (double)rm[ch] + d;
    v[ch] = count > 0 && m2 > 0 ? m2 * count : 0.0; /* the sum of (x - mean)^2 */
  }
  double mom = s->momentum;
  for (size_t ch = 0; ch < c; ch++) {
    double var = count > 0 ? v[ch] / count : 0.0;
    double unbiased = count > 1 ? v[ch] / (count - 1.0) : var;
    s->invstd[ch] = 1.0 / sqrt(var + s->eps);
    rm[ch] = (float)(mom * s->mean[ch] + (1.0 - mom) * (double)rm[ch]);
    rv[ch] = (float)(mom * unbiased + (1.0 - mom) * (double)rv[ch]);
    alpha[ch] = (float)s->invstd[ch] * w[ch];
    beta[ch] = b[ch] - (float)s->mean[ch] * alpha[ch];
  }
  transform(x, y, n, c, L, alpha, beta, l->relu_out);
  nb[0] += 1.0f;
  s->pg_rows = 0;
}

/* In a training pass, segment by segment: the sums of dy and dy * (x - mean) are also those
 * backward reduces, so each segment's row is left in the scratch for it (rows in segment order,
 * as backward lays them out). */
static void bn_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                          const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y;
  bn_state *s = l->state;
  size_t c = (size_t)s->c;
  float *gw = grad + dpt_layer_at(l, 0), *gb = grad + dpt_layer_at(l, 1);
  const float *rm = dpt_layer_buf(l, 0), *rv = dpt_layer_buf(l, 1);
  /* segment j starts at sample p->at = j * n of the pass, so row j lies within the scratch */
  double *row = p->train && s->pg_rows >= 0 && n ? bn_rows(l) + p->at / n * 2 * c : NULL;
  /* xhat with the statistics forward used: sum dy, sum dy * (x - mean) */
  zero_sums(s);
  pass_sums(s, x, dy, 0, n, p->train ? s->mean : NULL, rm);
  for (size_t ch = 0; ch < c; ch++) {
    double inv = p->train ? s->invstd[ch] : 1.0 / sqrt((double)rv[ch] + s->eps);
    double sa = lanes_total(s->acc + ch * LANES), sb = lanes_total(s->acc + (c + ch) * LANES);
    gw[ch] += (float)(sb * inv); /* sum dy * xhat */
    gb[ch] += (float)sa;
    if (row) row[ch] = sa, row[c + ch] = sb;
  }
  if (row) s->pg_rows++;
}

/* Training backward's dx = (dy - gm[ch] - (x - m[ch]) * k2[ch]) * inv[ch] * wf[ch] over n
 * samples, sample by sample (s->k: the [5][c] constants m, inv, wf, k2, gm). */
static void bn_dx(const bn_state *s, const float *x, const float *dy, float *dx, size_t n) {
  size_t c = (size_t)s->c, L = s->l;
  const float *k = s->k;
  for (size_t i = 0; i < n * c; i++) {
    size_t ch = i % c;
    float m = k[ch], inv = k[c + ch], wf = k[2 * c + ch], k2 = k[3 * c + ch], gm = k[4 * c + ch];
    const float *restrict xs = x + i * L, *restrict dys = dy + i * L;
    float *restrict dxs = dx + i * L;
    for (size_t q = 0; q < L; q++) dxs[q] = (dys[q] - gm - (xs[q] - m) * k2) * inv * wf;
  }
}

static void bn_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                        const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)y;
  bn_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0);
  size_t c = (size_t)s->c, L = s->l;
  if (!p->train) { /* evaluation statistics are constants: dx = dy * weight * invstd */
    const float *rv = dpt_layer_buf(l, 1);
    for (size_t i = 0; i < n * c; i++) {
      size_t ch = i % c;
      float inv = (float)(1.0 / sqrt((double)rv[ch] + s->eps)), wf = w[ch];
      for (size_t q = 0; q < L; q++) dx[i * L + q] = dy[i * L + q] * inv * wf;
    }
    return;
  }
  size_t seg;
  int nseg = bn_nseg(p, n, &seg);
  double *v = bn_rows(l);
  size_t len = 2 * c;
  if (s->pg_rows != nseg) /* param_grad did not leave every segment's sums: compute them */
    for (int j = 0; j < nseg; j++) {
      double *row = v + (size_t)j * len;
      zero_sums(s);
      pass_sums(s, x, dy, (size_t)j * seg, (size_t)(j + 1) * seg, s->mean, NULL);
      for (size_t ch = 0; ch < c; ch++)
        row[ch] = lanes_total(s->acc + ch * LANES),
        row[c + ch] = lanes_total(s->acc + (c + ch) * LANES);
    }
  s->pg_rows = -1;
  bn_sum(p, v, len, nseg);
  /* in float as torch's batch_norm_cpu_backward: k = dotp * invstd^2 / N, gi = (x - mean) * k,
   * dx = (dy - grad_mean - gi) * invstd * weight */
  float count = s->count > 0 ? (float)s->count : 1.0f, *k = s->k;
  for (size_t ch = 0; ch < c; ch++) {
    float inv = (float)s->invstd[ch];
    k[ch] = (float)s->mean[ch], k[c + ch] = inv, k[2 * c + ch] = w[ch];
    k[3 * c + ch] = (float)v[c + ch] * inv * inv / count, k[4 * c + ch] = (float)v[ch] / count;
  }
  bn_dx(s, x, dy, dx, n);
}

#define BN(NAME, SETUP, HELP)                                                                      \
  const dpt_layer_ops dpt_layer_##NAME = {.kind = #NAME,                                           \
                                          .help = HELP,                                            \
                                          .batch = 1,                                              \
                                          .fuse_relu = 1,                                          \
                                          .setup = SETUP,                                          \
                                          .init = bn_init,                                         \
                                          .reset = bn_reset,                                       \
                                          .scratch = bn_scratch,                                   \
                                          .forward = bn_forward,                                   \
                                          .param_grad = bn_param_grad,                             \
                                          .backward = bn_backward,                                 \
                                          .destroy = bn_destroy};
BN(batchnorm1d, bn1d_setup,
   "eps=F (1e-5), momentum=F (0.1); samples [C] or [C, L]; SyncBatchNorm over the global batch")
BN(batchnorm2d, bn2d_setup,
   "eps=F (1e-5), momentum=F (0.1); samples [C, H, W]; SyncBatchNorm over the global batch")

/* linear.c — torch.nn.Linear: y = x W^T + b on the flattened sample, with cblas_sgemm; with
 * last=1 on the last dimension of a [..., K] sample (torch's semantics: [T, C] -> [T, out], every
 * row alike), as attention models need.
 *
 * Invariants:
 * - Parameters "<name>.weight" [out, in] then "<name>.bias" [out], contiguous; initialised as
 *   torch does: both uniform in [-1/sqrt(in), 1/sqrt(in)], weight first.
 * - param_grad touches each element of its range exactly once per call; the bias gradient is
 *   summed in double in row order, so it does not depend on the batch's chunking.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

typedef struct {
  double *bacc; /* [out] bias-gradient sums */
  size_t rows;  /* rows per sample: 1 (flattened) or the product of all but the last dim */
} linear_state;

static int linear_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  long out, last;
  int rc = dpt_layer_opt_long(l, opts, "out", -1, &out, err, errlen);
  if (!rc) rc = dpt_layer_opt_count(l, opts, "last", 0, &last, err, errlen);
  if (rc) return rc;
  if (last > 1 || (last && l->in.rank < 1)) {
    snprintf(err, errlen, "%s: option last=%ld (expected 0 or 1, and 1 needs a shaped sample)",
             l->name, last);
    return DPT_EINVAL;
  }
  size_t k = last ? (size_t)l->in.dims[l->in.rank - 1] : l->in_numel;
  if (k > INT_MAX) {
    snprintf(err, errlen, "%s: %zu input features is too many (at most %d)", l->name, k, INT_MAX);
    return DPT_EINVAL;
  }
  int64_t wdims[2] = {out, (int64_t)k}, bdims[1] = {out};
  if ((rc = dpt_layer_param(l, "weight", 2, wdims, err, errlen)) < 0) return rc;
  if ((rc = dpt_layer_param(l, "bias", 1, bdims, err, errlen)) < 0) return rc;
  linear_state *s = malloc(sizeof *s);
  double *bacc = malloc((size_t)out * sizeof *bacc);
  if (!s || !bacc) {
    free(s), free(bacc);
    snprintf(err, errlen, "%s: out of memory", l->name);
    return DPT_ENOMEM;
  }
  s->bacc = bacc;
  s->rows = l->in_numel / k;
  l->state = s;
  if (last) {
    l->out = l->in;
    l->out.dims[l->out.rank - 1] = out;
  } else {
    l->out.rank = 1;
    l->out.dims[0] = out;
  }
  return DPT_OK;
}

static void linear_destroy(dpt_layer *l) {
  linear_state *s = l->state;
  if (s) free(s->bacc);
  free(s);
  l->state = NULL;
}

static void linear_init(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  double bound = 1.0 / sqrt((double)l->tensors[0].dims[1]); /* fan-in */
  for (int t = 0; t < 2; t++) {
    float *p = params + dpt_layer_at(l, t);
    for (size_t i = 0; i < l->tensors[t].numel; i++)
      p[i] = (float)((2.0 * rng->uniform(rng->ctx) - 1.0) * bound);
  }
}

static void linear_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                           const dpt_layer_pass *p) {
  (void)p;
  n *= ((linear_state *)l->state)->rows; /* rows of the products */
  const float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  int out = (int)l->tensors[0].dims[0], k = (int)l->tensors[0].dims[1];
  for (size_t i = 0; i < n; i++) memcpy(y + i * (size_t)out, b, (size_t)out * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, k, 1.0f, x, k, w, k, 1.0f, y,
              out);
}

static void linear_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                              const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  n *= ((linear_state *)l->state)->rows;
  int out = (int)l->tensors[0].dims[0], k = (int)l->tensors[0].dims[1];
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, k, (int)n, 1.0f, dy, out, x, k, 1.0f,
              grad + dpt_layer_at(l, 0), k);
  /* gb[j] += sum over rows of dy[:, j], summed in double in row order */
  double *acc = ((linear_state *)l->state)->bacc;
  float *gb = grad + dpt_layer_at(l, 1);
  for (int j = 0; j < out; j++) acc[j] = 0.0;
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j < out; j++) acc[j] += dy[i * (size_t)out + (size_t)j];
  for (int j = 0; j < out; j++) gb[j] += (float)acc[j];
}

static void linear_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                            const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)x, (void)y, (void)p;
  n *= ((linear_state *)l->state)->rows;
  int out = (int)l->tensors[0].dims[0], k = (int)l->tensors[0].dims[1];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, k, out, 1.0f, dy, out,
              params + dpt_layer_at(l, 0), k, 0.0f, dx, k);
}

const dpt_layer_ops dpt_layer_linear = {
    .kind = "linear",
    .help = "out=N (output features; the input is flattened), last=1 (on the last dimension "
            "instead, as torch's nn.Linear)",
    .setup = linear_setup,
    .init = linear_init,
    .forward = linear_forward,
    .param_grad = linear_param_grad,
    .backward = linear_backward,
    .destroy = linear_destroy,
};

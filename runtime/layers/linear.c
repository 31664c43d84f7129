/* linear.c — torch.nn.Linear: y = x W^T + b on the flattened sample, with cblas_sgemm; with
 * last=1 on the last dimension of a [..., K] sample (torch's semantics: [T, C] -> [T, out], every
 * row alike), as attention models need.
 *
 * Options bias=0 (no bias, nn.Linear(..., bias=False)) and tie=LAYER (the weight is LAYER's
 * "weight", e.g. the token embedding's [V, C] for a GPT's lm_head: nanoGPT's weight tying).
 *
 * Invariants:
 * - Parameters "<name>.weight" [out, in] (unless tied) then "<name>.bias" [out] (unless
 *   bias=0), contiguous; initialised as torch does: both uniform in [-1/sqrt(in), 1/sqrt(in)],
 *   weight first (a tied weight is its owner's to draw).
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
  int out, k;   /* the weight's [out, k] */
  int wt, bt;   /* the weight's and the bias's index in l->tensors; -1: tied / no bias */
} linear_state;

static const char *const linear_keys[] = {"out", "last", "bias", "tie", NULL};

/* The weight's values and gradient: the layer's own, or the tied tensor's. */
static const float *weight(const dpt_layer *l, const float *params) {
  const linear_state *s = l->state;
  return s->wt < 0 ? l->tied : params + dpt_layer_at(l, s->wt);
}
static float *weight_grad(const dpt_layer *l, float *grad) {
  const linear_state *s = l->state;
  return s->wt < 0 ? l->tied_grad : grad + dpt_layer_at(l, s->wt);
}

static int linear_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  long out, last, bias;
  int rc = dpt_layer_opt_known(l, opts, linear_keys, err, errlen);
  if (!rc) rc = dpt_layer_opt_long(l, opts, "out", -1, &out, err, errlen);
  if (!rc) rc = dpt_layer_opt_count(l, opts, "last", 0, &last, err, errlen);
  if (!rc) rc = dpt_layer_opt_count(l, opts, "bias", 1, &bias, err, errlen);
  if (rc) return rc;
  if (bias > 1) {
    snprintf(err, errlen, "%s: option bias=%ld (expected 0 or 1)", l->name, bias);
    return DPT_EINVAL;
  }
  size_t tlen = 0;
  const char *tie = dpt_layer_opt_text(opts, "tie", &tlen);
  char from[128] = "";
  if (tie && (tlen == 0 || tlen >= sizeof from)) {
    snprintf(err, errlen, "%s: option tie='%.*s' (expected the name of an earlier layer)", l->name,
             (int)(tlen < 100 ? tlen : 100), tie);
    return DPT_EINVAL;
  }
  if (tie) memcpy(from, tie, tlen), from[tlen] = 0;
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
  int wt = -1, bt = -1;
  if (tie)
    rc = dpt_layer_tie(l, from, "weight", 2, wdims, err, errlen);
  else
    rc = wt = dpt_layer_param(l, "weight", 2, wdims, err, errlen);
  if (rc < 0) return rc;
  if (bias && (bt = dpt_layer_param(l, "bias", 1, bdims, err, errlen)) < 0) return bt;
  linear_state *s = malloc(sizeof *s);
  double *bacc = malloc((size_t)out * sizeof *bacc);
  if (!s || !bacc) {
    free(s), free(bacc);
    snprintf(err, errlen, "%s: out of memory", l->name);
    return DPT_ENOMEM;
  }
  s->bacc = bacc;
  s->rows = l->in_numel / k;
  s->out = (int)out, s->k = (int)k, s->wt = wt, s->bt = bt;
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
  const linear_state *s = l->state;
  double bound = 1.0 / sqrt((double)s->k); /* fan-in */
  for (int t = 0; t < l->ntensors; t++) {  /* weight (unless tied), bias (unless bias=0) */
    float *p = params + dpt_layer_at(l, t);
    for (size_t i = 0; i < l->tensors[t].numel; i++)
      p[i] = (float)((2.0 * rng->uniform(rng->ctx) - 1.0) * bound);
  }
}

static void linear_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                           const dpt_layer_pass *p) {
  (void)p;
  const linear_state *s = l->state;
  n *= s->rows; /* rows of the products */
  const float *w = weight(l, params);
  int out = s->out, k = s->k;
  if (s->bt >= 0) {
    const float *b = params + dpt_layer_at(l, s->bt);
    for (size_t i = 0; i < n; i++) memcpy(y + i * (size_t)out, b, (size_t)out * sizeof(float));
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, k, 1.0f, x, k, w, k,
              s->bt >= 0 ? 1.0f : 0.0f, y, out);
}

static void linear_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                              const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  const linear_state *s = l->state;
  n *= s->rows;
  int out = s->out, k = s->k;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, k, (int)n, 1.0f, dy, out, x, k, 1.0f,
              weight_grad(l, grad), k);
  if (s->bt < 0) return;
  /* gb[j] += sum over rows of dy[:, j], summed in double in row order */
  double *acc = s->bacc;
  float *gb = grad + dpt_layer_at(l, s->bt);
  for (int j = 0; j < out; j++) acc[j] = 0.0;
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j < out; j++) acc[j] += dy[i * (size_t)out + (size_t)j];
  for (int j = 0; j < out; j++) gb[j] += (float)acc[j];
}

static void linear_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                            const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)x, (void)y, (void)p;
  const linear_state *s = l->state;
  n *= s->rows;
  int out = s->out, k = s->k;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, k, out, 1.0f, dy, out,
              weight(l, params), k, 0.0f, dx, k);
}

const dpt_layer_ops dpt_layer_linear = {
    .kind = "linear",
    .help = "out=N (output features; the input is flattened), last=1 (on the last dimension "
            "instead, as torch's nn.Linear), bias=0 (none), tie=LAYER (the weight is LAYER's "
            "weight)",
    .setup = linear_setup,
    .init = linear_init,
    .forward = linear_forward,
    .param_grad = linear_param_grad,
    .backward = linear_backward,
    .destroy = linear_destroy,
};

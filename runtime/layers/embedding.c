/* embedding.c — torch.nn.Embedding: a sample of token ids [T] (floats holding integers; any
 * shape) becomes their rows of the table, [T, D].
 *
 * Invariants:
 * - Parameter "<name>.weight" [V, D], initialised N(0, 1) as torch's nn.Embedding (N(0, std^2)
 *   with option std; nanoGPT draws 0.02): each value from two of the model stream's uniforms by
 * Box-Muller, sqrt(-2 log(1 - u1)) cos(2 pi u2), as runtime's dpt_rng_normal (the values are not
 * torch's: its generator differs).
 * - An id that is not an integer in [0, V) cannot be reported from a pass: its output row is
 *   NaN (so the loss shows it) and it adds no gradient.
 * - param_grad adds dy's rows into the weight rows of their ids in sample order, then
 *   position order (deterministic); the input gets no gradient (zeros).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

static const char *const emb_keys[] = {"num", "dim", "std", NULL};

static int emb_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  long v, d;
  int rc = dpt_layer_opt_known(l, opts, emb_keys, err, errlen);
  if (!rc) rc = dpt_layer_opt_long(l, opts, "num", -1, &v, err, errlen);
  if (!rc) rc = dpt_layer_opt_long(l, opts, "dim", -1, &d, err, errlen);
  if (rc) return rc;
  if (l->in.rank >= DPT_MAX_RANK) {
    char got[96];
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: embedding input %s has too many dimensions",
                    l->name, dpt_layer_shape_str(&l->in, got, sizeof got));
  }
  int64_t dims[2] = {v, d};
  if ((rc = dpt_layer_param(l, "weight", 2, dims, err, errlen)) < 0) return rc;
  if ((rc = dpt_layer_opt_std(l, opts, err, errlen))) return rc;
  l->out = l->in;
  l->out.dims[l->out.rank++] = d;
  return DPT_OK;
}

/* The row of id x, or -1 when x is not an integer in [0, v). */
static int64_t row_of(float x, int64_t v) {
  if (!(x >= 0.0f) || !(x < (float)v) || x != floorf(x)) return -1;
  int64_t r = (int64_t)x;
  return r < v ? r : -1;
}

static void emb_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                        const dpt_layer_pass *p) {
  (void)p;
  const float *w = params + dpt_layer_at(l, 0);
  int64_t v = l->tensors[0].dims[0];
  size_t d = (size_t)l->tensors[0].dims[1], t = n * l->in_numel;
  for (size_t i = 0; i < t; i++) {
    int64_t r = row_of(x[i], v);
    if (r >= 0)
      memcpy(y + i * d, w + (size_t)r * d, d * sizeof *y);
    else
      for (size_t k = 0; k < d; k++) y[i * d + k] = NAN;
  }
}

static void emb_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                           const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  float *g = grad + dpt_layer_at(l, 0);
  int64_t v = l->tensors[0].dims[0];
  size_t d = (size_t)l->tensors[0].dims[1], t = n * l->in_numel;
  for (size_t i = 0; i < t; i++) {
    int64_t r = row_of(x[i], v);
    if (r < 0) continue;
    float *gr = g + (size_t)r * d;
    for (size_t k = 0; k < d; k++) gr[k] += dy[i * d + k];
  }
}

static void emb_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                         const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)x, (void)y, (void)dy, (void)p;
  memset(dx, 0, n * l->in_numel * sizeof *dx); /* ids are not differentiable */
}

const dpt_layer_ops dpt_layer_embedding = {
    .kind = "embedding",
    .help = "num=V (table rows), dim=D, std=F (initial N(0, F^2); 1); samples of token ids [T] -> "
            "[T, D]",
    .setup = emb_setup,
    .destroy = dpt_layer_free_state,
    .init = dpt_layer_init_normal,
    .forward = emb_forward,
    .param_grad = emb_param_grad,
    .backward = emb_backward,
};

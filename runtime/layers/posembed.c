/* posembed.c — learned position embeddings added to a [T, C] sample: y[t, c] = x[t, c] +
 * weight[t, c], GPT-2's `tok_emb + wpe(arange(T))` as one layer.
 *
 * Invariants:
 * - Parameter "<name>.weight" [T, C], the weight of torch's nn.Embedding(T, C) (so a
 *   checkpoint loads into it), initialised N(0, 1) (option std: N(0, std^2)) from the model
 *   stream as embedding.c does.
 * - forward is one float add per element (bitwise torch's x + wpe); backward passes dy through
 *   in place; param_grad adds dy of each sample into weight in sample order (deterministic).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

static const char *const pos_keys[] = {"std", NULL};

static int pos_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  int rc = dpt_layer_opt_known(l, opts, pos_keys, err, errlen);
  if (rc) return rc;
  if (l->in.rank != 2) {
    char got[96];
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: posembed expects a [T, C] input, gets %s",
                    l->name, dpt_layer_shape_str(&l->in, got, sizeof got));
  }
  int64_t dims[2] = {l->in.dims[0], l->in.dims[1]};
  if ((rc = dpt_layer_param(l, "weight", 2, dims, err, errlen)) < 0) return rc;
  if ((rc = dpt_layer_opt_std(l, opts, err, errlen))) return rc;
  l->out = l->in;
  return DPT_OK;
}

static void pos_forward(dpt_layer *l, const float *params, const float *restrict x,
                        float *restrict y, size_t n, const dpt_layer_pass *p) {
  (void)p;
  const float *restrict w = params + dpt_layer_at(l, 0);
  size_t m = l->in_numel;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < m; j++) y[i * m + j] = x[i * m + j] + w[j];
}

static void pos_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                           const float *restrict dy, float *grad, size_t n,
                           const dpt_layer_pass *p) {
  (void)params, (void)x, (void)y, (void)p;
  float *restrict g = grad + dpt_layer_at(l, 0);
  size_t m = l->in_numel;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < m; j++) g[j] += dy[i * m + j];
}

static void pos_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                         const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)l, (void)params, (void)x, (void)y, (void)dy, (void)dx, (void)n, (void)p; /* dx == dy */
}

const dpt_layer_ops dpt_layer_posembed = {
    .kind = "posembed",
    .help = "std=F (initial N(0, F^2); 1); adds a learned [T, C] position embedding to a [T, C] "
            "input",
    .elementwise = 1,
    .setup = pos_setup,
    .destroy = dpt_layer_free_state,
    .init = dpt_layer_init_normal,
    .forward = pos_forward,
    .param_grad = pos_param_grad,
    .backward = pos_backward,
};

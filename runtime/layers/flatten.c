/* flatten.c — torch.nn.Flatten (start_dim=1): a sample of any shape becomes [numel]; forward
 * and backward are copies, so both are bitwise. */
#include <stdio.h>
#include <string.h>

#include "layers.h"

static int flatten_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  if (opts && opts[0]) {
    snprintf(err, errlen, "%s: flatten takes no options (got '%s')", l->name, opts);
    return DPT_EINVAL;
  }
  l->out.rank = 1;
  l->out.dims[0] = (int64_t)l->in_numel;
  return DPT_OK;
}

static void flatten_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                            const dpt_layer_pass *p) {
  (void)params, (void)p;
  memcpy(y, x, n * l->in_numel * sizeof *y);
}

static void flatten_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                             const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)x, (void)y, (void)p;
  memcpy(dx, dy, n * l->in_numel * sizeof *dx);
}

const dpt_layer_ops dpt_layer_flatten = {
    .kind = "flatten",
    .help = "no options: [C, H, W] (any shape) -> [C*H*W]",
    .setup = flatten_setup,
    .forward = flatten_forward,
    .backward = flatten_backward,
};

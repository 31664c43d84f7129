/* add.c — the residual add: y = x + s, where s is the output of an earlier layer (from=NAME)
 * or the net's input (from=input), through dpt_layer_skip.
 *
 * Invariants: forward is one float add per element and backward passes dy unchanged to both
 * inputs (dx == dy in place; dy added into the net's accumulator for s), so both are bitwise
 * torch's x + s and its gradients.
 */
#include <stdio.h>
#include <string.h>

#include "layers.h"

static const char *const add_keys[] = {"from", NULL};

static int add_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  int rc = dpt_layer_opt_known(l, opts, add_keys, err, errlen);
  if (rc) return rc;
  size_t len = 0;
  const char *from = dpt_layer_opt_text(opts, "from", &len);
  char name[256];
  if (!from || len == 0 || len >= sizeof name)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: option 'from' is missing (expected %s)", l->name,
                    l->ops->help);
  memcpy(name, from, len);
  name[len] = 0;
  return dpt_layer_skip(l, name, err, errlen);
}

static void add_forward(dpt_layer *l, const float *params, const float *restrict x,
                        float *restrict y, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)p;
  const float *restrict s = l->skip_x;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) y[i] = x[i] + s[i];
}

static void add_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                         const float *restrict dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)x, (void)y, (void)dx, (void)p; /* dx == dy: the first input's gradient */
  float *restrict ds = l->skip_dx;                   /* NULL: the net's input */
  size_t len = n * l->in_numel;
  for (size_t i = 0; ds && i < len; i++) ds[i] += dy[i];
}

const dpt_layer_ops dpt_layer_add = {
    .kind = "add",
    .help = "from=NAME (adds the output of the earlier layer NAME, or the net's input with "
            "from=input; same shape)",
    .elementwise = 1,
    .setup = add_setup,
    .forward = add_forward,
    .backward = add_backward,
};

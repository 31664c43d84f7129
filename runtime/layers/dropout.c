/* dropout.c — torch.nn.Dropout with a mask that is a function of (seed, step, global sample,
 * layer, element), so it is the same whatever the number of ranks or segments.
 *
 * Invariants:
 * - Training: element j of sample i is kept iff dpt_layer_hash_uniform(seed, step, sample0 + i,
 *   index, j) >= p, and y = x * noise with noise = keep / (1 - p) computed as torch's
 *   noise.bernoulli_(1 - p).div_(1 - p) (a float 1 divided by the float 1 - p); backward is
 *   dy * noise. Both are bitwise what torch computes from the same mask.
 * - Evaluation (pass->train == 0) and p = 0: identity (a copy), as torch.
 * - No parameters, no scratch: backward draws the mask again from the pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

typedef struct {
  double p; /* probability of zeroing an element, in [0, 1) */
} dropout_state;

/* The largest p accepted: p = 1 (everything dropped) divides by zero in torch's scaling. */
#define DROPOUT_P_MAX 0.999999

static const char *const dropout_keys[] = {"p", NULL};

static int dropout_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  double p;
  int rc = dpt_layer_opt_known(l, opts, dropout_keys, err, errlen);
  if (!rc) rc = dpt_layer_opt_double(l, opts, "p", 0.5, 0.0, DROPOUT_P_MAX, &p, err, errlen);
  if (rc) return rc;
  dropout_state *s = malloc(sizeof *s);
  if (!s) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  s->p = p;
  l->state = s;
  return DPT_OK;
}

static void dropout_destroy(dpt_layer *l) {
  free(l->state);
  l->state = NULL;
}

/* Elements per dpt_layer_hash_run call (a stack buffer of uniforms). */
#define DROPOUT_RUN 512

/* a[i] = b[i] * noise of the pass's mask, over n samples of l->in_numel */
static void apply_mask(const dpt_layer *l, const float *restrict b, float *restrict a, size_t n,
                       const dpt_layer_pass *p) {
  double pd = ((dropout_state *)l->state)->p;
  float scale = 1.0f / (float)(1.0 - pd); /* torch: 1 (float) div_ (1 - p) as a float scalar */
  size_t m = l->in_numel;
  float u[DROPOUT_RUN];
  for (size_t i = 0; i < n; i++) {
    int64_t sample = p->sample0 + (int64_t)i;
    for (size_t j0 = 0; j0 < m; j0 += DROPOUT_RUN) {
      size_t len = m - j0 < DROPOUT_RUN ? m - j0 : DROPOUT_RUN;
      dpt_layer_hash_run(p->seed, p->step, sample, l->index, (uint64_t)j0, len, u);
      const float *restrict bj = b + i * m + j0;
      float *restrict aj = a + i * m + j0;
      for (size_t j = 0; j < len; j++) aj[j] = bj[j] * ((double)u[j] >= pd ? scale : 0.0f);
    }
  }
}

static void dropout_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                            const dpt_layer_pass *p) {
  (void)params;
  if (!p->train || ((dropout_state *)l->state)->p == 0.0)
    memcpy(y, x, n * l->in_numel * sizeof *y);
  else
    apply_mask(l, x, y, n, p);
}

static void dropout_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                             const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)x, (void)y;
  if (!p->train || ((dropout_state *)l->state)->p == 0.0) return; /* dx == dy */
  apply_mask(l, dy, dx, n, p);
}

const dpt_layer_ops dpt_layer_dropout = {
    .kind = "dropout",
    .help = "p=F (probability of zeroing an element, in [0, 1); default 0.5)",
    .elementwise = 1,
    .setup = dropout_setup,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .destroy = dropout_destroy,
};

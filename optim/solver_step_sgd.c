/* solver_step_sgd.c — GD and SGD (momentum, dampening, Nesterov) step kernels.
 *
 * Mirrors torch.optim.SGD 1.13 (_single_tensor_sgd): every python scalar becomes a float before
 * it meets a tensor, and every torch op rounds to fp32, so each line below is one torch op.
 * torch's add(x, alpha=a) is a fused multiply-add on CPUs with FMA (ATen's vec::fmadd); dpt uses
 * fmaf() for exactly those ops and no other contraction (-ffp-contract=off).
 * Elementwise only: any slicing of the buffer gives bitwise the same result.
 */
#include <math.h>

#include "solver_internal.h"

void dpt_optim_step_gd(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const float sg = s->p.maximize ? -1.0f : 1.0f;
  const float wd = (float)s->p.weight_decay;
  const int l2 = s->p.weight_decay != 0; /* torch: if weight_decay != 0 */
  const float neg_lr = (float)-s->p.lr;
  const size_t n = s->n;
  s->scalar[0] += 1;
  for (size_t i = 0; i < n; i++) {
    float d = dpt_optim_l2(sg * g[i], p[i], wd, l2);
    p[i] = fmaf(neg_lr, d, p[i]);
  }
}

/* torch tests momentum != 0 at every step with the live (scheduled) value: at 0 the step is plain
 * SGD and the buffer is neither read nor written; the first step at non-zero momentum clones
 * d_p into the buffer (has_momentum_buffer records that it happened); later ones update it. */
void dpt_optim_step_sgd(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float neg_lr = (float)-h->lr;
  const size_t n = s->n;
  s->scalar[0] += 1;
  if (!s->has_momentum || h->momentum == 0) {
    for (size_t i = 0; i < n; i++) {
      float d = dpt_optim_l2(sg * g[i], p[i], wd, l2);
      p[i] = fmaf(neg_lr, d, p[i]);
    }
    return;
  }
  float *restrict buf = s->vec[0];
  const float mom = (float)h->momentum;
  const float keep = (float)(1.0 - h->dampening);
  if (s->scalar[DPT_SGD_BUF_SET] == 0) {
    s->scalar[DPT_SGD_BUF_SET] = 1;
    if (h->nesterov) {
      for (size_t i = 0; i < n; i++) {
        float d = dpt_optim_l2(sg * g[i], p[i], wd, l2);
        buf[i] = d;
        d = fmaf(mom, d, d);
        p[i] = fmaf(neg_lr, d, p[i]);
      }
    } else {
      for (size_t i = 0; i < n; i++) {
        float d = dpt_optim_l2(sg * g[i], p[i], wd, l2);
        buf[i] = d;
        p[i] = fmaf(neg_lr, d, p[i]);
      }
    }
    return;
  }
  if (h->nesterov) {
    for (size_t i = 0; i < n; i++) {
      float d = dpt_optim_l2(sg * g[i], p[i], wd, l2);
      float b = buf[i] * mom;
      b = fmaf(keep, d, b);
      buf[i] = b;
      d = fmaf(mom, b, d);
      p[i] = fmaf(neg_lr, d, p[i]);
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float d = dpt_optim_l2(sg * g[i], p[i], wd, l2);
      float b = buf[i] * mom;
      b = fmaf(keep, d, b);
      buf[i] = b;
      p[i] = fmaf(neg_lr, b, p[i]);
    }
  }
}

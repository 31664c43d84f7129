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
  const float neg_lr = (float)-s->p.lr;
  const size_t n = s->n;
  s->scalar[0] += 1;
  for (size_t i = 0; i < n; i++) {
    float d = fmaf(p[i], wd, sg * g[i]);
    p[i] = fmaf(neg_lr, d, p[i]);
  }
}

void dpt_optim_step_sgd(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const float neg_lr = (float)-h->lr;
  const size_t n = s->n;
  const int first = s->scalar[0] == 0;
  s->scalar[0] += 1;
  if (s->nvec == 0) { /* momentum == 0 at creation: plain SGD */
    for (size_t i = 0; i < n; i++) {
      float d = fmaf(p[i], wd, sg * g[i]);
      p[i] = fmaf(neg_lr, d, p[i]);
    }
    return;
  }
  float *restrict buf = s->vec[0];
  const float mom = (float)h->momentum;
  const float keep = (float)(1.0 - h->dampening);
  /* torch: the first step clones d_p into the buffer; later ones buf = buf*mom + (1-damp)*d_p */
  if (first) {
    if (h->nesterov) {
      for (size_t i = 0; i < n; i++) {
        float d = fmaf(p[i], wd, sg * g[i]);
        buf[i] = d;
        d = fmaf(mom, d, d);
        p[i] = fmaf(neg_lr, d, p[i]);
      }
    } else {
      for (size_t i = 0; i < n; i++) {
        float d = fmaf(p[i], wd, sg * g[i]);
        buf[i] = d;
        p[i] = fmaf(neg_lr, d, p[i]);
      }
    }
    return;
  }
  if (h->nesterov) {
    for (size_t i = 0; i < n; i++) {
      float d = fmaf(p[i], wd, sg * g[i]);
      float b = buf[i] * mom;
      b = fmaf(keep, d, b);
      buf[i] = b;
      d = fmaf(mom, b, d);
      p[i] = fmaf(neg_lr, d, p[i]);
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float d = fmaf(p[i], wd, sg * g[i]);
      float b = buf[i] * mom;
      b = fmaf(keep, d, b);
      buf[i] = b;
      p[i] = fmaf(neg_lr, b, p[i]);
    }
  }
}

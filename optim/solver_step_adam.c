/* solver_step_adam.c — Adam (amsgrad), AdamW, AdaMax and Lion step kernels.
 *
 * Adam/AdamW/AdaMax mirror torch.optim 1.13's single-tensor code paths op for op (python scalars
 * become floats at each tensor op; bias corrections are computed in double as python does).
 * Lion follows Chen et al. 2023 (Algorithm 2, decoupled weight decay):
 *   c = b1*m + (1-b1)*g;  p = p*(1 - lr*wd) - lr*sign(c);  m = b2*m + (1-b2)*g.
 * torch's add(x, alpha=a) and addcmul are fused multiply-adds on CPUs with FMA (ATen's
 * vec::fmadd, and GCC contracting its vector mul+add); dpt uses fmaf() for exactly those ops.
 * Elementwise only: any slicing of the buffer gives bitwise the same result.
 */
#include <math.h>

#include "solver_internal.h"

/* Shared body of Adam and AdamW: decay multiplies the parameter first (AdamW's decoupled
 * decay, 1 for Adam), weight_decay*p is added to the gradient when weight_decay != 0 (Adam's
 * coupled decay; 0 for AdamW), as torch tests it. Multiplying by 1.0f is exact. */
static void adam_core(struct dpt_solver *s, float *restrict p, const float *restrict g, float decay,
                      double weight_decay) {
  const dpt_solver_params *h = &s->p;
  const double step = s->scalar[0] += 1;
  const float wd = (float)weight_decay;
  const int l2 = weight_decay != 0; /* torch: if weight_decay != 0 (AdamW: 0, decay instead) */
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float b1 = (float)h->beta1, omb1 = (float)(1.0 - h->beta1);
  const float b2 = (float)h->beta2, omb2 = (float)(1.0 - h->beta2);
  const double bc1 = 1.0 - pow(h->beta1, step);
  const double bc2 = 1.0 - pow(h->beta2, step);
  const float neg_step_size = (float)-(h->lr / bc1);
  const float bc2_sqrt = (float)sqrt(bc2);
  const float eps = (float)h->eps;
  const size_t n = s->n;
  float *restrict m = s->vec[0];
  float *restrict v = s->vec[1];

  if (h->amsgrad) {
    float *restrict vmax = s->vec[2];
    for (size_t i = 0; i < n; i++) {
      float pi = p[i] * decay;
      float gi = dpt_optim_l2(sg * g[i], pi, wd, l2);
      float mi = m[i] * b1;
      mi = fmaf(gi, omb1, mi);
      float vi = v[i] * b2;
      vi = fmaf(omb2 * gi, gi, vi);
      float vm = vmax[i] > vi ? vmax[i] : vi;
      float denom = sqrtf(vm) / bc2_sqrt + eps;
      m[i] = mi;
      v[i] = vi;
      vmax[i] = vm;
      p[i] = pi + neg_step_size * mi / denom;
    }
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float pi = p[i] * decay;
    float gi = dpt_optim_l2(sg * g[i], pi, wd, l2);
    float mi = m[i] * b1;
    mi = fmaf(gi, omb1, mi);
    float vi = v[i] * b2;
    vi = fmaf(omb2 * gi, gi, vi);
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + neg_step_size * mi / denom;
  }
}

void dpt_optim_step_adam(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  adam_core(s, p, g, 1.0f, s->p.weight_decay);
}

void dpt_optim_step_adamw(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  adam_core(s, p, g, (float)(1.0 - s->p.lr * s->p.weight_decay), 0.0);
}

void dpt_optim_step_adamax(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  const double step = s->scalar[0] += 1;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float b1 = (float)h->beta1, omb1 = (float)(1.0 - h->beta1);
  const float b2 = (float)h->beta2;
  const float eps = (float)h->eps;
  const float neg_clr = (float)-(h->lr / (1.0 - pow(h->beta1, step)));
  const size_t n = s->n;
  float *restrict m = s->vec[0];
  float *restrict u = s->vec[1];
  for (size_t i = 0; i < n; i++) {
    float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
    float mi = m[i] * b1;
    mi = fmaf(gi, omb1, mi);
    float a = u[i] * b2;
    float b = fabsf(gi) + eps;
    float ui = a > b ? a : b;
    m[i] = mi;
    u[i] = ui;
    p[i] = p[i] + neg_clr * mi / ui;
  }
}

void dpt_optim_step_lion(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  s->scalar[0] += 1;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float decay = (float)(1.0 - h->lr * h->weight_decay);
  const float neg_lr = (float)-h->lr;
  const float b1 = (float)h->beta1, omb1 = (float)(1.0 - h->beta1);
  const float b2 = (float)h->beta2, omb2 = (float)(1.0 - h->beta2);
  const size_t n = s->n;
  float *restrict m = s->vec[0];
  for (size_t i = 0; i < n; i++) {
    float gi = sg * g[i];
    float c = m[i] * b1;
    c = fmaf(gi, omb1, c);
    float sign = (float)((c > 0.0f) - (c < 0.0f));
    float pi = p[i] * decay;
    p[i] = fmaf(sign, neg_lr, pi);
    float mi = m[i] * b2;
    m[i] = fmaf(gi, omb2, mi);
  }
}

/* solver_step_adaptive.c — Adagrad, Adadelta, ASGD, Rprop and RMSprop step kernels.
 *
 * Each mirrors its torch.optim 1.13 single-tensor code path op for op: python scalars become
 * floats at each tensor op, scalar bookkeeping (ASGD's eta and mu, Adagrad's clr) is computed
 * in double and, where torch keeps it in a float32 tensor, rounded to float. Rprop has no weight
 * decay in torch; dpt adds it as L2 on the gradient like the others (0 by default).
 * torch's add(x, alpha=a) and addcmul are fused multiply-adds on CPUs with FMA; dpt uses
 * fmaf() for exactly those ops.
 * Elementwise only: any slicing of the buffer gives bitwise the same result.
 */
#include <math.h>

#include "solver_internal.h"

void dpt_optim_step_adagrad(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  const double step = s->scalar[0] += 1;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float eps = (float)h->eps;
  const float neg_clr = (float)-(h->lr / (1 + (step - 1) * h->lr_decay));
  const size_t n = s->n;
  float *restrict sum = s->vec[0];
  for (size_t i = 0; i < n; i++) {
    float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
    float si = fmaf(gi, gi, sum[i]);
    float std = sqrtf(si) + eps;
    sum[i] = si;
    p[i] = p[i] + neg_clr * gi / std;
  }
}

void dpt_optim_step_adadelta(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  s->scalar[0] += 1;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float rho = (float)h->rho, omr = (float)(1.0 - h->rho);
  const float eps = (float)h->eps;
  const float neg_lr = (float)-h->lr;
  const size_t n = s->n;
  float *restrict sq = s->vec[0];
  float *restrict acc = s->vec[1];
  for (size_t i = 0; i < n; i++) {
    float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
    float si = sq[i] * rho;
    si = fmaf(omr * gi, gi, si);
    float std = sqrtf(si + eps);
    float delta = sqrtf(acc[i] + eps) / std * gi;
    float ai = acc[i] * rho;
    ai = fmaf(omr * delta, delta, ai);
    sq[i] = si;
    acc[i] = ai;
    p[i] = fmaf(delta, neg_lr, p[i]);
  }
}

/* ASGD keeps eta and mu as float32 tensors in torch: scalar[1] and scalar[2] hold their float
 * values (as doubles), updated after the elementwise pass from the step count. torch makes eta
 * at the first step from that step's lr (a schedule may have changed it since creation). */
void dpt_optim_step_asgd(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  if (s->scalar[0] == 0) s->scalar[1] = dpt_optim_round_f32(h->lr);
  const double step = s->scalar[0] += 1;
  const double eta = s->scalar[1], mu = s->scalar[2];
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float decay = (float)(1.0 - h->lambd * eta);
  const float neg_eta = (float)-eta;
  const float muf = (float)mu;
  const size_t n = s->n;
  float *restrict ax = s->vec[0];
  if (mu != 1.0) {
    for (size_t i = 0; i < n; i++) {
      float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
      float pi = p[i] * decay;
      pi = fmaf(gi, neg_eta, pi);
      p[i] = pi;
      ax[i] = ax[i] + (pi - ax[i]) * muf;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
      float pi = p[i] * decay;
      pi = fmaf(gi, neg_eta, pi);
      p[i] = pi;
      ax[i] = pi;
    }
  }
  s->scalar[1] = dpt_optim_round_f32(h->lr / pow(1 + h->lambd * h->lr * step, h->alpha));
  s->scalar[2] = dpt_optim_round_f32(1.0 / fmax(1.0, step - h->t0));
}

/* torch's order, which matters when etaminus or etaplus round to 0 or 1 in float32:
 *   sign = sign(g * prev); sign[sign > 0] = etaplus; sign[sign < 0] = etaminus; sign[sign == 0] = 1
 *   step_size = clamp(step_size * sign); g[sign == etaminus] = 0; p -= sign(g) * step_size
 * (so an etaminus of 0.0f becomes 1 like a zero product, and one of 1.0f zeroes the gradient
 * wherever the factor is 1). torch's sign() of NaN is 0. step_size is filled with the lr of
 * the first step. */
void dpt_optim_step_rprop(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  if (s->scalar[0] == 0) {
    const float lr = (float)h->lr;
    for (size_t i = 0; i < s->n; i++) s->vec[1][i] = lr;
  }
  s->scalar[0] += 1;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float eminus = (float)h->eta_minus, eplus = (float)h->eta_plus;
  const float smin = (float)h->step_min, smax = (float)h->step_max;
  const size_t n = s->n;
  float *restrict prev = s->vec[0];
  float *restrict ss = s->vec[1];
  for (size_t i = 0; i < n; i++) {
    float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
    float prod = gi * prev[i];
    float f = prod > 0.0f ? 1.0f : 0.0f; /* written as selects so the loop vectorises */
    f = prod < 0.0f ? -1.0f : f;
    f = f > 0.0f ? eplus : f;
    f = f < 0.0f ? eminus : f;
    f = f == 0.0f ? 1.0f : f;
    float si = ss[i] * f;
    si = si < smin ? smin : si;
    si = si > smax ? smax : si;
    gi = f == eminus ? 0.0f : gi;
    float sign = gi > 0.0f ? 1.0f : 0.0f;
    sign = gi < 0.0f ? -1.0f : sign;
    ss[i] = si;
    p[i] = p[i] + -1.0f * sign * si;
    prev[i] = gi;
  }
}

/* RMSprop's vectors: square_avg, then momentum_buffer if created with momentum > 0, then
 * grad_avg if centered (solver.c assigns the indices in that order). The loop body is inlined into
 * four specialised loops (centered x momentum) so that none branches per element. */
static inline __attribute__((always_inline)) void
rmsprop_loop(size_t n, float *restrict p, const float *restrict g, float *restrict sq,
             float *restrict buf, float *restrict ga, float sg, float wd, int l2, float a,
             float oma, float eps, float mom, float neg_lr, const int centered,
             const int momentum) {
  for (size_t i = 0; i < n; i++) {
    float gi = dpt_optim_l2(sg * g[i], p[i], wd, l2);
    float si = sq[i] * a;
    si = fmaf(oma * gi, gi, si);
    sq[i] = si;
    float avg;
    if (centered) {
      float gai = ga[i] * a;
      gai = fmaf(gi, oma, gai);
      ga[i] = gai;
      avg = sqrtf(fmaf(-1.0f * gai, gai, si));
    } else {
      avg = sqrtf(si);
    }
    avg = avg + eps;
    if (momentum) {
      float b = buf[i] * mom;
      b = b + 1.0f * gi / avg;
      buf[i] = b;
      p[i] = fmaf(b, neg_lr, p[i]);
    } else {
      p[i] = p[i] + neg_lr * gi / avg;
    }
  }
}

void dpt_optim_step_rmsprop(struct dpt_solver *s, float *restrict p, const float *restrict g) {
  const dpt_solver_params *h = &s->p;
  s->scalar[0] += 1;
  const float sg = h->maximize ? -1.0f : 1.0f;
  const float wd = (float)h->weight_decay;
  const int l2 = h->weight_decay != 0; /* torch: if weight_decay != 0 */
  const float a = (float)h->alpha, oma = (float)(1.0 - h->alpha);
  const float eps = (float)h->eps;
  const float mom = (float)h->momentum;
  const float neg_lr = (float)-h->lr;
  /* torch tests the live momentum > 0 at every step; the buffer exists if it was > 0 at
   * creation (a solver created without it ignores dpt_solver_set_momentum) */
  const int has_buf = s->has_momentum && h->momentum > 0;
  float *sq = s->vec[0];
  float *buf = has_buf ? s->vec[1] : NULL;
  float *ga = h->centered ? s->vec[s->nvec - 1] : NULL;
  if (ga && buf)
    rmsprop_loop(s->n, p, g, sq, buf, ga, sg, wd, l2, a, oma, eps, mom, neg_lr, 1, 1);
  else if (ga)
    rmsprop_loop(s->n, p, g, sq, buf, ga, sg, wd, l2, a, oma, eps, mom, neg_lr, 1, 0);
  else if (buf)
    rmsprop_loop(s->n, p, g, sq, buf, ga, sg, wd, l2, a, oma, eps, mom, neg_lr, 0, 1);
  else
    rmsprop_loop(s->n, p, g, sq, buf, ga, sg, wd, l2, a, oma, eps, mom, neg_lr, 0, 0);
}

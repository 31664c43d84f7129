/* solver_internal.h — the solver object shared by solver.c (lifecycle, state table) and the
 * step kernels (solver_step_*.c). Not installed; not part of the public surface. */
#ifndef DPT_OPTIM_SOLVER_INTERNAL_H
#define DPT_OPTIM_SOLVER_INTERNAL_H

#include <math.h>

#include "optim.h"

/* Rounds x to the nearest float and returns it as a double: the value of a python number that
 * torch stores in a float32 tensor (ASGD's eta and mu). The volatile store
 * is the point: GCC 12 at -O3 vectorises two adjacent `d = (float)x` stores into one double
 * store and drops the conversion (issue 15), whatever the -march; a volatile float cannot be
 * elided. Called once per step, not per element. */
static inline double dpt_optim_round_f32(double x) {
  volatile float f = (float)x;
  return f;
}

/* Most state entries of any solver: RMSprop centered+momentum has three vectors and a step. */
#define DPT_SOLVER_MAX_VEC 3
#define DPT_SOLVER_MAX_SCALAR 3

struct dpt_solver {
  dpt_solver_params p; /* live hyperparameters (a scheduler edits lr and momentum/beta1) */
  size_t n;            /* elements in this solver's slice */
  int has_momentum;    /* fixed at creation: SGD/RMSprop created with momentum != 0 (they own a
                          momentum_buffer), or a solver with beta1; a scheduler may then move
                          the live value anywhere, 0 included, and back */
  int nvec, nscalar;
  const char *vec_name[DPT_SOLVER_MAX_VEC];
  float *vec[DPT_SOLVER_MAX_VEC]; /* each float[n], 64-byte aligned */
  const char *scalar_name[DPT_SOLVER_MAX_SCALAR];
  double scalar[DPT_SOLVER_MAX_SCALAR]; /* scalar[0] is always "step" (steps taken) */
};

/* The gradient with L2 weight decay as torch forms it: `if weight_decay != 0: grad =
 * grad.add(param, alpha=weight_decay)`, a fused multiply-add; l2 is weight_decay != 0 tested in
 * double. Skipping the add when it is 0 keeps the sign of a zero (maximize turns +0 into -0;
 * -0 + p*0 may be +0), which Rprop's prev and SGD's buffer store. */
static inline float dpt_optim_l2(float g, float p, float wd, int l2) {
  return l2 ? fmaf(p, wd, g) : g;
}

/* SGD's scalars: step, then (when it has a buffer) whether torch's state['momentum_buffer'] is
 * set, i.e. a step with momentum != 0 has happened (torch clones d_p into it on that step). */
#define DPT_SGD_BUF_SET 1

/* One function per solver (no per-element dispatch). Each reads s->p, s->vec, s->scalar and
 * advances s->scalar[0]. Index layout of vec[] and scalar[] is fixed by solver.c's table. */
void dpt_optim_step_gd(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_sgd(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_adagrad(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_adadelta(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_asgd(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_rprop(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_rmsprop(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_adam(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_adamax(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_adamw(struct dpt_solver *s, float *restrict p, const float *restrict g);
void dpt_optim_step_lion(struct dpt_solver *s, float *restrict p, const float *restrict g);

#endif

/* solver_internal.h — the solver object shared by solver.c (lifecycle, state table) and the
 * step kernels (solver_step_*.c). Not installed; not part of the public surface. */
#ifndef DPT_OPTIM_SOLVER_INTERNAL_H
#define DPT_OPTIM_SOLVER_INTERNAL_H

#include "optim.h"

/* Most state entries of any solver: RMSprop centered+momentum has three vectors and a step. */
#define DPT_SOLVER_MAX_VEC 3
#define DPT_SOLVER_MAX_SCALAR 3

struct dpt_solver {
  dpt_solver_params p; /* live hyperparameters (a scheduler edits lr and momentum/beta1) */
  size_t n;            /* elements in this solver's slice */
  int nvec, nscalar;
  const char *vec_name[DPT_SOLVER_MAX_VEC];
  float *vec[DPT_SOLVER_MAX_VEC]; /* each float[n], 64-byte aligned */
  const char *scalar_name[DPT_SOLVER_MAX_SCALAR];
  double scalar[DPT_SOLVER_MAX_SCALAR]; /* scalar[0] is always "step" (steps taken) */
};

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

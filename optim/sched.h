/* sched.h — learning-rate schedulers (part of optim.h's public surface; included from there).
 *
 * Invariants:
 * - Formulas and order of operations follow torch.optim.lr_scheduler 1.13, including the
 *   recursive ("chainable") forms it uses, in double precision, so learning rates match PyTorch
 *   to ~1e-12 relative.
 * - A scheduler is a small value machine: created with the base lr (and base momentum when the
 *   solver has one), stepped once per iteration or once per epoch, it reports the lr (and the
 *   momentum / beta1 to use) for the next solver step. It never touches a solver itself.
 * - All its state is a handful of named doubles, enumerable like solver state, so a checkpoint
 *   saves and restores it without knowing the kind.
 */
#ifndef DPT_OPTIM_SCHED_H
#define DPT_OPTIM_SCHED_H

#include <stddef.h>

typedef enum {
  DPT_SCHED_NONE,                 /* "none": constant lr */
  DPT_SCHED_STEP,                 /* "step": StepLR */
  DPT_SCHED_MULTISTEP,            /* "multistep": MultiStepLR */
  DPT_SCHED_EXPONENTIAL,          /* "exponential": ExponentialLR */
  DPT_SCHED_COSINE,               /* "cosine": CosineAnnealingLR */
  DPT_SCHED_COSINE_WARM_RESTARTS, /* "cosine_warm_restarts": CosineAnnealingWarmRestarts */
  DPT_SCHED_CYCLIC,               /* "cyclic": CyclicLR */
  DPT_SCHED_ONECYCLE,             /* "onecycle": OneCycleLR */
  DPT_SCHED_LINEAR,               /* "linear": LinearLR */
  DPT_SCHED_CONSTANT,             /* "constant": ConstantLR */
  DPT_SCHED_POLYNOMIAL,           /* "polynomial": PolynomialLR */
  DPT_SCHED_PLATEAU,              /* "plateau": ReduceLROnPlateau */
  DPT_SCHED_COUNT
} dpt_sched_kind;

/* When the runtime steps the scheduler. */
typedef enum { DPT_SCHED_EVERY_EPOCH, DPT_SCHED_EVERY_STEP } dpt_sched_interval;

/* Most milestones MultiStepLR takes. */
#define DPT_SCHED_MAX_MILESTONES 32

/* Hyperparameters of every scheduler, one struct for all. Names in comments are the keys of
 * dpt_optim_sched_set(), which follow torch's argument names. Fields a kind does not use are
 * ignored by it. A value of 0 for a length (T_max, total_steps, total_iters of polynomial) means
 * "the whole run": dpt_sched_create() takes the number of scheduler steps in the run. */
typedef struct {
  dpt_sched_kind kind;
  dpt_sched_interval interval; /* "interval": step|epoch (cyclic, onecycle: step; else epoch) */

  int step_size;     /* "step_size" (step) */
  double gamma;      /* "gamma" (step, multistep, exponential, cyclic exp_range) */
  int milestones[DPT_SCHED_MAX_MILESTONES]; /* "milestones" "30,80" (multistep), ascending */
  int n_milestones;
  int T_max;         /* "T_max" (cosine), 0 = whole run */
  double eta_min;    /* "eta_min" (cosine, cosine_warm_restarts) */
  int T_0, T_mult;   /* "T_0", "T_mult" (cosine_warm_restarts) */

  /* CyclicLR */
  double base_lr;    /* "base_lr"; 0 = the solver's lr */
  double max_lr;     /* "max_lr" (cyclic, onecycle) */
  int step_size_up;  /* "step_size_up" */
  int step_size_down;/* "step_size_down"; 0 = same as up (torch's None) */
  int cyclic_mode;   /* "mode": 0 triangular, 1 triangular2, 2 exp_range */
  int cycle_momentum;/* "cycle_momentum" (cyclic, onecycle) */
  double base_momentum, max_momentum; /* "base_momentum", "max_momentum" */

  /* OneCycleLR */
  int total_steps;   /* "total_steps", 0 = whole run */
  double pct_start;  /* "pct_start" */
  int anneal_cos;    /* "anneal_strategy": cos (1) | linear (0) */
  double div_factor, final_div_factor; /* "div_factor", "final_div_factor" */
  int three_phase;   /* "three_phase" */

  /* LinearLR, ConstantLR, PolynomialLR */
  double start_factor, end_factor; /* "start_factor", "end_factor" (linear) */
  double factor;     /* "factor" (constant; plateau) */
  int total_iters;   /* "total_iters" (linear, constant, polynomial) */
  double power;      /* "power" (polynomial) */

  /* ReduceLROnPlateau ("factor" above) */
  int plateau_max;   /* "mode": min (0) | max (1) */
  int patience;      /* "patience" */
  double threshold;  /* "threshold" */
  int threshold_abs; /* "threshold_mode": rel (0) | abs (1) */
  int cooldown;      /* "cooldown" */
  double min_lr;     /* "min_lr" */
  double eps;        /* "eps" */

  /* Sequential chain: a warm-up scheduler for warmup_iters steps, then this one
   * (torch's SequentialLR([warmup, main], milestones=[warmup_iters])). */
  int warmup;        /* "warmup": none (0) | linear (1) | constant (2) */
  int warmup_iters;  /* "warmup_iters" */
  double warmup_factor; /* "warmup_factor": start_factor (linear) or factor (constant) */
} dpt_sched_params;

/* Name <-> kind. Unknown names give DPT_OPTIM_EINVAL and a message listing the known ones. */
const char *dpt_optim_sched_name(dpt_sched_kind kind);
int dpt_optim_sched_kind(const char *name, dpt_sched_kind *kind, char *err, size_t errlen);

/* torch's defaults for this kind (StepLR step_size has none in torch: dpt uses 30). */
void dpt_optim_sched_defaults(dpt_sched_kind kind, dpt_sched_params *p);

/* Sets one hyperparameter by its key (see the struct). A key the kind does not take, or a
 * value that does not parse, is an error naming both. */
int dpt_optim_sched_set(dpt_sched_params *p, const char *key, const char *value, char *err,
                        size_t errlen);

/* Range checks (gamma > 0, 0 < pct_start < 1, milestones ascending, factor in [0,1], ...);
 * the message names the scheduler, the parameter, its value and the allowed range. */
int dpt_optim_sched_validate(const dpt_sched_params *p, char *err, size_t errlen);

/* Calls fn once per hyperparameter the kind takes (name, value as text, help); returns how
 * many. Uses dpt_optim_param_fn from optim.h. */
int dpt_optim_sched_describe(const dpt_sched_params *p, dpt_optim_param_fn fn, void *ctx);

/* A scheduler instance. Opaque; created and freed in pairs. */
typedef struct dpt_sched dpt_sched;

/* Creates the scheduler as torch's constructor does (including its initial step), for a solver
 * whose base lr is base_lr. has_momentum says whether the solver has a momentum/beta1 to cycle
 * (base_momentum is its value); cycle_momentum on a solver without one is an error. run_steps
 * is how many times the scheduler will be stepped in the whole run (for the 0 = whole run
 * lengths); it may be 0 when no length defaults to it. Validates p. */
int dpt_sched_create(const dpt_sched_params *p, double base_lr, int has_momentum,
                     double base_momentum, long run_steps, dpt_sched **out, char *err,
                     size_t errlen);
void dpt_sched_free(dpt_sched *s);

/* torch's scheduler.step() (for plateau: scheduler.step(metric); metric is ignored by the
 * others). Call after the solver step, once per interval. */
void dpt_sched_step(dpt_sched *s, double metric);

/* The lr for the next solver step, and the momentum/beta1 (meaningful only when
 * dpt_sched_cycles_momentum() is non-zero). */
double dpt_sched_lr(const dpt_sched *s);
int dpt_sched_cycles_momentum(const dpt_sched *s);
double dpt_sched_momentum(const dpt_sched *s);
const dpt_sched_params *dpt_sched_hparams(const dpt_sched *s);

/* State: named doubles ("last_epoch", "lr", "best", "num_bad_epochs", ...), fixed at creation.
 * dpt_sched_state returns entry i's name and a pointer to it (read for save, write for
 * load); the pointer stays valid until free. */
int dpt_sched_state_count(const dpt_sched *s);
double *dpt_sched_state(dpt_sched *s, int i, const char **name);
int dpt_sched_state_find(const dpt_sched *s, const char *name);

#endif /* DPT_OPTIM_SCHED_H */

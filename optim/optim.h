/* optim.h — dpt's solvers and learning-rate schedulers: the whole public surface of optim/.
 *
 * Invariants:
 * - Pure computation: no MPI, no HDF5, no printing, no exit(). Errors are returned as a
 *   negative DPT_E* code (base.h) with a message written into the caller's buffer.
 * - A solver works on one contiguous slice of the flat fp32 parameter buffer. The update is
 *   elementwise, so stepping a buffer whole or cut into any set of slices gives bitwise the
 *   same parameters and state (built with -ffp-contract=off; no reductions across elements).
 * - Semantics and order of operations follow torch.optim / torch.optim.lr_scheduler 1.13
 *   (single-tensor, foreach=False code paths); Lion follows Chen et al. 2023.
 * - Solver state is named and enumerable (per-element vectors and scalars), so checkpoint code
 *   can save and restore it without knowing the solver. Scheduler state likewise.
 */
#ifndef DPT_OPTIM_H
#define DPT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "base.h" /* the error space: DPT_EINVAL (a name or hyperparameter out of range),
                     DPT_ENOMEM, DPT_ESTATE (state name unknown or of the wrong shape) */

/* ------------------------------------------------------------------------------------------ */
/* --- solvers ---                                                                             */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
  DPT_SOLVER_GD, /* plain gradient descent: p -= lr * (g + wd * p) */
  DPT_SOLVER_SGD,
  DPT_SOLVER_ADAGRAD,
  DPT_SOLVER_ADADELTA,
  DPT_SOLVER_ASGD,
  DPT_SOLVER_RPROP,
  DPT_SOLVER_RMSPROP,
  DPT_SOLVER_ADAM,
  DPT_SOLVER_ADAMAX,
  DPT_SOLVER_ADAMW,
  DPT_SOLVER_LION,
  DPT_SOLVER_COUNT
} dpt_solver_kind;

/* Hyperparameters of every solver, one struct for all (names follow torch.optim). Fields a
 * solver does not use are ignored by it. Fill with dpt_optim_solver_defaults(), then change
 * fields or set them by name with dpt_optim_solver_set(). */
typedef struct {
  dpt_solver_kind kind;
  double lr;           /* base learning rate (all) */
  double weight_decay; /* L2 added to the gradient; decoupled for AdamW and Lion (all) */
  int maximize;        /* ascend instead of descend (all) */
  double momentum;     /* SGD, RMSprop */
  double dampening;    /* SGD */
  int nesterov;        /* SGD */
  double beta1, beta2; /* Adam, AdaMax, AdamW, Lion ("betas") */
  double eps;          /* Adagrad, Adadelta, RMSprop, Adam, AdaMax, AdamW */
  int amsgrad;         /* Adam, AdamW */
  double lr_decay;     /* Adagrad */
  double initial_accumulator_value; /* Adagrad */
  double rho;                       /* Adadelta */
  double lambd;                     /* ASGD decay term */
  double alpha;                     /* ASGD eta power; RMSprop smoothing constant */
  double t0;                        /* ASGD point at which averaging starts */
  double eta_minus, eta_plus;       /* Rprop "etas" */
  double step_min, step_max;        /* Rprop "step_sizes" */
  int centered;                     /* RMSprop */
} dpt_solver_params;

/* Name <-> kind ("gd", "sgd", "adagrad", "adadelta", "asgd", "rprop", "rmsprop", "adam",
 * "adamax", "adamw", "lion"). dpt_optim_solver_kind returns DPT_EINVAL and a message
 * listing the known names when the name is unknown. */
const char *dpt_optim_solver_name(dpt_solver_kind kind);
int dpt_optim_solver_kind(const char *name, dpt_solver_kind *kind, char *err, size_t errlen);

/* Fills p with torch.optim's defaults for this kind (Lion: lr 1e-4, betas 0.9/0.99).
 * SGD has no default lr in torch; dpt uses 0.01 for SGD and GD. */
void dpt_optim_solver_defaults(dpt_solver_kind kind, dpt_solver_params *p);

/* Sets one hyperparameter by its torch.optim name as text: "lr", "weight_decay", "momentum",
 * "dampening", "nesterov", "betas" ("0.9,0.999"), "eps", "amsgrad", "lr_decay",
 * "initial_accumulator_value", "rho", "lambd", "alpha", "t0", "etas" ("0.5,1.2"),
 * "step_sizes" ("1e-6,50"), "centered", "maximize". Booleans take 0/1/true/false.
 * A name the solver does not take, or text that is not a number, is an error naming both. */
int dpt_optim_solver_set(dpt_solver_params *p, const char *key, const char *value, char *err,
                         size_t errlen);

/* Checks every hyperparameter the solver uses against its allowed range (lr >= 0,
 * 0 <= beta < 1, 0 <= rho <= 1, 0 < eta_minus < 1 < eta_plus, ...). On failure the message
 * names the solver, the parameter, its value and the allowed range. */
int dpt_optim_solver_validate(const dpt_solver_params *p, char *err, size_t errlen);

/* Describes the hyperparameters a solver takes, for `dpt solvers` and for checkpoint
 * attributes: calls fn once per hyperparameter with its name, current value as text and a
 * one-line help. Returns the number of hyperparameters. */
typedef void (*dpt_optim_param_fn)(void *ctx, const char *name, const char *value,
                                   const char *help);
int dpt_optim_solver_describe(const dpt_solver_params *p, dpt_optim_param_fn fn, void *ctx);

/* Kinds of state entries. */
typedef enum {
  DPT_STATE_VECTOR, /* fp32, one value per element of the slice */
  DPT_STATE_SCALAR  /* one double for the whole solver (same on every shard), e.g. "step" */
} dpt_state_type;

typedef struct {
  const char *name; /* torch.optim's state key: "exp_avg", "exp_avg_sq", "step", "ax", ... */
  dpt_state_type type;
} dpt_state_info;

/* A solver over one slice of n elements. Opaque; created and freed in pairs. */
typedef struct dpt_solver dpt_solver;

/* Creates a solver for a slice of n elements with zero-initialised state (or torch's initial
 * values: Adagrad's initial_accumulator_value). State torch makes at the first step from the
 * group's lr (ASGD's eta, Rprop's step sizes) is set by the first dpt_solver_step from the live
 * lr, so a schedule's first lr counts, as in torch. Validates p.
 * Returns 0 and *out, or a negative code with a message (nothing allocated). */
int dpt_solver_create(const dpt_solver_params *p, size_t n, dpt_solver **out, char *err,
                      size_t errlen);
void dpt_solver_free(dpt_solver *s);

/* One step over the slice: param[i] and state updated from grad[i], i in [0, n).
 * param and grad are the caller's (borrowed, length n, must not alias). grad is read only;
 * the solver never writes it. */
void dpt_solver_step(dpt_solver *s, float *restrict param, const float *restrict grad);

/* The live hyperparameters (a scheduler changes lr and momentum/beta1 between steps). */
dpt_solver_params *dpt_solver_hparams(dpt_solver *s);
size_t dpt_solver_len(const dpt_solver *s);

/* Sets the learning rate, and the momentum (SGD, RMSprop) or beta1 (Adam, AdaMax, AdamW,
 * Lion) that schedulers cycle. dpt_solver_has_momentum tells whether there is one to cycle; it
 * is fixed at creation (SGD and RMSprop: created with momentum != 0), so a momentum set to 0
 * can be set back. On a solver without one, dpt_solver_set_momentum does nothing. Each step
 * reads the live values as torch reads its param group: SGD at momentum 0 neither reads nor
 * writes its buffer, and fills it (torch's clone) at the first step with momentum != 0. */
void dpt_solver_set_lr(dpt_solver *s, double lr);
int dpt_solver_has_momentum(const dpt_solver *s);
double dpt_solver_momentum(const dpt_solver *s);
void dpt_solver_set_momentum(dpt_solver *s, double m);

/* State enumeration. The set of entries depends on the kind and options (e.g. "max_exp_avg_sq"
 * only with amsgrad, "momentum_buffer" only when created with momentum != 0), and is fixed at
 * creation. State torch creates lazily is always listed: SGD's "momentum_buffer" comes with the
 * scalar "has_momentum_buffer" (0 while torch's would still be None), so saving and restoring
 * every entry by name continues bitwise whether or not it was created yet.
 * dpt_solver_state returns entry i's info and a pointer to its storage: a float[n] for
 * DPT_STATE_VECTOR, a double[1] for DPT_STATE_SCALAR. The pointer stays valid until free; the
 * caller may read it (checkpoint save) or overwrite it (checkpoint load). */
int dpt_solver_state_count(const dpt_solver *s);
void *dpt_solver_state(dpt_solver *s, int i, dpt_state_info *info);
/* Looks an entry up by name; returns its index or DPT_ESTATE. */
int dpt_solver_state_find(const dpt_solver *s, const char *name);

/* Bytes of state this solver holds (vectors and scalars). */
size_t dpt_solver_state_bytes(const dpt_solver *s);

/* Bytes the step must read and write per element (params, grads, state vectors), for the
 * bandwidth benchmark. */
size_t dpt_solver_bytes_per_element(const dpt_solver *s);

/* ------------------------------------------------------------------------------------------ */
/* --- schedulers ---                                                                          */
/* ------------------------------------------------------------------------------------------ */
/* Schedulers follow torch.optim.lr_scheduler 1.13, including the recursive ("chainable")
 * forms it uses, in double precision. A scheduler is a small value machine: created with the
 * base lr (and base momentum when the solver has one), stepped once per iteration or once per
 * epoch, it reports the lr (and momentum / beta1) for the next solver step; it never touches a
 * solver. Its state is a fixed list of named doubles, saved and restored like solver state. */
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

  int step_size; /* "step_size" (step) */
  double gamma;  /* "gamma" (step, multistep, exponential, cyclic exp_range) */
  int milestones[DPT_SCHED_MAX_MILESTONES]; /* "milestones" "30,80" (multistep), ascending */
  int n_milestones;
  int T_max;       /* "T_max" (cosine), 0 = whole run */
  double eta_min;  /* "eta_min" (cosine, cosine_warm_restarts) */
  int T_0, T_mult; /* "T_0", "T_mult" (cosine_warm_restarts) */

  /* CyclicLR */
  double base_lr;                     /* "base_lr"; 0 = the solver's lr */
  double max_lr;                      /* "max_lr" (cyclic, onecycle) */
  int step_size_up;                   /* "step_size_up" */
  int step_size_down;                 /* "step_size_down"; 0 = same as up (torch's None) */
  int cyclic_mode;                    /* "mode": 0 triangular, 1 triangular2, 2 exp_range */
  int cycle_momentum;                 /* "cycle_momentum" (cyclic, onecycle) */
  double base_momentum, max_momentum; /* "base_momentum", "max_momentum" */

  /* OneCycleLR */
  int total_steps;                     /* "total_steps", 0 = whole run */
  double pct_start;                    /* "pct_start" */
  int anneal_cos;                      /* "anneal_strategy": cos (1) | linear (0) */
  double div_factor, final_div_factor; /* "div_factor", "final_div_factor" */
  int three_phase;                     /* "three_phase" */

  /* LinearLR, ConstantLR, PolynomialLR */
  double start_factor, end_factor; /* "start_factor", "end_factor" (linear) */
  double factor;                   /* "factor" (constant; plateau) */
  int total_iters;                 /* "total_iters" (linear, constant, polynomial) */
  double power;                    /* "power" (polynomial) */

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
  int warmup;           /* "warmup": none (0) | linear (1) | constant (2) */
  int warmup_iters;     /* "warmup_iters" */
  double warmup_factor; /* "warmup_factor": start_factor (linear) or factor (constant) */
} dpt_sched_params;

/* Name <-> kind. Unknown names give DPT_EINVAL and a message listing the known ones. */
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

/* State: named doubles ("last_epoch", "lr", "best", "num_bad_epochs", ...), fixed at creation.
 * dpt_sched_state returns entry i's name and a pointer to it (read for save, write for
 * load); the pointer stays valid until free. */
int dpt_sched_state_count(const dpt_sched *s);
double *dpt_sched_state(dpt_sched *s, int i, const char **name);
int dpt_sched_state_find(const dpt_sched *s, const char *name);

#endif /* DPT_OPTIM_H */

/* solver.c — solver names, defaults, hyperparameter table (set / validate / describe), and the
 * solver object's lifecycle and named state.
 *
 * One table lists every hyperparameter once: its torch.optim name, the solvers that take it, its
 * field(s) in dpt_solver_params, its allowed range and a help line. Setting, validating and
 * describing all walk that table, so a new hyperparameter is one row.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "solver_internal.h"

/* --- names and kernels --- */

typedef void (*step_fn)(struct dpt_solver *, float *restrict, const float *restrict);

static const struct {
  const char *name;
  step_fn step;
} kinds[] = {
    [DPT_SOLVER_GD] = {"gd", dpt_optim_step_gd},
    [DPT_SOLVER_SGD] = {"sgd", dpt_optim_step_sgd},
    [DPT_SOLVER_ADAGRAD] = {"adagrad", dpt_optim_step_adagrad},
    [DPT_SOLVER_ADADELTA] = {"adadelta", dpt_optim_step_adadelta},
    [DPT_SOLVER_ASGD] = {"asgd", dpt_optim_step_asgd},
    [DPT_SOLVER_RPROP] = {"rprop", dpt_optim_step_rprop},
    [DPT_SOLVER_RMSPROP] = {"rmsprop", dpt_optim_step_rmsprop},
    [DPT_SOLVER_ADAM] = {"adam", dpt_optim_step_adam},
    [DPT_SOLVER_ADAMAX] = {"adamax", dpt_optim_step_adamax},
    [DPT_SOLVER_ADAMW] = {"adamw", dpt_optim_step_adamw},
    [DPT_SOLVER_LION] = {"lion", dpt_optim_step_lion},
};

/* a kind added to the enum without its row here is a compile error, not a NULL name */
_Static_assert(sizeof kinds / sizeof kinds[0] == DPT_SOLVER_COUNT, "one row per solver kind");

const char *dpt_optim_solver_name(dpt_solver_kind kind) {
  return (unsigned)kind < DPT_SOLVER_COUNT ? kinds[kind].name : "?";
}

int dpt_optim_solver_kind(const char *name, dpt_solver_kind *kind, char *err, size_t errlen) {
  for (int k = 0; k < DPT_SOLVER_COUNT; k++) {
    if (name && !strcasecmp(name, kinds[k].name)) {
      *kind = (dpt_solver_kind)k;
      return DPT_OK;
    }
  }
  char list[256] = "";
  for (int k = 0; k < DPT_SOLVER_COUNT; k++) {
    strncat(list, kinds[k].name, sizeof list - strlen(list) - 1);
    if (k + 1 < DPT_SOLVER_COUNT) strncat(list, ", ", sizeof list - strlen(list) - 1);
  }
  snprintf(err, errlen, "unknown solver '%s' (expected one of: %s)", name ? name : "", list);
  return DPT_EINVAL;
}

/* --- defaults (torch.optim 1.13 constructor defaults) --- */

void dpt_optim_solver_defaults(dpt_solver_kind kind, dpt_solver_params *p) {
  memset(p, 0, sizeof *p);
  p->kind = kind;
  p->lr = 1e-2;
  p->beta1 = 0.9;
  p->beta2 = 0.999;
  p->eps = 1e-8;
  switch (kind) {
  case DPT_SOLVER_GD:
  case DPT_SOLVER_SGD: break; /* torch.optim.SGD has no default lr; 0.01 is dpt's */
  case DPT_SOLVER_ADAGRAD: p->eps = 1e-10; break;
  case DPT_SOLVER_ADADELTA:
    p->lr = 1.0;
    p->rho = 0.9;
    p->eps = 1e-6;
    break;
  case DPT_SOLVER_ASGD:
    p->lambd = 1e-4;
    p->alpha = 0.75;
    p->t0 = 1e6;
    break;
  case DPT_SOLVER_RPROP:
    p->eta_minus = 0.5;
    p->eta_plus = 1.2;
    p->step_min = 1e-6;
    p->step_max = 50;
    break;
  case DPT_SOLVER_RMSPROP: p->alpha = 0.99; break;
  case DPT_SOLVER_ADAM: p->lr = 1e-3; break;
  case DPT_SOLVER_ADAMAX: p->lr = 2e-3; break;
  case DPT_SOLVER_ADAMW:
    p->lr = 1e-3;
    p->weight_decay = 1e-2;
    break;
  case DPT_SOLVER_LION: /* Chen et al. 2023 / lucidrains' reference: lr 1e-4, betas 0.9/0.99 */
    p->lr = 1e-4;
    p->beta2 = 0.99;
    break;
  default: break;
  }
}

/* --- the hyperparameter table --- */

#define K(x) (1u << DPT_SOLVER_##x)
#define ALL ((1u << DPT_SOLVER_COUNT) - 1)
#define F(field) offsetof(dpt_solver_params, field)
#define NONE ((size_t)-1)

enum ptype { T_REAL, T_BOOL, T_PAIR };
enum bound { OPEN, CLOSED, UNBOUNDED };

typedef struct {
  const char *name;
  unsigned kinds;
  enum ptype type;
  size_t off, off2; /* off2: second field of a pair */
  double lo, hi;
  enum bound lo_b, hi_b;
  const char *help;
} hparam;

static const hparam table[] = {
    {"lr", ALL, T_REAL, F(lr), NONE, 0, 0, CLOSED, UNBOUNDED, "learning rate"},
    {"momentum", K(SGD) | K(RMSPROP), T_REAL, F(momentum), NONE, 0, 0, CLOSED, UNBOUNDED,
     "momentum factor"},
    {"dampening", K(SGD), T_REAL, F(dampening), NONE, 0, 1, CLOSED, CLOSED,
     "dampening for momentum"},
    {"nesterov", K(SGD), T_BOOL, F(nesterov), NONE, 0, 1, CLOSED, CLOSED,
     "Nesterov momentum (needs momentum > 0 and dampening 0)"},
    {"betas", K(ADAM) | K(ADAMAX) | K(ADAMW) | K(LION), T_PAIR, F(beta1), F(beta2), 0, 1, CLOSED,
     OPEN, "coefficients of the running averages of the gradient and its square"},
    {"eps", K(ADAGRAD) | K(ADADELTA) | K(RMSPROP) | K(ADAM) | K(ADAMAX) | K(ADAMW), T_REAL, F(eps),
     NONE, 0, 0, CLOSED, UNBOUNDED, "term added to the denominator for stability"},
    {"amsgrad", K(ADAM) | K(ADAMW), T_BOOL, F(amsgrad), NONE, 0, 1, CLOSED, CLOSED,
     "use the AMSGrad variant"},
    {"lr_decay", K(ADAGRAD), T_REAL, F(lr_decay), NONE, 0, 0, CLOSED, UNBOUNDED,
     "learning-rate decay"},
    {"initial_accumulator_value", K(ADAGRAD), T_REAL, F(initial_accumulator_value), NONE, 0, 0,
     CLOSED, UNBOUNDED, "starting value of the sum of squares"},
    {"rho", K(ADADELTA), T_REAL, F(rho), NONE, 0, 1, CLOSED, CLOSED,
     "coefficient of the running average of squared gradients"},
    {"lambd", K(ASGD), T_REAL, F(lambd), NONE, 0, 0, CLOSED, UNBOUNDED, "decay term"},
    {"alpha", K(ASGD), T_REAL, F(alpha), NONE, 0, 0, CLOSED, UNBOUNDED, "power for eta update"},
    {"alpha", K(RMSPROP), T_REAL, F(alpha), NONE, 0, 1, CLOSED, CLOSED, "smoothing constant"},
    {"t0", K(ASGD), T_REAL, F(t0), NONE, 0, 0, CLOSED, UNBOUNDED, "step at which averaging starts"},
    {"etas", K(RPROP), T_PAIR, F(eta_minus), F(eta_plus), 0, 0, OPEN, UNBOUNDED,
     "multiplicative decrease and increase factors (0 < etaminus < 1 < etaplus)"},
    {"step_sizes", K(RPROP), T_PAIR, F(step_min), F(step_max), 0, 0, CLOSED, UNBOUNDED,
     "minimal and maximal step sizes"},
    {"centered", K(RMSPROP), T_BOOL, F(centered), NONE, 0, 1, CLOSED, CLOSED,
     "normalise by an estimate of the gradient's variance"},
    {"weight_decay", ALL, T_REAL, F(weight_decay), NONE, 0, 0, CLOSED, UNBOUNDED,
     "weight decay (L2 on the gradient; decoupled for adamw and lion)"},
    {"maximize", ALL, T_BOOL, F(maximize), NONE, 0, 1, CLOSED, CLOSED,
     "maximize the objective instead of minimizing"},
};
#define NTABLE (sizeof table / sizeof table[0])

static double *real_at(dpt_solver_params *p, size_t off) {
  return (double *)((char *)p + off);
}
static double real_get(const dpt_solver_params *p, size_t off) {
  return *(const double *)((const char *)p + off);
}
static int *int_at(dpt_solver_params *p, size_t off) {
  return (int *)((char *)p + off);
}
static int int_get(const dpt_solver_params *p, size_t off) {
  return *(const int *)((const char *)p + off);
}

static const hparam *lookup(dpt_solver_kind kind, const char *key) {
  for (size_t i = 0; i < NTABLE; i++)
    if ((table[i].kinds & (1u << kind)) && !strcmp(table[i].name, key)) return &table[i];
  return NULL;
}

int dpt_optim_solver_set(dpt_solver_params *p, const char *key, const char *value, char *err,
                         size_t errlen) {
  const char *sname = dpt_optim_solver_name(p->kind);
  const hparam *h = lookup(p->kind, key);
  if (!h) {
    char list[512] = "";
    for (size_t i = 0; i < NTABLE; i++) {
      if (!(table[i].kinds & (1u << p->kind))) continue;
      if (*list) strncat(list, ", ", sizeof list - strlen(list) - 1);
      strncat(list, table[i].name, sizeof list - strlen(list) - 1);
    }
    snprintf(err, errlen, "%s takes no hyperparameter '%s' (it takes: %s)", sname, key, list);
    return DPT_EINVAL;
  }
  switch (h->type) {
  case T_REAL:
    if (dpt_parse_double(value, real_at(p, h->off))) goto bad;
    return DPT_OK;
  case T_BOOL:
    if (dpt_parse_bool(value, int_at(p, h->off))) {
      snprintf(err, errlen,
               "%s: %s = '%s' is not a boolean (expected 1/0, true/false, yes/no or on/off)", sname,
               key, value);
      return DPT_EINVAL;
    }
    return DPT_OK;
  case T_PAIR: {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", value);
    char *comma = strchr(buf, ',');
    double a, b;
    if (!comma) goto bad_pair;
    *comma = 0;
    if (dpt_parse_double(buf, &a) || dpt_parse_double(comma + 1, &b)) goto bad_pair;
    *real_at(p, h->off) = a;
    *real_at(p, h->off2) = b;
    return DPT_OK;
  bad_pair:
    snprintf(err, errlen, "%s: %s = '%s' is not a pair of numbers (expected e.g. \"%g,%g\")", sname,
             key, value, real_get(p, h->off), real_get(p, h->off2));
    return DPT_EINVAL;
  }
  }
bad:
  snprintf(err, errlen, "%s: %s = '%s' is not a finite number", sname, key, value);
  return DPT_EINVAL;
}

/* --- validation --- */

static int in_range(double v, const hparam *h) {
  if (!isfinite(v)) return 0;
  if (h->lo_b == CLOSED && v < h->lo) return 0;
  if (h->lo_b == OPEN && v <= h->lo) return 0;
  if (h->hi_b == CLOSED && v > h->hi) return 0;
  if (h->hi_b == OPEN && v >= h->hi) return 0;
  return 1;
}

static void range_text(const hparam *h, char *buf, size_t len) {
  if (h->hi_b == UNBOUNDED)
    snprintf(buf, len, "%s %g", h->lo_b == CLOSED ? ">=" : ">", h->lo);
  else
    snprintf(buf, len, "%c%g, %g%c", h->lo_b == CLOSED ? '[' : '(', h->lo, h->hi,
             h->hi_b == CLOSED ? ']' : ')');
}

int dpt_optim_solver_validate(const dpt_solver_params *p, char *err, size_t errlen) {
  if ((unsigned)p->kind >= DPT_SOLVER_COUNT) {
    snprintf(err, errlen, "solver kind %d is not a solver", (int)p->kind);
    return DPT_EINVAL;
  }
  const char *sname = dpt_optim_solver_name(p->kind);
  for (size_t i = 0; i < NTABLE; i++) {
    const hparam *h = &table[i];
    if (!(h->kinds & (1u << p->kind)) || h->type == T_BOOL) continue;
    char range[64];
    range_text(h, range, sizeof range);
    double a = real_get(p, h->off);
    if (!in_range(a, h)) {
      if (h->type == T_PAIR)
        snprintf(err, errlen, "%s: %s[0] = %g is out of range (expected %s)", sname, h->name, a,
                 range);
      else
        snprintf(err, errlen, "%s: %s = %g is out of range (expected %s)", sname, h->name, a,
                 range);
      return DPT_EINVAL;
    }
    if (h->type == T_PAIR && !in_range(real_get(p, h->off2), h)) {
      snprintf(err, errlen, "%s: %s[1] = %g is out of range (expected %s)", sname, h->name,
               real_get(p, h->off2), range);
      return DPT_EINVAL;
    }
  }
  /* Constraints between parameters (torch's own checks where it has them). */
  if (p->kind == DPT_SOLVER_RPROP && !(p->eta_minus < 1.0 && 1.0 < p->eta_plus)) {
    snprintf(err, errlen,
             "rprop: etas = (%g, %g) are in the wrong order (expected 0 < etaminus < 1 < etaplus)",
             p->eta_minus, p->eta_plus);
    return DPT_EINVAL;
  }
  /* torch writes etas, step_sizes and lr into float32 tensors and raises "value cannot be
   * converted to type float without overflow" for anything above FLT_MAX (checked in double,
   * so even 3.4028235e38, which would round to FLT_MAX). Values that round to 0 or 1 are
   * accepted, as torch accepts them; the step follows torch's order of sign replacement. */
  if (p->kind == DPT_SOLVER_RPROP) {
    const struct {
      const char *name;
      double v;
    } f32[] = {{"etas[1]", p->eta_plus},
               {"step_sizes[0]", p->step_min},
               {"step_sizes[1]", p->step_max},
               {"lr", p->lr}};
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) {
      if (f32[i].v > FLT_MAX) {
        snprintf(err, errlen, "rprop: %s = %g overflows float32 (expected at most %.9g, as torch)",
                 f32[i].name, f32[i].v, (double)FLT_MAX);
        return DPT_EINVAL;
      }
    }
  }
  if (p->kind == DPT_SOLVER_RPROP && p->step_min > p->step_max) {
    snprintf(err, errlen,
             "rprop: step_sizes = (%g, %g) are in the wrong order (expected min <= max)",
             p->step_min, p->step_max);
    return DPT_EINVAL;
  }
  if (p->kind == DPT_SOLVER_SGD && p->nesterov && (p->momentum <= 0 || p->dampening != 0)) {
    snprintf(err, errlen,
             "sgd: nesterov needs momentum > 0 and dampening = 0 (got momentum %g, dampening %g)",
             p->momentum, p->dampening);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

int dpt_optim_solver_describe(const dpt_solver_params *p, dpt_optim_param_fn fn, void *ctx) {
  int count = 0;
  for (size_t i = 0; i < NTABLE; i++) {
    const hparam *h = &table[i];
    if (!(h->kinds & (1u << p->kind))) continue;
    char value[64];
    if (h->type == T_BOOL)
      snprintf(value, sizeof value, "%s", int_get(p, h->off) ? "true" : "false");
    else if (h->type == T_PAIR) {
      char a[32], b[32];
      dpt_format_double(a, sizeof a, real_get(p, h->off));
      dpt_format_double(b, sizeof b, real_get(p, h->off2));
      snprintf(value, sizeof value, "%s,%s", a, b);
    } else
      dpt_format_double(value, sizeof value, real_get(p, h->off));
    fn(ctx, h->name, value, h->help);
    count++;
  }
  return count;
}

/* --- lifecycle and state --- */

/* Vector state alignment: 64 bytes, one cache line / one AVX-512 vector. */
#define DPT_STATE_ALIGN 64

static int add_vec(struct dpt_solver *s, const char *name, float init) {
  size_t bytes = (s->n ? s->n : 1) * sizeof(float);
  bytes = (bytes + DPT_STATE_ALIGN - 1) / DPT_STATE_ALIGN * DPT_STATE_ALIGN;
  float *v = aligned_alloc(DPT_STATE_ALIGN, bytes);
  if (!v) return -1;
  for (size_t i = 0; i < s->n; i++) v[i] = init;
  s->vec_name[s->nvec] = name;
  s->vec[s->nvec++] = v;
  return 0;
}

static void add_scalar(struct dpt_solver *s, const char *name, double init) {
  s->scalar_name[s->nscalar] = name;
  s->scalar[s->nscalar++] = init;
}

int dpt_solver_create(const dpt_solver_params *p, size_t n, dpt_solver **out, char *err,
                      size_t errlen) {
  *out = NULL;
  int rc = dpt_optim_solver_validate(p, err, errlen);
  if (rc) return rc;
  struct dpt_solver *s = calloc(1, sizeof *s);
  if (!s) goto nomem;
  s->p = *p;
  s->n = n;
  add_scalar(s, "step", 0);
  int bad = 0;
  switch (p->kind) {
  case DPT_SOLVER_GD: break;
  case DPT_SOLVER_SGD:
    /* the buffer exists when the solver is created with momentum != 0; torch's starts as None
     * and is set at the first step whose (live) momentum is != 0: has_momentum_buffer */
    s->has_momentum = p->momentum != 0;
    if (s->has_momentum) {
      bad |= add_vec(s, "momentum_buffer", 0);
      add_scalar(s, "has_momentum_buffer", 0);
    }
    break;
  case DPT_SOLVER_ADAGRAD: bad |= add_vec(s, "sum", (float)p->initial_accumulator_value); break;
  case DPT_SOLVER_ADADELTA:
    bad |= add_vec(s, "square_avg", 0);
    bad |= add_vec(s, "acc_delta", 0);
    break;
  case DPT_SOLVER_ASGD:
    bad |= add_vec(s, "ax", 0);
    /* torch.tensor(lr), a float32, made at the first step from the lr of that step: the
     * kernel sets it again then (the value here is for a solver not yet stepped) */
    add_scalar(s, "eta", dpt_optim_round_f32(p->lr));
    add_scalar(s, "mu", 1.0);
    break;
  case DPT_SOLVER_RPROP:
    bad |= add_vec(s, "prev", 0);
    bad |= add_vec(s, "step_size", (float)p->lr); /* refilled with the lr of the first step */
    break;
  case DPT_SOLVER_RMSPROP:
    bad |= add_vec(s, "square_avg", 0);
    /* torch makes the buffer at the first step if momentum > 0 then, and raises KeyError if
     * momentum is 0 then and > 0 later; dpt's is zeros from creation, the same values */
    s->has_momentum = p->momentum > 0;
    if (s->has_momentum) bad |= add_vec(s, "momentum_buffer", 0);
    if (p->centered) bad |= add_vec(s, "grad_avg", 0);
    break;
  case DPT_SOLVER_ADAM:
  case DPT_SOLVER_ADAMW:
    s->has_momentum = 1;
    bad |= add_vec(s, "exp_avg", 0);
    bad |= add_vec(s, "exp_avg_sq", 0);
    if (p->amsgrad) bad |= add_vec(s, "max_exp_avg_sq", 0);
    break;
  case DPT_SOLVER_ADAMAX:
    s->has_momentum = 1;
    bad |= add_vec(s, "exp_avg", 0);
    bad |= add_vec(s, "exp_inf", 0);
    break;
  case DPT_SOLVER_LION:
    s->has_momentum = 1;
    bad |= add_vec(s, "exp_avg", 0);
    break;
  default: break;
  }
  if (bad) goto nomem;
  *out = s;
  return DPT_OK;
nomem:
  dpt_solver_free(s);
  snprintf(err, errlen, "%s: cannot allocate state for %zu parameters",
           dpt_optim_solver_name(p->kind), n);
  return DPT_ENOMEM;
}

void dpt_solver_free(dpt_solver *s) {
  if (!s) return;
  for (int i = 0; i < s->nvec; i++) free(s->vec[i]);
  free(s);
}

void dpt_solver_step(dpt_solver *s, float *restrict param, const float *restrict grad) {
  kinds[s->p.kind].step(s, param, grad);
}

dpt_solver_params *dpt_solver_hparams(dpt_solver *s) {
  return &s->p;
}
size_t dpt_solver_len(const dpt_solver *s) {
  return s->n;
}
void dpt_solver_set_lr(dpt_solver *s, double lr) {
  s->p.lr = lr;
}

/* Fixed at creation, not the live value: a schedule that sets momentum to 0 must be able to
 * set it back (issue 15). */
int dpt_solver_has_momentum(const dpt_solver *s) {
  return s->has_momentum;
}

static int uses_beta1(const dpt_solver *s) {
  return s->p.kind == DPT_SOLVER_ADAM || s->p.kind == DPT_SOLVER_ADAMAX ||
         s->p.kind == DPT_SOLVER_ADAMW || s->p.kind == DPT_SOLVER_LION;
}

double dpt_solver_momentum(const dpt_solver *s) {
  return uses_beta1(s) ? s->p.beta1 : s->p.momentum;
}

void dpt_solver_set_momentum(dpt_solver *s, double m) {
  if (uses_beta1(s))
    s->p.beta1 = m;
  else if (s->has_momentum)
    s->p.momentum = m;
}

int dpt_solver_state_count(const dpt_solver *s) {
  return s->nvec + s->nscalar;
}

void *dpt_solver_state(dpt_solver *s, int i, dpt_state_info *info) {
  if (i < 0 || i >= s->nvec + s->nscalar) return NULL;
  if (i < s->nvec) {
    info->name = s->vec_name[i];
    info->type = DPT_STATE_VECTOR;
    return s->vec[i];
  }
  info->name = s->scalar_name[i - s->nvec];
  info->type = DPT_STATE_SCALAR;
  return &s->scalar[i - s->nvec];
}

int dpt_solver_state_find(const dpt_solver *s, const char *name) {
  for (int i = 0; i < s->nvec; i++)
    if (!strcmp(s->vec_name[i], name)) return i;
  for (int i = 0; i < s->nscalar; i++)
    if (!strcmp(s->scalar_name[i], name)) return s->nvec + i;
  return DPT_ESTATE;
}

size_t dpt_solver_state_bytes(const dpt_solver *s) {
  return (size_t)s->nvec * s->n * sizeof(float) + (size_t)s->nscalar * sizeof(double);
}

size_t dpt_solver_bytes_per_element(const dpt_solver *s) {
  /* param read+write, grad read, each state vector read+write */
  return sizeof(float) * (3 + 2 * (size_t)s->nvec);
}

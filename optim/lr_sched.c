/* lr_sched.c — learning-rate schedulers, mirroring torch.optim.lr_scheduler 1.13.
 *
 * Each kind is written as torch computes it: the recursive ("chainable") get_lr() that step()
 * uses, the closed form only where torch uses it (SequentialLR's step(0) at its milestone), and
 * every expression in torch's order, in double precision.
 * All mutable state is the st[] array of named doubles, so saving and restoring those values
 * resumes a schedule exactly. The warm-up chain is torch's SequentialLR([warmup, main],
 * milestones=[warmup_iters]) including what its constructor does to the children.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "optim.h"

#define PI 3.14159265358979323846

/* State entries: the same fixed list for every kind (unused ones stay put). */
enum {
  S_LR,       /* the optimizer group's lr: what the next solver step uses */
  S_MOMENTUM, /* momentum / beta1 (cyclic, onecycle) */
  S_EPOCH,    /* main scheduler's last_epoch */
  S_WEPOCH,   /* warm-up scheduler's last_epoch */
  S_SEQ,      /* the chain's own last_epoch */
  S_TCUR,     /* cosine_warm_restarts: T_cur */
  S_TI,       /* cosine_warm_restarts: T_i */
  S_BEST,     /* plateau: best metric so far */
  S_BAD,      /* plateau: num_bad_epochs */
  S_COOL,     /* plateau: cooldown_counter */
  S_COUNT
};
static const char *const state_names[] = {
    "lr",    "momentum", "last_epoch", "warmup_last_epoch", "seq_last_epoch",
    "T_cur", "T_i",      "best",       "num_bad_epochs",    "cooldown_counter"};

_Static_assert(sizeof state_names / sizeof state_names[0] == S_COUNT, "one name per state slot");

struct dpt_sched {
  dpt_sched_params p;
  double base_lr;    /* torch's base_lrs[0] / initial_lr */
  double cyc_base;   /* CyclicLR base_lr, OneCycle initial_lr */
  double cyc_max;    /* CyclicLR / OneCycle max_lr */
  double min_lr1;    /* OneCycle min_lr */
  long T_max, total; /* resolved lengths (cosine T_max, onecycle total_steps, poly iters) */
  int momentum;      /* momentum is cycled */
  double st[S_COUNT];
};

/* --- names --- */

static const char *const kind_names[] = {
    [DPT_SCHED_NONE] = "none",
    [DPT_SCHED_STEP] = "step",
    [DPT_SCHED_MULTISTEP] = "multistep",
    [DPT_SCHED_EXPONENTIAL] = "exponential",
    [DPT_SCHED_COSINE] = "cosine",
    [DPT_SCHED_COSINE_WARM_RESTARTS] = "cosine_warm_restarts",
    [DPT_SCHED_CYCLIC] = "cyclic",
    [DPT_SCHED_ONECYCLE] = "onecycle",
    [DPT_SCHED_LINEAR] = "linear",
    [DPT_SCHED_CONSTANT] = "constant",
    [DPT_SCHED_POLYNOMIAL] = "polynomial",
    [DPT_SCHED_PLATEAU] = "plateau",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == DPT_SCHED_COUNT,
               "one name per scheduler kind");

const char *dpt_optim_sched_name(dpt_sched_kind kind) {
  return (unsigned)kind < DPT_SCHED_COUNT ? kind_names[kind] : "?";
}

int dpt_optim_sched_kind(const char *name, dpt_sched_kind *kind, char *err, size_t errlen) {
  for (int k = 0; k < DPT_SCHED_COUNT; k++)
    if (name && !strcasecmp(name, kind_names[k])) {
      *kind = (dpt_sched_kind)k;
      return DPT_OK;
    }
  char list[256] = "";
  for (int k = 0; k < DPT_SCHED_COUNT; k++) {
    if (k) strncat(list, ", ", sizeof list - strlen(list) - 1);
    strncat(list, kind_names[k], sizeof list - strlen(list) - 1);
  }
  snprintf(err, errlen, "unknown scheduler '%s' (expected one of: %s)", name ? name : "", list);
  return DPT_EINVAL;
}

void dpt_optim_sched_defaults(dpt_sched_kind kind, dpt_sched_params *p) {
  memset(p, 0, sizeof *p);
  p->kind = kind;
  p->interval = (kind == DPT_SCHED_CYCLIC || kind == DPT_SCHED_ONECYCLE) ? DPT_SCHED_EVERY_STEP
                                                                         : DPT_SCHED_EVERY_EPOCH;
  p->step_size = 30; /* torch has no default; 30 as in its docs' example */
  p->gamma = kind == DPT_SCHED_CYCLIC ? 1.0 : 0.1;
  p->milestones[0] = 30;
  p->milestones[1] = 80;
  p->n_milestones = 2;
  p->T_0 = 10;
  p->T_mult = 1;
  p->step_size_up = 2000;
  p->cycle_momentum = 1;
  p->base_momentum = kind == DPT_SCHED_ONECYCLE ? 0.85 : 0.8;
  p->max_momentum = kind == DPT_SCHED_ONECYCLE ? 0.95 : 0.9;
  p->pct_start = 0.3;
  p->anneal_cos = 1;
  p->div_factor = 25;
  p->final_div_factor = 1e4;
  p->start_factor = 1.0 / 3;
  p->end_factor = 1.0;
  p->factor = kind == DPT_SCHED_PLATEAU ? 0.1 : 1.0 / 3;
  p->total_iters = 5;
  p->power = 1.0;
  p->patience = 10;
  p->threshold = 1e-4;
  p->eps = 1e-8;
  p->warmup_factor = 1.0 / 3;
}

/* --- hyperparameter table: key, kinds, type, field, range, help --- */

#define K(x) (1u << DPT_SCHED_##x)
#define ALLK (((1u << DPT_SCHED_COUNT) - 1))
#define F(f) offsetof(dpt_sched_params, f)
enum { T_INT, T_REAL, T_BOOL, T_LIST, T_ENUM };

typedef struct {
  const char *key;
  unsigned kinds;
  int type;
  size_t off;
  double lo, hi;       /* inclusive range */
  const char *choices; /* T_ENUM: names separated by '|', value = index */
  const char *help;
} hparam;

static const hparam table[] = {
    {"interval", ALLK, T_ENUM, F(interval), 0, 1, "epoch|step", "step once per epoch or per step"},
    {"step_size", K(STEP), T_INT, F(step_size), 1, 1e9, NULL, "period of decay"},
    {"gamma", K(STEP) | K(MULTISTEP) | K(EXPONENTIAL), T_REAL, F(gamma), 0, 1e9, NULL,
     "multiplicative factor of decay"},
    {"milestones", K(MULTISTEP), T_LIST, F(milestones), 1, 1e9, NULL,
     "ascending steps at which lr is multiplied by gamma"},
    {"T_max", K(COSINE), T_INT, F(T_max), 0, 1e9, NULL, "half period (0: the whole run)"},
    {"eta_min", K(COSINE) | K(COSINE_WARM_RESTARTS), T_REAL, F(eta_min), 0, 1e9, NULL,
     "minimum learning rate"},
    {"T_0", K(COSINE_WARM_RESTARTS), T_INT, F(T_0), 1, 1e9, NULL, "steps to the first restart"},
    {"T_mult", K(COSINE_WARM_RESTARTS), T_INT, F(T_mult), 1, 1e9, NULL,
     "factor growing the period after each restart"},
    {"base_lr", K(CYCLIC), T_REAL, F(base_lr), 0, 1e9, NULL,
     "lower bound of the cycle (0: the solver's lr)"},
    {"max_lr", K(CYCLIC) | K(ONECYCLE), T_REAL, F(max_lr), 0, 1e9, NULL,
     "upper bound of the cycle (0: 10 x the solver's lr)"},
    {"step_size_up", K(CYCLIC), T_INT, F(step_size_up), 1, 1e9, NULL, "steps rising"},
    {"step_size_down", K(CYCLIC), T_INT, F(step_size_down), 0, 1e9, NULL,
     "steps falling (0: same as up)"},
    {"mode", K(CYCLIC), T_ENUM, F(cyclic_mode), 0, 2, "triangular|triangular2|exp_range",
     "cycle amplitude policy"},
    {"gamma", K(CYCLIC), T_REAL, F(gamma), 0, 1e9, NULL, "exp_range decay per step"},
    {"cycle_momentum", K(CYCLIC) | K(ONECYCLE), T_BOOL, F(cycle_momentum), 0, 1, NULL,
     "cycle momentum (or beta1) inversely to lr"},
    {"base_momentum", K(CYCLIC) | K(ONECYCLE), T_REAL, F(base_momentum), 0, 1, NULL,
     "lower momentum bound"},
    {"max_momentum", K(CYCLIC) | K(ONECYCLE), T_REAL, F(max_momentum), 0, 1, NULL,
     "upper momentum bound"},
    {"total_steps", K(ONECYCLE), T_INT, F(total_steps), 0, 1e12, NULL,
     "steps in the cycle (0: the whole run)"},
    {"pct_start", K(ONECYCLE), T_REAL, F(pct_start), 0, 1, NULL, "fraction of the cycle rising"},
    {"anneal_strategy", K(ONECYCLE), T_ENUM, F(anneal_cos), 0, 1, "linear|cos", "annealing shape"},
    {"div_factor", K(ONECYCLE), T_REAL, F(div_factor), 1e-12, 1e12, NULL,
     "initial lr = max_lr / div_factor"},
    {"final_div_factor", K(ONECYCLE), T_REAL, F(final_div_factor), 1e-12, 1e12, NULL,
     "final lr = initial lr / final_div_factor"},
    {"three_phase", K(ONECYCLE), T_BOOL, F(three_phase), 0, 1, NULL, "fast.ai's three phases"},
    {"start_factor", K(LINEAR), T_REAL, F(start_factor), 1e-12, 1, NULL,
     "lr multiplier at the start"},
    {"end_factor", K(LINEAR), T_REAL, F(end_factor), 0, 1, NULL, "lr multiplier at the end"},
    {"factor", K(CONSTANT), T_REAL, F(factor), 1e-12, 1, NULL, "lr multiplier until total_iters"},
    {"total_iters", K(LINEAR) | K(CONSTANT), T_INT, F(total_iters), 1, 1e12, NULL,
     "steps the factor applies over"},
    {"total_iters", K(POLYNOMIAL), T_INT, F(total_iters), 0, 1e12, NULL,
     "steps to decay over (0: the whole run)"},
    {"power", K(POLYNOMIAL), T_REAL, F(power), 0, 1e9, NULL, "power of the polynomial"},
    {"mode", K(PLATEAU), T_ENUM, F(plateau_max), 0, 1, "min|max",
     "whether the metric should go down or up"},
    {"factor", K(PLATEAU), T_REAL, F(factor), 0, 0.999999999, NULL,
     "lr multiplier on a plateau (< 1)"},
    {"patience", K(PLATEAU), T_INT, F(patience), 0, 1e9, NULL,
     "bad epochs tolerated before reducing"},
    {"threshold", K(PLATEAU), T_REAL, F(threshold), 0, 1e9, NULL, "least significant change"},
    {"threshold_mode", K(PLATEAU), T_ENUM, F(threshold_abs), 0, 1, "rel|abs",
     "threshold relative to best, or absolute"},
    {"cooldown", K(PLATEAU), T_INT, F(cooldown), 0, 1e9, NULL, "epochs to wait after a reduction"},
    {"min_lr", K(PLATEAU), T_REAL, F(min_lr), 0, 1e9, NULL, "lower bound on lr"},
    {"eps", K(PLATEAU), T_REAL, F(eps), 0, 1e9, NULL, "smallest lr change applied"},
    {"warmup", ALLK & ~K(NONE), T_ENUM, F(warmup), 0, 2, "none|linear|constant",
     "warm-up scheduler run first (SequentialLR)"},
    {"warmup_iters", ALLK & ~K(NONE), T_INT, F(warmup_iters), 0, 1e12, NULL,
     "warm-up length in intervals"},
    {"warmup_factor", ALLK & ~K(NONE), T_REAL, F(warmup_factor), 1e-12, 1, NULL,
     "warm-up start factor (linear) or factor (constant)"},
};
#define NTABLE (sizeof table / sizeof table[0])

static const hparam *lookup(dpt_sched_kind kind, const char *key) {
  for (size_t i = 0; i < NTABLE; i++)
    if ((table[i].kinds & (1u << kind)) && !strcmp(table[i].key, key)) return &table[i];
  return NULL;
}

static int *ifield(dpt_sched_params *p, size_t off) {
  return (int *)((char *)p + off);
}
static double *dfield(dpt_sched_params *p, size_t off) {
  return (double *)((char *)p + off);
}
static int iget(const dpt_sched_params *p, size_t off) {
  return *(const int *)((const char *)p + off);
}
static double dget(const dpt_sched_params *p, size_t off) {
  return *(const double *)((const char *)p + off);
}

/* The index of word in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *word) {
  int i = 0;
  for (const char *c = choices; *c; i++) {
    size_t len = strcspn(c, "|");
    if (strlen(word) == len && !strncasecmp(c, word, len)) return i;
    c += len + (c[len] == '|');
  }
  return -1;
}

static void choice_name(const char *choices, int index, char *out, size_t len) {
  const char *c = choices;
  for (int i = 0; i < index && *c; i++) c += strcspn(c, "|") + 1;
  snprintf(out, len, "%.*s", (int)strcspn(c, "|"), c);
}

int dpt_optim_sched_set(dpt_sched_params *p, const char *key, const char *value, char *err,
                        size_t errlen) {
  const char *name = dpt_optim_sched_name(p->kind);
  const hparam *h = lookup(p->kind, key);
  if (!h) {
    char list[600] = "";
    for (size_t i = 0; i < NTABLE; i++) {
      if (!(table[i].kinds & (1u << p->kind)) ||
          (i && !strcmp(table[i].key, "gamma") && lookup(p->kind, "gamma") != &table[i]))
        continue;
      if (*list) strncat(list, ", ", sizeof list - strlen(list) - 1);
      strncat(list, table[i].key, sizeof list - strlen(list) - 1);
    }
    snprintf(err, errlen, "scheduler %s takes no hyperparameter '%s' (it takes: %s)", name, key,
             *list ? list : "none");
    return DPT_EINVAL;
  }
  double v;
  switch (h->type) {
  case T_ENUM: {
    int i = choice_index(h->choices, value);
    if (i < 0) {
      snprintf(err, errlen, "%s: %s = '%s' is not one of %s", name, key, value, h->choices);
      return DPT_EINVAL;
    }
    *ifield(p, h->off) = i;
    return DPT_OK;
  }
  case T_BOOL:
    if (dpt_parse_bool(value, ifield(p, h->off))) {
      snprintf(err, errlen,
               "%s: %s = '%s' is not a boolean (expected 1/0, true/false, yes/no or on/off)", name,
               key, value);
      return DPT_EINVAL;
    }
    return DPT_OK;
  case T_LIST: {
    int n = 0;
    const char *s = value;
    while (*s) {
      char *end;
      errno = 0;
      long m = strtol(s, &end, 10);
      if (end == s || errno || n == DPT_SCHED_MAX_MILESTONES || m < INT32_MIN || m > INT32_MAX) {
        snprintf(err, errlen,
                 "%s: %s = '%s' is not a list of at most %d integers (expected e.g. \"30,80\")",
                 name, key, value, DPT_SCHED_MAX_MILESTONES);
        return DPT_EINVAL;
      }
      p->milestones[n++] = (int)m;
      s = end;
      while (*s == ' ') s++;
      if (*s == ',') s++;
    }
    p->n_milestones = n;
    return DPT_OK;
  }
  case T_INT: {
    long w;
    if (dpt_parse_long(value, &w) || w < -2000000000L || w > 2000000000L) {
      snprintf(err, errlen, "%s: %s = '%s' is not a whole number", name, key, value);
      return DPT_EINVAL;
    }
    *ifield(p, h->off) = (int)w;
    return DPT_OK;
  }
  default:
    if (dpt_parse_double(value, &v)) {
      snprintf(err, errlen, "%s: %s = '%s' is not a finite number", name, key, value);
      return DPT_EINVAL;
    }
    *dfield(p, h->off) = v;
    return DPT_OK;
  }
}

int dpt_optim_sched_validate(const dpt_sched_params *p, char *err, size_t errlen) {
  if ((unsigned)p->kind >= DPT_SCHED_COUNT) {
    snprintf(err, errlen, "scheduler kind %d is not a scheduler", (int)p->kind);
    return DPT_EINVAL;
  }
  const char *name = dpt_optim_sched_name(p->kind);
  for (size_t i = 0; i < NTABLE; i++) {
    const hparam *h = &table[i];
    if (!(h->kinds & (1u << p->kind)) || lookup(p->kind, h->key) != h) continue;
    if (h->type == T_LIST) {
      for (int k = 0; k < p->n_milestones; k++)
        if (p->milestones[k] < h->lo || (k && p->milestones[k] < p->milestones[k - 1])) {
          snprintf(err, errlen,
                   "%s: milestones must be positive and ascending (got %d at position %d)", name,
                   p->milestones[k], k + 1);
          return DPT_EINVAL;
        }
      continue;
    }
    double v = (h->type == T_REAL) ? dget(p, h->off) : iget(p, h->off);
    if (!(v >= h->lo && v <= h->hi)) {
      snprintf(err, errlen, "%s: %s = %g is out of range (expected [%g, %g])", name, h->key, v,
               h->lo, h->hi);
      return DPT_EINVAL;
    }
  }
  if ((p->kind == DPT_SCHED_CYCLIC || p->kind == DPT_SCHED_ONECYCLE) && p->cycle_momentum &&
      p->base_momentum > p->max_momentum) {
    snprintf(err, errlen, "%s: base_momentum = %g is above max_momentum = %g", name,
             p->base_momentum, p->max_momentum);
    return DPT_EINVAL;
  }
  if (p->warmup && p->warmup_iters < 1) {
    snprintf(err, errlen, "%s: warmup_iters = %d is out of range (expected >= 1 with warmup)", name,
             p->warmup_iters);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

int dpt_optim_sched_describe(const dpt_sched_params *p, dpt_optim_param_fn fn, void *ctx) {
  int n = 0;
  for (size_t i = 0; i < NTABLE; i++) {
    const hparam *h = &table[i];
    if (!(h->kinds & (1u << p->kind)) || lookup(p->kind, h->key) != h) continue;
    char v[256] = "";
    switch (h->type) {
    case T_ENUM: choice_name(h->choices, iget(p, h->off), v, sizeof v); break;
    case T_BOOL: snprintf(v, sizeof v, "%s", iget(p, h->off) ? "true" : "false"); break;
    case T_INT: snprintf(v, sizeof v, "%d", iget(p, h->off)); break;
    case T_REAL: dpt_format_double(v, sizeof v, dget(p, h->off)); break;
    case T_LIST:
      for (int k = 0; k < p->n_milestones; k++)
        snprintf(v + strlen(v), sizeof v - strlen(v), "%s%d", k ? "," : "", p->milestones[k]);
      break;
    }
    fn(ctx, h->key, v, h->help);
    n++;
  }
  return n;
}

/* --- the kinds: torch's get_lr() (recursive) and closed forms --- */

static double pymod(double a, double m) {
  return a - m * floor(a / m);
}

static int milestone_count(const dpt_sched_params *p, long e) {
  int c = 0;
  for (int k = 0; k < p->n_milestones; k++) c += p->milestones[k] == e;
  return c;
}

/* CyclicLR.get_lr at last_epoch e; sets *mom when momentum cycles. */
static double cyclic_lr(const dpt_sched *s, double e, double *mom) {
  const dpt_sched_params *p = &s->p;
  double up = p->step_size_up, down = p->step_size_down ? p->step_size_down : up;
  double total = up + down, ratio = up / total;
  double cycle = floor(1 + e / total);
  double x = 1. + e / total - cycle;
  double scale = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
  double fn = p->cyclic_mode == 0   ? 1.
              : p->cyclic_mode == 1 ? 1 / pow(2., cycle - 1)
                                    : pow(p->gamma, e);
  double base_height = (s->cyc_max - s->cyc_base) * scale;
  double lr = s->cyc_base + base_height * fn;
  if (s->momentum) {
    double mh = (p->max_momentum - p->base_momentum) * scale;
    *mom = p->max_momentum - mh * fn;
  }
  return lr;
}

static double anneal(int cos_shape, double start, double end, double pct) {
  if (cos_shape) {
    double cos_out = cos(PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
  }
  return (end - start) * pct + start;
}

/* OneCycleLR.get_lr at step e. */
static double onecycle_lr(const dpt_sched *s, double e, double *mom) {
  const dpt_sched_params *p = &s->p;
  double T = (double)s->total;
  if (e > T) e = T; /* torch raises past the end; dpt holds the final value */
  typedef struct {
    double end, lr0, lr1, m0, m1; /* end_step, start/end lr, start/end momentum */
  } phase;
  double init = s->cyc_base, mx = s->cyc_max, mn = s->min_lr1;
  double bm = p->base_momentum, xm = p->max_momentum;
  phase ph[3];
  int n;
  if (p->three_phase) {
    ph[0] = (phase){p->pct_start * T - 1, init, mx, xm, bm};
    ph[1] = (phase){2 * p->pct_start * T - 2, mx, init, bm, xm};
    ph[2] = (phase){T - 1, init, mn, xm, xm};
    n = 3;
  } else {
    ph[0] = (phase){p->pct_start * T - 1, init, mx, xm, bm};
    ph[1] = (phase){T - 1, mx, mn, bm, xm};
    n = 2;
  }
  double start = 0;
  for (int i = 0; i < n; i++) {
    if (e <= ph[i].end || i == n - 1) {
      double pct = (e - start) / (ph[i].end - start);
      if (s->momentum) *mom = anneal(p->anneal_cos, ph[i].m0, ph[i].m1, pct);
      return anneal(p->anneal_cos, ph[i].lr0, ph[i].lr1, pct);
    }
    start = ph[i].end;
  }
  return s->st[S_LR];
}

/* get_lr() of the main kind at last_epoch e from the current lr (torch's step() path). */
static double main_get_lr(dpt_sched *s, long e) {
  const dpt_sched_params *p = &s->p;
  double lr = s->st[S_LR];
  switch (p->kind) {
  case DPT_SCHED_STEP: return (e == 0 || e % p->step_size != 0) ? lr : lr * p->gamma;
  case DPT_SCHED_MULTISTEP: {
    int c = milestone_count(p, e);
    return c ? lr * pow(p->gamma, c) : lr;
  }
  case DPT_SCHED_EXPONENTIAL: return e == 0 ? lr : lr * p->gamma;
  case DPT_SCHED_CONSTANT:
    if (e == 0) return lr * p->factor;
    if (e > p->total_iters || e != p->total_iters) return lr;
    return lr * (1.0 / p->factor);
  case DPT_SCHED_LINEAR:
    if (e == 0) return lr * p->start_factor;
    if (e > p->total_iters) return lr;
    return lr *
           (1. + (p->end_factor - p->start_factor) / (p->total_iters * p->start_factor +
                                                      (e - 1) * (p->end_factor - p->start_factor)));
  case DPT_SCHED_POLYNOMIAL: {
    double T = (double)s->total;
    if (e == 0 || e > T) return lr;
    double f = pow((1.0 - e / T) / (1.0 - (e - 1) / T), p->power);
    return lr * f;
  }
  case DPT_SCHED_COSINE: {
    double T = (double)s->T_max, em = p->eta_min;
    if (e == 0) return lr;
    if (pymod((double)(e - 1) - T, 2 * T) == 0)
      return lr + (s->base_lr - em) * (1 - cos(PI / T)) / 2;
    return (1 + cos(PI * e / T)) / (1 + cos(PI * (e - 1) / T)) * (lr - em) + em;
  }
  case DPT_SCHED_CYCLIC: return cyclic_lr(s, (double)e, &s->st[S_MOMENTUM]);
  case DPT_SCHED_ONECYCLE: return onecycle_lr(s, (double)e, &s->st[S_MOMENTUM]);
  default: return lr;
  }
}

/* What scheduler.step(0) gives: the closed form at 0 where torch has one. */
static double main_at_zero(dpt_sched *s) {
  const dpt_sched_params *p = &s->p;
  double b = s->base_lr;
  switch (p->kind) {
  case DPT_SCHED_MULTISTEP: {
    int c = 0;
    for (int k = 0; k < p->n_milestones; k++) c += p->milestones[k] <= 0;
    return b * pow(p->gamma, c);
  }
  case DPT_SCHED_CONSTANT: return b * (p->factor + (0 >= p->total_iters) * (1 - p->factor));
  case DPT_SCHED_LINEAR:
    return b * (p->start_factor + (p->end_factor - p->start_factor) * 0 / p->total_iters);
  case DPT_SCHED_POLYNOMIAL: return b * pow(1.0 - 0 / (double)s->total, p->power);
  case DPT_SCHED_COSINE:
    return p->eta_min + (b - p->eta_min) * (1 + cos(PI * 0 / (double)s->T_max)) / 2;
  case DPT_SCHED_COSINE_WARM_RESTARTS:
    s->st[S_TI] = p->T_0;
    s->st[S_TCUR] = 0;
    return p->eta_min + (b - p->eta_min) * (1 + cos(PI * 0 / p->T_0)) / 2;
  case DPT_SCHED_CYCLIC:
  case DPT_SCHED_ONECYCLE: return main_get_lr(s, 0);
  default: return b * pow(p->gamma, 0); /* step, exponential; plateau and none: b */
  }
}

/* The main kind's step() without argument. */
static void main_step(dpt_sched *s, double metric) {
  const dpt_sched_params *p = &s->p;
  if (p->kind == DPT_SCHED_NONE) return;
  if (p->kind == DPT_SCHED_PLATEAU) {
    double cur = metric;
    s->st[S_EPOCH] += 1;
    double best = s->st[S_BEST];
    int better =
        !p->plateau_max
            ? (!p->threshold_abs ? cur < best * (1. - p->threshold) : cur < best - p->threshold)
            : (!p->threshold_abs ? cur > best * (p->threshold + 1.) : cur > best + p->threshold);
    if (better) {
      s->st[S_BEST] = cur;
      s->st[S_BAD] = 0;
    } else {
      s->st[S_BAD] += 1;
    }
    if (s->st[S_COOL] > 0) {
      s->st[S_COOL] -= 1;
      s->st[S_BAD] = 0;
    }
    if (s->st[S_BAD] > p->patience) {
      double old = s->st[S_LR], nw = fmax(old * p->factor, p->min_lr);
      if (old - nw > p->eps) s->st[S_LR] = nw;
      s->st[S_COOL] = p->cooldown;
      s->st[S_BAD] = 0;
    }
    return;
  }
  if (p->kind == DPT_SCHED_COSINE_WARM_RESTARTS) {
    s->st[S_EPOCH] += 1;
    s->st[S_TCUR] += 1;
    if (s->st[S_TCUR] >= s->st[S_TI]) {
      s->st[S_TCUR] = s->st[S_TCUR] - s->st[S_TI];
      s->st[S_TI] = s->st[S_TI] * p->T_mult;
    }
    s->st[S_LR] =
        p->eta_min + (s->base_lr - p->eta_min) * (1 + cos(PI * s->st[S_TCUR] / s->st[S_TI])) / 2;
    return;
  }
  s->st[S_EPOCH] += 1;
  s->st[S_LR] = main_get_lr(s, (long)s->st[S_EPOCH]);
}

/* The warm-up's get_lr at its last_epoch e (LinearLR or ConstantLR to warmup_iters). */
static double warmup_get_lr(const dpt_sched *s, long e) {
  const dpt_sched_params *p = &s->p;
  double lr = s->st[S_LR], f = p->warmup_factor;
  long T = p->warmup_iters;
  if (p->warmup == 1) { /* LinearLR(start_factor=f, end_factor=1, total_iters=T) */
    if (e == 0) return lr * f;
    if (e > T) return lr;
    return lr * (1. + (1.0 - f) / (T * f + (e - 1) * (1.0 - f)));
  }
  if (e == 0) return lr * f; /* ConstantLR(factor=f, total_iters=T) */
  if (e > T || e != T) return lr;
  return lr * (1.0 / f);
}

/* --- lifecycle --- */

int dpt_sched_create(const dpt_sched_params *p, double base_lr, int has_momentum,
                     double base_momentum, long run_steps, dpt_sched **out, char *err,
                     size_t errlen) {
  *out = NULL;
  int rc = dpt_optim_sched_validate(p, err, errlen);
  if (rc) return rc;
  const char *name = dpt_optim_sched_name(p->kind);
  int cycles = (p->kind == DPT_SCHED_CYCLIC || p->kind == DPT_SCHED_ONECYCLE) && p->cycle_momentum;
  if (cycles && !has_momentum) {
    snprintf(err, errlen,
             "%s: cycle_momentum needs a solver with momentum or beta1 (this one has none); "
             "set cycle_momentum 0 or use sgd with momentum, rmsprop with momentum, adam, "
             "adamw, adamax or lion",
             name);
    return DPT_EINVAL;
  }
  long T = p->kind == DPT_SCHED_COSINE       ? p->T_max
           : p->kind == DPT_SCHED_ONECYCLE   ? p->total_steps
           : p->kind == DPT_SCHED_POLYNOMIAL ? p->total_iters
                                             : 1;
  long main_steps = run_steps - (p->warmup ? p->warmup_iters : 0);
  if (T == 0 && main_steps < 1) {
    snprintf(err, errlen,
             "%s: %s = 0 means the whole run, but the run length is unknown here "
             "(give %s explicitly)",
             name,
             p->kind == DPT_SCHED_COSINE     ? "T_max"
             : p->kind == DPT_SCHED_ONECYCLE ? "total_steps"
                                             : "total_iters",
             p->kind == DPT_SCHED_COSINE     ? "T_max"
             : p->kind == DPT_SCHED_ONECYCLE ? "total_steps"
                                             : "total_iters");
    return DPT_EINVAL;
  }
  if (T == 0) T = main_steps;
  if (!(base_lr >= 0) || !isfinite(base_lr)) {
    snprintf(err, errlen, "%s: base lr %g is out of range (expected >= 0)", name, base_lr);
    return DPT_EINVAL;
  }
  dpt_sched *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "%s: out of memory", name);
    return DPT_ENOMEM;
  }
  s->p = *p;
  s->T_max = s->total = T;
  s->momentum = cycles;
  s->base_lr = base_lr;
  s->st[S_MOMENTUM] = base_momentum;
  s->st[S_LR] = base_lr;
  s->cyc_base = p->base_lr > 0 ? p->base_lr : base_lr;
  s->cyc_max = p->max_lr > 0 ? p->max_lr : 10 * base_lr;
  if (p->kind == DPT_SCHED_CYCLIC && !(s->cyc_max > s->cyc_base)) {
    snprintf(err, errlen, "cyclic: max_lr = %g must be above base_lr = %g", s->cyc_max,
             s->cyc_base);
    free(s);
    return DPT_EINVAL;
  }
  if (p->kind == DPT_SCHED_ONECYCLE) {
    s->cyc_base = s->cyc_max / p->div_factor; /* group['initial_lr'] */
    s->min_lr1 = s->cyc_base / p->final_div_factor;
    s->base_lr = s->cyc_base;
  }
  s->st[S_BEST] = p->plateau_max ? -INFINITY : INFINITY;
  s->st[S_TI] = p->T_0;

  /* The main scheduler's constructor and its initial step (last_epoch -1 -> 0). */
  if (p->kind == DPT_SCHED_CYCLIC) {
    s->st[S_LR] = s->cyc_base;
    if (cycles) s->st[S_MOMENTUM] = p->base_momentum;
  }
  if (p->kind == DPT_SCHED_ONECYCLE && cycles) s->st[S_MOMENTUM] = p->max_momentum;
  if (p->kind == DPT_SCHED_PLATEAU) {
    s->st[S_EPOCH] = 0; /* ReduceLROnPlateau has no initial step */
  } else if (p->kind == DPT_SCHED_COSINE_WARM_RESTARTS) {
    s->st[S_EPOCH] = 0;
    s->st[S_TCUR] = 0;
    s->st[S_TI] = p->T_0;
    s->st[S_LR] = p->eta_min + (s->base_lr - p->eta_min) * (1 + cos(PI * 0 / p->T_0)) / 2;
  } else if (p->kind != DPT_SCHED_NONE && !p->warmup) {
    s->st[S_EPOCH] = 0;
    s->st[S_LR] = main_get_lr(s, 0);
  }
  if (p->warmup) {
    /* SequentialLR: lr back to initial_lr, children's last_epoch -1, warm-up's initial step.
     * (The main child's own initial step changed nothing that survives this reset, except
     * the momentum a cyclic child sets, which torch keeps as well.) */
    if (p->kind == DPT_SCHED_CYCLIC && cycles) main_get_lr(s, 0);
    s->st[S_LR] = s->base_lr;
    s->st[S_EPOCH] = -1;
    s->st[S_WEPOCH] = 0;
    s->st[S_SEQ] = 0;
    s->st[S_LR] = warmup_get_lr(s, 0);
  }
  *out = s;
  return DPT_OK;
}

void dpt_sched_free(dpt_sched *s) {
  free(s);
}

void dpt_sched_step(dpt_sched *s, double metric) {
  const dpt_sched_params *p = &s->p;
  if (!p->warmup) {
    main_step(s, metric);
    return;
  }
  s->st[S_SEQ] += 1;
  long e = (long)s->st[S_SEQ];
  if (e < p->warmup_iters) {
    s->st[S_WEPOCH] += 1;
    s->st[S_LR] = warmup_get_lr(s, (long)s->st[S_WEPOCH]);
  } else if (e == p->warmup_iters) {
    s->st[S_EPOCH] = 0; /* scheduler.step(0) */
    s->st[S_LR] = main_at_zero(s);
  } else {
    main_step(s, metric);
  }
}

double dpt_sched_lr(const dpt_sched *s) {
  return s->st[S_LR];
}
int dpt_sched_cycles_momentum(const dpt_sched *s) {
  return s->momentum;
}
double dpt_sched_momentum(const dpt_sched *s) {
  return s->st[S_MOMENTUM];
}
int dpt_sched_state_count(const dpt_sched *s) {
  (void)s;
  return S_COUNT;
}

double *dpt_sched_state(dpt_sched *s, int i, const char **name) {
  if (i < 0 || i >= S_COUNT) return NULL;
  if (name) *name = state_names[i];
  return &s->st[i];
}

int dpt_sched_state_find(const dpt_sched *s, const char *name) {
  (void)s;
  for (int i = 0; i < S_COUNT; i++)
    if (!strcmp(state_names[i], name)) return i;
  return DPT_ESTATE;
}

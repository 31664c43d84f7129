/* options.c — the one list of training options: names, types, defaults, ranges and help.
 * The command line and the config file both end in dpt_train_set(); defaults are applied by
 * the same setter from the table's text, so the help shows exactly what the code uses. */
#include "runtime.h"

#include "comm.h" /* the --compress names */

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_STR, OPT_INT, OPT_LONG, OPT_DBL, OPT_BOOL } opt_type;

typedef struct {
  const char *name;
  opt_type type;
  size_t off;  /* offset in dpt_train_opts */
  size_t size; /* for strings: buffer size */
  const char *def;
  double min, max; /* allowed range for numbers (inclusive) */
  const char *help;
} opt_def;

#define F(field) offsetof(dpt_train_opts, field), sizeof(((dpt_train_opts *)0)->field)

static const opt_def k_opts[] = {
    {"data", OPT_STR, F(data), "", 0, 0,
     "HDF5 dataset file (train/x, train/y; optional test/x, test/y)"},
    {"model", OPT_STR, F(model), "mlp:784-256-128-10", 0, 0,
     "model: mlp:IN-H1-...-OUT, a preset (cnn:tiny, cnn:fashion), file:PATH or PATH.ini (dpt "
     "model)"},
    {"activation", OPT_STR, F(activation), "relu", 0, 0,
     "hidden activation: relu, tanh, gelu, sigmoid"},
    {"loss", OPT_STR, F(loss), "ce", 0, 0,
     "loss: ce (softmax cross-entropy, integer labels) or mse"},
    {"epochs", OPT_INT, F(epochs), "10", 1, 1e9, "passes over the training set"},
    {"max_steps", OPT_LONG, F(max_steps), "0", 0, 1e15,
     "stop after this many optimizer steps (0: no limit)"},
    {"batch", OPT_LONG, F(batch), "64", 1, 1e12, "global batch size, split evenly over the ranks"},
    {"accum", OPT_INT, F(accum), "1", 1, 1e6, "micro-batches accumulated per optimizer step"},
    {"clip_norm", OPT_DBL, F(clip_norm), "0", 0, INFINITY,
     "clip gradients to this global L2 norm (0: off)"},
    {"seed", OPT_LONG, F(seed), "42", 0, 9.2e18, "seed of initialisation and data order"},
    {"zero", OPT_INT, F(zero), "-1", -1, 3,
     "ZeRO stage: 0 all state on every rank, 1 optimizer state sharded, 2 the gradient too, 3 "
     "the parameters too (each layer's gathered for its passes); -1: 1 when ranks > 1"},
    {"zero_prefetch", OPT_BOOL, F(zero_prefetch), "1", 0, 1,
     "ZeRO stage 3: gather the next layer's parameters while this one computes (0: when it "
     "starts)"},
    {"zero_keep_mb", OPT_DBL, F(zero_keep_mb), "0", 0, 1e9,
     "ZeRO stage 3: keep up to this many MiB of the layers gathered in forward for backward, the "
     "last layers first, instead of gathering them again (0: none)"},
    {"bucket_mb", OPT_DBL, F(bucket_mb), "25", 4.0 / 1048576, 1e6,
     "gradient allreduce bucket size in MiB"},
    {"overlap", OPT_BOOL, F(overlap), "1", 0, 1,
     "reduce gradient buckets while backward runs (0: after it)"},
    {"reduce", OPT_STR, F(reduce), "auto", 0, 0,
     "gradient reduction: auto (see README), rank-order, node (within nodes, then across) or "
     "ring (rank-order, ring all-gather); bitwise the same sums"},
    {"compress", OPT_STR, F(compress), "none", 0, 0,
     "lossy gradient compression: none, bf16 or fp16 (16-bit wire, fp32 sums), powersgd[:R] "
     "(rank-R factors per matrix, error feedback); not with --deterministic"},
    {"compress_start", OPT_LONG, F(compress_start), "1000", 0, 1e15,
     "--compress powersgd: steps summed uncompressed before compression starts (torch's "
     "start_powerSGD_iter)"},
    {"cache_mb", OPT_DBL, F(cache_mb), "1024", 0, 1e9,
     "keep a dataset split in memory if it fits (MiB)"},
    {"context", OPT_LONG, F(context), "0", 0, 1e9,
     "token datasets (dpt data import-text): tokens per training window T (targets: the next T)"},
    {"eval_every", OPT_INT, F(eval_every), "1", 0, 1e9,
     "evaluate on the test split every N epochs, and at the end of a run that stops mid-epoch "
     "(0: never)"},
    {"run_dir", OPT_STR, F(run_dir), "", 0, 0,
     "directory for metrics and checkpoints (default runs/dpt, or runs/slurm-JOBID in a SLURM "
     "job)"},
    {"ckpt", OPT_BOOL, F(ckpt), "0", 0, 1, "write checkpoints (see --ckpt-dir, --ckpt-every)"},
    {"ckpt_dir", OPT_STR, F(ckpt_dir), "", 0, 0, "checkpoint directory (default RUN_DIR/ckpt)"},
    {"ckpt_every", OPT_LONG, F(ckpt_every), "0", 0, 1e15,
     "checkpoint every N steps (0: at the end only)"},
    {"ckpt_epochs", OPT_INT, F(ckpt_epochs), "0", 0, 1e9,
     "checkpoint at the end of every N epochs (0: off)"},
    {"keep", OPT_INT, F(keep), "3", 0, 1e6, "keep the newest K checkpoints (0: all)"},
    {"resume", OPT_STR, F(resume), "", 0, 0,
     "resume: auto (latest if any), latest, or a checkpoint file"},
    {"init", OPT_STR, F(init), "", 0, 0, "start from the parameters of this checkpoint"},
    {"fresh", OPT_BOOL, F(fresh), "0", 0, 1,
     "start a new run even though the checkpoint directory holds another run's checkpoints (they "
     "are kept: pruning removes only this run's)"},
    {"allow_config_change", OPT_BOOL, F(allow_config_change), "0", 0, 1,
     "resume even though the command line changes what the run computes (lr, scheduler, batch, "
     "...; the differences are listed)"},
    {"metrics", OPT_STR, F(metrics), "", 0, 0,
     "JSONL metrics file (default RUN_DIR/metrics.jsonl)"},
    {"label", OPT_STR, F(label), "", 0, 0,
     "the run's name in its metrics and in plots (default SOLVER/SCHED)"},
    {"log_every", OPT_LONG, F(log_every), "100", 1, 1e15, "steps between plain log lines"},
    {"progress", OPT_STR, F(progress), "auto", 0, 0,
     "auto (bar on a terminal), bar, plain or none"},
    {"deterministic", OPT_BOOL, F(deterministic), "0", 0, 1,
     "bitwise the same training for any rank count and ZeRO stage: exact fixed-point gradient sums "
     "over --micro-shards"},
    {"micro_shards", OPT_INT, F(micro_shards), "8", 1, 1e6,
     "deterministic mode: the global batch is cut into G micro-shards (W must divide G, G must "
     "divide --batch)"},
    {"on_nonfinite", OPT_STR, F(on_nonfinite), "abort", 0, 0,
     "a NaN/Inf in the loss or gradients: abort (naming step, tensor and rank) or skip the update "
     "(counted in the metrics)"},
    {"watchdog", OPT_DBL, F(watchdog), "auto", 0, 1e9,
     "seconds a collective may block before the job is ended with a message naming it, the step "
     "and the last checkpoint (auto: 45 or 4x the slowest step seen, whichever is larger; 0: off)"},
    {"stop_signals", OPT_STR, F(stop_signals), "USR1,TERM,INT", 0, 0,
     "on these signals all ranks stop at the same step, write a checkpoint and exit with status 3; "
     "a second Ctrl-C (INT) ends at once (none: off)"},
    {"time_limit", OPT_STR, F(time_limit), "", 0, 0,
     "stop with a checkpoint before this much time has passed: seconds or [D-]HH:MM:SS (squeue -o "
     "%L)"},
    {"stop_margin", OPT_DBL, F(stop_margin), "1", 0, 1e9,
     "seconds kept in hand before --time-limit, beyond the slowest step and checkpoint seen"},
    {"verbose", OPT_BOOL, F(verbose), "0", 0, 1, "report memory, timings and per-rank detail"},
};
#define N_OPTS (sizeof k_opts / sizeof k_opts[0])

static const char *const k_choices_activation[] = {"relu", "tanh", "gelu", "sigmoid", NULL};
static const char *const k_choices_loss[] = {"ce", "mse", NULL};
static const char *const k_choices_progress[] = {"auto", "bar", "plain", "none", NULL};
static const char *const k_choices_nonfinite[] = {"abort", "skip", NULL};
static const char *const k_choices_reduce[] = {"auto", "rank-order", "node", "ring", NULL};

static const char *const *choices_of(const char *name) {
  if (!strcmp(name, "activation")) return k_choices_activation;
  if (!strcmp(name, "loss")) return k_choices_loss;
  if (!strcmp(name, "progress")) return k_choices_progress;
  if (!strcmp(name, "on_nonfinite")) return k_choices_nonfinite;
  if (!strcmp(name, "reduce")) return k_choices_reduce;
  return NULL;
}

static int set_opt(dpt_train_opts *o, const opt_def *d, const char *value, char *err,
                   size_t errlen) {
  char *p = (char *)o + d->off;
  if (d->type == OPT_STR) {
    if (strlen(value) >= d->size) {
      snprintf(err, errlen, "--%s: value is longer than %zu characters", d->name, d->size - 1);
      return DPT_EINVAL;
    }
    const char *const *ch = choices_of(d->name);
    if (ch) {
      int ok = 0;
      for (int i = 0; ch[i]; i++) ok |= !strcmp(ch[i], value);
      if (!ok) {
        char list[128] = "";
        for (int i = 0; ch[i]; i++)
          snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", ch[i]);
        snprintf(err, errlen, "--%s: '%s' is not one of %s", d->name, value, list);
        return DPT_EINVAL;
      }
    }
    memcpy(p, value, strlen(value) + 1);
    return DPT_OK;
  }
  double v;
  int b;
  long w = 0;
  if (!strcmp(d->name, "watchdog") && !strcmp(value, "auto")) { /* launch/watchdog.c */
    *(double *)p = DPT_WATCHDOG_AUTO;
    return DPT_OK;
  }
  if (d->type == OPT_BOOL) {
    if (dpt_parse_bool(value, &b)) {
      snprintf(err, errlen,
               "--%s: '%s' is not a boolean (expected 1/0, true/false, yes/no or on/off)", d->name,
               value);
      return DPT_EINVAL;
    }
    v = b;
  } else if (dpt_parse_double(value, &v)) {
    snprintf(err, errlen, "--%s: '%s' is not a number", d->name, value);
    return DPT_EINVAL;
  } else if (d->type != OPT_DBL) {
    if (dpt_parse_long(value, &w)) {
      snprintf(err, errlen, "--%s: '%s' is not a whole number", d->name, value);
      return DPT_EINVAL;
    }
    v = (double)w;
  }
  if (v < d->min || v > d->max) {
    snprintf(err, errlen, "--%s: %s is out of range [%g, %g]", d->name, value, d->min, d->max);
    return DPT_EINVAL;
  }
  switch (d->type) {
  case OPT_INT:
  case OPT_BOOL: *(int *)p = (int)v; break;
  case OPT_LONG:
    *(long *)p = w; /* exact: a seed above 2^53 stays what was typed */
    break;
  case OPT_DBL: *(double *)p = v; break;
  case OPT_STR: break;
  }
  return DPT_OK;
}

void dpt_train_defaults(dpt_train_opts *o) {
  char err[DPT_ERR_LEN];
  memset(o, 0, sizeof *o);
  for (size_t i = 0; i < N_OPTS; i++) set_opt(o, &k_opts[i], k_opts[i].def, err, sizeof err);
  dpt_optim_solver_defaults(DPT_SOLVER_ADAM, &o->solver);
  dpt_optim_sched_defaults(DPT_SCHED_NONE, &o->sched);
}

static int set_any(dpt_train_opts *o, const char *key, const char *value, char *err, size_t errlen);

/* Messages name options as the user types them: "--micro-shards", not "--micro_shards". */
static void dash_flag(char *err) {
  if (strncmp(err, "--", 2)) return;
  for (char *c = err + 2; *c && *c != ':' && *c != ' '; c++)
    if (*c == '_') *c = '-';
}

typedef struct {
  const char *key;
  int is_bool;
} bool_probe;

/* Listings show a boolean hyperparameter's value as true or false. */
static void probe_param(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  bool_probe *b = ctx;
  if (!strcmp(name, b->key)) b->is_bool = !strcmp(value, "true") || !strcmp(value, "false");
}

/* Is key an option that stands alone as a flag (a boolean: --verbose, --nesterov)? */
static int is_bool_option(const dpt_train_opts *o, const char *key) {
  for (size_t i = 0; i < N_OPTS; i++)
    if (!strcmp(k_opts[i].name, key)) return k_opts[i].type == OPT_BOOL;
  bool_probe b = {key, 0};
  if (!strncmp(key, "sched_", 6)) {
    b.key = key + 6;
    dpt_optim_sched_describe(&o->sched, probe_param, &b);
  } else {
    dpt_optim_solver_describe(&o->solver, probe_param, &b);
  }
  return b.is_bool;
}

int dpt_train_set(dpt_train_opts *o, const char *key, const char *value, char *err, size_t errlen) {
  int rc;
  if (value) {
    rc = set_any(o, key, value, err, errlen);
  } else if (is_bool_option(o, key)) {
    rc = set_any(o, key, "1", err, errlen);
  } else {
    /* "--lr --max-steps 3" must not train at lr 1: a flag alone is only a boolean's */
    snprintf(err, errlen, "--%s: needs a value", key);
    rc = DPT_EINVAL;
  }
  if (rc) dash_flag(err);
  return rc;
}

static int set_any(dpt_train_opts *o, const char *key, const char *value, char *err,
                   size_t errlen) {
  char oerr[DPT_ERR_LEN];
  if (!strcmp(key, "solver")) {
    dpt_solver_kind k;
    if (dpt_optim_solver_kind(value, &k, oerr, sizeof oerr)) {
      snprintf(err, errlen, "--solver: %s", oerr);
      return DPT_EINVAL;
    }
    dpt_optim_solver_defaults(k, &o->solver);
    return DPT_OK;
  }
  if (!strcmp(key, "sched")) {
    dpt_sched_kind k;
    if (dpt_optim_sched_kind(value, &k, oerr, sizeof oerr)) {
      snprintf(err, errlen, "--sched: %s", oerr);
      return DPT_EINVAL;
    }
    dpt_optim_sched_defaults(k, &o->sched);
    return DPT_OK;
  }
  if (!strncmp(key, "sched_", 6)) {
    if (dpt_optim_sched_set(&o->sched, key + 6, value, oerr, sizeof oerr)) {
      snprintf(err, errlen, "--%s: %s", key, oerr);
      return DPT_EINVAL;
    }
    return DPT_OK;
  }
  for (size_t i = 0; i < N_OPTS; i++)
    if (!strcmp(k_opts[i].name, key)) return set_opt(o, &k_opts[i], value, err, errlen);
  if (dpt_optim_solver_set(&o->solver, key, value, oerr, sizeof oerr)) {
    if (!strstr(oerr, "takes no hyperparameter"))
      snprintf(err, errlen, "--%s: %s", key, oerr);
    else
      snprintf(err, errlen,
               "--%s: unknown option: not a training option (dpt train --help), and solver %s", key,
               oerr);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

int dpt_parse_duration(const char *text, double *seconds) {
  *seconds = 0;
  if (!text[0] || !strcmp(text, "UNLIMITED") || !strcmp(text, "unlimited")) return 0;
  double v;
  if (!dpt_parse_double(text, &v)) {
    *seconds = v;
    return v > 0 && isfinite(v) ? 0 : -1;
  }
  long days = 0, f[3];
  const char *p = text, *dash = strchr(text, '-');
  char *end;
  if (dash) {
    days = strtol(text, &end, 10);
    if (end != dash || days < 0) return -1;
    p = dash + 1;
  }
  int n = 0;
  while (n < 3) {
    if (*p < '0' || *p > '9') return -1;
    f[n++] = strtol(p, &end, 10);
    if (!*end) break;
    if (*end != ':') return -1;
    p = end + 1;
  }
  if (n == 3 && *end) return -1;
  /* D-HH, D-HH:MM, D-HH:MM:SS; or MM, MM:SS, HH:MM:SS */
  double h = 0, m = 0, s = 0;
  if (dash)
    h = f[0], m = n > 1 ? f[1] : 0, s = n > 2 ? f[2] : 0;
  else if (n == 3)
    h = f[0], m = f[1], s = f[2];
  else
    m = f[0], s = n > 1 ? f[1] : 0;
  *seconds = days * 86400.0 + h * 3600 + m * 60 + s;
  return *seconds > 0 ? 0 : -1;
}

int dpt_parse_signals(const char *text, unsigned *mask, char *err, size_t errlen) {
  static const struct {
    const char *name;
    int sig;
  } known[] = {
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}};
  *mask = 0;
  if (!strcmp(text, "none") || !text[0]) return 0;
  char buf[64];
  snprintf(buf, sizeof buf, "%s", text);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    const char *name = strncmp(tok, "SIG", 3) ? tok : tok + 3;
    size_t i = 0;
    while (i < sizeof known / sizeof known[0] && strcmp(known[i].name, name)) i++;
    if (i == sizeof known / sizeof known[0]) {
      snprintf(err, errlen, "--stop-signals: '%s' is not one of USR1, USR2, TERM, INT, HUP, none",
               tok);
      return -1;
    }
    *mask |= 1u << known[i].sig;
  }
  return 0;
}

int dpt_train_validate(const dpt_train_opts *o, char *err, size_t errlen) {
  char oerr[DPT_ERR_LEN];
  double secs;
  unsigned mask;
  if (dpt_parse_duration(o->time_limit, &secs)) {
    snprintf(err, errlen, "--time-limit: '%s' is not a duration (seconds, or [D-]HH:MM:SS)",
             o->time_limit);
    return DPT_EINVAL;
  }
  if (dpt_parse_signals(o->stop_signals, &mask, err, errlen)) return DPT_EINVAL;
  if (!o->data[0]) {
    snprintf(err, errlen, "--data: no dataset given (an HDF5 file with train/x and train/y)");
    return DPT_EINVAL;
  }
  dpt_compress compress;
  int compress_rank;
  if (dpt_reducer_compress_parse(o->compress, &compress, &compress_rank, oerr, sizeof oerr)) {
    snprintf(err, errlen, "--compress: %s", oerr);
    return DPT_EINVAL;
  }
  if (compress != DPT_COMPRESS_NONE && o->deterministic) {
    snprintf(err, errlen,
             "--compress %s: not with --deterministic (its sums are exact; compression is lossy)",
             o->compress);
    return DPT_EINVAL;
  }
  if (compress != DPT_COMPRESS_NONE && strcmp(o->reduce, "auto") &&
      strcmp(o->reduce, "rank-order")) {
    snprintf(err, errlen, "--compress %s: works with --reduce auto or rank-order, not %s",
             o->compress, o->reduce);
    return DPT_EINVAL;
  }
  if (dpt_optim_solver_validate(&o->solver, oerr, sizeof oerr)) {
    snprintf(err, errlen, "%s", oerr);
    return DPT_EINVAL;
  }
  if (dpt_optim_sched_validate(&o->sched, oerr, sizeof oerr)) {
    snprintf(err, errlen, "%s", oerr);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

void dpt_train_describe(const dpt_train_opts *o, dpt_optim_param_fn fn, void *ctx) {
  char buf[1100];
  for (size_t i = 0; i < N_OPTS; i++) {
    const opt_def *d = &k_opts[i];
    const char *p = (const char *)o + d->off;
    switch (d->type) {
    case OPT_STR: snprintf(buf, sizeof buf, "%s", p); break;
    case OPT_INT:
    case OPT_BOOL: snprintf(buf, sizeof buf, "%d", *(const int *)p); break;
    case OPT_LONG: snprintf(buf, sizeof buf, "%ld", *(const long *)p); break;
    case OPT_DBL: dpt_format_double(buf, sizeof buf, *(const double *)p); break;
    }
    if (!strcmp(d->name, "watchdog") && *(const double *)p == DPT_WATCHDOG_AUTO)
      snprintf(buf, sizeof buf, "auto");
    fn(ctx, d->name, buf, d->help);
  }
}

/* compare.c — `dpt compare` and `dpt plot`: parse, build one set of training options per
 * combination of solver and schedule, and call the playground (playground.h: dpt_compare_run,
 * dpt_problem_compare, dpt_plot_metrics).
 *
 * Every `dpt train` option applies to every combination, except a solver hyperparameter that
 * only some of the listed solvers have (--momentum with sgd,adam): it goes to those that have
 * it, and is an error only if none has it. */
#include "launch.h"
#include "playground.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_RUN = DPT_EXIT_RUN, EXIT_USAGE = DPT_EXIT_USAGE };

#define MAX_ITEMS 32

/* compare's own options, not passed to the runs */
typedef struct {
  char solvers[512], scheds[512], out[1024], problem[64], x0[128];
  int group_ranks;
  long steps;
  double target_loss;
} compare_opts;

static int is_own(const char *key) {
  static const char *const own[] = {"solvers",     "scheds", "out",         "problem", "x0",
                                    "group_ranks", "steps",  "target_loss", NULL};
  for (int i = 0; own[i]; i++)
    if (!strcmp(key, own[i])) return 1;
  return 0;
}

static int split_list(char *text, char **items, const char *flag, char *err, size_t errlen) {
  int n = 0;
  for (char *save = NULL, *t = strtok_r(text, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (n == MAX_ITEMS) {
      snprintf(err, errlen, "--%s: more than %d names", flag, MAX_ITEMS);
      return -1;
    }
    items[n++] = t;
  }
  return n;
}

static int parse_own(const kv_list *l, compare_opts *c, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  snprintf(c->out, sizeof c->out, "runs/compare");
  c->steps = 100;
  c->target_loss = NAN;
  for (int i = 0; i < l->n; i++) {
    const kv *e = &l->items[i];
    long v;
    if (!is_own(e->key)) continue;
    if (e->bare) {
      snprintf(err, errlen, "--%s: needs a value", e->key);
      for (char *d = err + 2; *d && *d != ':'; d++)
        if (*d == '_') *d = '-';
      return EXIT_USAGE;
    }
    if (!strcmp(e->key, "solvers"))
      snprintf(c->solvers, sizeof c->solvers, "%s", e->value);
    else if (!strcmp(e->key, "scheds"))
      snprintf(c->scheds, sizeof c->scheds, "%s", e->value);
    else if (!strcmp(e->key, "out"))
      snprintf(c->out, sizeof c->out, "%s", e->value);
    else if (!strcmp(e->key, "problem"))
      snprintf(c->problem, sizeof c->problem, "%s", e->value);
    else if (!strcmp(e->key, "x0"))
      snprintf(c->x0, sizeof c->x0, "%s", e->value);
    else if (!strcmp(e->key, "group_ranks")) {
      if (dpt_parse_long(e->value, &v) || v < 1 || v > 1000000) {
        snprintf(err, errlen, "--group-ranks: '%s' is not a whole number >= 1", e->value);
        return EXIT_USAGE;
      }
      c->group_ranks = (int)v;
    } else if (!strcmp(e->key, "steps")) {
      if (dpt_parse_long(e->value, &v) || v < 1) {
        snprintf(err, errlen, "--steps: '%s' is not a whole number >= 1", e->value);
        return EXIT_USAGE;
      }
      c->steps = v;
    } else if (!strcmp(e->key, "target_loss")) {
      if (dpt_parse_double(e->value, &c->target_loss)) {
        snprintf(err, errlen, "--target-loss: '%s' is not a number", e->value);
        return EXIT_USAGE;
      }
    }
  }
  if (!c->solvers[0]) {
    snprintf(err, errlen, "--solvers: no solvers given (e.g. --solvers sgd,adam,adamw,lion)");
    return EXIT_USAGE;
  }
  return 0;
}

typedef struct {
  const char *key;
  int found;
} find_ctx;

static void find_param(void *ctx, const char *name, const char *value, const char *help) {
  (void)value, (void)help;
  find_ctx *f = ctx;
  f->found |= !strcmp(f->key, name);
}

/* Does solver `name` take hyperparameter `key`? */
static int solver_takes(const char *name, const char *key) {
  dpt_train_opts o;
  char m[DPT_ERR_LEN];
  dpt_train_defaults(&o);
  if (dpt_train_set(&o, "solver", name, m, sizeof m)) return 0;
  find_ctx f = {key, 0};
  dpt_optim_solver_describe(&o.solver, find_param, &f);
  return f.found;
}

/* One combination's options: defaults, solver, schedule, then every other option of l (a
 * solver hyperparameter this solver lacks is skipped if another listed solver takes it). */
static int build_run(const kv_list *l, const char *solver, const char *sched, char **solvers,
                     int nsolvers, dpt_train_opts *o, char *err, size_t errlen) {
  dpt_train_defaults(o);
  char m[DPT_ERR_LEN];
  for (int i = 0; i < l->n; i++) /* a config file's or flag's --sched, unless --scheds given */
    if (!sched && !strcmp(l->items[i].key, "sched") &&
        dpt_train_set(o, "sched", l->items[i].value, m, sizeof m)) {
      snprintf(err, errlen, "%s", m);
      return EXIT_USAGE;
    }
  if (dpt_train_set(o, "solver", solver, m, sizeof m) ||
      (sched && dpt_train_set(o, "sched", sched, m, sizeof m))) {
    snprintf(err, errlen, "%s", m);
    return EXIT_USAGE;
  }
  for (int i = 0; i < l->n; i++) {
    const kv *e = &l->items[i];
    if (is_own(e->key) || !strcmp(e->key, "solver") || !strcmp(e->key, "sched")) continue;
    if (!dpt_train_set(o, e->key, e->value, m, sizeof m)) continue;
    int other = 0;
    if (!solver_takes(solver, e->key))
      for (int k = 0; k < nsolvers && !other; k++) other = solver_takes(solvers[k], e->key);
    if (other) continue;
    snprintf(err, errlen, "%s", m);
    return EXIT_USAGE;
  }
  if (!o->label[0]) {
    if (sched)
      snprintf(o->label, sizeof o->label, "%s/%s", solver, sched);
    else
      snprintf(o->label, sizeof o->label, "%s", solver);
  }
  return 0;
}

static void print_problem(void *ctx, const char *name, const char *desc) {
  (void)ctx;
  printf("    %-14s %s\n", name, desc);
}

static void help(void) {
  printf("usage: mpirun -n W dpt compare --solvers sgd,adam,... [--scheds cosine,step,...]\n"
         "                              [--group-ranks N] [--target-loss X] [--out DIR]\n"
         "                              [every dpt train option]\n"
         "       dpt compare --problem NAME --solvers gd,adam,... [--steps N] [--x0 A[,B]]\n"
         "                   [--lr X ...] [--out DIR]\n\n"
         "Trains every solver x schedule on the same data, initial parameters and batch order;\n"
         "W ranks are split into groups of --group-ranks (default: W / runs, at least 1) that\n"
         "train at the same time. Writes DIR/<run>/metrics.jsonl, DIR/summary.md (also printed)\n"
         "and the plots DIR/*.svg (default DIR: runs/compare).\n\n"
         "Analytic problems (--problem):\n");
  dpt_problem_list(print_problem, NULL);
}

static int run_problem(const compare_opts *c, const kv_list *l, char **solvers, int nsolvers,
                       char **scheds, int nscheds, char *err, size_t errlen) {
  dpt_problem_run runs[MAX_ITEMS * MAX_ITEMS];
  int n = 0;
  for (int s = 0; s < nsolvers; s++)
    for (int k = 0; k < (nscheds ? nscheds : 1); k++) {
      dpt_train_opts o;
      int rc =
          build_run(l, solvers[s], nscheds ? scheds[k] : NULL, solvers, nsolvers, &o, err, errlen);
      if (rc) return rc;
      dpt_problem_run *r = &runs[n++];
      memset(r, 0, sizeof *r);
      snprintf(r->name, sizeof r->name, "%s", o.label);
      r->solver = o.solver;
      r->sched = o.sched;
    }
  double x0[2];
  int dim = 0;
  if (c->x0[0]) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", c->x0);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (dim == 2 || dpt_parse_double(t, &x0[dim++])) {
        snprintf(err, errlen, "--x0: '%s' is not one or two numbers (A or A,B)", c->x0);
        return EXIT_USAGE;
      }
    }
  }
  int rc = dpt_problem_compare(c->problem, runs, n, c->steps, dim ? x0 : NULL, dim, c->out, stdout,
                               err, errlen);
  return rc == DPT_EINVAL ? EXIT_USAGE : rc ? EXIT_RUN : 0;
}

int dpt_launch_compare(int argc, char **argv, int rank, MPI_Comm comm) {
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (rank == 0) help();
      return 0;
    }
  char err[DPT_ERR_LEN] = "";
  kv_list l = {0};
  compare_opts c;
  int rc = dpt_launch_collect(argc, argv, 2, &l, err, sizeof err);
  if (!rc) rc = parse_own(&l, &c, err, sizeof err);
  char *solvers[MAX_ITEMS], *scheds[MAX_ITEMS];
  int nsolvers = 0, nscheds = 0;
  if (!rc && (nsolvers = split_list(c.solvers, solvers, "solvers", err, sizeof err)) < 1)
    rc = EXIT_USAGE;
  if (!rc && c.scheds[0] && (nscheds = split_list(c.scheds, scheds, "scheds", err, sizeof err)) < 1)
    rc = EXIT_USAGE;
  if (!rc && c.problem[0]) { /* no MPI needed: rank 0 does it all */
    if (rank == 0) rc = run_problem(&c, &l, solvers, nsolvers, scheds, nscheds, err, sizeof err);
    if (MPI_Bcast(&rc, 1, MPI_INT, 0, comm) != MPI_SUCCESS) {
      snprintf(err, sizeof err, "MPI_Bcast of the outcome failed");
      rc = EXIT_RUN;
    }
    dpt_launch_kv_free(&l);
    if (rc && rank == 0) fprintf(stderr, "dpt compare: %s\n", err);
    return rc;
  }
  int n = nsolvers * (nscheds ? nscheds : 1);
  dpt_train_opts *runs = rc ? NULL : calloc((size_t)n, sizeof *runs);
  if (!rc && !runs) {
    snprintf(err, sizeof err, "out of memory");
    rc = EXIT_RUN;
  }
  for (int s = 0; !rc && s < nsolvers; s++)
    for (int k = 0; !rc && k < (nscheds ? nscheds : 1); k++) {
      dpt_train_opts *o = &runs[s * (nscheds ? nscheds : 1) + k];
      rc = build_run(&l, solvers[s], nscheds ? scheds[k] : NULL, solvers, nsolvers, o, err,
                     sizeof err);
      if (!rc && dpt_train_validate(o, err, sizeof err)) {
        rc = EXIT_USAGE;
        dpt_launch_blame(&l, err, sizeof err);
      }
    }
  dpt_launch_kv_free(&l);
  if (!rc) {
    int r = dpt_compare_run(runs, n, c.group_ranks, c.target_loss, c.out, comm,
                            rank == 0 ? stdout : NULL, err, sizeof err);
    rc = r == DPT_EINVAL ? EXIT_USAGE : r ? EXIT_RUN : 0;
  }
  free(runs);
  if (rc && rank == 0) fprintf(stderr, "dpt compare: %s\n", err);
  return rc;
}

#define PLOT_MAX_FILES 256

int dpt_launch_plot(int argc, char **argv) {
  const char *out = "plots";
  const char *files[PLOT_MAX_FILES], *labels[PLOT_MAX_FILES] = {0};
  int n = 0, nlabels = 0;
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: dpt plot [--out DIR] [--label NAME]... METRICS.jsonl...\n"
             "Draws training loss and test accuracy against step and wall time, and the\n"
             "learning rate, of every run into DIR (default plots/) as SVG files. The k-th\n"
             "--label names the k-th file in the legends (default: the run's own label).\n");
      return 0;
    }
  char err[DPT_ERR_LEN];
  kv_list l = {.take_args = 1};
  int rc = dpt_launch_collect(argc, argv, 2, &l, err, sizeof err);
  for (int i = 0; !rc && i < l.n; i++) {
    const kv *e = &l.items[i];
    if (strcmp(e->key, "out") && strcmp(e->key, "label")) {
      snprintf(err, sizeof err,
               "unknown option '--%s' (usage: dpt plot [--out DIR] [--label NAME]... FILE...)",
               e->key);
      rc = EXIT_USAGE;
    } else if (e->bare) {
      snprintf(err, sizeof err, "--%s needs a %s", e->key, e->key[0] == 'o' ? "directory" : "name");
      rc = EXIT_USAGE;
    } else if (e->key[0] == 'o') {
      out = e->value;
    } else if (nlabels++ < PLOT_MAX_FILES) {
      labels[nlabels - 1] = e->value;
    }
  }
  for (int i = 0; !rc && i < l.nargs; i++) {
    if (n == PLOT_MAX_FILES) {
      snprintf(err, sizeof err, "more than %d metrics files", PLOT_MAX_FILES);
      rc = EXIT_USAGE;
    } else {
      files[n++] = l.args[i];
    }
  }
  if (rc) {
    fprintf(stderr, "dpt plot: %s\n", err);
    dpt_launch_kv_free(&l);
    return rc;
  }
  if (!n) {
    fprintf(stderr, "dpt plot: no metrics files (usage: dpt plot [--out DIR] [--label NAME]... "
                    "FILE...)\n");
    dpt_launch_kv_free(&l);
    return EXIT_USAGE;
  }
  if (nlabels > n) {
    fprintf(stderr, "dpt plot: --label given %d times for %d metrics file%s (one per file)\n",
            nlabels, n, n > 1 ? "s" : "");
    dpt_launch_kv_free(&l);
    return EXIT_USAGE;
  }
  if (dpt_plot_metrics(files, labels, n, out, err, sizeof err)) {
    fprintf(stderr, "dpt plot: %s\n", err);
    dpt_launch_kv_free(&l);
    return EXIT_RUN;
  }
  printf("dpt plot: %d run%s drawn into %s/ (loss_step.svg, loss_time.svg, accuracy_step.svg, "
         "accuracy_time.svg, lr_step.svg)\n",
         n, n > 1 ? "s" : "", out);
  dpt_launch_kv_free(&l);
  return 0;
}

/* main.c — the `dpt` command. It parses the command line and the config file, calls the
 * runtime, and turns an error into one line and an exit status. Nothing else lives here.
 *
 * Exit status: 0 success; 1 a run failed (bad data, I/O, numerics); 2 bad usage (unknown
 * flag, bad value); 3 stopped early on request (signal, --time-limit) with a checkpoint
 * written, to be continued with --resume auto; see README "Exit status". */
#define _GNU_SOURCE /* execv of /proc/self/exe, setenv */
#include "launch.h"
#include "runtime.h"

#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_RUN = DPT_EXIT_RUN, EXIT_USAGE = DPT_EXIT_USAGE, EXIT_STOPPED = DPT_EXIT_STOPPED };

/* --- BLAS set-up before anything loads it ---
 * One rank is one core: OpenBLAS gets one thread unless the user says otherwise. Debian's
 * OpenBLAS 0.3.21 does not recognise recent AMD/Intel CPUs and falls back to AVX2 kernels;
 * where the CPU has AVX-512 we ask for the SkylakeX kernels. The library reads both variables
 * when it is loaded, i.e. before main, so the process re-executes itself once with them set. */
static void blas_env_reexec(char **argv) {
  int changed = 0;
  if (!getenv("OPENBLAS_NUM_THREADS")) {
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    changed = 1;
  }
  if (!getenv("OPENBLAS_CORETYPE") && !getenv("DPT_NO_BLAS_TUNING")) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
      setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
      changed = 1;
    }
  }
  if (changed && !getenv("DPT_REEXECED")) {
    setenv("DPT_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    /* If exec fails we simply go on with the kernels we have. */
  }
}

/* --- option collection ---
 * Options come from the config file first, then the command line (which wins). The solver and
 * scheduler kinds are applied before any hyperparameter, whatever their position. */
typedef struct {
  char *key;
  char *value;
  const char *origin; /* "command line" or the config file's path */
  int line;
} kv;

typedef struct {
  kv *items;
  int n, cap;
} kv_list;

static int kv_add(kv_list *l, const char *key, const char *value, const char *origin, int line) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 32;
    kv *p = realloc(l->items, (size_t)cap * sizeof *p);
    if (!p)
      return -1;
    l->items = p;
    l->cap = cap;
  }
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return -1;
  }
  for (char *c = k; *c; c++)
    if (*c == '-')
      *c = '_';
  l->items[l->n++] = (kv){k, v, origin, line};
  return 0;
}

static void kv_free(kv_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->items[i].key);
    free(l->items[i].value);
  }
  free(l->items);
}

typedef struct {
  kv_list *list;
  const char *path;
} ini_ctx;

/* Sections: [train] (or none) for training options, [solver] for the solver and its
 * hyperparameters ("name = adam"), [sched] for the scheduler ("name = cosine"). */
static int on_ini(void *user, const char *section, const char *name, const char *value) {
  ini_ctx *c = user;
  char key[256];
  if (!strcmp(section, "solver") && !strcmp(name, "name"))
    snprintf(key, sizeof key, "solver");
  else if (!strcmp(section, "sched") && !strcmp(name, "name"))
    snprintf(key, sizeof key, "sched");
  else if (!strcmp(section, "sched"))
    snprintf(key, sizeof key, "sched_%s", name);
  else if (!section[0] || !strcmp(section, "train") || !strcmp(section, "solver"))
    snprintf(key, sizeof key, "%s", name);
  else
    return 0; /* unknown section: reported by the caller through the line number */
  return kv_add(c->list, key, value, c->path, 0) == 0;
}

static int is_flag_value(const char *s) { return s && strncmp(s, "--", 2) != 0; }

/* Parses argv[first..] into the list; --config FILE is read in place. Returns 0, or EXIT_USAGE
 * with a message. */
static int collect(int argc, char **argv, int first, kv_list *l, char *err, size_t errlen) {
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || !a[2]) {
      snprintf(err, errlen, "unexpected argument '%s' (options are --name value)", a);
      return EXIT_USAGE;
    }
    char name[256];
    const char *value;
    const char *eq = strchr(a + 2, '=');
    if (eq) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
      value = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a + 2);
      value = is_flag_value(i + 1 < argc ? argv[i + 1] : NULL) ? argv[++i] : "1";
    }
    if (!strcmp(name, "config")) {
      ini_ctx c = {l, value};
      int rc = ini_parse(value, on_ini, &c);
      if (rc < 0) {
        snprintf(err, errlen, "--config: cannot open '%s'", value);
        return EXIT_USAGE;
      }
      if (rc > 0) {
        snprintf(err, errlen, "--config: '%s' line %d is not 'name = value' in a known section "
                 "([train], [solver], [sched])", value, rc);
        return EXIT_USAGE;
      }
      continue;
    }
    if (kv_add(l, name, value, "command line", 0)) {
      snprintf(err, errlen, "out of memory");
      return EXIT_RUN;
    }
  }
  return 0;
}

static int apply(dpt_train_opts *o, const kv_list *l, char *err, size_t errlen) {
  /* Kinds first (they reset hyperparameters to that kind's defaults), then the rest. */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < l->n; i++) {
      const kv *e = &l->items[i];
      int is_kind = !strcmp(e->key, "solver") || !strcmp(e->key, "sched");
      if (is_kind != (pass == 0))
        continue;
      char m[DPT_ERR_LEN];
      if (dpt_train_set(o, e->key, e->value, m, sizeof m)) {
        if (strcmp(e->origin, "command line"))
          snprintf(err, errlen, "%s: %.400s", e->origin, m);
        else
          snprintf(err, errlen, "%s", m);
        return EXIT_USAGE;
      }
    }
  return 0;
}

/* A range error names the parameter ("lr = -3 ..."); if the value came from a config file,
 * say which file and line, so the user knows where to look. */
static void blame_origin(const kv_list *l, char *err, size_t errlen) {
  for (int i = l->n - 1; i >= 0; i--) {
    const kv *e = &l->items[i];
    char pat1[300], pat2[300];
    const char *key = strncmp(e->key, "sched_", 6) ? e->key : e->key + 6;
    snprintf(pat1, sizeof pat1, " %s = ", key);
    snprintf(pat2, sizeof pat2, " %s[", key);
    if (!strstr(err, pat1) && !strstr(err, pat2))
      continue;
    if (strcmp(e->origin, "command line")) {
      char m[DPT_ERR_LEN];
      snprintf(m, sizeof m, "%s", err);
      snprintf(err, errlen, "%s: %.400s", e->origin, m);
    }
    return;
  }
}

/* --- listings --- */
/* Flags are shown with dashes (--weight-decay); the parser takes dashes or underscores. */
static void print_flag(const char *prefix, const char *name, const char *value,
                       const char *help) {
  char flag[96];
  snprintf(flag, sizeof flag, "%s%s", prefix, name);
  for (char *p = flag; *p; p++)
    if (*p == '_')
      *p = '-';
  printf("    --%-28s %-14s %s\n", flag, value, help);
}

static void print_param(void *ctx, const char *name, const char *value, const char *help) {
  (void)ctx;
  print_flag("", name, value, help);
}

static void print_sched_param(void *ctx, const char *name, const char *value,
                              const char *help) {
  (void)ctx;
  print_flag("sched-", name, value, help);
}

static int cmd_solvers(void) {
  printf("Solvers (--solver NAME; hyperparameters as --NAME VALUE, defaults shown):\n");
  for (int k = 0; k < DPT_SOLVER_COUNT; k++) {
    dpt_solver_params p;
    dpt_optim_solver_defaults((dpt_solver_kind)k, &p);
    printf("\n  %s\n", dpt_optim_solver_name((dpt_solver_kind)k));
    dpt_optim_solver_describe(&p, print_param, NULL);
  }
  return 0;
}

static int cmd_schedulers(void) {
  printf("Schedulers (--sched NAME; hyperparameters as --sched-NAME VALUE, defaults shown):\n");
  for (int k = 0; k < DPT_SCHED_COUNT; k++) {
    dpt_sched_params p;
    dpt_optim_sched_defaults((dpt_sched_kind)k, &p);
    printf("\n  %s\n", dpt_optim_sched_name((dpt_sched_kind)k));
    dpt_optim_sched_describe(&p, print_sched_param, NULL);
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: dpt COMMAND [options]\n"
          "  train        train a model (mpirun -n W dpt train --data FILE ...); see dpt train --help\n"
          "  solvers      list the solvers and their hyperparameters\n"
          "  schedulers   list the learning-rate schedulers and their hyperparameters\n"
          "  data         dataset tools: dpt data import-idx | dpt data synth (see dpt data --help)\n"
          "  ckpt         dpt ckpt inspect FILE: a checkpoint's contents, checksums verified\n"
          "  version      print dpt's version\n");
}

static void print_item(void *ctx, const char *name, const char *value) {
  (void)ctx;
  printf("  %-34s %s\n", name, value);
}

/* `dpt ckpt inspect FILE`: no MPI needed, reads one file. */
static int cmd_ckpt(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[2], "inspect")) {
    fprintf(stderr, "dpt ckpt: usage: dpt ckpt inspect FILE\n");
    return EXIT_USAGE;
  }
  char err[DPT_ERR_LEN];
  printf("%s\n", argv[3]);
  if (dpt_ckpt_inspect(argv[3], print_item, NULL, err, sizeof err)) {
    fflush(stdout);
    fprintf(stderr, "dpt ckpt: %s\n", err);
    return EXIT_RUN;
  }
  return 0;
}

static int cmd_train(int argc, char **argv, int rank, MPI_Comm comm) {
  char err[DPT_ERR_LEN] = "";
  dpt_train_opts o;
  dpt_train_defaults(&o);
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (rank == 0) {
        printf("usage: mpirun -n W dpt train --data FILE [options] [--config FILE]\n\n"
               "Training options (defaults shown):\n");
        dpt_train_describe(&o, print_param, NULL);
        printf("    --%-28s %-14s %s\n", "solver", "adam",
               "solver; its hyperparameters (--lr, --betas, ...): dpt solvers");
        printf("    --%-28s %-14s %s\n", "sched", "none",
               "learning-rate scheduler; --sched-NAME VALUE: dpt schedulers");
        printf("    --%-28s %-14s %s\n", "config", "", "INI file with [train], [solver], [sched] "
               "sections; later flags override it");
      }
      return 0;
    }
  kv_list l = {0};
  int rc = collect(argc, argv, 2, &l, err, sizeof err);
  if (!rc)
    rc = apply(&o, &l, err, sizeof err);
  if (!rc && dpt_train_validate(&o, err, sizeof err)) {
    rc = EXIT_USAGE;
    blame_origin(&l, err, sizeof err);
  }
  kv_free(&l);
  if (rc) {
    if (rank == 0)
      fprintf(stderr, "dpt train: %s\n", err);
    return rc;
  }
  dpt_train_result res;
  rc = dpt_train_run(&o, comm, &res, err, sizeof err);
  if (rc) {
    if (rank == 0)
      fprintf(stderr, "dpt train: %s\n", err);
    return rc == DPT_ESTOPPED ? EXIT_STOPPED : EXIT_RUN;
  }
  if (rank == 0) {
    printf("dpt: %ld steps, %d epochs in %.1f s (%.0f samples/s); train loss %.4f", res.steps,
           res.epochs, res.seconds, res.samples_per_s, res.train_loss);
    if (!isnan(res.test_accuracy))
      printf("; test loss %.4f, test accuracy %.4f", res.test_loss, res.test_accuracy);
    else if (!isnan(res.test_loss))
      printf("; test loss %.4f", res.test_loss);
    printf("\n");
  }
  return 0;
}

int main(int argc, char **argv) {
  blas_env_reexec(argv);
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("dpt %s\n", DPT_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "solvers"))
    return cmd_solvers();
  if (!strcmp(cmd, "ckpt"))
    return cmd_ckpt(argc, argv);
  if (!strcmp(cmd, "schedulers"))
    return cmd_schedulers();

  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  dpt_log_init(rank, DPT_LOG_INFO, 0);
  int rc;
  if (!strcmp(cmd, "train")) {
    rc = cmd_train(argc, argv, rank, MPI_COMM_WORLD);
  } else if (!strcmp(cmd, "data")) {
    rc = dpt_launch_data(argc, argv, rank);
  } else {
    if (rank == 0) {
      fprintf(stderr, "dpt: unknown command '%s'\n", cmd);
      usage(stderr);
    }
    rc = EXIT_USAGE;
  }
  MPI_Finalize();
  return rc;
}

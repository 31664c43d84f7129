/* main.c — the `dpt` command. It parses the command line and the config file, calls the
 * runtime, and turns an error into one line and an exit status. Nothing else lives here.
 *
 * Exit status: 0 success; 1 a run failed (bad data, I/O, numerics); 2 bad usage (unknown
 * flag, bad value); 3 stopped early on request (signal, --time-limit) with a checkpoint
 * written, to be continued with --resume auto; 4 the watchdog ended a job whose collective
 * blocked too long; see README "Exit status". */
#include "launch.h"
#include "runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_RUN = DPT_EXIT_RUN, EXIT_USAGE = DPT_EXIT_USAGE, EXIT_STOPPED = DPT_EXIT_STOPPED };

/* --- listings --- */
/* Flags are shown with dashes (--weight-decay); the parser takes dashes or underscores. */
static void print_flag(const char *prefix, const char *name, const char *value, const char *help) {
  char flag[96];
  snprintf(flag, sizeof flag, "%s%s", prefix, name);
  for (char *p = flag; *p; p++)
    if (*p == '_') *p = '-';
  printf("    --%-28s %-14s %s\n", flag, value, help);
}

static void print_param(void *ctx, const char *name, const char *value, const char *help) {
  (void)ctx;
  print_flag("", name, value, help);
}

static void print_sched_param(void *ctx, const char *name, const char *value, const char *help) {
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
  fprintf(
      f,
      "usage: dpt COMMAND [options]\n"
      "  train        train a model (mpirun -n W dpt train --data FILE ...); see dpt train --help\n"
      "  compare      train several solvers/schedules side by side, or on an analytic problem;\n"
      "               a table and plots (dpt compare --help)\n"
      "  plot         plots of finished runs: dpt plot [--out DIR] METRICS.jsonl...\n"
      "  solvers      list the solvers and their hyperparameters\n"
      "  schedulers   list the learning-rate schedulers and their hyperparameters\n"
      "  data         dataset tools: dpt data import-idx | import-text | synth (see dpt data "
      "--help)\n"
      "  ckpt         dpt ckpt inspect FILE: a checkpoint's contents, checksums verified\n"
      "  model        model files and presets: dpt model show | torch | presets | cat\n"
      "               (dpt model --help)\n"
      "  sample       text from a language model's checkpoint (dpt sample --ckpt FILE --prompt "
      "..)\n"
      "  version      print dpt's version\n");
}

static void print_item(void *ctx, const char *name, const char *value) {
  (void)ctx;
  printf("  %-34s %s\n", name, value);
}

/* `dpt ckpt inspect FILE`: no MPI needed, reads one file. */
static int cmd_ckpt(int argc, char **argv) {
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: dpt ckpt inspect FILE\n"
             "  prints a checkpoint's attributes and datasets and verifies every checksum\n");
      return 0;
    }
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

/* This process's rank before MPI_Init says it, from the launcher's environment (0 if none). */
static int launcher_rank(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v);
  }
  return 0;
}

/* `dpt train`'s options, parsed before MPI starts (see the watchdog); errors are printed after
 * it has, by rank 0. */
typedef struct {
  dpt_train_opts o;
  int help;
  int print_config; /* --print-config: the effective options as a config file, and exit */
  int rc;
  char err[DPT_ERR_LEN];
} train_args;

static void parse_train(int argc, char **argv, train_args *t) {
  dpt_train_defaults(&t->o);
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) t->help = 1;
  if (t->help) return;
  kv_list l = {0};
  t->rc = dpt_launch_collect(argc, argv, 2, &l, t->err, sizeof t->err);
  for (int i = 0; !t->rc && i < l.n; i++) /* a flag of the command, not an option of the run */
    if (!strcmp(l.items[i].key, "print_config")) {
      t->print_config = 1;
      free(l.items[i].key), free(l.items[i].value);
      memmove(&l.items[i], &l.items[i + 1], (size_t)(l.n - i - 1) * sizeof l.items[0]);
      l.n--, i--;
    }
  if (!t->rc) t->rc = dpt_launch_apply(&t->o, &l, t->err, sizeof t->err);
  if (!t->rc && !t->print_config && dpt_train_validate(&t->o, t->err, sizeof t->err)) {
    t->rc = EXIT_USAGE;
    dpt_launch_blame(&l, t->err, sizeof t->err);
  }
  dpt_launch_kv_free(&l);
  if (!t->rc && !t->print_config) { /* a malformed --model, or a model file that does not fit
                                       the dataset's samples, is bad usage; a dataset that cannot
                                       be read is the run's to say (DPT_ENOENT: the model needs
                                       it) */
    dpt_model m;
    dpt_model_data data;
    char merr[DPT_ERR_LEN];
    int has_data = (t->o.context > 0 && !dpt_model_data_read_tokens(t->o.data, t->o.context, &data,
                                                                    merr, sizeof merr)) ||
                   !dpt_model_data_read(t->o.data, &data, merr, sizeof merr);
    int rc = dpt_model_create(t->o.model, t->o.activation, t->o.loss, has_data ? &data : NULL, &m,
                              merr, sizeof merr);
    if (rc && !(rc == DPT_ENOENT && !has_data)) {
      snprintf(t->err, sizeof t->err, "--model: %.480s", merr);
      t->rc = EXIT_USAGE;
    } else if (!rc) {
      m.destroy(&m);
    }
  }
  if (t->print_config) return;
  if (!t->rc) dpt_launch_watchdog_start(&t->o, launcher_rank());
}

static int cmd_train(train_args *t, int rank, MPI_Comm comm) {
  if (t->help) {
    if (rank == 0) {
      dpt_train_opts o;
      dpt_train_defaults(&o);
      printf("usage: mpirun -n W dpt train --data FILE [options] [--config FILE]\n\n"
             "Training options (defaults shown):\n");
      dpt_train_describe(&o, print_param, NULL);
      printf("    --%-28s %-14s %s\n", "solver", "adam",
             "solver; its hyperparameters (--lr, --betas, ...): dpt solvers");
      printf("    --%-28s %-14s %s\n", "sched", "none",
             "learning-rate scheduler; --sched-NAME VALUE: dpt schedulers");
      printf("    --%-28s %-14s %s\n", "config", "",
             "INI file with [train], [solver], [sched] "
             "sections; later flags override it");
      printf("    --%-28s %-14s %s\n", "print-config", "",
             "print the effective options as such a file and exit");
    }
    return 0;
  }
  if (t->rc) {
    if (rank == 0) fprintf(stderr, "dpt train: %s\n", t->err);
    return t->rc;
  }
  if (t->print_config) {
    if (rank == 0) dpt_launch_print_config(&t->o, stdout);
    return 0;
  }
  if (t->o.verbose) dpt_log_init(rank, DPT_LOG_DEBUG, 0); /* --verbose reaches the logger */
  char err[DPT_ERR_LEN] = "";
  dpt_train_result res;
  int rc = dpt_train_run(&t->o, comm, &res, err, sizeof err);
  if (rc) {
    if (rank == 0) fprintf(stderr, "dpt train: %s\n", err);
    return rc == DPT_ESTOPPED ? EXIT_STOPPED : EXIT_RUN;
  }
  if (rank == 0) {
    printf("dpt: %ld steps, %d epochs in %.1f s (%.0f samples/s); train loss %.4f", res.steps,
           res.epochs, res.seconds, res.samples_per_s, res.train_loss);
    if (!isnan(res.test_accuracy))
      printf("; test loss %.4f, test accuracy %.4f", res.test_loss, res.test_accuracy);
    else if (!isnan(res.test_loss))
      printf("; test loss %.4f", res.test_loss);
    if (res.skipped)
      printf("; %ld step%s skipped (non-finite values)", res.skipped, res.skipped > 1 ? "s" : "");
    printf("\n");
  }
  return 0;
}

int main(int argc, char **argv) {
  dpt_env_setup(argv);
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
  if (!strcmp(cmd, "solvers")) return cmd_solvers();
  if (!strcmp(cmd, "ckpt")) return cmd_ckpt(argc, argv);
  if (!strcmp(cmd, "schedulers")) return cmd_schedulers();
  if (!strcmp(cmd, "plot")) return dpt_launch_plot(argc, argv);
  if (!strcmp(cmd, "model")) return dpt_launch_model(argc, argv);
  if (!strcmp(cmd, "sample")) return dpt_launch_sample(argc, argv);

  static train_args targs;
  if (!strcmp(cmd, "train"))
    parse_train(argc, argv, &targs); /* before MPI_Init: the watchdog covers it */
  /* help and --print-config need no MPI (the man page is generated from the help at build
   * time) */
  if (!strcmp(cmd, "train") && (targs.help || (targs.print_config && !targs.rc)))
    return cmd_train(&targs, launcher_rank(), MPI_COMM_NULL);
  int help = 0;
  for (int i = 2; i < argc; i++) help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
  if (help && !strcmp(cmd, "data")) return dpt_launch_data(argc, argv, 0);
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  /* MPI failures come back as codes (every call here and below checks them), not an abort */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  dpt_launch_watchdog_rank(rank);
  dpt_launch_watchdog_phase("the start-up (dataset, checkpoint, set-up agreement)", 0);
  dpt_log_init(rank, DPT_LOG_INFO, 0);
  int rc;
  if (!strcmp(cmd, "train")) {
    rc = cmd_train(&targs, rank, MPI_COMM_WORLD);
  } else if (!strcmp(cmd, "compare")) {
    rc = dpt_launch_compare(argc, argv, rank, MPI_COMM_WORLD);
  } else if (!strcmp(cmd, "data")) {
    rc = dpt_launch_data(argc, argv, rank);
  } else {
    if (rank == 0) {
      fprintf(stderr, "dpt: unknown command '%s'\n", cmd);
      usage(stderr);
    }
    rc = EXIT_USAGE;
  }
  dpt_launch_watchdog_phase("the exit (MPI_Finalize)", 1);
  MPI_Finalize();
  return rc;
}

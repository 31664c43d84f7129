/* bench_cnn_train.c — trains one of the benchmarks' CNNs (tests/bench/cnn_net.h) with dpt's
 * trainer, for the Fashion-MNIST preset experiments of issue 19 before (or besides) a model
 * file: the net goes in through dpt_model_from_net, every other option as `dpt train` takes it.
 *
 *   mpirun -n 2 bench_cnn_train --net c32-c64-f128 [--nobn] [--drop 0.25] [--smooth 0] \
 *       data=fm.h5 solver=adamw lr=3e-3 sched=onecycle sched_max_lr=3e-3 batch=128 epochs=12
 *
 * (key=value are dpt_train_set's names; "solver" and "sched" before their hyperparameters.)
 * Rank 0 prints the run's result: steps, seconds, samples/s, test accuracy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cnn_net.h"

static const char *g_spec = "c32-c64-f128", *g_smooth = "";
static int g_bn = 1;
static double g_drop = 0.25;

static int create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  (void)a;
  dpt_net *n;
  int rc = cnn_net_build(g_spec, g_bn, g_drop, g_smooth, &n, err, errlen);
  return rc ? rc : dpt_model_from_net(m, "cnn", n, err, errlen);
}

int main(int argc, char **argv) {
  dpt_env_setup(argv);
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char err[DPT_ERR_LEN] = "", smooth[64] = "";
  dpt_train_opts o;
  dpt_train_defaults(&o);
  int rc = dpt_train_set(&o, "model", "cnn:", err, sizeof err);
  for (int i = 1; i < argc && !rc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!strcmp(argv[i], "--net") && i + 1 < argc)
      g_spec = argv[++i];
    else if (!strcmp(argv[i], "--nobn"))
      g_bn = 0;
    else if (!strcmp(argv[i], "--drop") && i + 1 < argc)
      g_drop = atof(argv[++i]);
    else if (!strcmp(argv[i], "--smooth") && i + 1 < argc)
      snprintf(smooth, sizeof smooth, "label_smoothing=%s", argv[++i]), g_smooth = smooth;
    else if (eq) {
      *eq = 0;
      rc = dpt_train_set(&o, argv[i], eq + 1, err, sizeof err);
    } else {
      snprintf(err, sizeof err, "argument '%s' is not --net/--nobn/--drop/--smooth or key=value",
               argv[i]);
      rc = DPT_EINVAL;
    }
  }
  dpt_model m = {0};
  dpt_model_args a = {.spec = "cnn:", .args = ""};
  if (!rc) rc = create(&a, &m, err, sizeof err);
  dpt_train_result res;
  if (!rc) rc = dpt_train_run_model(&o, &m, MPI_COMM_WORLD, &res, NULL, err, sizeof err);
  if (rank == 0) {
    if (rc)
      fprintf(stderr, "bench_cnn_train: %s\n", err);
    else
      printf("bench_cnn_train: net %s%s dropout %g %s: %ld steps, %d epochs, %.1f s, %.0f "
             "samples/s, train loss %.4f, test accuracy %.4f\n",
             g_spec, g_bn ? " (batchnorm)" : "", g_drop, smooth, res.steps, res.epochs, res.seconds,
             res.samples_per_s, res.train_loss, res.test_accuracy);
  }
  if (m.destroy) m.destroy(&m);
  MPI_Finalize();
  return rc ? 1 : 0;
}

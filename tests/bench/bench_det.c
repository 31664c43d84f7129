/* bench_det — the deterministic mode's step time against the default mode's, on the
 * Fashion-MNIST MLP (784-256-128-10, Adam) with a generated in-memory dataset of its shape.
 * Run it under mpirun at W = 2 (the target) or any W:
 *
 *   mpirun -n 2 build/tests/bench/bench_det
 *
 * For global batch 64 and 256 it times the default mode and --deterministic with G = W
 * micro-shards (each rank computes one, as the default mode does) and G = 8 (the default, which
 * any W up to 8 dividing it can reproduce), alternated, best of three each, and prints ms per
 * step and the ratio to the default. Target (deterministic-mode issue): ratio <= 1.3 at W = 2.
 */
#include <stdio.h>
#include <string.h>

#include "bench_util.h"

static char g_dir[512]; /* this run's own work directory (bench_workdir) */
static char g_run_dir[600];
#include "runtime.h"

#define TRAIN_SAMPLES 16384

static int run(const char *data, long batch, int det, int shards, MPI_Comm comm,
               double *ms_per_step, char *err) {
  dpt_train_opts o;
  dpt_train_defaults(&o);
  char b[32], g[32], d[8];
  snprintf(b, sizeof b, "%ld", batch);
  snprintf(g, sizeof g, "%d", shards);
  snprintf(d, sizeof d, "%d", det);
  const char *kv[][2] = {{"data", data},       {"model", "mlp:784-256-128-10"},
                         {"batch", b},         {"max_steps", batch == 64 ? "400" : "200"},
                         {"epochs", "1000"},   {"eval_every", "0"},
                         {"progress", "none"}, {"deterministic", d},
                         {"micro_shards", g},  {"run_dir", g_run_dir}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (dpt_train_set(&o, kv[i][0], kv[i][1], err, DPT_ERR_LEN)) return -1;
  dpt_train_result res;
  int rc = dpt_train_run(&o, comm, &res, err, DPT_ERR_LEN);
  *ms_per_step = rc ? 0 : res.step_s / (double)res.steps * 1e3;
  MPI_Allreduce(MPI_IN_PLACE, ms_per_step, 1, MPI_DOUBLE, MPI_MAX, comm); /* slowest rank */
  return rc;
}

int main(int argc, char **argv) {
  dpt_env_setup(argv);
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  dpt_log_init(rank, DPT_LOG_WARN, 0); /* no start-up line per run */
  char err[DPT_ERR_LEN] = "", data[600];
  if (bench_workdir(MPI_COMM_WORLD, g_dir, sizeof g_dir)) {
    if (rank == 0) fprintf(stderr, "bench_det: cannot make a work directory\n");
    MPI_Finalize();
    return 1;
  }
  snprintf(g_run_dir, sizeof g_run_dir, "%s/run", g_dir);
  snprintf(data, sizeof data, "%s/data.h5", g_dir);
  int rc = rank == 0 ? dpt_data_synth(data, TRAIN_SAMPLES, 0, 784, 10, 1, err, sizeof err) : 0;
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rank == 0 && !rc) {
    printf("bench_det: MLP 784-256-128-10, Adam, W = %d; ms per step (slowest rank), best of 3\n",
           size);
    printf("%6s %12s %14s %8s %14s %8s\n", "batch", "default", "det G=W", "ratio", "det G=8",
           "ratio");
  }
  const long batches[] = {64, 256};
  for (int i = 0; i < 2 && !rc; i++) {
    double best[3] = {1e30, 1e30, 1e30}, t;
    const int det[3] = {0, 1, 1}, shards[3] = {size, size, 8};
    for (int rep = 0; rep < 3 && !rc; rep++)
      for (int k = 0; k < 3 && !rc; k++) {
        if (8 % size && k == 2) continue; /* G = 8 needs W | 8 */
        rc = run(data, batches[i], det[k], shards[k], MPI_COMM_WORLD, &t, err);
        if (!rc && t < best[k]) best[k] = t;
      }
    if (!rc && rank == 0)
      printf("%6ld %12.3f %14.3f %8.2f %14.3f %8.2f\n", batches[i], best[0], best[1],
             best[1] / best[0], best[2] < 1e30 ? best[2] : 0.0,
             best[2] < 1e30 ? best[2] / best[0] : 0.0);
  }
  if (rc && rank == 0) fprintf(stderr, "bench_det: %s\n", err);
  bench_workdir_remove(MPI_COMM_WORLD, g_dir);
  MPI_Finalize();
  return rc ? 1 : 0;
}

/* bench_zero — the memory and communication side of ZeRO (run by tests/bench/zero.sh).
 *
 *   mpirun -n W bench_zero mem STAGE   train MLP 1024-4096-4096-1024 (25.2M parameters, Adam)
 *                                      for a few steps at ZeRO stage STAGE and print one row:
 *                                      peak resident memory per rank (largest), optimizer state
 *                                      bytes per rank (largest) and step time. One stage per
 *                                      process, because peak RSS only grows.
 *   mpirun -n W bench_zero bw          bus bandwidth of dpt's allreduce, reduce-scatter and
 *                                      all-gather against raw MPI_Allreduce,
 *                                      MPI_Reduce_scatter_block and MPI_Allgather of the same
 *                                      bytes, measured in the same run (best of 5 each).
 * Bus bandwidth follows the usual convention: bytes * 2(W-1)/W / time for allreduce and
 * bytes * (W-1)/W / time for the other two. Target (ZeRO issue): dpt/raw >= 0.95.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "comm.h"
#include "runtime.h"

#define BW_FLOATS ((size_t)16 << 20) /* 64 MiB per collective */
#define BW_REPS 5

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char g_dir[512]; /* this run's own work directory (bench_workdir) */
static char g_run_dir[600];

static int mem(int stage, int rank, int size) {
  (void)size;
  char err[DPT_ERR_LEN] = "", data[600], zero[8];
  snprintf(g_run_dir, sizeof g_run_dir, "%s/run", g_dir);
  snprintf(data, sizeof data, "%s/data.h5", g_dir);
  int rc = 0;
  if (rank == 0) rc = dpt_data_synth(data, 512, 0, 1024, 1024, 1, err, sizeof err);
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rc) {
    if (rank == 0) fprintf(stderr, "bench_zero: %s\n", err);
    return 1;
  }
  snprintf(zero, sizeof zero, "%d", stage);
  dpt_train_opts o;
  dpt_train_defaults(&o);
  const char *kv[][2] = {{"data", data},       {"model", "mlp:1024-4096-4096-1024"},
                         {"batch", "32"},      {"max_steps", "6"},
                         {"zero", zero},       {"eval_every", "0"},
                         {"progress", "none"}, {"run_dir", g_run_dir}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !rc; i++)
    rc = dpt_train_set(&o, kv[i][0], kv[i][1], err, sizeof err);
  dpt_train_result res;
  if (!rc) rc = dpt_train_run(&o, MPI_COMM_WORLD, &res, err, sizeof err);
  if (rc) {
    if (rank == 0) fprintf(stderr, "bench_zero: %s\n", err);
    return 1;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double v[3] = {(double)ru.ru_maxrss / 1024.0, (double)res.state_bytes / 1048576.0,
                 res.step_s / (double)res.steps};
  MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("%3d %6d %14.0f %16.1f %13.1f\n", size, stage, v[0], v[1], v[2] * 1e3);
    unlink(data);
  }
  return 0;
}

typedef int (*coll_fn)(float *buf, size_t n, void *ctx);

/* dpt's reducer was created over buf; allreduce or reduce-scatter depending on how. */
static int dpt_allreduce(float *buf, size_t n, void *ctx) {
  (void)buf;
  dpt_reducer *c = ctx;
  char err[DPT_ERR_LEN];
  dpt_reducer_ready(c, 0, n);
  return dpt_reducer_wait(c, NULL, err, sizeof err);
}
static int raw_allreduce(float *buf, size_t n, void *ctx) {
  (void)ctx;
  return MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int raw_reduce_scatter(float *buf, size_t n, void *ctx) { /* out of place, as MPI needs */
  int size;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  float *out = ctx;
  return MPI_Reduce_scatter_block(buf, out, (int)(n / (size_t)size), MPI_FLOAT, MPI_SUM,
                                  MPI_COMM_WORLD);
}
static int dpt_allgather(float *buf, size_t n, void *ctx) {
  (void)ctx;
  char err[DPT_ERR_LEN];
  return dpt_comm_allgather(MPI_COMM_WORLD, buf, n, err, sizeof err);
}
static int raw_allgather(float *buf, size_t n, void *ctx) {
  (void)ctx;
  int size, rank;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  size_t part = n / (size_t)size;
  return MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)part, MPI_FLOAT,
                       MPI_COMM_WORLD);
}

static double best_time(coll_fn f, float *buf, size_t n, void *ctx) {
  double best = 1e30;
  for (int r = 0; r < BW_REPS; r++) {
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f;
    MPI_Barrier(MPI_COMM_WORLD);
    double t = now();
    if (f(buf, n, ctx)) return -1;
    t = now() - t;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (t < best) best = t;
  }
  return best;
}

static int bw(int rank, int size) {
  size_t n = BW_FLOATS / (size_t)(16 * size) * (size_t)(16 * size); /* shards even, aligned */
  float *buf = malloc(n * sizeof(float)), *out = malloc(n / (size_t)size * sizeof(float));
  dpt_reducer *ar, *rs;
  dpt_reducer_params pa = dpt_reducer_defaults(), ps;
  pa.bucket_bytes = (size_t)4 << 20;
  ps = pa;
  ps.shard_only = 1;
  char err[DPT_ERR_LEN];
  if (!buf || !out || dpt_reducer_create(MPI_COMM_WORLD, buf, n, &pa, &ar, err, sizeof err) ||
      dpt_reducer_create(MPI_COMM_WORLD, buf, n, &ps, &rs, err, sizeof err)) {
    if (rank == 0) fprintf(stderr, "bench_zero: cannot set up the bandwidth test\n");
    return 1;
  }
  double bytes = (double)n * sizeof(float), f = (double)(size - 1) / size;
  struct {
    const char *name;
    coll_fn dpt, raw;
    void *dctx, *rctx;
    double factor;
  } rows[] = {
      {"allreduce", dpt_allreduce, raw_allreduce, ar, NULL, 2 * f},
      {"reduce-scatter", dpt_allreduce, raw_reduce_scatter, rs, out, f},
      {"all-gather", dpt_allgather, raw_allgather, NULL, NULL, f},
  };
  if (rank == 0)
    printf("%3s %-15s %10s %12s %12s %8s\n", "W", "collective", "MiB", "dpt GB/s", "MPI GB/s",
           "ratio");
  for (int i = 0; i < 3; i++) {
    double td = best_time(rows[i].dpt, buf, n, rows[i].dctx);
    double tr = best_time(rows[i].raw, buf, n, rows[i].rctx);
    double bd = bytes * rows[i].factor / td * 1e-9, br = bytes * rows[i].factor / tr * 1e-9;
    if (rank == 0)
      printf("%3d %-15s %10.0f %12.2f %12.2f %8.2f\n", size, rows[i].name, bytes / 1048576.0, bd,
             br, bd / br);
  }
  dpt_reducer_free(ar);
  dpt_reducer_free(rs);
  free(buf);
  free(out);
  return 0;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, rc = 2;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (bench_workdir(MPI_COMM_WORLD, g_dir, sizeof g_dir)) {
    if (rank == 0) fprintf(stderr, "bench_zero: cannot make a work directory\n");
    MPI_Finalize();
    return 1;
  }
  if (argc >= 3 && !strcmp(argv[1], "mem"))
    rc = mem(atoi(argv[2]), rank, size);
  else if (argc >= 2 && !strcmp(argv[1], "bw"))
    rc = size > 1 ? bw(rank, size) : 0;
  else if (rank == 0)
    fprintf(stderr, "usage: bench_zero mem STAGE | bench_zero bw\n");
  bench_workdir_remove(MPI_COMM_WORLD, g_dir);
  MPI_Finalize();
  return rc;
}

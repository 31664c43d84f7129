/* bench_reduce — bus bandwidth of dpt's gradient reducer, by algorithm, against raw
 * MPI_Allreduce of the same bytes in the same run (run by tests/bench/netns_reduce.sh across
 * the netns test bed's nodes; Open MPI's own algorithm for MPI_Allreduce is whatever the MCA
 * settings of the run choose: the script runs it with the default, the ring forced and han).
 *
 *   mpirun -n W bench_reduce [MIB [REPS [mpi]]]  (default 64 MiB, best of 3; mpi: only the
 *                                                 MPI_Allreduce row)
 *
 * One row per method: best time and bus bandwidth, bytes * 2(W-1)/W / time for an allreduce and
 * bytes * (W-1)/W / time for a reduce-scatter (shard_only), the usual convention; and whether
 * the sum is bitwise the rank-order one. The bf16 rows (--compress bf16) send half the bytes:
 * their figure is the fp32 bytes reduced per second (what the trainer sees), so it can pass the
 * link rate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "comm.h"
#include "runtime.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(float *buf, size_t n, int rank) {
  unsigned s = 17u + 101u * (unsigned)rank;
  for (size_t i = 0; i < n; i++) buf[i] = (float)rand_r(&s) / (float)RAND_MAX - 0.5f;
}

/* Best time of reps reductions of n floats with algorithm a; the last sum left in buf. */
static double time_dpt(dpt_reduce_algorithm a, dpt_compress c, int shard_only, float *buf, size_t n,
                       int reps, int rank) {
  dpt_reducer_params p = dpt_reducer_defaults();
  p.algorithm = a;
  p.compress = c;
  p.shard_only = shard_only;
  p.overlap = 0;
  dpt_reducer *r;
  char err[DPT_ERR_LEN];
  if (dpt_reducer_create(MPI_COMM_WORLD, buf, n, &p, &r, err, sizeof err)) {
    if (rank == 0) fprintf(stderr, "bench_reduce: %s\n", err);
    return -1;
  }
  double best = 1e30;
  for (int i = 0; i < reps; i++) {
    fill(buf, n, rank);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    dpt_reducer_ready(r, 0, n);
    if (dpt_reducer_wait(r, NULL, err, sizeof err)) {
      if (rank == 0) fprintf(stderr, "bench_reduce: %s\n", err);
      dpt_reducer_free(r);
      return -1;
    }
    double t = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (t < best) best = t;
  }
  dpt_reducer_free(r);
  return best;
}

int main(int argc, char **argv) {
  dpt_env_setup(argv); /* as the dpt command does (bench_util.h) */
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  size_t n = mib << 18;
  float *buf = malloc(n * sizeof *buf), *ref = malloc(n * sizeof *ref);
  dpt_topology t;
  char err[DPT_ERR_LEN];
  if (!buf || !ref || dpt_comm_topology(MPI_COMM_WORLD, &t, err, sizeof err)) {
    fprintf(stderr, "bench_reduce: set-up failed\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  double bytes = (double)n * sizeof(float), ar = 2.0 * (size - 1) / size, rs = (size - 1.0) / size;
  if (rank == 0) printf("# %d ranks on %d nodes, %zu MiB, best of %d\n", size, t.nodes, mib, reps);
  /* raw MPI_Allreduce */
  double best = 1e30;
  for (int i = 0; i < reps; i++) {
    fill(buf, n, rank);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double dt = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (dt < best) best = dt;
  }
  if (rank == 0)
    printf("%-28s %8.3f s %7.3f Gbit/s\n", "MPI_Allreduce", best, bytes * ar / best * 8e-9);
  enum { REF, SAME, LOSSY }; /* the rank-order sum; bitwise it; compressed */
  static const struct {
    const char *name;
    dpt_reduce_algorithm a;
    dpt_compress c;
    int shard_only, role;
  } rows[] = {
      {"dpt rank-order allreduce", DPT_REDUCE_RANK_ORDER, DPT_COMPRESS_NONE, 0, REF},
      {"dpt node allreduce", DPT_REDUCE_NODE, DPT_COMPRESS_NONE, 0, SAME},
      {"dpt ring allreduce", DPT_REDUCE_RING, DPT_COMPRESS_NONE, 0, SAME},
      {"dpt rank-order reduce-scat.", DPT_REDUCE_RANK_ORDER, DPT_COMPRESS_NONE, 1, REF},
      {"dpt node reduce-scatter", DPT_REDUCE_NODE, DPT_COMPRESS_NONE, 1, SAME},
      {"dpt ring reduce-scatter", DPT_REDUCE_RING, DPT_COMPRESS_NONE, 1, SAME},
      {"dpt bf16 allreduce", DPT_REDUCE_RANK_ORDER, DPT_COMPRESS_BF16, 0, LOSSY},
      {"dpt bf16 reduce-scatter", DPT_REDUCE_RANK_ORDER, DPT_COMPRESS_BF16, 1, LOSSY},
  };
  dpt_range sh = dpt_comm_shard(n, rank, size);
  int mpi_only = argc > 3 && !strcmp(argv[3], "mpi");
  for (size_t k = 0; k < sizeof rows / sizeof rows[0] && !mpi_only; k++) {
    double dt = time_dpt(rows[k].a, rows[k].c, rows[k].shard_only, buf, n, reps, rank);
    if (dt < 0) MPI_Abort(MPI_COMM_WORLD, 1);
    int same = 1;
    if (rows[k].role == REF)
      memcpy(ref, buf, n * sizeof *buf);
    else if (rows[k].role == SAME && rows[k].shard_only)
      same = !memcmp(ref + sh.offset, buf + sh.offset, sh.len * sizeof *buf);
    else if (rows[k].role == SAME)
      same = !memcmp(ref, buf, n * sizeof *buf);
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    static const char *const note[] = {"", "  (bitwise rank-order's)",
                                       "  (16-bit wire: fp32 bytes per s)"};
    if (rank == 0)
      printf("%-28s %8.3f s %7.3f Gbit/s%s\n", rows[k].name, dt,
             bytes * (rows[k].shard_only ? rs : ar) / dt * 8e-9,
             same ? note[rows[k].role] : "  (DIFFERS from rank-order)");
  }
  free(buf);
  free(ref);
  MPI_Finalize();
  return 0;
}

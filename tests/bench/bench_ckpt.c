/* bench_ckpt — checkpoint write and read speed of a 25.2M-parameter Adam model (MLP
 * 1024-4096-4096-1024: parameters, exp_avg, exp_avg_sq = 302 MB) against writing the same bytes
 * with plain write() + fsync() from every rank, measured in the same run: alternated, best of 5
 * each, every repetition to a new file (as a training run writes new checkpoints).
 * Run under mpirun with W = 1, 2, 4 (tests/bench/ckpt.sh). Target (checkpoint issue): >= 0.8.
 * Usage: bench_ckpt [DIR]   (default: a new directory of its own under $TMPDIR or /tmp; the
 *                           files are removed afterwards)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "comm.h"
#include "io.h"
#include "runtime.h"

#define REPS 5

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The slowest rank's time of fn(ctx, rep). */
static double timed(int (*fn)(void *, int), void *ctx, int rep) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t = now();
  int rc = fn(ctx, rep);
  t = now() - t;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return rc ? -1 : t;
}

typedef struct {
  char path[REPS][1100]; /* one file per repetition: none replaces another while timed */
  dpt_ckpt_view *v;
  float *arrays[3];
  size_t len;
  char raw[REPS][1100];
} job;

static int do_write(void *p, int rep) {
  job *j = p;
  char err[DPT_ERR_LEN];
  int rc = dpt_ckpt_write(j->path[rep], MPI_COMM_WORLD, j->v, err, sizeof err);
  if (rc) fprintf(stderr, "bench_ckpt: %s\n", err);
  return rc;
}

static int do_read(void *p, int rep) {
  job *j = p;
  char err[DPT_ERR_LEN];
  int rc = dpt_ckpt_read(j->path[rep], j->v, 0, err, sizeof err);
  if (rc) fprintf(stderr, "bench_ckpt: %s\n", err);
  return rc;
}

/* The baseline: each rank writes its three shard arrays to its own file and fsyncs. */
static int do_raw(void *p, int rep) {
  job *j = p;
  int fd = open(j->raw[rep], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  int rc = 0;
  for (int a = 0; a < 3 && !rc; a++) {
    const char *b = (const char *)j->arrays[a];
    size_t left = j->len * sizeof(float);
    while (left && !rc) {
      ssize_t w = write(fd, b, left);
      if (w <= 0)
        rc = -1;
      else
        b += w, left -= (size_t)w;
    }
  }
  if (fsync(fd)) rc = -1;
  close(fd);
  return rc;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char own_dir[512] = "";
  if (argc <= 1 && bench_workdir(MPI_COMM_WORLD, own_dir, sizeof own_dir)) {
    if (rank == 0) fprintf(stderr, "bench_ckpt: cannot make a work directory\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const char *dir = argc > 1 ? argv[1] : own_dir;
  mkdir(dir, 0755);
  dpt_model m;
  char err[DPT_ERR_LEN];
  if (dpt_mlp_create("mlp:1024-4096-4096-1024", "relu", "ce", &m, err, sizeof err)) {
    fprintf(stderr, "bench_ckpt: %s\n", err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  dpt_range own = dpt_comm_shard(m.nparams, rank, size);
  float *params = calloc(m.nparams, sizeof(float));
  float *m1 = calloc(own.len + 1, sizeof(float)), *m2 = calloc(own.len + 1, sizeof(float));
  for (size_t i = 0; i < m.nparams; i++) params[i] = (float)(i % 1000) * 1e-3f;
  for (size_t i = 0; i < own.len; i++) m1[i] = m2[i] = (float)(i % 77) * 1e-2f;
  const dpt_tensor *t = m.tensors; /* the model's table is the checkpoint's */
  const char *vn[2] = {"exp_avg", "exp_avg_sq"};
  float *vv[2] = {m1, m2};
  const char *sn[1] = {"solver.step"};
  double sv[1] = {100};
  dpt_ckpt_text tx[2] = {{"solver", "adam"}, {"model", "mlp"}};
  dpt_ckpt_view v = {.ntensors = m.ntensors,
                     .tensors = t,
                     .nparams = m.nparams,
                     .lo = own.offset,
                     .len = own.len,
                     .params = params,
                     .nvec = 2,
                     .vec_names = vn,
                     .vecs = vv,
                     .nscalar = 1,
                     .scalar_names = sn,
                     .scalars = sv,
                     .ntext = 2,
                     .texts = tx};
  static job j;
  j.v = &v;
  j.arrays[0] = params + own.offset, j.arrays[1] = m1, j.arrays[2] = m2;
  j.len = own.len;
  /* alternated, so that both see the same state of the machine; best of REPS each */
  double tw = 1e30, tr = 1e30, traw = 1e30;
  for (int r = 0; r < REPS; r++) {
    snprintf(j.path[r], sizeof j.path[r], "%s/bench.%d.h5", dir, r);
    snprintf(j.raw[r], sizeof j.raw[r], "%s/raw.%d.%d", dir, rank, r);
    double t[3] = {timed(do_write, &j, r), timed(do_raw, &j, r), timed(do_read, &j, r)};
    if (t[0] < 0 || t[1] < 0 || t[2] < 0) {
      tw = -1;
      break;
    }
    tw = t[0] < tw ? t[0] : tw, traw = t[1] < traw ? t[1] : traw, tr = t[2] < tr ? t[2] : tr;
  }
  double bytes = 3.0 * (double)m.nparams * sizeof(float);
  if (rank == 0 && tw > 0) {
    if (size == 1 || getenv("BENCH_CKPT_HEADER"))
      printf("%3s %10s %12s %12s %14s %10s\n", "W", "MB", "write MB/s", "read MB/s", "write+fsync",
             "ratio");
    printf("%3d %10.0f %12.0f %12.0f %14.0f %10.2f\n", size, bytes / 1e6, bytes / tw / 1e6,
           bytes / tr / 1e6, bytes / traw / 1e6, traw / tw);
  }
  for (int r = 0; r < REPS; r++) {
    unlink(j.raw[r]);
    if (rank == 0) unlink(j.path[r]);
  }
  m.destroy(&m);
  free(params);
  free(m1);
  free(m2);
  if (own_dir[0]) bench_workdir_remove(MPI_COMM_WORLD, own_dir);
  MPI_Finalize();
  return tw < 0;
}

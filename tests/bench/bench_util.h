/* bench_util.h — what the benchmarks share: a monotonic clock, and a work directory of each
 * run's own (benchmarks write nowhere else, so two of them never meet in a shared path). (They
 * call dpt_env_setup first, as the dpt command does.) Header-only: each benchmark is one
 * executable. */
#ifndef DPT_BENCH_UTIL_H
#define DPT_BENCH_UTIL_H

#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A new directory under $TMPDIR (or /tmp), made by rank 0, its path on every rank. 0 or -1.
 * Collective over comm. */
static inline int bench_workdir(MPI_Comm comm, char *dir, size_t len) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  char path[512] = "";
  if (rank == 0) {
    const char *t = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dpt-bench-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(path)) path[0] = 0;
  }
  if (MPI_Bcast(path, (int)sizeof path, MPI_CHAR, 0, comm) != MPI_SUCCESS || !path[0]) return -1;
  snprintf(dir, len, "%s", path);
  return 0;
}

/* rm -r of what bench_workdir made (and the benchmark wrote into it). */
static inline void bench_rmtree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char sub[1300];
      if ((size_t)snprintf(sub, sizeof sub, "%.1000s/%s", path, e->d_name) >= sizeof sub) continue;
      struct stat st;
      if (!lstat(sub, &st) && S_ISDIR(st.st_mode))
        bench_rmtree(sub);
      else
        unlink(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

/* Removes the work directory once every rank is done with it. Collective over comm. */
static inline void bench_workdir_remove(MPI_Comm comm, const char *dir) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Barrier(comm);
  if (rank == 0) bench_rmtree(dir);
}

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif

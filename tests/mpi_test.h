/* mpi_test.h — what the MPI tests share: one verdict for all ranks, the distance used to
 * compare parameters trained on different rank counts, and (for tests that include runtime.h
 * first) the generated dataset they train on. */
#ifndef DPT_TESTS_MPI_TEST_H
#define DPT_TESTS_MPI_TEST_H

#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>

/* Ends an MPI test: the test fails (exit status 1) if it failed on any rank. Usage:
 *   return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL)); */
static inline int dpt_test_finish(int failed) {
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any ? 1 : 0;
}

/* ||a - ref|| / ||ref|| in double. */
static inline double dpt_test_rel_l2(const float *a, const float *ref, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
    s += (double)ref[i] * ref[i];
  }
  return sqrt(d / s);
}

#ifdef fail_msg /* cmocka.h included first */
#include <stdarg.h>
#include <string.h>
/* A failure found on world rank 0 inside a loop of collective runs, raised on every rank once
 * the loop is over (a rank that left early would leave the others waiting in the next run's
 * collectives): dpt_test_note records the first, dpt_test_raise broadcasts and fails. */
static char dpt_test_failure[512];
static inline void dpt_test_note(const char *fmt, ...) {
  if (dpt_test_failure[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dpt_test_failure, sizeof dpt_test_failure, fmt, ap);
  va_end(ap);
}
static inline void dpt_test_raise(void) {
  MPI_Bcast(dpt_test_failure, sizeof dpt_test_failure, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (dpt_test_failure[0]) {
    char f[sizeof dpt_test_failure];
    memcpy(f, dpt_test_failure, sizeof f);
    dpt_test_failure[0] = 0;
    fail_msg("%s", f);
  }
}
#endif

#if defined(DPT_RUNTIME_H) && defined(fail_msg)
/* Sets training option k to v; a refusal fails the test. */
static inline void dpt_test_set(dpt_train_opts *o, const char *k, const char *v) {
  char err[DPT_ERR_LEN];
  if (dpt_train_set(o, k, v, err, sizeof err)) fail_msg("%s=%s: %s", k, v, err);
}

/* Sets each option of kv, a NULL-terminated list of key, value, key, value, ...:
 * dpt_test_set_many(&o, (const char *[]){"solver", "sgd", "lr", "0.05", NULL}). */
static inline void dpt_test_set_many(dpt_train_opts *o, const char *const *kv) {
  for (; kv[0] && kv[1]; kv += 2) dpt_test_set(o, kv[0], kv[1]);
}

/* The options the MPI training tests' runs share: at most steps steps, ZeRO stage zero, no
 * progress line, run directory dir, checkpoints when resume is given (NULL: none; "": a fresh
 * run; else --resume's value), deterministic mode with 4 micro-shards when det. */
static inline void dpt_test_run_opts(dpt_train_opts *o, long steps, const char *zero,
                                     const char *dir, const char *resume, int det) {
  char text[32];
  snprintf(text, sizeof text, "%ld", steps);
  dpt_test_set(o, "max_steps", text);
  dpt_test_set(o, "zero", zero);
  dpt_test_set(o, "progress", "none");
  dpt_test_set(o, "run_dir", dir);
  dpt_test_set(o, "ckpt", resume ? "1" : "0");
  if (resume && resume[0]) dpt_test_set(o, "resume", resume);
  if (resume && !resume[0]) dpt_test_set(o, "fresh", "1");
  if (det) {
    dpt_test_set(o, "deterministic", "1");
    dpt_test_set(o, "micro_shards", "4");
  }
}
#endif

#ifdef DPT_RUNTIME_H
/* Rank 0 writes the generated dataset (dpt_data_synth) all ranks then read. 0, or 1 after
 * printing why and finalising MPI (return it from main). Collective over MPI_COMM_WORLD. */
static inline int dpt_test_synth(const char *path, long train, long test, long features,
                                 long classes, long seed) {
  int rank, rc = 0;
  char err[DPT_ERR_LEN] = "";
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) rc = dpt_data_synth(path, train, test, features, classes, seed, err, sizeof err);
  if (MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) rc = 1;
  if (!rc) return 0;
  if (rank == 0) fprintf(stderr, "synth failed: %s\n", err);
  MPI_Finalize();
  return 1;
}
#endif

#endif

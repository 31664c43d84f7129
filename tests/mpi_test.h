/* mpi_test.h — what the MPI tests share: one verdict for all ranks, and the distance used to
 * compare parameters trained on different rank counts. */
#ifndef DPT_TESTS_MPI_TEST_H
#define DPT_TESTS_MPI_TEST_H

#include <math.h>
#include <mpi.h>
#include <stddef.h>

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

#endif

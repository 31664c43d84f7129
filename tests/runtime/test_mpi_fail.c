/* An MPI failure in any collective of a training run comes back from dpt_train_run as
 * DPT_EMPI with MPI's message on every rank, not an abort: short runs (the rank-order reducer
 * with overlap and ZeRO, deterministic mode, the diagnosis of a NaN, evaluation) are failed in turn
 * at each of their MPI collectives through PMPI (tests/comm/mpi_fail.h). The error handler is
 * invoked, so a communicator the trainer left on MPI_ERRORS_ARE_FATAL aborts the test; a collective
 * whose result is ignored makes the run succeed (or fail otherwise) and the test fail. Calls on the
 * caller's communicator (only the trainer's MPI_Comm_dup of it) are spared: its error handler is
 * the caller's choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../comm/mpi_fail.h"
#include "runtime.h" /* before mpi_test.h: its dataset helper needs it */
#include "mpi_test.h"

static int world_rank, world_size;
static char data_path[1024];

/* A run of one epoch of 2 steps with evaluation: 0 default (ZeRO at W > 1, overlap, several
 * buckets), 1 deterministic, 2 a NaN on rank 0 in step 1 (DPT_ENONFINITE). */
static int run(int variant, char *err, size_t errlen) {
  dpt_train_opts o;
  dpt_train_defaults(&o);
  dpt_test_set_many(&o, (const char *[]){"data", data_path, "model", "mlp:12-20-3", "batch", "16",
                                         "epochs", "1", "eval_every", "1", "progress", "none",
                                         "bucket_mb", "0.0005", NULL});
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/run_fail_np%d_%d", DPT_TEST_TMP, world_size, variant);
  dpt_test_set(&o, "run_dir", dir);
  if (variant == 1) {
    dpt_test_set(&o, "deterministic", "1");
    dpt_test_set(&o, "micro_shards", "4");
  }
  if (variant == 2) setenv("DPT_FAULT", "nan:0@1", 1);
  dpt_train_result res;
  int rc = dpt_train_run(&o, MPI_COMM_WORLD, &res, err, errlen);
  unsetenv("DPT_FAULT");
  if (variant == 2) return rc == DPT_ENONFINITE ? 0 : rc ? rc : -1000;
  return rc;
}

static void test_every_collective_of_a_run_fails_cleanly(void **state) {
  (void)state;
  const char *names[] = {"default", "deterministic", "non-finite"};
  mpi_fail_spare(MPI_COMM_WORLD);
  for (int v = 0; v < 3; v++) {
    char err[DPT_ERR_LEN] = "";
    mpi_fail_arm(0);
    int rc = run(v, err, sizeof err);
    long calls = mpi_fail_disarm();
    if (rc) fail_msg("%s run without a failure: %d %s", names[v], rc, err);
    long most = calls, least = calls; /* every rank made the same calls */
    PMPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
    PMPI_Allreduce(MPI_IN_PLACE, &least, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
    assert_int_equal(most, least);
    assert_true(calls >= 8);
    if (world_rank == 0)
      print_message("%s run: %ld MPI calls, each failed in turn\n", names[v], calls);
    for (long k = 1; k <= calls; k++) {
      err[0] = 0;
      mpi_fail_arm(k);
      rc = run(v, err, sizeof err);
      mpi_fail_disarm();
      if (rc != DPT_EMPI || !strstr(err, MPI_FAIL_MESSAGE))
        fail_msg("%s run, MPI call %ld of %ld failed: got %d '%s'", names[v], k, calls, rc, err);
    }
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  snprintf(data_path, sizeof data_path, "%s/fail_np%d.h5", DPT_TEST_TMP, world_size);
  if (dpt_test_synth(data_path, 32, 16, 12, 3, 5)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_collective_of_a_run_fails_cleanly),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

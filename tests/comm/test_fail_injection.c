/* An MPI failure in any collective of comm/ — the small collectives, the topology, the error
 * agreement, and every collective of a reducer's life (creation and two steps, both algorithms,
 * whole sum and shard only, with and without overlap) — comes back as DPT_EMPI with MPI's
 * message on every rank, not an abort. Each call is failed in turn through PMPI (mpi_fail.h);
 * the error handler is invoked, so a communicator left on MPI_ERRORS_ARE_FATAL aborts the
 * test. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"
#include "mpi_fail.h"
#include "mpi_test.h"

static int rank, size;
static MPI_Comm comm; /* MPI_COMM_WORLD's duplicate with MPI_ERRORS_RETURN */

/* Calls fn unarmed (it must succeed), then once failing each of the MPI calls it made: every
 * time the result is DPT_EMPI and the message carries MPI's. Returns the calls counted. */
static long fail_each_call(int (*fn)(int variant, char *err, size_t errlen), int variant,
                           const char *name) {
  char err[DPT_ERR_LEN] = "";
  mpi_fail_arm(0);
  int rc = fn(variant, err, sizeof err);
  long calls = mpi_fail_disarm();
  if (rc) fail_msg("%s (%d) without a failure: %d %s", name, variant, rc, err);
  long most = calls, least = calls; /* every rank made the same calls */
  PMPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  PMPI_Allreduce(MPI_IN_PLACE, &least, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
  assert_int_equal(most, least);
  for (long k = 1; k <= calls; k++) {
    err[0] = 0;
    mpi_fail_arm(k);
    rc = fn(variant, err, sizeof err);
    mpi_fail_disarm();
    if (rc != DPT_EMPI || !strstr(err, MPI_FAIL_MESSAGE))
      fail_msg("%s (%d), MPI call %ld of %ld failed: got %d '%s'", name, variant, k, calls, rc,
               err);
  }
  return calls;
}

/* --- the small collectives --- */

static int small(int which, char *err, size_t errlen) {
  double v[3] = {1, 2, rank};
  int64_t iv[2] = {rank, 3};
  float buf[100] = {0};
  int x = 5;
  dpt_topology topo;
  MPI_Comm dup;
  switch (which) {
  case 0: return dpt_comm_sum(comm, v, 3, err, errlen);
  case 1: return dpt_comm_max(comm, v, 3, err, errlen);
  case 2: return dpt_comm_min_int64(comm, iv, 2, err, errlen);
  case 3: return dpt_comm_sum_exact(comm, iv, 2, err, errlen);
  case 4: return dpt_comm_bcast_int(comm, &x, 0, err, errlen);
  case 5: return dpt_comm_allgather(comm, buf, 100, err, errlen);
  case 6: return dpt_comm_topology(comm, &topo, err, errlen);
  case 7: return dpt_comm_agree_error(comm, 0, err, errlen);
  case 8: {
    int rc = dpt_comm_dup_returning(comm, &dup, err, errlen);
    if (!rc) MPI_Comm_free(&dup);
    return rc;
  }
  }
  return DPT_EINVAL;
}

static void test_small_collectives_fail_with_mpi_message(void **state) {
  (void)state;
  const char *names[] = {"sum",       "max",      "min_int64",   "sum_exact",    "bcast_int",
                         "allgather", "topology", "agree_error", "dup_returning"};
  for (int i = 0; i < 9; i++) {
    long calls = fail_each_call(small, i, names[i]);
    if (i == 5 && size == 1)
      assert_int_equal(calls, 0); /* nothing to gather */
    else if (i == 6)
      assert_int_equal(calls, 5); /* split, 2 reductions, scan, bcast */
    else
      assert_true(calls >= 1);
  }
  /* the agreement without a message buffer still says DPT_EMPI */
  mpi_fail_arm(1);
  int rc = dpt_comm_agree(comm, 0);
  mpi_fail_disarm();
  assert_int_equal(rc, DPT_EMPI);
  /* sharing a message: MPI's message replaces it */
  char err[DPT_ERR_LEN] = "a bad label";
  mpi_fail_arm(1);
  dpt_comm_share_error(comm, -1, err, sizeof err);
  mpi_fail_disarm();
  assert_non_null(strstr(err, MPI_FAIL_MESSAGE));
}

static void test_topology_on_one_host(void **state) {
  (void)state;
  char err[DPT_ERR_LEN];
  dpt_topology t;
  assert_int_equal(dpt_comm_topology(comm, &t, err, sizeof err), 0);
  assert_int_equal(t.nodes, 1); /* the tests run on one machine */
  assert_int_equal(t.node, 0);
  assert_int_equal(t.local_rank, rank);
  assert_int_equal(t.local_size, size);
  assert_int_equal(t.max_per_node, size);
}

/* --- a reducer's life --- */

enum { N = 1000 };
static float buf[N];
static const size_t toff[2] = {0, 600}, tlen[2] = {600, 400};

/* variant: bit 0 shard_only, bit 1 overlap, bit 2 the exact algorithm */
static int reducer_life(int variant, char *err, size_t errlen) {
  double scales[2] = {NAN, NAN};
  dpt_reducer_params p = dpt_reducer_defaults();
  p.bucket_bytes = 256 * sizeof(float); /* 4 buckets */
  p.shard_only = variant & 1;
  p.overlap = (variant >> 1) & 1;
  if (variant & 4) {
    p.algorithm = DPT_REDUCE_EXACT;
    p.ntensors = 2;
    p.tensor_offset = toff;
    p.tensor_len = tlen;
    p.micro_shards = size;
    p.scales = scales;
  }
  dpt_reducer *r;
  int rc = dpt_reducer_create(comm, buf, N, &p, &r, err, errlen);
  if (rc) return rc;
  for (int step = 0; step < 2 && !rc; step++) {
    for (int i = 0; i < N; i++) buf[i] = (float)(i % 7 + rank + step);
    if (variant & 4) {
      int nonfinite = 0, redo;
      do {
        dpt_reducer_exact_begin(r);
        dpt_reducer_exact_add(r, buf);
        redo = dpt_reducer_exact_check(r, &nonfinite, err, errlen);
      } while (redo > 0);
      if (redo < 0) rc = redo;
    } else {
      for (int k = 3; k >= 0; k--) dpt_reducer_ready(r, (size_t)k * 256, k == 3 ? N - 768 : 256);
    }
    if (!rc) rc = dpt_reducer_wait(r, NULL, err, errlen);
    dpt_range own = dpt_comm_shard(N, rank, size);
    size_t lo = p.shard_only ? own.offset : 0, hi = p.shard_only ? own.offset + own.len : N;
    for (size_t i = lo; i < hi && !rc; i++) /* small integers: exact sums */
      if (buf[i] != (float)(size * (i % 7 + step) + size * (size - 1) / 2))
        fail_msg("variant %d step %d: buf[%zu] = %g", variant, step, i, buf[i]);
  }
  dpt_reducer_free(r);
  return rc;
}

static void test_reducer_collectives_fail_with_mpi_message(void **state) {
  (void)state;
  for (int v = 0; v < 8; v++) {
    if ((v & 4) && (v & 2)) continue; /* the exact algorithm has no overlap */
    long calls = fail_each_call(reducer_life, v, "reducer");
    /* a dup, then per step: rank order, 4 buckets (and an all-gather unless shard only); exact,
     * the maxima, the sums and the norm */
    assert_true(calls >= 1 + 2 * ((v & 4) ? 3 : 4));
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char err[DPT_ERR_LEN];
  if (dpt_comm_dup_returning(MPI_COMM_WORLD, &comm, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_collectives_fail_with_mpi_message),
      cmocka_unit_test(test_topology_on_one_host),
      cmocka_unit_test(test_reducer_collectives_fail_with_mpi_message),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Comm_free(&comm);
  return dpt_test_finish(failed);
}

/* The ring reduction (DPT_REDUCE_RING) gives bitwise the rank-order algorithm's sum of
 * values whose float sums depend on the order, allreduce and reduce-scatter, for buffers
 * smaller than the rank count, of one all-gather chunk per shard and of several (256 KiB), any
 * bucket size and overlap; every rank holds the same bits; it is chosen by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpi_test.h"
#include "comm.h"

static int rank, size;

/* Sums mine[0, n) with algorithm a into out (every rank, or its shard with shard_only). */
static void reduce(dpt_reduce_algorithm a, int shard_only, size_t bucket, int overlap,
                   const float *mine, float *out, size_t n) {
  dpt_reducer_params p = dpt_reducer_defaults();
  p.algorithm = a;
  p.shard_only = shard_only;
  p.bucket_bytes = bucket;
  p.overlap = overlap;
  dpt_reducer *r;
  char err[DPT_ERR_LEN];
  if (dpt_reducer_create(MPI_COMM_WORLD, out, n, &p, &r, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(dpt_reducer_algorithm(r), a);
  for (int step = 0; step < 2; step++) { /* twice: the reducer resets for the next step */
    memcpy(out, mine, n * sizeof *out);
    for (size_t i = n; i > 0; i -= i > 1000 ? 1000 : i) /* ready back to front, in pieces */
      dpt_reducer_ready(r, i > 1000 ? i - 1000 : 0, i > 1000 ? 1000 : i);
    if (dpt_reducer_wait(r, NULL, err, sizeof err)) fail_msg("%s", err);
  }
  dpt_reducer_free(r);
}

static void test_ring_is_bitwise_rank_order(void **state) {
  (void)state;
  const size_t ns[] = {0, 3, 1000, 65536 * 4 + 4099}; /* the last: 2 chunks per shard at W=4 */
  const size_t buckets[] = {256, (size_t)1 << 26};
  int ok = 1;
  for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
    size_t n = ns[t];
    float *mine = malloc((n + 1) * sizeof *mine), *want = malloc((n + 1) * sizeof *want);
    float *got = malloc((n + 1) * sizeof *got), *root = malloc((n + 1) * sizeof *root);
    unsigned seed = 7u + 31u * (unsigned)rank;
    for (size_t i = 0; i < n; i++) /* magnitudes 1e-3 .. 1e3: the order of the sum shows */
      mine[i] = ((float)rand_r(&seed) / (float)RAND_MAX - 0.5f) *
                (float)(1 << (rand_r(&seed) % 20)) / 1024.0f;
    for (int so = 0; so <= 1; so++)
      for (size_t b = 0; b < sizeof buckets / sizeof buckets[0]; b++) {
        reduce(DPT_REDUCE_RANK_ORDER, so, buckets[b], 1, mine, want, n);
        reduce(DPT_REDUCE_RING, so, buckets[b], (int)b, mine, got, n);
        dpt_range sh = dpt_comm_shard(n, rank, size);
        size_t lo = so ? sh.offset : 0, len = so ? sh.len : n;
        if (memcmp(got + lo, want + lo, len * sizeof *got)) {
          fprintf(stderr, "rank %d: n %zu shard_only %d bucket %zu differs from rank-order\n", rank,
                  n, so, buckets[b]);
          ok = 0;
        }
        if (!so) { /* and every rank has the same bits */
          memcpy(root, got, n * sizeof *got);
          MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
          ok &= !memcmp(root, got, n * sizeof *got);
        }
      }
    free(mine);
    free(want);
    free(got);
    free(root);
  }
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  assert_true(all);
}

static void test_ring_by_name(void **state) {
  (void)state;
  dpt_reduce_algorithm a;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_reducer_algorithm_parse("ring", &a, err, sizeof err), 0);
  assert_int_equal(a, DPT_REDUCE_RING);
  assert_string_equal(dpt_reducer_algorithm_name(DPT_REDUCE_RING), "ring");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ring_is_bitwise_rank_order),
      cmocka_unit_test(test_ring_by_name),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

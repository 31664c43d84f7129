/* The node-aware reduction (DPT_REDUCE_NODE) gives bitwise the rank-order algorithm's sum, for
 * every layout of W ranks into nodes of consecutive ranks (1 node of W, W nodes of 1, 2 nodes
 * of W/2: node_ranks makes nodes of one host's ranks), every bucket size, with and without
 * overlap, for the whole sum and for shard_only (on the rank's shard); its chain messages are
 * cut into chunks, so a buffer of several chunks per segment is among the sizes. Auto picks
 * rank-order on one host and node across real nodes (run in tests/netns); a node size that
 * does not divide W is refused with a message. */
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

/* Reduces `mine` (n floats) with p into out; returns the algorithm used. */
static dpt_reduce_algorithm reduce(const float *mine, float *out, size_t n, dpt_reducer_params p,
                                   unsigned order_seed) {
  dpt_reducer *c;
  char err[DPT_ERR_LEN];
  if (dpt_reducer_create(MPI_COMM_WORLD, out, n, &p, &c, err, sizeof err))
    fail_msg("create: %s", err);
  dpt_reduce_algorithm used = dpt_reducer_algorithm(c);
  for (int step = 0; step < 2; step++) { /* twice: the reducer resets for the next step */
    memcpy(out, mine, n * sizeof *out);
    /* ready in pieces, in an order of this rank's own */
    size_t piece = n / 7 + 1, np = (n + piece - 1) / piece;
    for (size_t t = 0; t < np; t++) {
      size_t q = (t * 5 + order_seed) % np, lo = q * piece, hi = lo + piece < n ? lo + piece : n;
      if (np % 5 == 0) q = np - 1 - t, lo = q * piece, hi = lo + piece < n ? lo + piece : n;
      dpt_reducer_ready(c, lo, hi - lo);
    }
    if (dpt_reducer_wait(c, NULL, err, sizeof err)) fail_msg("wait: %s", err);
  }
  dpt_reducer_free(c);
  return used;
}

static void test_node_sum_is_bitwise_rank_order(void **state) {
  (void)state;
  const size_t ns[] = {5, 5003, 300007}; /* the last: several chain chunks per segment */
  for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
    size_t n = ns[t];
    float *mine = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    float *got = malloc(n * sizeof(float));
    unsigned seed = 7u + 31u * (unsigned)rank;
    for (size_t i = 0; i < n; i++) mine[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.4f;
    const size_t buckets[] = {64, 40000, 1 << 26};
    for (int shard_only = 0; shard_only <= 1; shard_only++) {
      dpt_reducer_params ref = dpt_reducer_defaults();
      ref.algorithm = DPT_REDUCE_RANK_ORDER;
      ref.shard_only = shard_only;
      reduce(mine, want, n, ref, 0);
      dpt_range s = dpt_comm_shard(n, rank, size);
      for (int per = 1; per <= size; per++) {
        if (size % per) continue;
        for (size_t b = 0; b < sizeof buckets / sizeof buckets[0]; b++)
          for (int overlap = 0; overlap <= 1; overlap++) {
            if (buckets[b] < 1024 && n > 10000) continue; /* thousands of buckets: slow */
            dpt_reducer_params p = ref;
            p.algorithm = DPT_REDUCE_NODE;
            p.node_ranks = per;
            p.bucket_bytes = buckets[b];
            p.overlap = overlap;
            memset(got, 0xff, n * sizeof *got);
            assert_int_equal(reduce(mine, got, n, p, (unsigned)rank), DPT_REDUCE_NODE);
            const float *g = shard_only ? got + s.offset : got,
                        *w = shard_only ? want + s.offset : want;
            size_t len = shard_only ? s.len : n;
            if (memcmp(g, w, len * sizeof *g))
              fail_msg("n %zu, %d nodes of %d, bucket %zu, overlap %d, shard_only %d: differs "
                       "from rank order",
                       n, size / per, per, buckets[b], overlap, shard_only);
          }
      }
    }
    free(mine);
    free(want);
    free(got);
  }
}

static void test_auto_and_bad_layouts(void **state) {
  (void)state;
  float buf[64] = {0};
  dpt_reducer_params p = dpt_reducer_defaults();
  assert_int_equal(p.algorithm, DPT_REDUCE_AUTO);
  /* auto: rank-order on one host, node across nodes with several ranks per node (tests/netns
   * runs this at 2 x 2), ring at more than 2 nodes of one rank */
  dpt_topology t;
  char terr[DPT_ERR_LEN];
  assert_int_equal(dpt_comm_topology(MPI_COMM_WORLD, &t, terr, sizeof terr), 0);
  dpt_reduce_algorithm want = t.nodes > 1 && t.max_per_node > 1 ? DPT_REDUCE_NODE
                              : t.nodes > 2                     ? DPT_REDUCE_RING
                                                                : DPT_REDUCE_RANK_ORDER;
  assert_int_equal(reduce(buf, buf, 64, p, 0), want);
  p.shard_only = 1; /* a reduce-scatter: rank-order everywhere */
  assert_int_equal(reduce(buf, buf, 64, p, 0), DPT_REDUCE_RANK_ORDER);
  p.shard_only = 0;
  assert_string_equal(dpt_reducer_algorithm_name(DPT_REDUCE_NODE), "node");
  dpt_reduce_algorithm a;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_reducer_algorithm_parse("rank-order", &a, err, sizeof err), 0);
  assert_int_equal(a, DPT_REDUCE_RANK_ORDER);
  assert_int_equal(dpt_reducer_algorithm_parse("tree", &a, err, sizeof err), -1);
  assert_non_null(strstr(err, "'tree' is not one of auto, rank-order, node"));
  if (size > 1) {
    dpt_reducer *c;
    p.algorithm = DPT_REDUCE_NODE;
    p.node_ranks = size + 1;
    assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &c, err, sizeof err),
                     DPT_EINVAL);
    assert_non_null(strstr(err, "ranks per node do not divide"));
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_node_sum_is_bitwise_rank_order),
      cmocka_unit_test(test_auto_and_bad_layouts),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

/* Gradient reduction sums exactly over ranks for every bucket size, with and without overlap,
 * whatever order ranges become ready in (different on every rank); shards tile the buffer at
 * aligned boundaries; the reducer's parameters have their defaults and bad ones are refused
 * with a message; one rank's failure is agreed on by all and its message shared. */
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

static void test_shards_tile_the_buffer_aligned(void **state) {
  (void)state;
  const size_t ns[] = {0, 1, 15, 16, 17, 100, 1000, 4099, 1 << 20};
  for (int w = 1; w <= 9; w++) {
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
      size_t next = 0, biggest = 0, smallest = (size_t)-1;
      for (int r = 0; r < w; r++) {
        dpt_range s = dpt_comm_shard(ns[i], r, w);
        assert_int_equal(s.offset, next);
        assert_true(s.offset % DPT_COMM_ALIGN == 0 || s.len == 0);
        next = s.offset + s.len;
        if (s.len > biggest) biggest = s.len;
        if (s.len < smallest) smallest = s.len;
      }
      assert_int_equal(next, ns[i]);
      assert_true(biggest - smallest < 2 * DPT_COMM_ALIGN); /* as even as alignment allows */
    }
  }
}

static void test_bucketed_sum_is_exact(void **state) {
  (void)state;
  enum { N = 10007 };
  float *buf = malloc(N * sizeof(float));
  const size_t buckets[] = {4, 64, 4096, 40000, 1 << 26};
  srand(1234 + rank); /* a different ready order on every rank */
  for (size_t b = 0; b < sizeof buckets / sizeof buckets[0]; b++) {
    for (int overlap = 0; overlap <= 1; overlap++) {
      dpt_reducer *c;
      char err[DPT_ERR_LEN];
      dpt_reducer_params p = dpt_reducer_defaults();
      p.bucket_bytes = buckets[b];
      p.overlap = overlap;
      assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, N, &p, &c, err, sizeof err), 0);
      for (int step = 0; step < 3; step++) {
        /* small integers: float sums are exact whatever the reduction order */
        for (size_t i = 0; i < N; i++) buf[i] = (float)((i % 97) + rank * 3 + step);
        /* mark random ranges ready in a random order */
        size_t cuts[12];
        cuts[0] = 0;
        cuts[11] = N;
        for (int k = 1; k < 11; k++) cuts[k] = (size_t)rand() % N;
        for (int k = 1; k < 11; k++) /* sort */
          for (int j = k; j > 0 && cuts[j] < cuts[j - 1]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
          }
        int order[11];
        for (int k = 0; k < 11; k++) order[k] = k;
        for (int k = 10; k > 0; k--) {
          int j = rand() % (k + 1), t = order[k];
          order[k] = order[j];
          order[j] = t;
        }
        for (int k = 0; k < 11; k++)
          if (cuts[order[k] + 1] > cuts[order[k]])
            dpt_reducer_ready(c, cuts[order[k]], cuts[order[k] + 1] - cuts[order[k]]);
        double wait;
        assert_int_equal(dpt_reducer_wait(c, &wait, err, sizeof err), 0);
        assert_true(wait >= 0);
        for (size_t i = 0; i < N; i++) {
          float want = (float)(size * ((i % 97) + step) + 3 * size * (size - 1) / 2);
          if (buf[i] != want)
            fail_msg("bucket %zu overlap %d step %d: buf[%zu] = %g, want %g", buckets[b], overlap,
                     step, i, buf[i], want);
        }
      }
      dpt_reducer_free(c);
    }
  }
  free(buf);
}

/* Random (non-integer) values: the sum is bitwise the same for every bucket size, with or
 * without overlap, and in shard-only mode (reduce-scatter) on the shard, because it is taken
 * in rank order. Also equal to the sum in rank order computed here from every rank's data. */
static void test_sums_are_bitwise_reproducible(void **state) {
  (void)state;
  enum { N = 5003 };
  float *mine = malloc(N * sizeof(float)), *all = malloc((size_t)size * N * sizeof(float));
  float *buf = malloc(N * sizeof(float)), *want = malloc(N * sizeof(float));
  unsigned seed = 99u + (unsigned)rank;
  for (size_t i = 0; i < N; i++) mine[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.3f;
  MPI_Allgather(mine, N, MPI_FLOAT, all, N, MPI_FLOAT, MPI_COMM_WORLD);
  for (size_t i = 0; i < N; i++) {
    want[i] = all[i];
    for (int q = 1; q < size; q++) want[i] = want[i] + all[(size_t)q * N + i];
  }
  dpt_range s = dpt_comm_shard(N, rank, size);
  const size_t buckets[] = {4, 400, 4096, 1 << 20};
  char err[DPT_ERR_LEN];
  for (size_t b = 0; b < 4; b++)
    for (int shard_only = 0; shard_only <= 1; shard_only++) {
      dpt_reducer *c;
      dpt_reducer_params p = dpt_reducer_defaults();
      p.bucket_bytes = buckets[b];
      p.shard_only = shard_only;
      assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, N, &p, &c, err, sizeof err), 0);
      memcpy(buf, mine, N * sizeof(float));
      dpt_reducer_ready(c, 0, N);
      assert_int_equal(dpt_reducer_wait(c, NULL, err, sizeof err), 0);
      if (shard_only)
        assert_memory_equal(buf + s.offset, want + s.offset, s.len * sizeof(float));
      else
        assert_memory_equal(buf, want, N * sizeof(float));
      dpt_reducer_free(c);
    }
  free(mine);
  free(all);
  free(buf);
  free(want);
}

/* ZeRO-2 (shard_buf): the gradient handed over range by range into the reducer, buf holding
 * only the shard, gives bitwise the rank-order sum for every bucket size: copied
 * (dpt_reducer_put) or lent (dpt_reducer_lend from two buffers in turn, each taken back and
 * overwritten with the next range), with buckets cut at the ranges' edges or not; ranges in
 * backward's order (last first, of sizes that straddle buckets) and in forward's order (which
 * makes the pool grow, and leaves lent buckets unstarted when taken back), two steps in a row. */
static void hand_over(dpt_reducer *c, int lend, float *lent[2], int *turn, size_t at, size_t len,
                      const float *g) {
  if (!lend) {
    dpt_reducer_put(c, at, len, g);
    return;
  }
  float *b = lent[ *turn ^= 1];
  dpt_reducer_take_back(c, b, 3000);
  memcpy(b, g, len * sizeof *b);
  dpt_reducer_lend(c, at, len, b);
}

static void test_streamed_shard_sums_are_bitwise_the_same(void **state) {
  (void)state;
  enum { N = 5003 };
  float *mine = malloc(N * sizeof(float)), *all = malloc((size_t)size * N * sizeof(float));
  float *want = malloc(N * sizeof(float));
  unsigned seed = 7u + (unsigned)rank;
  for (size_t i = 0; i < N; i++) mine[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.6f;
  MPI_Allgather(mine, N, MPI_FLOAT, all, N, MPI_FLOAT, MPI_COMM_WORLD);
  for (size_t i = 0; i < N; i++) {
    want[i] = all[i];
    for (int q = 1; q < size; q++) want[i] = want[i] + all[(size_t)q * N + i];
  }
  dpt_range s = dpt_comm_shard(N, rank, size);
  float *shard = malloc((s.len + 1) * sizeof(float));
  float *lent[2] = {malloc(3000 * sizeof(float)), malloc(3000 * sizeof(float))};
  const size_t buckets[] = {52, 400, 4096, 1 << 20};
  const size_t spans[] = {1, 700, 1203, 3000, 99}; /* tile N = 5003 */
  const size_t starts[] = {0, 1, 701, 1904, 4904};
  char err[DPT_ERR_LEN];
  for (size_t b = 0; b < 4; b++)
    for (int mode = 0; mode < 6; mode++) { /* order: mode & 1; 2, 3: lent, cut; 4, 5: lent */
      int order = mode & 1, lend = mode >= 2, turn = 0;
      dpt_reducer *c;
      dpt_reducer_params p = dpt_reducer_defaults();
      p.bucket_bytes = buckets[b];
      p.shard_only = 1;
      p.shard_buf = 1;
      if (mode == 2 || mode == 3) p.nspans = 5, p.span_offset = starts;
      assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, shard, N, &p, &c, err, sizeof err), 0);
      for (int step = 0; step < 2; step++) {
        memset(shard, 0xff, (s.len + 1) * sizeof(float)); /* NaNs: every value must be written */
        size_t end = N;
        for (int k = 4; order == 0 && k >= 0; k--) { /* backward: the last span first */
          hand_over(c, lend, lent, &turn, end - spans[k], spans[k], mine + end - spans[k]);
          end -= spans[k];
        }
        for (size_t k = 0, at = 0; order == 1 && k < 5; at += spans[k], k++)
          hand_over(c, lend, lent, &turn, at, spans[k], mine + at);
        assert_int_equal(dpt_reducer_wait(c, NULL, err, sizeof err), 0);
        assert_memory_equal(shard, want + s.offset, s.len * sizeof(float));
      }
      dpt_reducer_free(c);
    }
  free(lent[0]);
  free(lent[1]);
  /* shard_buf without shard_only, or with the node algorithm, is refused */
  dpt_reducer *c = NULL;
  dpt_reducer_params p = dpt_reducer_defaults();
  p.shard_buf = 1;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, shard, N, &p, &c, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "shard_only"));
  free(shard);
  free(mine);
  free(all);
  free(want);
}

static void test_reducer_params_defaults_and_checks(void **state) {
  (void)state;
  dpt_reducer_params p = dpt_reducer_defaults();
  assert_int_equal(p.bucket_bytes, (size_t)25 << 20); /* PyTorch DDP's bucket_cap_mb */
  assert_int_equal(p.overlap, 1);
  assert_int_equal(p.shard_only, 0);
  assert_int_equal(p.algorithm, DPT_REDUCE_AUTO);
  float buf[64];
  dpt_reducer *r = (dpt_reducer *)&p; /* must be reset to NULL on failure */
  char err[DPT_ERR_LEN];
  p.bucket_bytes = 3;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_null(r);
  assert_non_null(strstr(err, "bucket size 3 bytes"));
  p = dpt_reducer_defaults();
  p.algorithm = DPT_REDUCE_COUNT;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "reduction algorithm"));
  p = dpt_reducer_defaults();
  p.algorithm = DPT_REDUCE_EXACT; /* without tensors */
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "tensors"));
  const size_t off[1] = {10}, len[1] = {60}; /* [10, 70) is outside a 64-element buffer */
  double scales[1] = {0};
  p.ntensors = 1, p.tensor_offset = off, p.tensor_len = len, p.scales = scales;
  p.micro_shards = dpt_reducer_exact_max_shards() + 1;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "micro-shards"));
  p.micro_shards = 4;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "outside the 64-element buffer"));
}

static void test_failure_is_agreed_and_shared(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  int rc = rank == size - 1 ? -7 : 0;
  if (rc) snprintf(err, sizeof err, "rank %d found a bad label", rank);
  assert_int_equal(dpt_comm_agree(MPI_COMM_WORLD, rc), -7);
  dpt_comm_share_error(MPI_COMM_WORLD, rc, err, sizeof err);
  char want[64];
  snprintf(want, sizeof want, "rank %d found a bad label", size - 1);
  assert_string_equal(err, want);
  assert_int_equal(dpt_comm_agree(MPI_COMM_WORLD, 0), 0);
  double v[2] = {1.5, (double)rank};
  assert_int_equal(dpt_comm_sum(MPI_COMM_WORLD, v, 2, err, sizeof err), 0);
  assert_true(v[0] == 1.5 * size && v[1] == size * (size - 1) / 2.0);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shards_tile_the_buffer_aligned),
      cmocka_unit_test(test_bucketed_sum_is_exact),
      cmocka_unit_test(test_sums_are_bitwise_reproducible),
      cmocka_unit_test(test_streamed_shard_sums_are_bitwise_the_same),
      cmocka_unit_test(test_reducer_params_defaults_and_checks),
      cmocka_unit_test(test_failure_is_agreed_and_shared),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

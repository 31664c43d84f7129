/* The deterministic mode's exact sums (comm/reduce_exact.c, the reducer's DPT_REDUCE_EXACT) on
 * 1, 2 and 4 ranks: G = 4 micro-shards spread over the ranks give bitwise the gradient and norm
 * one rank computes alone from all of them (whole buffer or ZeRO shard alike, one bucket or
 * many), within the fixed point's resolution of the exact
 * sum; a gradient 2^12 times larger than the scale expects, or 2^20 times smaller, makes the
 * pass redo, then fit; a NaN is reported as non-finite. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"
#include "internal.h" /* dpt_rng */
#include "mpi_test.h"

#define G 4
#define N 1000 /* two tensors: 600 + 400 */

static int rank_, size_;

/* two tensors, [0, 600) and [600, 1000) */
static const size_t tensor_offset[2] = {0, 600}, tensor_len[2] = {600, 400};

/* An exact reducer over buf[0, N) on comm: the whole sum or this rank's shard, in buckets of
 * bucket_bytes. */
static dpt_reducer *exact_reducer(MPI_Comm comm, float *buf, int whole, size_t bucket_bytes,
                                  double *scales) {
  dpt_reducer_params p = dpt_reducer_defaults();
  p.algorithm = DPT_REDUCE_EXACT;
  p.shard_only = !whole;
  p.bucket_bytes = bucket_bytes;
  p.ntensors = 2;
  p.tensor_offset = tensor_offset;
  p.tensor_len = tensor_len;
  p.micro_shards = G;
  p.scales = scales;
  dpt_reducer *d = NULL;
  char err[256];
  assert_int_equal(dpt_reducer_create(comm, buf, N, &p, &d, err, sizeof err), 0);
  return d;
}

/* micro-shard k's gradient at step s: a wide range of magnitudes, signs, exact zeros */
static void shard_grad(float *g, int k, int s, float factor) {
  dpt_rng r;
  dpt_rng_seed(&r, 7, (uint64_t)(100 * s + k));
  for (int i = 0; i < N; i++) {
    double u = dpt_rng_uniform(&r);
    g[i] = i % 17 == 0 ? 0.0f : (float)((u - 0.5) * pow(10.0, -6.0 * dpt_rng_uniform(&r)));
    g[i] *= factor;
  }
}

/* one pass of step s over micro-shards [k0, k1) with reducer d over buf; the sum into out;
 * returns the redo count */
static int pass(dpt_reducer *d, const float *buf, int k0, int k1, int s, float factor, float *out,
                double *sumsq) {
  char err[256];
  float g[N];
  int redos = 0, redo, nonfinite;
  do {
    dpt_reducer_exact_begin(d);
    for (int k = k0; k < k1; k++) {
      shard_grad(g, k, s, factor);
      dpt_reducer_exact_add(d, g);
    }
    redo = dpt_reducer_exact_check(d, &nonfinite, err, sizeof err);
    assert_true(redo >= 0);
    assert_false(nonfinite);
    redos += redo;
    assert_true(redos <= 1); /* a redone pass always fits */
  } while (redo);
  assert_int_equal(dpt_reducer_wait(d, NULL, err, sizeof err), 0);
  *sumsq = dpt_reducer_exact_sumsq(d);
  memcpy(out, buf, N * sizeof *out);
  return redos;
}

static void test_exact_sums(void **state) {
  (void)state;
  /* the reference on one rank; then on every rank: whole, shard, each in one bucket and in
   * buckets of 64 elements */
  static float buf_ref[N], buf[4][N];
  double sc_ref[2] = {NAN, NAN}, sc[4][2];
  dpt_reducer *ref = exact_reducer(MPI_COMM_SELF, buf_ref, 1, DPT_REDUCER_BUCKET_BYTES, sc_ref);
  dpt_reducer *d[4];
  for (int w = 0; w < 4; w++) {
    sc[w][0] = sc[w][1] = NAN;
    d[w] = exact_reducer(MPI_COMM_WORLD, buf[w], w % 2 == 0, w < 2 ? DPT_REDUCER_BUCKET_BYTES : 256,
                         sc[w]);
  }
  int per = G / size_;
  dpt_range own = dpt_comm_shard(N, rank_, size_);
  /* step 2: 2^12 times larger (beyond the headroom); 3: back (coarser, still fine); 4: 2^-20
   * of that (too coarse) */
  const float factors[5] = {1, 1, 4096, 1, 0x1p-20f};
  const int redone[5] = {1, 0, 1, 0, 1};
  for (int s = 0; s < 5; s++) {
    float factor = factors[s];
    float want[N], got[N];
    double ss_want, ss[4];
    int r0 = pass(ref, buf_ref, 0, G, s, factor, want, &ss_want);
    for (int w = 0; w < 4; w++) { /* whole buffer, then ZeRO's shard */
      int r1 = pass(d[w], buf[w], rank_ * per, (rank_ + 1) * per, s, factor, got, &ss[w]);
      assert_int_equal(r0, r1); /* redone when and only when one rank alone redoes */
      size_t lo = w % 2 == 0 ? 0 : own.offset, hi = w % 2 == 0 ? N : own.offset + own.len;
      assert_memory_equal(got + lo, want + lo, (hi - lo) * sizeof(float));
      assert_memory_equal(&ss[w], &ss_want, sizeof(double));
    }
    assert_int_equal(r0, redone[s]);
    /* the sum is the exact sum to within the fixed point's resolution (at worst 2^-26 of the
     * tensor's largest value, per term) and the final rounding to float */
    float g[N];
    double plain[N] = {0}, mx[2] = {0, 0};
    for (int k = 0; k < G; k++) {
      shard_grad(g, k, s, factor);
      for (int i = 0; i < N; i++) {
        plain[i] += g[i];
        mx[i >= 600] = fmax(mx[i >= 600], fabs(g[i]));
      }
    }
    for (int i = 0; i < N; i++)
      assert_true(fabs(want[i] - plain[i]) <=
                  0x1p-23 * fabs(plain[i]) + G * mx[i >= 600] * 0x1p-26);
  }
  dpt_reducer_free(ref);
  for (int w = 0; w < 4; w++) dpt_reducer_free(d[w]);
}

static void test_nonfinite(void **state) {
  (void)state;
  double sc[2] = {NAN, NAN};
  static float buf[N];
  dpt_reducer *d = exact_reducer(MPI_COMM_WORLD, buf, 1, DPT_REDUCER_BUCKET_BYTES, sc);
  char err[256];
  float g[N];
  dpt_reducer_exact_begin(d);
  shard_grad(g, rank_, 0, 1.0f);
  if (rank_ == size_ - 1) g[700] = NAN; /* one rank only */
  dpt_reducer_exact_add(d, g);
  int nonfinite = 0;
  assert_true(dpt_reducer_exact_check(d, &nonfinite, err, sizeof err) >= 0);
  assert_true(nonfinite); /* every rank knows */
  assert_int_equal(dpt_reducer_exact_local_bad(d), rank_ == size_ - 1 ? 1 : -1);
  dpt_reducer_free(d);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_sums),
      cmocka_unit_test(test_nonfinite),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

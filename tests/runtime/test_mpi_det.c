/* The deterministic mode's exact sums (runtime/det.c) on 1, 2 and 4 ranks: G = 4 micro-shards
 * spread over the ranks give bitwise the gradient and norm one rank computes alone from all
 * of them (whole buffer or ZeRO shard alike), within the fixed point's resolution of the exact
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
#include "internal.h"
#include "mpi_test.h"

#define G 4
#define N 1000 /* two tensors: 600 + 400 */

static int rank_, size_;

static dpt_model fake_model(void) {
  dpt_model m;
  memset(&m, 0, sizeof m);
  m.ntensors = 2;
  m.nparams = N;
  static const dpt_tensor t[2] = {{"a.weight", 2, {30, 20}, 0, 600},
                                  {"b.weight", 1, {400, 0}, 600, 400}};
  m.tensors = t;
  return m;
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

/* one pass of step s over micro-shards [k0, k1) on comm; returns the redo count */
static int pass(dpt_det *d, MPI_Comm comm, int k0, int k1, int s, float factor, int whole,
                float *out, double *sumsq) {
  char err[256];
  float g[N];
  int redos = 0, redo, nonfinite;
  do {
    dpt_det_begin(d);
    for (int k = k0; k < k1; k++) {
      shard_grad(g, k, s, factor);
      dpt_det_add(d, g);
    }
    redo = dpt_det_check(d, comm, &nonfinite, err, sizeof err);
    assert_true(redo >= 0);
    assert_false(nonfinite);
    redos += redo;
    assert_true(redos <= 1); /* a redone pass always fits */
  } while (redo);
  assert_int_equal(dpt_det_finish(d, comm, whole, out, sumsq, err, sizeof err), 0);
  return redos;
}

static void test_exact_sums(void **state) {
  (void)state;
  dpt_model m = fake_model();
  double sc_ref[2] = {NAN, NAN}, sc[2][2] = {{NAN, NAN}, {NAN, NAN}};
  dpt_det *ref, *d[2];
  char err[256];
  assert_int_equal(dpt_det_create(&m, G, sc_ref, &ref, err, sizeof err), 0);
  for (int w = 0; w < 2; w++)
    assert_int_equal(dpt_det_create(&m, G, sc[w], &d[w], err, sizeof err), 0);
  int per = G / size_;
  dpt_range own = dpt_comm_shard(N, rank_, size_);
  /* step 2: 2^12 times larger (beyond the headroom); 3: back (coarser, still fine); 4: 2^-20
   * of that (too coarse) */
  const float factors[5] = {1, 1, 4096, 1, 0x1p-20f};
  const int redone[5] = {1, 0, 1, 0, 1};
  for (int s = 0; s < 5; s++) {
    float factor = factors[s];
    float want[N], got[N];
    double ss_want, ss[2];
    int r0 = pass(ref, MPI_COMM_SELF, 0, G, s, factor, 1, want, &ss_want);
    for (int w = 0; w < 2; w++) { /* whole buffer, then ZeRO's shard */
      memset(got, 0, sizeof got);
      int r1 = pass(d[w], MPI_COMM_WORLD, rank_ * per, (rank_ + 1) * per, s, factor, w == 0,
                    got, &ss[w]);
      assert_int_equal(r0, r1); /* redone when and only when one rank alone redoes */
      size_t lo = w == 0 ? 0 : own.offset, hi = w == 0 ? N : own.offset + own.len;
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
  dpt_det_free(ref);
  dpt_det_free(d[0]);
  dpt_det_free(d[1]);
}

static void test_nonfinite(void **state) {
  (void)state;
  dpt_model m = fake_model();
  double sc[2] = {NAN, NAN};
  dpt_det *d;
  char err[256];
  assert_int_equal(dpt_det_create(&m, G, sc, &d, err, sizeof err), 0);
  float g[N];
  dpt_det_begin(d);
  shard_grad(g, rank_, 0, 1.0f);
  if (rank_ == size_ - 1) g[700] = NAN; /* one rank only */
  dpt_det_add(d, g);
  int nonfinite = 0;
  assert_true(dpt_det_check(d, MPI_COMM_WORLD, &nonfinite, err, sizeof err) >= 0);
  assert_true(nonfinite); /* every rank knows */
  dpt_det_free(d);
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

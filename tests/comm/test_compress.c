/* Gradient compression (--compress): the 16-bit encodings round to nearest even (against
 * hand-picked bit patterns and, for fp16, the compiler's _Float16); bf16/fp16 reductions equal
 * a reference computed here (each contribution rounded to 16 bits, fp32 sums in rank order, the
 * sum rounded once), bitwise on every rank, for any bucket size and shard_only; PowerSGD
 * reproduces a low-rank sum, sums vectors exactly, sums plainly before its start step, and its
 * error feedback carries what the factors missed (the applied updates add up to the true
 * gradients less the residual) and a step with a NaN does not poison the next; bad
 * combinations are refused with a message. */
#include <math.h>
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

/* Every rank's flag is 1 (collective). */
static int all(int ok) {
  int v = 0;
  MPI_Allreduce(&ok, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return v;
}

/* buf[0, n) is bitwise rank 0's on every rank (collective). */
static int same_everywhere(const float *buf, size_t n) {
  float *root = malloc((n + 1) * sizeof *root);
  memcpy(root, buf, n * sizeof *root);
  MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
  int ok = !memcmp(root, buf, n * sizeof *root);
  free(root);
  return all(ok);
}

static uint32_t bits(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

static float from_bits(uint32_t b) {
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

/* --- the encodings --- */

static void test_bf16_rounds_to_nearest_even(void **state) {
  (void)state;
  const struct {
    uint32_t in;
    uint16_t out;
  } cases[] = {
      {0x3f800000u, 0x3f80u}, /* 1 */
      {0x3f808000u, 0x3f80u}, /* 1 + 2^-8: a tie, to the even 1 */
      {0x3f818000u, 0x3f82u}, /* 1 + 3 2^-8: a tie, to the even 1 + 2^-6 */
      {0x3f808001u, 0x3f81u}, /* just above the tie: up */
      {0x3f807fffu, 0x3f80u}, /* just below: down */
      {0xbf808001u, 0xbf81u}, /* the same negative */
      {0x80000000u, 0x8000u}, /* -0 */
      {0x7f7fffffu, 0x7f80u}, /* FLT_MAX rounds to infinity */
      {0x7f800000u, 0x7f80u}, /* infinity */
      {0x00000001u, 0x0000u}, /* the smallest subnormal: to zero */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(dpt_comm_bf16_from_float(from_bits(cases[i].in)), cases[i].out);
  assert_true(isnan(dpt_comm_bf16_to_float(dpt_comm_bf16_from_float(NAN))));
  assert_true(isnan(dpt_comm_bf16_to_float(dpt_comm_bf16_from_float(from_bits(0x7f800001u)))));
  for (uint32_t h = 0; h < 65536; h++) /* widening is exact: every value comes back */
    if (!isnan(dpt_comm_bf16_to_float((uint16_t)h)))
      assert_int_equal(dpt_comm_bf16_from_float(dpt_comm_bf16_to_float((uint16_t)h)), h);
}

static void test_fp16_rounds_to_nearest_even(void **state) {
  (void)state;
  const struct {
    float in;
    uint16_t out;
  } cases[] = {
      {1.0f, 0x3c00u},
      {65504.0f, 0x7bffu},
      {65519.0f, 0x7bffu},
      {65520.0f, 0x7c00u},
      {-65520.0f, 0xfc00u},
      {0x1p-24f, 0x0001u},
      {0x1p-25f, 0x0000u},
      {0x1.8p-25f, 0x0001u},
      {0x1.8p-24f, 0x0002u}, /* tie: even */
      {0x1p-14f, 0x0400u},
      {0x1.ffcp-15f, 0x0400u},
      {1.0f + 0x1p-11f, 0x3c00u},
      {1.0f + 0x3p-11f, 0x3c02u},
      {-0.0f, 0x8000u},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(dpt_comm_fp16_from_float(cases[i].in), cases[i].out);
  assert_true(isnan(dpt_comm_fp16_to_float(dpt_comm_fp16_from_float(NAN))));
#ifdef __FLT16_MAX__ /* the compiler's conversions (IEEE, to nearest even) as the reference */
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t hh = (uint16_t)h;
    _Float16 f;
    memcpy(&f, &hh, sizeof f);
    float want = (float)f, got = dpt_comm_fp16_to_float(hh);
    if (isnan(want))
      assert_true(isnan(got));
    else
      assert_int_equal(bits(got), bits(want));
  }
  for (uint64_t b = 0; b < 0x100000000ull; b += 0xfffu) { /* a million floats over all exponents */
    float x = from_bits((uint32_t)b);
    if (isnan(x)) continue;
    _Float16 f = (_Float16)x;
    uint16_t want;
    memcpy(&want, &f, sizeof want);
    if (dpt_comm_fp16_from_float(x) != want)
      fail_msg("fp16(%a) = %#x, expected %#x", (double)x, dpt_comm_fp16_from_float(x), want);
  }
#endif
}

/* --- bf16 and fp16 sums --- */

/* x rounded to p significant bits, to nearest even, in double (then exact in float): the
 * test's own rounding; quantum floor 2^qmin (fp16's subnormals), above maxv infinity. */
static float round_ref(float x, int p, int qmin, double maxv) {
  if (x == 0) return x;
  int e;
  frexp(x, &e);
  int q = e - p > qmin ? e - p : qmin;
  double r = ldexp(nearbyint(ldexp(x, -q)), q); /* nearbyint: ties to even */
  if (fabs(r) > maxv) return x > 0 ? INFINITY : -INFINITY;
  return (float)r;
}

static float ref16(int bf16, float x) {
  return bf16 ? round_ref(x, 8, -1000, 3.4e38) : round_ref(x, 11, -24, 65504);
}

/* Rank q's gradient: values no 16-bit format holds exactly, in [-8, 8) scaled by 2^0 to 2^-29
 * (fp16's subnormals and underflow to zero too). */
static float grad(size_t i, int q, int step) {
  uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(q * 40503 + step * 977);
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  return ((float)(h % 1000003u) / 1000003.0f - 0.5f) * 16.0f * ldexpf(1, -(int)(h % 30));
}

static void test_half_sums_equal_the_fp32_rank_order_reference(void **state) {
  (void)state;
  enum { N = 5003 };
  float *buf = malloc(N * sizeof *buf), *want = malloc(N * sizeof *want);
  const size_t buckets[] = {64, 4000, (size_t)1 << 20};
  int ok = 1;
  for (int bf16 = 0; bf16 <= 1; bf16++)
    for (size_t b = 0; b < sizeof buckets / sizeof buckets[0]; b++)
      for (int shard_only = 0; shard_only <= 1; shard_only++) {
        dpt_reducer_params p = dpt_reducer_defaults();
        p.compress = bf16 ? DPT_COMPRESS_BF16 : DPT_COMPRESS_FP16;
        p.bucket_bytes = buckets[b];
        p.shard_only = shard_only;
        p.overlap = (int)b % 2;
        dpt_reducer *r;
        char err[DPT_ERR_LEN];
        assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, N, &p, &r, err, sizeof err), 0);
        assert_int_equal(dpt_reducer_algorithm(r), DPT_REDUCE_HALF);
        for (int step = 0; step < 2; step++) {
          for (size_t i = 0; i < N; i++) {
            buf[i] = grad(i, rank, step);
            float s = ref16(bf16, grad(i, 0, step));
            for (int q = 1; q < size; q++) s = s + ref16(bf16, grad(i, q, step));
            want[i] = ref16(bf16, s);
          }
          /* element 0: 256 from rank 0, 1 from each other: a 16-bit running sum would stay at
           * 256 (256 + 1 rounds back to it in bf16); the fp32 sum is 256 + W - 1, rounded */
          buf[0] = rank ? 1.0f : 256.0f;
          want[0] = bf16 ? (size == 4   ? 260.0f
                            : size == 3 ? 258.0f
                                        : 256.0f)
                         : 255.0f + (float)size;
          dpt_reducer_ready(r, 0, N);
          assert_int_equal(dpt_reducer_wait(r, NULL, err, sizeof err), 0);
          dpt_range mine = dpt_comm_shard(N, rank, size);
          size_t lo = shard_only ? mine.offset : 0, hi = shard_only ? lo + mine.len : N;
          for (size_t i = lo; i < hi && ok; i++)
            if (bits(buf[i]) != bits(want[i])) {
              fprintf(stderr, "rank %d %s bucket %zu shard_only %d step %d: [%zu] %a, want %a\n",
                      rank, bf16 ? "bf16" : "fp16", buckets[b], shard_only, step, i, (double)buf[i],
                      (double)want[i]);
              ok = 0;
            }
          if (!shard_only) assert_true(same_everywhere(buf, N));
        }
        dpt_reducer_free(r);
      }
  free(buf);
  free(want);
  assert_true(all(ok));
}

/* --- PowerSGD --- */

/* A 3-tensor buffer: a 64 x 48 matrix, a 37-vector, a 3 x 2 matrix (too small to compress). */
enum { MR = 64, MC = 48, NV = 37, SR = 3, SC = 2, NBUF = MR * MC + NV + SR * SC };
static const size_t t_off[] = {0, MR *MC, MR *MC + NV};
static const size_t t_len[] = {MR * MC, NV, SR *SC};
static const size_t t_rows[] = {MR, 1, SR};

static dpt_reducer *powersgd(float *buf, size_t n, int ntensors, const size_t *off,
                             const size_t *len, const size_t *rows, int rk, long start) {
  dpt_reducer_params p = dpt_reducer_defaults();
  p.compress = DPT_COMPRESS_POWERSGD;
  p.compress_rank = rk;
  p.compress_start = start;
  p.ntensors = ntensors;
  p.tensor_offset = off;
  p.tensor_len = len;
  p.tensor_rows = rows;
  p.bucket_bytes = 4096;
  dpt_reducer *r = NULL;
  char err[DPT_ERR_LEN];
  int rc = dpt_reducer_create(MPI_COMM_WORLD, buf, n, &p, &r, err, sizeof err);
  if (rc) fail_msg("%s", err);
  assert_int_equal(dpt_reducer_algorithm(r), DPT_REDUCE_POWERSGD);
  return r;
}

/* The memory record counts every algorithm's staging (dpt_reducer_bytes): at least the W
 * copies of this rank's shard each keeps (16-bit ones for bf16), and PowerSGD's residual (a
 * float per gradient element) on top of its inner reducers'. */
static void test_every_algorithm_reports_its_buffers(void **state) {
  (void)state;
  float *buf = calloc(NBUF, sizeof *buf);
  size_t L = dpt_comm_shard(NBUF, rank, size).len;
  char err[DPT_ERR_LEN];
  const struct {
    dpt_reduce_algorithm a;
    dpt_compress c;
    size_t least;
  } cases[] = {
      {DPT_REDUCE_RANK_ORDER, DPT_COMPRESS_NONE, (size_t)size * L * sizeof(float)},
      {DPT_REDUCE_RING, DPT_COMPRESS_NONE, (size_t)size * L * sizeof(float)},
      {DPT_REDUCE_NODE, DPT_COMPRESS_NONE, (size_t)size * L * sizeof(float)},
      {DPT_REDUCE_AUTO, DPT_COMPRESS_BF16, (NBUF + (size_t)size * L) * sizeof(uint16_t)},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    dpt_reducer_params p = dpt_reducer_defaults();
    p.algorithm = cases[k].a;
    p.compress = cases[k].c;
    dpt_reducer *r = NULL;
    if (dpt_reducer_create(MPI_COMM_WORLD, buf, NBUF, &p, &r, err, sizeof err)) fail_msg("%s", err);
    if (dpt_reducer_bytes(r) < cases[k].least)
      fail_msg("%s: %zu bytes reported, its staging alone is %zu",
               dpt_reducer_algorithm_name(dpt_reducer_algorithm(r)), dpt_reducer_bytes(r),
               cases[k].least);
    dpt_reducer_free(r);
  }
  dpt_reducer *r = powersgd(buf, NBUF, 3, t_off, t_len, t_rows, 2, 0);
  assert_true(dpt_reducer_bytes(r) >= NBUF * sizeof(float));
  dpt_reducer_free(r);
  free(buf);
}

/* Rank q's gradient at a step: the matrix U diag(q + 1, 2 - step) V^T (rank 2, the same column
 * and row spaces on every rank), small integers elsewhere (exact float sums). */
static void low_rank_grad(float *buf, int q, int step) {
  for (size_t i = 0; i < MR; i++)
    for (size_t j = 0; j < MC; j++) {
      float u0 = sinf(0.1f * (float)i + 1), u1 = cosf(0.37f * (float)i);
      float v0 = cosf(0.05f * (float)j), v1 = sinf(0.21f * (float)j + 2);
      buf[i * MC + j] = (float)(q + 1) * u0 * v0 + (float)(2 + step) * u1 * v1;
    }
  for (size_t i = 0; i < NV + SR * SC; i++) buf[MR * MC + i] = (float)((int)(i % 7) - 3 + q + step);
}

static void test_powersgd_reproduces_a_low_rank_sum(void **state) {
  (void)state;
  float *buf = malloc(NBUF * sizeof *buf), *want = malloc(NBUF * sizeof *want);
  dpt_reducer *r = powersgd(buf, NBUF, 3, t_off, t_len, t_rows, 2, 0);
  char err[DPT_ERR_LEN];
  double worst = 0;
  int exact = 1;
  for (int step = 0; step < 3; step++) { /* the first from random Q, then warm starts */
    memset(want, 0, NBUF * sizeof *want);
    for (int q = 0; q < size; q++) {
      low_rank_grad(buf, q, step);
      for (size_t i = 0; i < NBUF; i++) want[i] += buf[i];
    }
    low_rank_grad(buf, rank, step);
    dpt_reducer_ready(r, 0, NBUF);
    assert_int_equal(dpt_reducer_wait(r, NULL, err, sizeof err), 0);
    double d = dpt_test_rel_l2(buf, want, MR * MC);
    if (d > worst) worst = d;
    for (size_t i = MR * MC; i < NBUF; i++) exact &= buf[i] == want[i]; /* integers: exact */
    assert_true(same_everywhere(buf, NBUF));
  }
  dpt_reducer_free(r);
  free(buf);
  free(want);
  if (rank == 0) printf("PowerSGD rank 2 on a rank-2 sum: relative error %.2g\n", worst);
  assert_true(all(worst < 1e-5));
  assert_true(all(exact)); /* the vector and the small matrix: summed uncompressed */
}

static void test_powersgd_sums_plainly_before_its_start(void **state) {
  (void)state;
  float *buf = malloc(NBUF * sizeof *buf), *want = malloc(NBUF * sizeof *want);
  dpt_reducer *r = powersgd(buf, NBUF, 3, t_off, t_len, t_rows, 1, 2);
  char err[DPT_ERR_LEN];
  int exact[3] = {1, 1, 1};
  for (int step = 0; step < 3; step++) {
    /* small integers everywhere: a plain sum is exact, rank 1 of a full-rank matrix is not */
    for (size_t i = 0; i < NBUF; i++) buf[i] = (float)((int)((i * 7 + (size_t)rank) % 11) - 5);
    for (size_t i = 0; i < NBUF; i++) {
      want[i] = 0;
      for (int q = 0; q < size; q++) want[i] += (float)((int)((i * 7 + (size_t)q) % 11) - 5);
    }
    assert_int_equal(dpt_reducer_wait(r, NULL, err, sizeof err), 0);
    exact[step] = !memcmp(buf, want, NBUF * sizeof *buf);
  }
  dpt_reducer_free(r);
  free(buf);
  free(want);
  assert_true(all(exact[0] && exact[1]));
  assert_true(all(!exact[2])); /* step 2 was compressed */
}

/* ||applied - steps * truth|| / ||steps * truth|| */
static double off_by(const double *applied, const double *truth, size_t n, int steps) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d += (applied[i] - steps * truth[i]) * (applied[i] - steps * truth[i]);
    s += steps * truth[i] * steps * truth[i];
  }
  return sqrt(d / s);
}

static void test_powersgd_error_feedback_carries_the_residual(void **state) {
  (void)state;
  /* a full-rank 32 x 24 gradient, the same every step, compressed to rank 1: each step alone
   * misses most of it; error feedback makes the steps' sum converge to the true sum, like
   * 1/steps (the residual stays bounded) */
  enum { R = 32, C = 24, N = R * C, T = 400 };
  const size_t off = 0, len = N, rows = R;
  float *buf = malloc(N * sizeof *buf);
  double *g = calloc(N, sizeof *g), *applied = calloc(N, sizeof *applied);
  double *resid = calloc(N, sizeof *resid), *truth = calloc(N, sizeof *truth);
  for (size_t i = 0; i < N; i++) {
    g[i] = grad(i, rank, 0);
    for (int q = 0; q < size; q++) truth[i] += (double)grad(i, q, 0);
  }
  dpt_reducer *r = powersgd(buf, N, 1, &off, &len, &rows, 1, 0);
  char err[DPT_ERR_LEN];
  double first = 0, quarter = 0;
  for (int t = 1; t <= T; t++) {
    for (size_t i = 0; i < N; i++) buf[i] = (float)g[i];
    assert_int_equal(dpt_reducer_wait(r, NULL, err, sizeof err), 0);
    for (size_t i = 0; i < N; i++) applied[i] += buf[i];
    if (t == 1) first = off_by(applied, truth, N, 1);
    if (t == T / 4) quarter = off_by(applied, truth, N, t);
  }
  double total = off_by(applied, truth, N, T);
  const float *e = dpt_reducer_compress_residual(r);
  assert_non_null(e);
  for (size_t i = 0; i < N; i++) resid[i] = e[i];
  MPI_Allreduce(MPI_IN_PLACE, resid, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  /* the applied updates add up to the true gradients less the residuals left */
  for (size_t i = 0; i < N; i++) applied[i] += resid[i];
  double identity = off_by(applied, truth, N, T);
  if (rank == 0)
    printf("PowerSGD rank 1, full-rank gradient: one step %.3f off; %d steps summed %.4f, %d "
           "steps %.4f; with the residuals %.2g\n",
           first, T / 4, quarter, T, total, identity);
  dpt_reducer_free(r);
  free(buf);
  free(g);
  free(applied);
  free(resid);
  free(truth);
  assert_true(all(first > 0.3));
  assert_true(all(identity < 1e-4));
  assert_true(all(total < quarter / 2 && total < first / 10));
}

static void test_powersgd_forgets_a_nonfinite_step(void **state) {
  (void)state;
  float *buf = malloc(NBUF * sizeof *buf), *want = malloc(NBUF * sizeof *want);
  dpt_reducer *r = powersgd(buf, NBUF, 3, t_off, t_len, t_rows, 2, 0);
  char err[DPT_ERR_LEN];
  low_rank_grad(buf, rank, 0);
  buf[5] = NAN; /* one step with a NaN in the matrix, on every rank */
  assert_int_equal(dpt_reducer_wait(r, NULL, err, sizeof err), 0);
  assert_true(isnan(buf[5]) || isnan(buf[6])); /* the step shows it (the trainer reports it) */
  const float *e = dpt_reducer_compress_residual(r);
  int clean = 1;
  for (size_t i = 0; i < MR * MC; i++) clean &= e[i] == 0;
  memset(want, 0, NBUF * sizeof *want);
  for (int q = 0; q < size; q++) {
    low_rank_grad(buf, q, 1);
    for (size_t i = 0; i < NBUF; i++) want[i] += buf[i];
  }
  low_rank_grad(buf, rank, 1); /* the next step is finite and reproduced again */
  assert_int_equal(dpt_reducer_wait(r, NULL, err, sizeof err), 0);
  double d = dpt_test_rel_l2(buf, want, MR * MC);
  dpt_reducer_free(r);
  free(buf);
  free(want);
  assert_true(all(clean));
  assert_true(all(d < 1e-5));
}

/* --- parameters --- */

static void test_compress_choices_and_refusals(void **state) {
  (void)state;
  dpt_compress c;
  int rk;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_reducer_compress_parse("none", &c, &rk, err, sizeof err), 0);
  assert_int_equal(c, DPT_COMPRESS_NONE);
  assert_int_equal(dpt_reducer_compress_parse("fp16", &c, &rk, err, sizeof err), 0);
  assert_int_equal(c, DPT_COMPRESS_FP16);
  assert_int_equal(dpt_reducer_compress_parse("powersgd", &c, &rk, err, sizeof err), 0);
  assert_int_equal(c, DPT_COMPRESS_POWERSGD);
  assert_int_equal(rk, DPT_POWERSGD_RANK);
  assert_int_equal(dpt_reducer_compress_parse("powersgd:4", &c, &rk, err, sizeof err), 0);
  assert_int_equal(rk, 4);
  const char *bad[] = {"bf32",        "powersgd:",   "powersgd:0",
                       "powersgd:-1", "powersgd:2x", "powersgd4"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = 0;
    assert_int_equal(dpt_reducer_compress_parse(bad[i], &c, &rk, err, sizeof err), -1);
    assert_non_null(strstr(err, bad[i]));
  }
  float buf[64] = {0};
  dpt_reducer *r = NULL;
  dpt_reducer_params p = dpt_reducer_defaults();
  assert_int_equal(p.compress, DPT_COMPRESS_NONE);
  p.compress = DPT_COMPRESS_BF16;
  p.algorithm = DPT_REDUCE_NODE;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "not node"));
  p.algorithm = DPT_REDUCE_EXACT;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "deterministic"));
  p = dpt_reducer_defaults();
  p.algorithm = DPT_REDUCE_HALF; /* a lossy one only through compress */
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_int_equal(dpt_reducer_algorithm_parse("half", &p.algorithm, err, sizeof err), -1);
  p = dpt_reducer_defaults();
  p.compress = DPT_COMPRESS_POWERSGD;
  const size_t off = 60, len = 8, rows = 2; /* past the buffer's end */
  p.ntensors = 1;
  p.tensor_offset = &off;
  p.tensor_len = &len;
  p.tensor_rows = &rows;
  assert_int_equal(dpt_reducer_create(MPI_COMM_WORLD, buf, 64, &p, &r, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "tensor 0"));
  assert_null(r);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bf16_rounds_to_nearest_even),
      cmocka_unit_test(test_fp16_rounds_to_nearest_even),
      cmocka_unit_test(test_half_sums_equal_the_fp32_rank_order_reference),
      cmocka_unit_test(test_powersgd_reproduces_a_low_rank_sum),
      cmocka_unit_test(test_powersgd_sums_plainly_before_its_start),
      cmocka_unit_test(test_powersgd_error_feedback_carries_the_residual),
      cmocka_unit_test(test_powersgd_forgets_a_nonfinite_step),
      cmocka_unit_test(test_compress_choices_and_refusals),
      cmocka_unit_test(test_every_algorithm_reports_its_buffers),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

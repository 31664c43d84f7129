/* test_layer_segments.c — the layers whose pass matters: BatchNorm's statistics are those of
 * the whole call whatever its segmenting (a call split into 2 or 4 segments, with a batch_sum
 * that adds the rows in order or without one, gives one call's outputs and gradients to
 * rounding), training updates the running statistics once per forward and evaluation uses them;
 * a dropout mask of a sample depends on (seed, step, global sample) only, not on segmenting or
 * on the call it is in; two "ranks" (threads whose batch_sum adds both ranks' rows) get the
 * global batch's statistics and gradients that add up to one call's; attention keeps each
 * segment's activations apart (pass.at). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* Segment sums round differently from one call's: float adds of partial gradients. */
#define SEG_TOL 1e-5

static double uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

static void fill(float *v, size_t n, uint64_t seed) {
  dpt_rng r;
  dpt_rng_seed(&r, seed, 0);
  for (size_t i = 0; i < n; i++) v[i] = (float)(2.0 * dpt_rng_uniform(&r) - 1.0) * 1.5f + 0.3f;
}

/* batch_sum as one rank's trainer would do it: rows added in order into row 0; counts calls */
static int sum_calls;
static void sum_rows(void *ctx, double *v, size_t len, int nseg) {
  (void)ctx;
  sum_calls++;
  for (int j = 1; j < nseg; j++)
    for (size_t k = 0; k < len; k++) v[k] += v[(size_t)j * len + k];
}

static double rel_diff(const float *a, const float *b, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; i++)
    d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
  return r > 0 ? sqrt(d / r) : sqrt(d);
}

typedef struct {
  dpt_net *net;
  float *params, *grad;
  size_t np;
} built;

static built build(const char *const *spec, int nlayers, const dpt_shape *in, const char *loss) {
  char err[DPT_ERR_LEN] = "";
  built b;
  assert_int_equal(dpt_net_create("seg", in, &b.net, err, sizeof err), 0);
  for (int i = 0; i < nlayers; i++)
    if (dpt_net_add(b.net, spec[3 * i], spec[3 * i + 1], spec[3 * i + 2], err, sizeof err))
      fail_msg("%s", err);
  assert_int_equal(dpt_net_set_loss(b.net, loss, err, sizeof err), 0);
  b.np = dpt_net_nparams(b.net);
  b.params = malloc(b.np * sizeof *b.params);
  b.grad = calloc(b.np, sizeof *b.grad);
  assert_true(b.params && b.grad);
  dpt_rng r;
  dpt_rng_seed(&r, 7, 1);
  dpt_layer_rng lr = {uniform, &r};
  dpt_net_init(b.net, b.params, &lr);
  return b;
}

static void unbuild(built *b) {
  free(b->params), free(b->grad);
  dpt_net_free(b->net);
}

/* loss and gradient of one training pass of `count` samples in nseg segments */
static double pass(built *b, const float *x, const float *y, size_t count, int nseg, int with_sum,
                   long step) {
  char err[DPT_ERR_LEN] = "";
  memset(b->grad, 0, b->np * sizeof *b->grad);
  dpt_layer_pass p = {.train = 1, .seed = 3, .step = step, .nseg = nseg};
  if (with_sum) p.batch_sum = sum_rows;
  double loss = 0;
  if (dpt_net_loss_grad_pass(b->net, b->params, b->grad, 1.0f, x, NULL, y, count, &loss, NULL, &p,
                             err, sizeof err))
    fail_msg("%s", err);
  return loss;
}

#define BN_N 8

/* conv -> batchnorm2d -> relu -> flatten -> linear, mse: BatchNorm's backward feeds conv */
static const char *const bn2d_net[] = {"conv2d",      "conv", "out=3,kernel=3,padding=1",
                                       "batchnorm2d", "bn",   "",
                                       "relu",        "act",  "",
                                       "flatten",     "flat", "",
                                       "linear",      "fc",   "out=2"};
/* linear -> batchnorm1d -> tanh -> linear */
static const char *const bn1d_net[] = {"linear", "fc1", "out=5", "batchnorm1d", "bn",  "",
                                       "tanh",   "act", "",      "linear",      "fc2", "out=2"};

static void check_segments(const char *const *spec, int nlayers, const dpt_shape *in) {
  built one = build(spec, nlayers, in, "mse"), seg = build(spec, nlayers, in, "mse");
  size_t xin = 1;
  for (int i = 0; i < in->rank; i++) xin *= (size_t)in->dims[i];
  float *x = malloc(BN_N * xin * sizeof *x), *y = malloc(BN_N * 2 * sizeof *y);
  float *g1 = malloc(one.np * sizeof *g1);
  assert_true(x && y && g1);
  fill(x, BN_N * xin, 11), fill(y, BN_N * 2, 12);
  size_t nb;
  float *b1 = dpt_net_buffer_data(one.net, &nb), *bs = dpt_net_buffer_data(seg.net, NULL);
  assert_true(nb > 0);
  double l1 = pass(&one, x, y, BN_N, 1, 0, 0);
  memcpy(g1, one.grad, one.np * sizeof *g1);
  for (int k = 0; k < 2; k++)
    for (int with_sum = 0; with_sum < 2; with_sum++) {
      int nseg = k ? 4 : 2;
      /* fresh buffers: the statistics of one forward each */
      dpt_rng r;
      dpt_rng_seed(&r, 7, 1);
      dpt_layer_rng lr = {uniform, &r};
      dpt_net_init(seg.net, seg.params, &lr);
      sum_calls = 0;
      double ls = pass(&seg, x, y, BN_N, nseg, with_sum, 0);
      if (with_sum) assert_int_equal(sum_calls, 2); /* the statistics, backward's sums */
      assert_true(fabs(ls - l1) <= SEG_TOL * fabs(l1));
      double rg = rel_diff(seg.grad, g1, one.np), rb = rel_diff(bs, b1, nb);
      if (!(rg <= SEG_TOL) || !(rb <= SEG_TOL))
        fail_msg("%d segments (batch_sum %d): gradients differ by %.3g, buffers by %.3g", nseg,
                 with_sum, rg, rb);
    }
  free(x), free(y), free(g1);
  unbuild(&one), unbuild(&seg);
}

static void test_batchnorm2d_segments_give_one_calls_result(void **state) {
  (void)state;
  dpt_shape in = {3, {2, 4, 4}};
  check_segments(bn2d_net, 5, &in);
}

static void test_batchnorm1d_segments_give_one_calls_result(void **state) {
  (void)state;
  dpt_shape in = {1, {4}};
  check_segments(bn1d_net, 4, &in);
}

/* BatchNorm first: its input is x, so the batch statistics are known here */
static void test_batchnorm_running_statistics(void **state) {
  (void)state;
  enum { C = 3, L = 4 };
  static const char *const spec[] = {"batchnorm1d", "bn", "momentum=0.25", "flatten", "f", ""};
  dpt_shape in = {2, {C, L}};
  built b = build(spec, 2, &in, "mse");
  float x[BN_N * C * L], y[BN_N * C * L];
  fill(x, BN_N * C * L, 21), fill(y, BN_N * C * L, 22);
  int nbt;
  const dpt_tensor *bt = dpt_net_buffers(b.net, &nbt);
  assert_int_equal(nbt, 3);
  assert_string_equal(bt[0].name, "bn.running_mean");
  assert_string_equal(bt[1].name, "bn.running_var");
  assert_string_equal(bt[2].name, "bn.num_batches_tracked");
  float *buf = dpt_net_buffer_data(b.net, NULL), *rm = buf + bt[0].offset, *rv = buf + bt[1].offset,
        *nb = buf + bt[2].offset;
  for (int c = 0; c < C; c++) assert_true(rm[c] == 0.0f && rv[c] == 1.0f);
  assert_true(nb[0] == 0.0f);
  double mean[C], var[C]; /* the batch's, unbiased */
  for (int c = 0; c < C; c++) {
    double s = 0, q = 0;
    for (int i = 0; i < BN_N; i++)
      for (int k = 0; k < L; k++) s += x[(i * C + c) * L + k];
    mean[c] = s / (BN_N * L);
    for (int i = 0; i < BN_N; i++)
      for (int k = 0; k < L; k++)
        q += (x[(i * C + c) * L + k] - mean[c]) * (x[(i * C + c) * L + k] - mean[c]);
    var[c] = q / (BN_N * L - 1);
  }
  pass(&b, x, y, BN_N, 4, 1, 0); /* one forward in 4 segments: one update */
  assert_true(nb[0] == 1.0f);
  for (int c = 0; c < C; c++) {
    assert_true(fabs(rm[c] - 0.25 * mean[c]) <= 1e-6);
    assert_true(fabs(rv[c] - (0.75 + 0.25 * var[c])) <= 1e-6);
  }
  pass(&b, x, y, BN_N, 2, 0, 1);
  assert_true(nb[0] == 2.0f);
  for (int c = 0; c < C; c++) {
    assert_true(fabs(rm[c] - (0.25 + 0.75 * 0.25) * mean[c]) <= 1e-6);
    assert_true(fabs(rv[c] - (0.75 * (0.75 + 0.25 * var[c]) + 0.25 * var[c])) <= 1e-6);
  }
  /* evaluation: the running statistics, buffers untouched */
  float saved[2 * C + 1];
  memcpy(saved, buf, sizeof saved);
  char err[DPT_ERR_LEN] = "";
  double loss = 0;
  assert_int_equal(
      dpt_net_evaluate(b.net, b.params, x, NULL, y, BN_N, &loss, NULL, err, sizeof err), 0);
  assert_memory_equal(saved, buf, sizeof saved);
  double want = 0; /* mse of (x - rm) / sqrt(rv + eps) (weight 1, bias 0) against y */
  for (int i = 0; i < BN_N; i++) {
    double s = 0;
    for (int c = 0; c < C; c++)
      for (int k = 0; k < L; k++) {
        int at = (i * C + c) * L + k;
        double e = (x[at] - rm[c]) / sqrt(rv[c] + 1e-5) - y[at];
        s += e * e;
      }
    want += s / (C * L);
  }
  if (!(fabs(loss - want) <= 1e-5 * want))
    fail_msg("evaluation loss %.9g, expected %.9g", loss, want);
  unbuild(&b);
}

/* --- BatchNorm across "ranks": two threads, each a net over its half of the batch, with a
 * batch_sum that adds both ranks' rows (rank order) as the trainer's allreduce does --- */

#define RANKS 2
#define MAX_ROW 64 /* the longest row the test's BatchNorm sums (2C) */

typedef struct {
  pthread_barrier_t bar;
  double *rows[RANKS]; /* each rank's local sum of its rows */
  size_t len;
} fake_comm;

typedef struct {
  fake_comm *comm;
  int rank;
  built b;
  const float *x, *y;
  size_t n; /* this rank's samples */
  int rc;   /* the pass's status (no cmocka asserts off the main thread) */
  char err[DPT_ERR_LEN];
} rank_job;

static __thread int my_rank;

static void allreduce_rows(void *ctx, double *v, size_t len, int nseg) {
  fake_comm *c = ctx;
  for (int j = 1; j < nseg; j++)
    for (size_t k = 0; k < len; k++) v[k] += v[(size_t)j * len + k];
  c->rows[my_rank] = v;
  c->len = len;
  pthread_barrier_wait(&c->bar);
  double total[MAX_ROW];
  if (len > MAX_ROW) len = MAX_ROW; /* not reached: the rows are 2C = 6 long */
  for (size_t k = 0; k < len; k++) {
    total[k] = 0;
    for (int r = 0; r < RANKS; r++) total[k] += c->rows[r][k];
  }
  pthread_barrier_wait(&c->bar); /* everyone has read every row */
  memcpy(v, total, len * sizeof *v);
}

static void *rank_main(void *arg) {
  rank_job *j = arg;
  my_rank = j->rank;
  memset(j->b.grad, 0, j->b.np * sizeof *j->b.grad);
  dpt_layer_pass p = {.train = 1,
                      .nseg = 2,
                      .sample0 = (int64_t)(j->rank * j->n),
                      .batch_sum = allreduce_rows,
                      .batch_ctx = j->comm};
  double loss = 0;
  j->rc = dpt_net_loss_grad_pass(j->b.net, j->b.params, j->b.grad, 1.0f, j->x, NULL, j->y, j->n,
                                 &loss, NULL, &p, j->err, sizeof j->err);
  return NULL;
}

/* layernorm -> batchnorm1d -> tanh -> layernorm: no BLAS; BatchNorm's input gradient reaches
 * the first layernorm's parameters */
static void test_batchnorm_statistics_are_the_global_batchs(void **state) {
  (void)state;
  static const char *const spec[] = {"layernorm", "ln1", "", "batchnorm1d", "bn",  "",
                                     "tanh",      "act", "", "layernorm",   "ln2", ""};
  dpt_shape in = {2, {3, 5}};
  enum { PER = 15 };
  built one = build(spec, 4, &in, "mse");
  float x[BN_N * PER], y[BN_N * PER];
  fill(x, BN_N * PER, 51), fill(y, BN_N * PER, 52);
  for (int i = 0; i < BN_N * PER; i += 7) x[i] += 2.0f; /* uneven statistics */
  pass(&one, x, y, BN_N, 1, 0, 0);
  fake_comm comm;
  pthread_barrier_init(&comm.bar, NULL, RANKS);
  rank_job jobs[RANKS];
  pthread_t th[RANKS];
  size_t half = BN_N / RANKS;
  for (int r = 0; r < RANKS; r++) {
    memset(&jobs[r], 0, sizeof jobs[r]);
    jobs[r].comm = &comm, jobs[r].rank = r, jobs[r].b = build(spec, 4, &in, "mse");
    jobs[r].x = x + (size_t)r * half * PER, jobs[r].y = y + (size_t)r * half * PER;
    jobs[r].n = half;
    assert_int_equal(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
  }
  for (int r = 0; r < RANKS; r++) pthread_join(th[r], NULL);
  pthread_barrier_destroy(&comm.bar);
  for (int r = 0; r < RANKS; r++)
    if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].err);
  float *sum = calloc(one.np, sizeof *sum);
  assert_non_null(sum);
  for (size_t i = 0; i < one.np; i++) sum[i] = jobs[0].b.grad[i] + jobs[1].b.grad[i];
  double rg = rel_diff(sum, one.grad, one.np);
  size_t nb;
  float *b1 = dpt_net_buffer_data(one.net, &nb);
  for (int r = 0; r < RANKS; r++) {
    double rb = rel_diff(dpt_net_buffer_data(jobs[r].b.net, NULL), b1, nb);
    if (!(rb <= SEG_TOL)) fail_msg("rank %d: running statistics differ by %.3g", r, rb);
  }
  if (!(rg <= SEG_TOL)) fail_msg("the ranks' gradients add up to one call's within %.3g", rg);
  /* a rank's gradient alone is not the whole batch's (the test can tell) */
  assert_true(rel_diff(jobs[0].b.grad, one.grad, one.np) > 1e-3);
  free(sum);
  for (int r = 0; r < RANKS; r++) unbuild(&jobs[r].b);
  unbuild(&one);
}

/* --- dropout --- */

#define DR_M 64
#define DR_N 8

static void test_dropout_mask_depends_on_sample_not_call(void **state) {
  (void)state;
  static const char *const spec[] = {"dropout", "drop", "p=0.3"};
  dpt_shape in = {1, {DR_M}};
  built b = build(spec, 1, &in, "mse");
  dpt_layer *l = (dpt_layer *)dpt_net_layer(b.net, 0);
  float x[DR_N * DR_M], y[DR_N * DR_M], part[DR_N * DR_M];
  for (size_t i = 0; i < DR_N * DR_M; i++) x[i] = 1.0f + (float)i / 64.0f;
  dpt_layer_pass p = {.train = 1, .seed = 5, .step = 2, .sample0 = 100, .nseg = 1};
  l->ops->forward(l, b.params, x, y, DR_N, &p);
  size_t kept = 0;
  float scale = 1.0f / (float)(1.0 - 0.3);
  for (size_t i = 0; i < DR_N; i++)
    for (size_t j = 0; j < DR_M; j++) {
      int keep = dpt_layer_hash_uniform(5, 2, 100 + (int64_t)i, 0, j) >= 0.3;
      kept += keep;
      float want = x[i * DR_M + j] * (keep ? scale : 0.0f);
      assert_memory_equal(&y[i * DR_M + j], &want, sizeof want);
    }
  assert_true(kept > DR_N * DR_M / 2 && kept < DR_N * DR_M * 9 / 10); /* about 70% */
  /* samples 103..105 alone, in a call starting at 103: the same rows */
  p.sample0 = 103;
  l->ops->forward(l, b.params, x + 3 * DR_M, part, 3, &p);
  assert_memory_equal(part, y + 3 * DR_M, 3 * DR_M * sizeof *y);
  /* another step, another seed: other masks */
  p.sample0 = 100, p.step = 3;
  l->ops->forward(l, b.params, x, part, DR_N, &p);
  assert_true(memcmp(part, y, sizeof y) != 0);
  p.step = 2, p.seed = 6;
  l->ops->forward(l, b.params, x, part, DR_N, &p);
  assert_true(memcmp(part, y, sizeof y) != 0);
  /* evaluation: identity */
  p.train = 0;
  l->ops->forward(l, b.params, x, part, DR_N, &p);
  assert_memory_equal(part, x, sizeof x);
  unbuild(&b);
}

/* the run form of the hash is the element-wise one, bitwise, from any first element */
static void test_hash_run_is_hash_uniform(void **state) {
  (void)state;
  float u[300];
  const uint64_t seeds[] = {0, 1, 0xfedcba9876543210ull};
  for (int k = 0; k < 3; k++) {
    uint64_t elem0 = k ? (uint64_t)1 << (20 + 10 * k) : 0;
    dpt_layer_hash_run(seeds[k], 1000L * k, (int64_t)k * 7919, k + 2, elem0, 300, u);
    for (size_t j = 0; j < 300; j++) {
      float want = dpt_layer_hash_uniform(seeds[k], 1000L * k, (int64_t)k * 7919, k + 2, elem0 + j);
      assert_memory_equal(&u[j], &want, sizeof want);
      assert_true(u[j] >= 0.0f && u[j] < 1.0f);
    }
  }
}

/* Through the net: linear -> dropout -> linear; per-sample losses are summed in sample order,
 * so the same masks give bitwise the same loss in 1, 2 or 4 segments, and the gradients agree. */
static void test_dropout_segments_through_the_net(void **state) {
  (void)state;
  static const char *const spec[] = {"linear", "fc1",    "out=16", "dropout", "drop",
                                     "",       "linear", "fc2",    "out=2"};
  dpt_shape in = {1, {5}};
  built b = build(spec, 3, &in, "mse");
  float x[DR_N * 5], y[DR_N * 2];
  fill(x, DR_N * 5, 31), fill(y, DR_N * 2, 32);
  float *g1 = malloc(b.np * sizeof *g1);
  assert_non_null(g1);
  double l1 = pass(&b, x, y, DR_N, 1, 0, 4);
  memcpy(g1, b.grad, b.np * sizeof *g1);
  for (int nseg = 2; nseg <= 4; nseg *= 2) {
    double ls = pass(&b, x, y, DR_N, nseg, 0, 4);
    assert_memory_equal(&ls, &l1, sizeof ls);
    assert_true(rel_diff(b.grad, g1, b.np) <= SEG_TOL);
  }
  assert_true(pass(&b, x, y, DR_N, 1, 0, 5) != l1); /* another step, another mask */
  free(g1);
  unbuild(&b);
}

/* --- attention: each segment's activations are its own --- */

static void test_attention_segments_keep_their_activations(void **state) {
  (void)state;
  static const char *const spec[] = {"attention", "attn",    "heads=2", "attention",
                                     "attn2",     "heads=4", "flatten", "f",
                                     "",          "linear",  "fc",      "out=2"};
  dpt_shape in = {2, {6, 8}};
  built b = build(spec, 4, &in, "mse");
  float x[DR_N * 48], y[DR_N * 2];
  fill(x, DR_N * 48, 41), fill(y, DR_N * 2, 42);
  float *g1 = malloc(b.np * sizeof *g1);
  assert_non_null(g1);
  double l1 = pass(&b, x, y, DR_N, 1, 0, 0);
  memcpy(g1, b.grad, b.np * sizeof *g1);
  for (int nseg = 2; nseg <= 4; nseg *= 2) {
    double ls = pass(&b, x, y, DR_N, nseg, 0, 0);
    /* per-sample products, but sgemm over fewer rows may take another kernel (OpenBLAS's
     * small-matrix path under OPENBLAS_CORETYPE=SkylakeX, which dpt sets): close, not bitwise;
     * another segment's activations would be far off */
    if (!(fabs(ls - l1) <= SEG_TOL * fabs(l1)))
      fail_msg("%d segments: loss %.9g, one call %.9g", nseg, ls, l1);
    double rg = rel_diff(b.grad, g1, b.np);
    if (!(rg <= SEG_TOL)) fail_msg("%d segments: gradients differ by %.3g", nseg, rg);
  }
  free(g1);
  unbuild(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batchnorm2d_segments_give_one_calls_result),
      cmocka_unit_test(test_batchnorm1d_segments_give_one_calls_result),
      cmocka_unit_test(test_batchnorm_running_statistics),
      cmocka_unit_test(test_batchnorm_statistics_are_the_global_batchs),
      cmocka_unit_test(test_dropout_mask_depends_on_sample_not_call),
      cmocka_unit_test(test_hash_run_is_hash_uniform),
      cmocka_unit_test(test_dropout_segments_through_the_net),
      cmocka_unit_test(test_attention_segments_keep_their_activations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

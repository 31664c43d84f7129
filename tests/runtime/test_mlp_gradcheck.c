/* test_mlp_gradcheck.c — the built-in MLP against central finite differences (computed in
 * double from fp32 forward passes) for every activation and both losses, plus its contract:
 * ready-callback coverage and order (and the layer boundaries it matches), gradient
 * accumulation, deterministic init, the tensor layout, 220 tensors, the model check and the
 * registry, and rejection of bad specs, activations, losses and labels. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define SPEC "mlp:5-7-6-3"
#define BATCH 4

typedef struct {
  dpt_model m;
  float *params, *grad;
  float *x, *y;
  int32_t labels[BATCH];
} fixture;

static void setup_fixture(fixture *f, const char *spec, const char *act, const char *loss, size_t n,
                          uint64_t seed) {
  char err[DPT_ERR_LEN] = "";
  int rc = dpt_mlp_create(spec, act, loss, &f->m, err, sizeof err);
  if (rc) fail_msg("dpt_mlp_create(%s, %s, %s): %s", spec, act, loss, err);
  f->params = calloc(f->m.nparams, sizeof(float));
  f->grad = calloc(f->m.nparams, sizeof(float));
  f->x = calloc(n * (size_t)f->m.in_features, sizeof(float));
  f->y = calloc(n * (size_t)f->m.out_features, sizeof(float));
  assert_non_null(f->params);
  assert_non_null(f->grad);
  assert_non_null(f->x);
  assert_non_null(f->y);
  assert_int_equal(f->m.init(&f->m, f->params, seed, err, sizeof err), 0);
  dpt_rng r;
  dpt_rng_seed(&r, seed, 7);
  for (size_t i = 0; i < n * (size_t)f->m.in_features; i++) f->x[i] = (float)dpt_rng_normal(&r);
  for (size_t i = 0; i < n * (size_t)f->m.out_features; i++) f->y[i] = (float)dpt_rng_normal(&r);
  for (size_t i = 0; i < BATCH; i++)
    f->labels[i] = (int32_t)dpt_rng_below(&r, (uint64_t)f->m.out_features);
}

static void teardown_fixture(fixture *f) {
  f->m.destroy(&f->m);
  free(f->params);
  free(f->grad);
  free(f->x);
  free(f->y);
}

static const int32_t *labels_of(fixture *f) {
  return f->m.wants_labels ? f->labels : NULL;
}
static const float *targets_of(fixture *f) {
  return f->m.wants_labels ? NULL : f->y;
}

static double eval_loss(fixture *f) {
  char err[DPT_ERR_LEN] = "";
  double loss = 0.0;
  int64_t correct = 0;
  int rc = f->m.evaluate(&f->m, f->params, f->x, labels_of(f), targets_of(f), BATCH, &loss,
                         &correct, err, sizeof err);
  if (rc) fail_msg("evaluate: %s", err);
  return loss;
}

/* Central difference of the batch loss in parameter i, in double from fp32 forward passes
 * (the step is the one actually taken after rounding p +- eps to fp32). */
static double numeric_grad(fixture *f, size_t i, float eps) {
  float p0 = f->params[i];
  float hi = p0 + eps, lo = p0 - eps;
  f->params[i] = hi;
  double lp = eval_loss(f);
  f->params[i] = lo;
  double lm = eval_loss(f);
  f->params[i] = p0;
  return (lp - lm) / ((double)hi - (double)lo);
}

static void analytic_grad(fixture *f, float scale, double *loss) {
  char err[DPT_ERR_LEN] = "";
  int64_t correct = 0;
  int rc = f->m.loss_grad(&f->m, f->params, f->grad, scale, f->x, labels_of(f), targets_of(f),
                          BATCH, loss, &correct, NULL, NULL, err, sizeof err);
  if (rc) fail_msg("loss_grad: %s", err);
}

static void gradcheck(const char *act, const char *loss) {
  fixture f;
  setup_fixture(&f, SPEC, act, loss, BATCH, 1234);
  double lsum = 0.0;
  analytic_grad(&f, 1.0f, &lsum);
  assert_true(fabs(lsum - eval_loss(&f)) <= 1e-6 * fabs(lsum) + 1e-9);
  double diff2 = 0.0, ref2 = 0.0, gmax = 0.0;
  double *num = malloc(f.m.nparams * sizeof(double));
  assert_non_null(num);
  for (size_t i = 0; i < f.m.nparams; i++) {
    num[i] = numeric_grad(&f, i, 1e-2f);
    double d = (double)f.grad[i] - num[i];
    diff2 += d * d;
    ref2 += num[i] * num[i];
    if (fabs(num[i]) > gmax) gmax = fabs(num[i]);
  }
  size_t outliers = 0;
  for (size_t i = 0; i < f.m.nparams; i++) {
    double a = f.grad[i], tol = 3e-3 * fmax(fabs(a), fabs(num[i])) + 1e-3 * gmax;
    if (fabs(a - num[i]) > tol) outliers++;
  }
  /* relu's kinks can fall inside [p - eps, p + eps]; smooth activations allow none. */
  size_t allowed = strcmp(act, "relu") == 0 ? f.m.nparams / 100 + 1 : 0;
  if (sqrt(diff2) > 3e-3 * sqrt(ref2) + 1e-6 || outliers > allowed)
    fail_msg("%s/%s: |g - num| = %g, |num| = %g, %zu of %zu elements off", act, loss, sqrt(diff2),
             sqrt(ref2), outliers, f.m.nparams);
  free(num);
  teardown_fixture(&f);
}

static void test_gradcheck_ce(void **state) {
  (void)state;
  gradcheck("relu", "ce");
  gradcheck("tanh", "ce");
  gradcheck("gelu", "ce");
  gradcheck("sigmoid", "ce");
}

static void test_gradcheck_mse(void **state) {
  (void)state;
  gradcheck("relu", "mse");
  gradcheck("tanh", "mse");
  gradcheck("gelu", "mse");
  gradcheck("sigmoid", "mse");
}

static void test_gradcheck_single_layer(void **state) {
  (void)state;
  fixture f;
  setup_fixture(&f, "mlp:5-3", "tanh", "ce", BATCH, 9);
  assert_int_equal(f.m.ntensors, 2);
  double lsum = 0.0;
  analytic_grad(&f, 1.0f, &lsum);
  for (size_t i = 0; i < f.m.nparams; i++)
    assert_true(fabs(f.grad[i] - numeric_grad(&f, i, 1e-2f)) < 1e-3);
  teardown_fixture(&f);
}

/* ---- ready callback ---- */

#define MAX_CALLS 64 /* ready calls recorded (the models here have at most 4 layers) */
typedef struct {
  int *count;
  size_t nparams;
  size_t offsets[MAX_CALLS];
  size_t lens[MAX_CALLS];
  int calls;
} coverage;

static void on_ready(void *ctx, size_t offset, size_t len) {
  coverage *c = ctx;
  assert_true(offset + len <= c->nparams);
  for (size_t i = offset; i < offset + len; i++) c->count[i]++;
  assert_true(c->calls < MAX_CALLS);
  c->offsets[c->calls] = offset;
  c->lens[c->calls] = len;
  c->calls++;
}

static void check_coverage(fixture *f, size_t n) {
  char err[DPT_ERR_LEN] = "";
  coverage c = {.nparams = f->m.nparams};
  c.count = calloc(f->m.nparams, sizeof(int));
  assert_non_null(c.count);
  double loss = 0.0;
  int64_t correct = 0;
  int rc = f->m.loss_grad(&f->m, f->params, f->grad, 1.0f, f->x, labels_of(f), targets_of(f), n,
                          &loss, &correct, on_ready, &c, err, sizeof err);
  assert_int_equal(rc, 0);
  for (size_t i = 0; i < f->m.nparams; i++) assert_int_equal(c.count[i], 1);
  int layers = f->m.ntensors / 2;
  assert_int_equal(c.calls, layers);
  assert_int_equal(f->m.nlayers, layers); /* the seam's layer boundaries are the ready calls */
  for (int k = 0; k < c.calls; k++) {
    const dpt_tensor *w = &f->m.tensors[2 * (layers - 1 - k)];
    assert_int_equal(c.offsets[k], w->offset);
    assert_int_equal(c.lens[k], w->numel + f->m.tensors[2 * (layers - 1 - k) + 1].numel);
    const dpt_layer_span *s = &f->m.layers[layers - 1 - k];
    assert_int_equal(s->offset, c.offsets[k]);
    assert_int_equal(s->len, c.lens[k]);
    assert_int_equal(s->first_tensor, 2 * (layers - 1 - k));
    assert_int_equal(s->ntensors, 2);
  }
  free(c.count);
}

static void test_ready_coverage(void **state) {
  (void)state;
  fixture f;
  setup_fixture(&f, "mlp:5-7-6-4-3", "gelu", "ce", BATCH, 3);
  check_coverage(&f, BATCH);
  check_coverage(&f, 0); /* an empty batch still reports every range once */
  teardown_fixture(&f);
}

/* ---- accumulation ---- */

static void test_accumulation(void **state) {
  (void)state;
  const char *losses[] = {"ce", "mse"};
  for (int li = 0; li < 2; li++) {
    fixture f;
    setup_fixture(&f, SPEC, "sigmoid", losses[li], BATCH, 5);
    double loss = 0.0;
    analytic_grad(&f, 1.0f, &loss);
    float *once = malloc(f.m.nparams * sizeof(float));
    assert_non_null(once);
    memcpy(once, f.grad, f.m.nparams * sizeof(float));
    memset(f.grad, 0, f.m.nparams * sizeof(float));
    analytic_grad(&f, 0.5f, &loss);
    analytic_grad(&f, 0.5f, &loss);
    for (size_t i = 0; i < f.m.nparams; i++)
      assert_true(fabsf(f.grad[i] - once[i]) <= 1e-6f * fabsf(once[i]) + 1e-12f);
    free(once);
    teardown_fixture(&f);
  }
}

/* ---- evaluate in chunks agrees with one pass ---- */

static void test_evaluate_chunks(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  const size_t n = 2500; /* more than one evaluation chunk */
  dpt_model m;
  assert_int_equal(dpt_mlp_create("mlp:6-8-4", "tanh", "ce", &m, err, sizeof err), 0);
  float *p = calloc(m.nparams, sizeof(float)), *g = calloc(m.nparams, sizeof(float));
  float *x = malloc(n * 6 * sizeof(float));
  int32_t *lab = malloc(n * sizeof(int32_t));
  assert_true(p && g && x && lab);
  assert_int_equal(m.init(&m, p, 11, err, sizeof err), 0);
  dpt_rng r;
  dpt_rng_seed(&r, 11, 3);
  for (size_t i = 0; i < n * 6; i++) x[i] = (float)dpt_rng_normal(&r);
  for (size_t i = 0; i < n; i++) lab[i] = (int32_t)dpt_rng_below(&r, 4);
  double l1 = 0.0, l2 = 0.0;
  int64_t c1 = 0, c2 = 0;
  assert_int_equal(m.evaluate(&m, p, x, lab, NULL, n, &l1, &c1, err, sizeof err), 0);
  assert_int_equal(
      m.loss_grad(&m, p, g, 1.0f, x, lab, NULL, n, &l2, &c2, NULL, NULL, err, sizeof err), 0);
  assert_true(fabs(l1 - l2) <= 1e-5 * fabs(l2));
  assert_true(c1 >= 0 && c1 <= (int64_t)n);
  assert_true(llabs((long long)(c1 - c2)) <= 2);
  m.destroy(&m);
  free(p), free(g), free(x), free(lab);
}

/* ---- init, layout ---- */

static void test_init_deterministic(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  dpt_model m;
  assert_int_equal(dpt_mlp_create("mlp:784-32-10", "relu", "ce", &m, err, sizeof err), 0);
  float *a = malloc(m.nparams * sizeof(float)), *b = malloc(m.nparams * sizeof(float));
  float *c = malloc(m.nparams * sizeof(float));
  assert_true(a && b && c);
  assert_int_equal(m.init(&m, a, 42, err, sizeof err), 0);
  assert_int_equal(m.init(&m, b, 42, err, sizeof err), 0);
  assert_int_equal(m.init(&m, c, 43, err, sizeof err), 0);
  assert_memory_equal(a, b, m.nparams * sizeof(float));
  assert_memory_not_equal(a, c, m.nparams * sizeof(float));
  for (int t = 0; t < m.ntensors; t++) {
    const dpt_tensor *ts = &m.tensors[t];
    float bound = (float)(1.0 / sqrt((double)m.tensors[t - t % 2].dims[1]));
    double mean = 0.0;
    for (size_t i = 0; i < ts->numel; i++) {
      assert_true(fabsf(a[ts->offset + i]) <= bound);
      mean += a[ts->offset + i];
    }
    if (ts->numel > 1000) assert_true(fabs(mean / (double)ts->numel) < 0.05 * bound);
  }
  m.destroy(&m);
  free(a), free(b), free(c);
}

static void test_layout(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  dpt_model m;
  assert_int_equal(dpt_mlp_create("mlp:784-256-128-10", "gelu", "mse", &m, err, sizeof err), 0);
  assert_string_equal(m.kind, "mlp");
  assert_int_equal(m.ntensors, 6);
  assert_int_equal(m.in_features, 784);
  assert_int_equal(m.out_features, 10);
  assert_int_equal(m.wants_labels, 0);
  assert_int_equal(m.nparams, 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  const char *names[] = {"fc1.weight", "fc1.bias",   "fc2.weight",
                         "fc2.bias",   "fc3.weight", "fc3.bias"};
  size_t off = 0;
  for (int t = 0; t < 6; t++) {
    const dpt_tensor *ts = dpt_model_tensor(&m, names[t]);
    assert_non_null(ts);
    assert_ptr_equal(ts, &m.tensors[t]);
    assert_int_equal(ts->offset, off);
    assert_int_equal(ts->rank, t % 2 ? 1 : 2);
    off += ts->numel;
  }
  const dpt_tensor *w2 = dpt_model_tensor(&m, "fc2.weight");
  assert_int_equal(w2->dims[0], 128);
  assert_int_equal(w2->dims[1], 256);
  assert_int_equal(w2->numel, 128 * 256);
  assert_null(dpt_model_tensor(&m, "fc4.weight"));
  m.destroy(&m);
  assert_int_equal(dpt_mlp_create("mlp:4-3", "relu", "ce", &m, err, sizeof err), 0);
  assert_int_equal(m.wants_labels, 1);
  m.destroy(&m);
}

/* A deep MLP has as many tensors as a small transformer: no fixed cap on their number. */
static void test_many_tensors(void **state) {
  (void)state;
  char spec[1024] = "mlp:3", err[DPT_ERR_LEN] = "";
  for (int l = 0; l < 110; l++) strcat(spec, "-2");
  dpt_model m;
  assert_int_equal(dpt_mlp_create(spec, "relu", "ce", &m, err, sizeof err), 0);
  assert_int_equal(m.ntensors, 220);
  assert_int_equal(m.nlayers, 110);
  assert_string_equal(m.tensors[219].name, "fc110.bias");
  assert_int_equal(dpt_model_check(&m, err, sizeof err), 0);
  assert_ptr_equal(dpt_model_tensor(&m, "fc77.weight"), &m.tensors[152]);
  m.destroy(&m);
}

/* dpt_model_check names what is wrong with a hand-made table. */
static void test_model_check(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  dpt_model m;
  assert_int_equal(dpt_mlp_create("mlp:4-3", "relu", "ce", &m, err, sizeof err), 0);
  dpt_tensor t[2];
  memcpy(t, m.tensors, sizeof t);
  const dpt_tensor *orig = m.tensors;
  m.tensors = t;
  t[1].offset += 1; /* a gap */
  assert_int_equal(dpt_model_check(&m, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "fc1.bias"));
  t[1].offset -= 1;
  t[1].name = "fc1.weight"; /* a duplicate */
  assert_int_equal(dpt_model_check(&m, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "two tensors"));
  t[1].name = "fc1.bias";
  t[0].rank = DPT_MAX_RANK + 1;
  assert_int_equal(dpt_model_check(&m, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "rank"));
  t[0].rank = 2;
  assert_int_equal(dpt_model_check(&m, err, sizeof err), 0);
  m.tensors = orig;
  m.destroy(&m);
}

/* The registry dispatches on the kind and names the spec when the kind is unknown. */
static void test_registry(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  dpt_model m;
  assert_int_equal(dpt_model_create("mlp:6-5-2", "tanh", "mse", NULL, &m, err, sizeof err), 0);
  assert_string_equal(m.kind, "mlp");
  assert_int_equal(m.ntensors, 4);
  assert_int_equal(m.wants_labels, 0);
  m.destroy(&m);
  assert_int_equal(dpt_model_create("rnn:1-2", "relu", "ce", NULL, &m, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "'rnn:1-2'"));
  assert_non_null(strstr(err, "mlp"));
  assert_int_equal(dpt_model_register("mlp", NULL, err, sizeof err), DPT_EINVAL);
}

/* ---- rejections ---- */

static void expect_rejected(const char *spec, const char *act, const char *loss,
                            const char *needle) {
  char err[DPT_ERR_LEN] = "";
  dpt_model m;
  int rc = dpt_mlp_create(spec, act, loss, &m, err, sizeof err);
  if (rc != DPT_EINVAL) fail_msg("(%s, %s, %s) gave %d, expected DPT_EINVAL", spec, act, loss, rc);
  if (!strstr(err, needle))
    fail_msg("(%s, %s, %s): '%s' does not name '%s'", spec, act, loss, err, needle);
  assert_non_null(strstr(err, "expected"));
}

static void test_bad_specs(void **state) {
  (void)state;
  const char *specs[] = {"mlp:",        "mlp:784",     "mlp:784-0-10", "mlp:abc",      "cnn:1-2",
                         "mlp:784--10", "mlp:784-10-", "mlp:-5-3",     "mlp:784-x-10", "mlp"};
  for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
    expect_rejected(specs[i], "relu", "ce", specs[i]);
  expect_rejected("mlp:784-x-10", "relu", "ce", "'x'");
  expect_rejected("cnn:1-2", "relu", "ce", "'cnn'");
  expect_rejected("mlp:4-3", "relux", "ce", "relux");
  expect_rejected("mlp:4-3", "", "ce", "''");
  expect_rejected("mlp:4-3", "relu", "hinge", "hinge");
  expect_rejected("mlp:4-3", "relu", "CE", "CE");
  char err[DPT_ERR_LEN] = "";
  dpt_model m;
  assert_int_equal(dpt_mlp_create("mlp:99999999999-3", "relu", "ce", &m, err, sizeof err),
                   DPT_EINVAL);
  assert_int_equal(dpt_mlp_create(NULL, "relu", "ce", &m, err, sizeof err), DPT_EINVAL);
  assert_int_equal(dpt_mlp_create("mlp:4-3", NULL, "ce", &m, err, sizeof err), DPT_EINVAL);
}

static void test_bad_labels(void **state) {
  (void)state;
  fixture f;
  setup_fixture(&f, SPEC, "relu", "ce", BATCH, 2);
  const int32_t bad[][BATCH] = {{0, 1, 3, 2}, {0, -1, 2, 2}};
  const char *needle[][2] = {{"3", "sample 2"}, {"-1", "sample 1"}};
  for (int k = 0; k < 2; k++) {
    char err[DPT_ERR_LEN] = "";
    double loss = 0.0;
    int64_t correct = 0;
    int rc = f.m.loss_grad(&f.m, f.params, f.grad, 1.0f, f.x, bad[k], NULL, BATCH, &loss, &correct,
                           NULL, NULL, err, sizeof err);
    assert_int_equal(rc, DPT_EINVAL);
    assert_non_null(strstr(err, needle[k][0]));
    assert_non_null(strstr(err, needle[k][1]));
    for (size_t i = 0; i < f.m.nparams; i++) assert_true(f.grad[i] == 0.0f);
    err[0] = '\0';
    rc = f.m.evaluate(&f.m, f.params, f.x, bad[k], NULL, BATCH, &loss, &correct, err, sizeof err);
    assert_int_equal(rc, DPT_EINVAL);
    assert_non_null(strstr(err, needle[k][1]));
  }
  teardown_fixture(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck_ce),
      cmocka_unit_test(test_gradcheck_mse),
      cmocka_unit_test(test_gradcheck_single_layer),
      cmocka_unit_test(test_ready_coverage),
      cmocka_unit_test(test_accumulation),
      cmocka_unit_test(test_evaluate_chunks),
      cmocka_unit_test(test_init_deterministic),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_bad_specs),
      cmocka_unit_test(test_bad_labels),
      cmocka_unit_test(test_many_tensors),
      cmocka_unit_test(test_model_check),
      cmocka_unit_test(test_registry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

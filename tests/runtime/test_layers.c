/* test_layers.c — the layer library's extension path, as issue 19's layers will use it: a
 * layer kind of the caller's own (with a parameter and an elementwise-style backward) goes
 * into a net with dpt_net_add_ops between library layers; its gradients and the input
 * gradients it passes down agree with central finite differences; spans, tensor names and
 * ready calls follow the layers; bad layer options and names are rejected naming the layer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* --- a user's layer: y = a * x with a learned per-feature gain "gain.weight" [features] --- */

static int gain_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  (void)opts;
  int64_t dims[1] = {(int64_t)l->in_numel};
  int rc = dpt_layer_param(l, "weight", 1, dims, err, errlen);
  l->out = l->in;
  return rc < 0 ? rc : DPT_OK;
}

static void gain_init(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  for (size_t i = 0; i < l->in_numel; i++)
    params[dpt_layer_at(l, 0) + i] = (float)(0.5 + rng->uniform(rng->ctx));
}

static void gain_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                         const dpt_layer_pass *p) {
  (void)p;
  const float *a = params + dpt_layer_at(l, 0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < l->in_numel; j++) y[i * l->in_numel + j] = a[j] * x[i * l->in_numel + j];
}

static void gain_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                            const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  float *g = grad + dpt_layer_at(l, 0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < l->in_numel; j++)
      g[j] += dy[i * l->in_numel + j] * x[i * l->in_numel + j];
}

static void gain_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                          const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)x, (void)y, (void)p;
  const float *a = params + dpt_layer_at(l, 0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < l->in_numel; j++)
      dx[i * l->in_numel + j] = a[j] * dy[i * l->in_numel + j];
}

static const dpt_layer_ops gain_ops = {.kind = "gain",
                                       .help = "no options",
                                       .setup = gain_setup,
                                       .init = gain_init,
                                       .forward = gain_forward,
                                       .param_grad = gain_param_grad,
                                       .backward = gain_backward};

#define N 5
#define IN 4

static double uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

/* fc1 (linear 4->6), gain, tanh, fc2 (linear 6->3), mse */
static dpt_net *make_net(void) {
  char err[DPT_ERR_LEN] = "";
  dpt_shape in = {1, {IN}};
  dpt_net *n;
  assert_int_equal(dpt_net_create("test", &in, &n, err, sizeof err), 0);
  assert_int_equal(dpt_net_add(n, "linear", "fc1", "out=6", err, sizeof err), 0);
  if (dpt_net_add_ops(n, &gain_ops, "a_gain_layer_with_a_long_name_of_more_than_forty_seven_chars",
                      "", err, sizeof err))
    fail_msg("%s", err);
  assert_int_equal(dpt_net_add(n, "tanh", "act", "", err, sizeof err), 0);
  assert_int_equal(dpt_net_add(n, "linear", "fc2", "out=3", err, sizeof err), 0);
  assert_int_equal(dpt_net_set_loss(n, "mse", err, sizeof err), 0);
  return n;
}

typedef struct {
  size_t off[8], len[8];
  int calls;
} readies;

static void on_ready(void *ctx, size_t offset, size_t len) {
  readies *r = ctx;
  assert_true(r->calls < 8);
  r->off[r->calls] = offset, r->len[r->calls] = len;
  r->calls++;
}

static void test_user_layer_in_a_net(void **state) {
  (void)state;
  dpt_net *n = make_net();
  int nt, ns;
  const dpt_tensor *t = dpt_net_tensors(n, &nt);
  const dpt_layer_span *s = dpt_net_spans(n, &ns);
  assert_int_equal(nt, 5);
  assert_int_equal(ns, 3);
  assert_string_equal(t[2].name, "a_gain_layer_with_a_long_name_of_more_than_forty_seven_chars"
                                 ".weight");
  assert_int_equal(t[2].rank, 1);
  assert_int_equal(t[2].dims[0], 6);
  assert_int_equal(dpt_net_nparams(n), 6 * 4 + 6 + 6 + 3 * 6 + 3);
  assert_int_equal(s[1].first_tensor, 2);
  assert_int_equal(s[1].offset, 30);
  assert_int_equal(s[1].len, 6);
  size_t np = dpt_net_nparams(n);
  float *p = malloc(np * sizeof *p), *g = calloc(np, sizeof *g);
  float x[N * IN], y[N * 3];
  dpt_rng r;
  dpt_rng_seed(&r, 5, 0);
  dpt_layer_rng src = {uniform, &r};
  dpt_net_init(n, p, &src);
  for (int i = 0; i < N * IN; i++) x[i] = (float)dpt_rng_normal(&r);
  for (int i = 0; i < N * 3; i++) y[i] = (float)dpt_rng_normal(&r);
  char err[DPT_ERR_LEN] = "";
  double loss = 0;
  int64_t correct = 0;
  readies rd = {0};
  assert_int_equal(dpt_net_loss_grad(n, p, g, 1.0f, x, NULL, y, N, &loss, &correct, on_ready, &rd,
                                     err, sizeof err),
                   0);
  assert_int_equal(rd.calls, 3); /* one per layer with parameters, last to first */
  for (int k = 0; k < 3; k++) {
    assert_int_equal(rd.off[k], s[2 - k].offset);
    assert_int_equal(rd.len[k], s[2 - k].len);
  }
  /* every parameter's gradient, fc1's included (it depends on gain's input gradient) */
  for (size_t i = 0; i < np; i++) {
    float p0 = p[i], eps = 1e-2f;
    double lp, lm;
    p[i] = p0 + eps;
    assert_int_equal(dpt_net_evaluate(n, p, x, NULL, y, N, &lp, &correct, err, sizeof err), 0);
    p[i] = p0 - eps;
    assert_int_equal(dpt_net_evaluate(n, p, x, NULL, y, N, &lm, &correct, err, sizeof err), 0);
    p[i] = p0;
    double num = (lp - lm) / ((double)(p0 + eps) - (double)(p0 - eps));
    if (fabs(num - g[i]) > 3e-3 * fabs(num) + 2e-4)
      fail_msg("parameter %zu: analytic %g, numeric %g", i, g[i], num);
  }
  free(p), free(g);
  dpt_net_free(n);
}

static void test_bad_layers_are_named(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "";
  dpt_shape in = {2, {3, 4}};
  dpt_net *n;
  assert_int_equal(dpt_net_create("test", &in, &n, err, sizeof err), 0);
  assert_int_equal(dpt_net_add(n, "linear", "fc1", "", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "fc1"));
  assert_non_null(strstr(err, "'out'"));
  assert_int_equal(dpt_net_add(n, "linear", "fc1", "out=x", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "out='x'"));
  assert_int_equal(dpt_net_add(n, "conv9d", "c1", "", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "'conv9d'"));
  assert_int_equal(dpt_net_add(n, "relu", "r1", "inplace=1", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "r1"));
  /* nothing was added by the failures; the [3, 4] sample is flattened by linear */
  assert_int_equal(dpt_net_nlayers(n), 0);
  assert_int_equal(dpt_net_add(n, "linear", "fc1", "out=2", err, sizeof err), 0);
  assert_int_equal(dpt_net_tensors(n, NULL)[0].dims[1], 12);
  assert_int_equal(dpt_net_add(n, "linear", "fc1", "out=2", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "two layers are named 'fc1'"));
  assert_int_equal(dpt_net_nparams(n), 2 * 12 + 2);
  /* a net used for a pass, then grown, lays its buffers out again for the new layers */
  float p[64] = {0}, g[64] = {0}, x[3 * 12] = {0}, y[3 * 3] = {0};
  double loss;
  int64_t correct;
  assert_int_equal(dpt_net_set_loss(n, "mse", err, sizeof err), 0);
  assert_int_equal(
      dpt_net_loss_grad(n, p, g, 1.0f, x, NULL, y, 3, &loss, &correct, NULL, NULL, err, sizeof err),
      0);
  assert_int_equal(dpt_net_add(n, "relu", "r1", "", err, sizeof err), 0);
  assert_int_equal(dpt_net_add(n, "linear", "fc2", "out=3", err, sizeof err), 0);
  assert_true(dpt_net_nparams(n) <= 64);
  assert_int_equal(
      dpt_net_loss_grad(n, p, g, 1.0f, x, NULL, y, 3, &loss, &correct, NULL, NULL, err, sizeof err),
      0);
  assert_true(loss == 0.0); /* zero weights, zero targets */
  dpt_net_free(n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_user_layer_in_a_net),
      cmocka_unit_test(test_bad_layers_are_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_gpt_train_ref.c — 20 AdamW steps of a tiny tied GPT (`gpt:2-2-16`, T 8, V 11) match
 * the same training in torch 1.13 (ref/gpt_train.txt, written by gen_gpt_train_ref.py: nanoGPT's
 * GPT with lm_head.weight = wte.weight, dropout 0), started from torch's initial parameters on
 * the same batches: each step's loss and every final parameter agree within TRAIN_TOL
 * norm-relative (attention's key bias aside: see without_key_bias). The model holds exactly torch's
 * named_parameters (the tied weight once), and a deterministic-mode pass (segments, seg_grad) gives
 * the tied weight the same gradient as a plain one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "runtime.h"
#include "train_ref.h"

/* Two segment sums of the same gradient differ by rounding only (float sums in another order):
 * far below the comparison's tolerance. */
#define SEG_TOL 1e-6

static ref_file ref;

/* The k third of attention's c_attn.bias has zero gradient in exact arithmetic (adding b_k to
 * every key adds q.b_k to a whole row of scores, which softmax ignores): its AdamW steps are
 * rounding noise divided by its own tiny second moment, different in any two implementations.
 * It is compared through the losses it cannot affect; its q and v thirds are compared here. */
static int without_key_bias(const dpt_tensor *t, int k, size_t *lo, size_t *hi) {
  static const char suffix[] = ".c_attn.bias";
  size_t len = strlen(t->name), c = t->numel / 3, sl = sizeof suffix - 1;
  int qkv = len > sl && !strcmp(t->name + len - sl, suffix);
  if (!qkv) {
    *lo = 0, *hi = t->numel;
    return k == 0;
  }
  if (k > 1) return 0;
  *lo = k ? 2 * c : 0, *hi = k ? 3 * c : c;
  return 1;
}

/* seg_grad that adds each segment's range into a gradient buffer */
static void add_seg(void *ctx, int seg, size_t offset, size_t len, const float *g) {
  (void)seg;
  float *grad = ctx;
  for (size_t i = 0; i < len; i++) grad[offset + i] += g[i];
}

static void test_tiny_tied_gpt_trains_as_torch(void **state) {
  (void)state;
  ref_load(&ref, "gpt_train.txt");
  int n, steps, batches, t, v, nl, nh, c;
  double lr, b1, b2, eps, wd;
  assert_int_equal(sscanf(ref.config, "%d %d %d %d %d %d %d %d %lf %lf %lf %lf %lf", &n, &steps,
                          &batches, &t, &v, &nl, &nh, &c, &lr, &b1, &b2, &eps, &wd),
                   13);
  char spec[64], err[DPT_ERR_LEN] = "";
  snprintf(spec, sizeof spec, "gpt:%d-%d-%d", nl, nh, c);
  dpt_model_data data = {
      .sample = {1, {t}}, .features = t, .labels = 1, .classes = v, .targets = 1};
  dpt_model m = {0};
  if (dpt_model_create(spec, "relu", "ce", &data, &m, err, sizeof err)) fail_msg("%s", err);
  /* torch's named_parameters of the tied model are dpt's tensors: lm_head.weight is wte's */
  assert_int_equal(ref_count(&ref, "init."), m.ntensors);
  assert_null(dpt_model_tensor(&m, "lm_head.weight"));
  float *params = calloc(m.nparams, sizeof *params), *grad = calloc(m.nparams, sizeof *grad),
        *grad2 = calloc(m.nparams, sizeof *grad2);
  assert_true(params && grad && grad2);
  ref_load_params(&ref, "init.", m.tensors, m.ntensors, params);
  size_t rows = (size_t)n * (size_t)t;
  const float *x = ref_find(&ref, "x")->v, *yf = ref_find(&ref, "y")->v;
  const float *want_loss = ref_find(&ref, "loss")->v;
  assert_int_equal(ref_find(&ref, "loss")->count, (size_t)steps);
  int32_t *labels = malloc(rows * (size_t)batches * sizeof *labels);
  float *losses = malloc((size_t)steps * sizeof *losses);
  assert_true(labels && losses);
  for (size_t i = 0; i < rows * (size_t)batches; i++) labels[i] = (int32_t)yf[i];

  /* deterministic mode's pass: two segments, each segment's gradient through seg_grad */
  double l1 = 0, l2 = 0;
  int64_t ok = 0;
  if (m.loss_grad(&m, params, grad, 1.0f / (float)n, x, labels, NULL, (size_t)n, &l1, &ok, NULL,
                  NULL, err, sizeof err))
    fail_msg("%s", err);
  dpt_layer_pass p = {.train = 1, .nseg = 2, .seg_grad = add_seg, .seg_ctx = grad2};
  if (m.loss_grad_pass(&m, params, grad2, 1.0f / (float)n, x, labels, NULL, (size_t)n, &l2, &ok, &p,
                       err, sizeof err))
    fail_msg("%s", err);
  const dpt_tensor *wte = dpt_model_tensor(&m, "transformer.wte.weight");
  assert_non_null(wte);
  double dseg = ref_rel(grad2 + wte->offset, grad + wte->offset, wte->numel);
  printf("tied weight's gradient, 2 segments vs 1: norm-relative difference %.3g\n", dseg);
  if (!(dseg <= SEG_TOL)) fail_msg("segmented tied gradient differs by %.3g", dseg);
  assert_true(fabs(l1 - l2) <= 1e-6 * fabs(l1));

  dpt_solver_params sp;
  dpt_optim_solver_defaults(DPT_SOLVER_ADAMW, &sp);
  sp.lr = lr, sp.beta1 = b1, sp.beta2 = b2, sp.eps = eps, sp.weight_decay = wd;
  dpt_solver *solver;
  assert_int_equal(dpt_solver_create(&sp, m.nparams, &solver, err, sizeof err), 0);
  for (int s = 0; s < steps; s++) {
    size_t b = (size_t)(s % batches);
    memset(grad, 0, m.nparams * sizeof *grad);
    double loss = 0;
    if (m.loss_grad(&m, params, grad, 1.0f / (float)n, x + b * rows, labels + b * rows, NULL,
                    (size_t)n, &loss, &ok, NULL, NULL, err, sizeof err))
      fail_msg("step %d: %s", s, err);
    losses[s] = (float)(loss / (double)n);
    dpt_solver_step(solver, params, grad);
  }
  double worst = ref_rel(losses, want_loss, (size_t)steps);
  printf("losses (%.6f ... %.6f): norm-relative difference %.3g\n", losses[0], losses[steps - 1],
         worst);
  if (!(worst <= TRAIN_TOL)) fail_msg("losses differ by %.3g > %g", worst, TRAIN_TOL);
  ref_check_tensors_ranges(&ref, "final.", m.tensors, m.ntensors, params, without_key_bias);
  dpt_solver_free(solver);
  free(labels), free(losses), free(params), free(grad), free(grad2);
  m.destroy(&m);
  ref_free(&ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_tied_gpt_trains_as_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_cnn_train_ref.c — 20 steps of a small CNN with BatchNorm and Dropout match the same
 * training in torch 1.13 (ref/cnn_train.txt, written by gen_cnn_train_ref.py): the dpt_net
 * conv2d -> batchnorm2d -> relu -> maxpool2d -> dropout -> flatten -> linear with ce loss,
 * started from torch's initial parameters and stepped by dpt_solver (SGD with momentum) on the
 * same batches, with dropout's pass (seed, step, sample0 0) giving torch the same masks; each
 * step's loss, the final parameters and the BatchNorm buffers agree within TRAIN_TOL
 * norm-relative per tensor. */
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

static ref_file ref;
static int cfg_n, cfg_steps, cfg_batches;
static double cfg_lr, cfg_momentum, cfg_p;
static unsigned long long cfg_seed;

static double uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

static void test_small_cnn_trains_as_torch(void **state) {
  (void)state;
  ref_load(&ref, "cnn_train.txt");
  assert_int_equal(sscanf(ref.config, "%d %d %d %lf %lf %lf %llu", &cfg_n, &cfg_steps, &cfg_batches,
                          &cfg_lr, &cfg_momentum, &cfg_p, &cfg_seed),
                   7);
  char err[DPT_ERR_LEN] = "", opts[64];
  dpt_shape in = {3, {1, 8, 8}};
  dpt_net *net;
  assert_int_equal(dpt_net_create("cnn", &in, &net, err, sizeof err), 0);
  snprintf(opts, sizeof opts, "p=%.9g", cfg_p);
  const char *const spec[][3] = {{"conv2d", "conv", "out=4,kernel=3,padding=1"},
                                 {"batchnorm2d", "bn", ""},
                                 {"relu", "relu", ""},
                                 {"maxpool2d", "pool", "kernel=2"},
                                 {"dropout", "drop", opts},
                                 {"flatten", "flat", ""},
                                 {"linear", "fc", "out=3"}};
  for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++)
    if (dpt_net_add(net, spec[i][0], spec[i][1], spec[i][2], err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(dpt_net_layer(net, 4)->index, 4); /* the recording's dropout layer */
  assert_int_equal(dpt_net_set_loss(net, "ce", err, sizeof err), 0);
  size_t np = dpt_net_nparams(net), nbuf;
  int nt, nb;
  const dpt_tensor *tt = dpt_net_tensors(net, &nt), *bt = dpt_net_buffers(net, &nb);
  float *params = malloc(np * sizeof *params), *grad = malloc(np * sizeof *grad);
  assert_true(params && grad);
  dpt_rng r;
  dpt_rng_seed(&r, 1, 0);
  dpt_layer_rng lr = {uniform, &r};
  dpt_net_init(net, params, &lr); /* buffers to torch's initial values */
  float *buf = dpt_net_buffer_data(net, &nbuf);
  ref_load_params(&ref, "init.", tt, nt, params);
  dpt_solver_params sp;
  dpt_optim_solver_defaults(DPT_SOLVER_SGD, &sp);
  sp.lr = cfg_lr, sp.momentum = cfg_momentum;
  dpt_solver *solver;
  assert_int_equal(dpt_solver_create(&sp, np, &solver, err, sizeof err), 0);
  const float *x = ref_find(&ref, "x")->v, *lab = ref_find(&ref, "labels")->v,
              *want_loss = ref_find(&ref, "loss")->v;
  assert_int_equal(ref_find(&ref, "loss")->count, (size_t)cfg_steps);
  size_t n = (size_t)cfg_n, xin = 64;
  int32_t *labels = malloc(n * (size_t)cfg_batches * sizeof *labels);
  float *losses = malloc((size_t)cfg_steps * sizeof *losses);
  assert_true(labels && losses);
  for (size_t i = 0; i < n * (size_t)cfg_batches; i++) labels[i] = (int32_t)lab[i];
  for (int s = 0; s < cfg_steps; s++) {
    size_t b = (size_t)(s % cfg_batches);
    memset(grad, 0, np * sizeof *grad);
    dpt_layer_pass p = {.train = 1, .seed = cfg_seed, .step = s, .sample0 = 0, .nseg = 1};
    double loss = 0;
    if (dpt_net_loss_grad_pass(net, params, grad, 1.0f / (float)n, x + b * n * xin, labels + b * n,
                               NULL, n, &loss, NULL, &p, err, sizeof err))
      fail_msg("step %d: %s", s, err);
    losses[s] = (float)(loss / (double)n);
    dpt_solver_step(solver, params, grad);
  }
  double worst = ref_rel(losses, want_loss, (size_t)cfg_steps);
  printf("losses: norm-relative difference %.3g\n", worst);
  if (!(worst <= TRAIN_TOL)) fail_msg("losses differ by %.3g > %g", worst, TRAIN_TOL);
  ref_check_tensors(&ref, "final.", tt, nt, params);
  ref_check_tensors(&ref, "final.", bt, nb, buf);
  dpt_solver_free(solver);
  free(labels), free(losses), free(params), free(grad);
  dpt_net_free(net);
  ref_free(&ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_cnn_trains_as_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

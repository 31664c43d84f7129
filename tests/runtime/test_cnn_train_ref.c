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

/* Issue 19's target for the training comparison. */
#define TRAIN_TOL 1e-5

#define MAX_T 32
typedef struct {
  char name[48];
  size_t count;
  float *v;
} rtensor;

static rtensor tensors[MAX_T];
static int ntensors;
static int cfg_n, cfg_steps, cfg_batches;
static double cfg_lr, cfg_momentum, cfg_p;
static unsigned long long cfg_seed;

static void load(void) {
  char path[1024];
  const char *f = __FILE__, *slash = strrchr(f, '/');
  snprintf(path, sizeof path, "%.*sref/cnn_train.txt", slash ? (int)(slash - f + 1) : 0, f);
  FILE *fp = fopen(path, "rb");
  if (!fp) fail_msg("cannot open %s", path);
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  rewind(fp);
  char *s = malloc((size_t)len + 1), *pos = NULL;
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)len, fp), (size_t)len);
  s[len] = 0;
  fclose(fp);
  for (char *line = strtok_r(s, "\n", &pos); line; line = strtok_r(NULL, "\n", &pos)) {
    if (!strncmp(line, "config ", 7)) {
      assert_int_equal(sscanf(line, "config %d %d %d %lf %lf %lf %llu", &cfg_n, &cfg_steps,
                              &cfg_batches, &cfg_lr, &cfg_momentum, &cfg_p, &cfg_seed),
                       7);
    } else if (!strncmp(line, "t ", 2)) {
      assert_true(ntensors < MAX_T);
      rtensor *t = &tensors[ntensors++];
      int used = 0;
      assert_int_equal(sscanf(line, "t %47s %zu %n", t->name, &t->count, &used), 2);
      t->v = malloc(t->count * sizeof *t->v);
      assert_non_null(t->v);
      char *p = line + used, *e;
      for (size_t i = 0; i < t->count; i++, p = e) {
        t->v[i] = strtof(p, &e);
        if (e == p) fail_msg("tensor %s is short at %zu", t->name, i);
      }
    }
  }
  free(s);
}

static const rtensor *find(const char *name) {
  for (int i = 0; i < ntensors; i++)
    if (!strcmp(tensors[i].name, name)) return &tensors[i];
  fail_msg("no tensor '%s' in the recording", name);
  return NULL;
}

static double rel(const float *got, const float *want, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; i++)
    d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]), r += (double)want[i] * want[i];
  return r > 0 ? sqrt(d / r) : sqrt(d);
}

static double uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

static void test_small_cnn_trains_as_torch(void **state) {
  (void)state;
  load();
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
  for (int i = 0; i < nt; i++) {
    char name[64];
    snprintf(name, sizeof name, "init.%s", tt[i].name);
    const rtensor *t = find(name);
    assert_int_equal(t->count, tt[i].numel);
    memcpy(params + tt[i].offset, t->v, t->count * sizeof *params);
  }
  dpt_solver_params sp;
  dpt_optim_solver_defaults(DPT_SOLVER_SGD, &sp);
  sp.lr = cfg_lr, sp.momentum = cfg_momentum;
  dpt_solver *solver;
  assert_int_equal(dpt_solver_create(&sp, np, &solver, err, sizeof err), 0);
  const float *x = find("x")->v, *lab = find("labels")->v, *want_loss = find("loss")->v;
  assert_int_equal(find("loss")->count, (size_t)cfg_steps);
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
  double worst = rel(losses, want_loss, (size_t)cfg_steps);
  printf("losses: norm-relative difference %.3g\n", worst);
  if (!(worst <= TRAIN_TOL)) fail_msg("losses differ by %.3g > %g", worst, TRAIN_TOL);
  for (int i = 0; i < nt; i++) {
    char name[64];
    snprintf(name, sizeof name, "final.%s", tt[i].name);
    double d = rel(params + tt[i].offset, find(name)->v, tt[i].numel);
    printf("%s: norm-relative difference %.3g\n", tt[i].name, d);
    if (!(d <= TRAIN_TOL)) fail_msg("%s differs by %.3g > %g", tt[i].name, d, TRAIN_TOL);
  }
  for (int i = 0; i < nb; i++) {
    char name[64];
    snprintf(name, sizeof name, "final.%s", bt[i].name);
    double d = rel(buf + bt[i].offset, find(name)->v, bt[i].numel);
    printf("%s: norm-relative difference %.3g\n", bt[i].name, d);
    if (!(d <= TRAIN_TOL)) fail_msg("%s differs by %.3g > %g", bt[i].name, d, TRAIN_TOL);
  }
  dpt_solver_free(solver);
  free(labels), free(losses), free(params), free(grad);
  dpt_net_free(net);
  for (int i = 0; i < ntensors; i++) free(tensors[i].v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_cnn_trains_as_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_model_file.c — models described in a file, through the registry as `dpt train` builds
 * them: a file that spells out the MLP trains bitwise as mlp:12-5-3 does (same tensors, init,
 * loss, gradient and evaluation), a preset copied into a file is the same architecture (same
 * m->kind) while another activation or width is not, the shape rules (a [H, W] sample feeds a
 * conv as one channel; [model] input reshapes), label smoothing reaches the loss, and the
 * model's tables survive the wrapper (destroy leaves nothing behind; ASan checks). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define N 6

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

static char *tmp_path(const char *name) {
  static char buf[4][1024];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", DPT_TEST_TMP, name);
  return p;
}

static dpt_model_data flat_data(int64_t features, int64_t classes) {
  dpt_model_data d = {0};
  d.sample.rank = 1;
  d.sample.dims[0] = features;
  d.features = features;
  d.labels = 1;
  d.classes = classes;
  d.targets = 1;
  return d;
}

static void create(const char *spec, const dpt_model_data *d, dpt_model *m) {
  char err[DPT_ERR_LEN] = "";
  int rc = dpt_model_create(spec, "relu", "ce", d, m, err, sizeof err);
  if (rc) fail_msg("%s: %s", spec, err);
  assert_int_equal(dpt_model_check(m, err, sizeof err), 0);
}

/* One forward/backward and an evaluation of m on fixed data: loss, correct, gradient. */
static void run(dpt_model *m, float *params, float *grad, double *loss, int64_t *correct,
                double *eval) {
  char err[DPT_ERR_LEN] = "";
  float x[N * 12];
  int32_t y[N];
  dpt_rng r;
  dpt_rng_seed(&r, 5, 1);
  for (int i = 0; i < N * 12; i++) x[i] = (float)dpt_rng_normal(&r);
  for (int i = 0; i < N; i++) y[i] = (int32_t)dpt_rng_below(&r, 3);
  assert_int_equal(m->init(m, params, 42, err, sizeof err), 0);
  memset(grad, 0, m->nparams * sizeof *grad);
  *loss = 0, *correct = 0;
  assert_int_equal(m->loss_grad(m, params, grad, 1.0f, x, y, NULL, N, loss, correct, NULL, NULL,
                                err, sizeof err),
                   0);
  int64_t c2 = 0;
  *eval = 0;
  assert_int_equal(m->evaluate(m, params, x, y, NULL, N, eval, &c2, err, sizeof err), 0);
  assert_int_equal(c2, *correct);
}

/* The MLP written as a file is the built-in MLP, bit for bit. */
static void test_file_mlp_equals_builtin(void **state) {
  (void)state;
  const char *path = tmp_path("mlp.ini");
  write_file(path, "[model]\nloss = ce\n[fc1]\nkind = linear\nout = 5\n[act1]\nkind = relu\n"
                   "[fc2]\nkind = linear\nout = 3\n");
  dpt_model_data d = flat_data(12, 3);
  dpt_model a, b;
  create("mlp:12-5-3", &d, &a);
  char spec[1100];
  snprintf(spec, sizeof spec, "file:%s", path);
  create(spec, &d, &b);
  assert_int_equal(a.nparams, b.nparams);
  assert_int_equal(a.ntensors, b.ntensors);
  for (int t = 0; t < a.ntensors; t++) {
    assert_string_equal(a.tensors[t].name, b.tensors[t].name);
    assert_int_equal(a.tensors[t].numel, b.tensors[t].numel);
  }
  assert_int_equal(b.nlayers, 2);
  assert_int_equal(b.wants_labels, 1);
  assert_int_equal(b.out_features, 3);
  assert_non_null(strstr(b.kind, "net:"));
  float *pa = malloc(a.nparams * sizeof(float)), *pb = malloc(b.nparams * sizeof(float));
  float *ga = malloc(a.nparams * sizeof(float)), *gb = malloc(b.nparams * sizeof(float));
  double la, lb, ea, eb;
  int64_t ca, cb;
  run(&a, pa, ga, &la, &ca, &ea);
  run(&b, pb, gb, &lb, &cb, &eb);
  assert_memory_equal(pa, pb, a.nparams * sizeof(float));
  assert_memory_equal(ga, gb, a.nparams * sizeof(float));
  assert_true(la == lb && ea == eb && ca == cb);
  assert_true(la > 0);
  free(pa), free(pb), free(ga), free(gb);
  a.destroy(&a);
  b.destroy(&b);
  assert_null(b.ctx);
}

/* The model's kind is its architecture: a preset's text in a file is the same model (a
 * checkpoint of one loads into the other), another activation or width is not. */
static void test_identity(void **state) {
  (void)state;
  dpt_model_data d = flat_data(784, 10);
  dpt_model p, same, act, wide;
  create("cnn:tiny", &d, &p);
  const char *tiny = "[model]\ninput = 1x28x28\n[conv1]\nkind = conv2d\nout = 4\nkernel = 3\n"
                     "padding = 1\n[relu1]\nkind = relu\n[pool1]\nkind = maxpool2d\nkernel = 2\n"
                     "[flat]\nkind = flatten\n[fc]\nkind = linear\nout = 10\n";
  write_file(tmp_path("same.ini"), tiny);
  char *text = strdup(tiny), *at = strstr(text, "kind = relu");
  assert_non_null(at);
  memcpy(at, "kind = tanh", 11);
  write_file(tmp_path("act.ini"), text);
  at = strstr(text, "out = 4");
  at[6] = '6';
  write_file(tmp_path("wide.ini"), text);
  free(text);
  create(tmp_path("same.ini"), &d, &same); /* a bare path ending in .ini */
  create(tmp_path("act.ini"), &d, &act);
  create(tmp_path("wide.ini"), &d, &wide);
  assert_string_equal(p.kind, same.kind);
  assert_string_not_equal(p.kind, act.kind);
  assert_string_not_equal(p.kind, wide.kind);
  assert_string_not_equal(act.kind, wide.kind);
  assert_int_equal(p.nparams, 7890);
  assert_int_equal(p.input.rank, 3);
  assert_int_equal(p.input.dims[0], 1);
  p.destroy(&p), same.destroy(&same), act.destroy(&act), wide.destroy(&wide);
}

/* A [H, W] sample feeds a conv as [1, H, W]; without a conv first it stays [H, W]; input
 * reshapes a flat sample; a file without input needs the dataset (DPT_ENOENT). */
static void test_shapes(void **state) {
  (void)state;
  dpt_model_data img = {0};
  img.sample.rank = 2, img.sample.dims[0] = 6, img.sample.dims[1] = 5;
  img.features = 30, img.labels = 1, img.classes = 2, img.targets = 1;
  write_file(tmp_path("conv.ini"),
             "[c]\nkind = conv2d\nout = 2\nkernel = 3\n[f]\nkind = flatten\n[o]\nkind = "
             "linear\nout = 2\n");
  write_file(tmp_path("dense.ini"), "[o]\nkind = linear\nout = 2\n");
  dpt_model m;
  create(tmp_path("conv.ini"), &img, &m);
  assert_int_equal(m.input.rank, 3);
  assert_int_equal(m.input.dims[0], 1);
  assert_int_equal(m.input.dims[1], 6);
  assert_int_equal(m.input.dims[2], 5);
  assert_non_null(dpt_model_tensor(&m, "c.weight"));
  assert_int_equal(dpt_model_tensor(&m, "o.weight")->dims[1], 2 * 4 * 3);
  m.destroy(&m);
  create(tmp_path("dense.ini"), &img, &m);
  assert_int_equal(m.input.rank, 2);
  m.destroy(&m);
  char err[DPT_ERR_LEN] = "";
  assert_int_equal(dpt_model_create(tmp_path("conv.ini"), "relu", "ce", NULL, &m, err, sizeof err),
                   DPT_ENOENT);
  assert_non_null(strstr(err, "the input shape comes from the dataset"));
  dpt_model_data flat = flat_data(30, 2);
  write_file(tmp_path("reshape.ini"), "[model]\ninput = 1x5x6\n[c]\nkind = conv2d\nout = 2\n"
                                      "kernel = 3\n[o]\nkind = linear\nout = 2\n");
  create(tmp_path("reshape.ini"), &flat, &m);
  assert_int_equal(m.input.dims[1], 5);
  assert_int_equal(dpt_model_tensor(&m, "o.weight")->dims[1], 2 * 3 * 4);
  m.destroy(&m);
  /* the same file without a dataset: input is enough */
  create(tmp_path("reshape.ini"), NULL, &m);
  m.destroy(&m);
}

/* label_smoothing in [model] reaches the loss: a higher loss on confident correct logits. */
static void test_label_smoothing(void **state) {
  (void)state;
  dpt_model_data d = flat_data(12, 3);
  write_file(tmp_path("ls0.ini"), "[fc]\nkind = linear\nout = 3\n");
  write_file(tmp_path("ls1.ini"), "[model]\nlabel_smoothing = 0.2\n[fc]\nkind = linear\nout = 3\n");
  dpt_model a, b;
  create(tmp_path("ls0.ini"), &d, &a);
  create(tmp_path("ls1.ini"), &d, &b);
  assert_string_equal(a.kind, b.kind); /* the same architecture */
  float *p = malloc(a.nparams * sizeof(float)), *g = malloc(a.nparams * sizeof(float));
  double la, lb, ea, eb;
  int64_t ca, cb;
  run(&a, p, g, &la, &ca, &ea);
  run(&b, p, g, &lb, &cb, &eb);
  assert_true(la != lb);
  assert_int_equal(ca, cb);
  free(p), free(g);
  a.destroy(&a), b.destroy(&b);
}

/* show and torch describe the same layers. */
static void test_show_and_torch(void **state) {
  (void)state;
  char err[DPT_ERR_LEN] = "", *text = NULL;
  assert_int_equal(dpt_model_show("cnn:tiny", "relu", "ce", NULL, &text, err, sizeof err), 0);
  assert_non_null(strstr(text, "conv1"));
  assert_non_null(strstr(text, "[4, 14, 14]"));
  assert_non_null(strstr(text, "7,890"));
  free(text);
  assert_int_equal(dpt_model_torch("cnn:tiny", "relu", "ce", NULL, &text, err, sizeof err), 0);
  assert_non_null(strstr(text, "self.conv1 = nn.Conv2d(1, 4, kernel_size=(3, 3), stride=1, "
                               "padding=1, groups=1)"));
  assert_non_null(strstr(text, "self.fc = nn.Linear(784, 10)"));
  assert_non_null(strstr(text, "x = x.reshape(x.shape[0], 1, 28, 28)"));
  free(text);
  assert_int_equal(dpt_model_torch("cnn:nope", "relu", "ce", NULL, &text, err, sizeof err),
                   DPT_EINVAL);
  assert_null(text);
  assert_non_null(strstr(err, "cnn:tiny"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_mlp_equals_builtin),
      cmocka_unit_test(test_identity),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_label_smoothing),
      cmocka_unit_test(test_show_and_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

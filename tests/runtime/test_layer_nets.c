/* test_layer_nets.c — the new layers composed in nets as models use them: a small transformer
 * (embedding, layernorm, attention, residual adds from earlier layers, linear on the last
 * dimension, gelu_tanh, dropout) and a CNN with both BatchNorms, SiLU and a residual add; every
 * parameter's gradient of a training pass agrees with central finite differences of the same
 * pass (same dropout mask). Also: the layers' initialisation (torch's), and setup mistakes
 * name the layer and what was expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static double uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

typedef struct {
  const char *kind, *name, *opts;
} spec;

static dpt_net *make(const dpt_shape *in, const spec *s, int n, float **params, uint64_t seed) {
  char err[DPT_ERR_LEN] = "";
  dpt_net *net;
  assert_int_equal(dpt_net_create("net", in, &net, err, sizeof err), 0);
  for (int i = 0; i < n; i++)
    if (dpt_net_add(net, s[i].kind, s[i].name, s[i].opts, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(dpt_net_set_loss(net, "ce", err, sizeof err), 0);
  *params = malloc(dpt_net_nparams(net) * sizeof **params);
  assert_non_null(*params);
  dpt_rng r;
  dpt_rng_seed(&r, seed, 0);
  dpt_layer_rng lr = {uniform, &r};
  dpt_net_init(net, *params, &lr);
  return net;
}

static double loss_of(dpt_net *net, const float *p, float *g, const float *x, const int32_t *labels,
                      size_t n) {
  char err[DPT_ERR_LEN] = "";
  dpt_layer_pass pass = {.train = 1, .seed = 9, .step = 3, .sample0 = 16, .nseg = 1};
  double loss = 0;
  if (dpt_net_loss_grad_pass(net, p, g, 1.0f, x, labels, NULL, n, &loss, NULL, &pass, err,
                             sizeof err))
    fail_msg("%s", err);
  return loss;
}

/* every parameter's analytic gradient against central differences of the training pass */
static void gradcheck(dpt_net *net, float *p, const float *x, const int32_t *labels, size_t n) {
  size_t np = dpt_net_nparams(net);
  float *g = calloc(np, sizeof *g), *junk = calloc(np, sizeof *junk);
  assert_true(g && junk);
  loss_of(net, p, g, x, labels, n);
  int nt;
  const dpt_tensor *t = dpt_net_tensors(net, &nt);
  for (size_t i = 0; i < np; i++) {
    float p0 = p[i], eps = 1e-2f;
    p[i] = p0 + eps;
    double lp = loss_of(net, p, junk, x, labels, n);
    p[i] = p0 - eps;
    double lm = loss_of(net, p, junk, x, labels, n);
    p[i] = p0;
    double num = (lp - lm) / ((double)(p0 + eps) - (double)(p0 - eps));
    if (fabs(num - g[i]) > 1e-2 * fabs(num) + 1e-3) {
      const char *name = "?";
      for (int k = 0; k < nt; k++)
        if (i >= t[k].offset && i < t[k].offset + t[k].numel) name = t[k].name;
      fail_msg("parameter %zu (%s): analytic %g, numeric %g", i, name, g[i], num);
    }
  }
  free(g), free(junk);
}

static void test_transformer_gradients(void **state) {
  (void)state;
  static const spec s[] = {
      {"embedding", "emb", "num=7,dim=8"},
      {"layernorm", "ln1", ""},
      {"attention", "attn", "heads=2"},
      {"add", "res1", "from=emb"},
      {"layernorm", "ln2", "eps=1e-5"},
      {"linear", "fc1", "out=16,last=1"},
      {"gelu_tanh", "act", ""},
      {"dropout", "drop", "p=0.2"},
      {"linear", "fc2", "out=8,last=1"},
      {"add", "res2", "from=res1"},
      {"flatten", "flat", ""},
      {"linear", "head", "out=3"},
  };
  dpt_shape in = {1, {4}};
  float *p;
  dpt_net *net = make(&in, s, 12, &p, 3);
  assert_int_equal(dpt_net_out(net)->dims[0], 3);
  assert_int_equal(dpt_net_layer(net, 5)->out.rank, 2); /* [4, 16] */
  assert_int_equal(dpt_net_layer(net, 5)->out.dims[1], 16);
  float x[6 * 4] = {0, 1, 2, 3, 6, 5, 4, 3, 1, 1, 1, 1, 2, 0, 5, 6, 3, 3, 0, 0, 4, 2, 6, 1};
  int32_t labels[6] = {0, 2, 1, 1, 0, 2};
  gradcheck(net, p, x, labels, 6);
  free(p);
  dpt_net_free(net);
}

static void test_cnn_with_batchnorm_gradients(void **state) {
  (void)state;
  static const spec s[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"batchnorm2d", "bn1", ""},
      {"silu", "act1", ""},
      {"add", "res", "from=conv"},
      {"globalavgpool2d", "gap", ""},
      {"flatten", "flat", ""},
      {"linear", "fc1", "out=4"},
      {"batchnorm1d", "bn2", "momentum=0.2"},
      {"tanh", "act2", ""},
      {"linear", "fc2", "out=3"},
  };
  dpt_shape in = {3, {2, 5, 5}};
  float *p;
  dpt_net *net = make(&in, s, 10, &p, 4);
  float x[6 * 50];
  dpt_rng r;
  dpt_rng_seed(&r, 12, 0);
  for (int i = 0; i < 6 * 50; i++) x[i] = (float)dpt_rng_normal(&r);
  int32_t labels[6] = {2, 0, 1, 1, 2, 0};
  gradcheck(net, p, x, labels, 6);
  free(p);
  dpt_net_free(net);
}

/* Nets a and b compute the same function, b with the layers net.c fuses kept apart: the loss,
 * every gradient (two training passes: the second with running statistics moved) and the
 * evaluation outputs are bitwise the same. */
static void same_nets(const dpt_shape *in, const spec *fa, int na, const spec *fb, int nb) {
  float *pa, *pb;
  dpt_net *a = make(in, fa, na, &pa, 4), *b = make(in, fb, nb, &pb, 4);
  size_t np = dpt_net_nparams(a), xin = 1, nout = 6 * 3;
  for (int i = 0; i < in->rank; i++) xin *= (size_t)in->dims[i];
  assert_int_equal(np, dpt_net_nparams(b));
  assert_memory_equal(pa, pb, np * sizeof *pa);
  float *x = malloc(6 * xin * sizeof *x), *oa = malloc(nout * sizeof *oa),
        *ob = malloc(nout * sizeof *ob);
  float *ga = calloc(np, sizeof *ga), *gb = calloc(np, sizeof *gb);
  assert_true(x && oa && ob && ga && gb);
  dpt_rng r;
  dpt_rng_seed(&r, 12, 0);
  for (size_t i = 0; i < 6 * xin; i++) x[i] = (float)dpt_rng_normal(&r);
  int32_t labels[6] = {2, 0, 1, 1, 2, 0};
  for (int step = 0; step < 2; step++) {
    double la = loss_of(a, pa, ga, x, labels, 6), lb = loss_of(b, pb, gb, x, labels, 6);
    assert_memory_equal(&la, &lb, sizeof la);
    assert_memory_equal(ga, gb, np * sizeof *ga);
  }
  char err[DPT_ERR_LEN] = "";
  assert_int_equal(dpt_net_forward(a, pa, x, 6, oa, err, sizeof err), 0);
  assert_int_equal(dpt_net_forward(b, pb, x, 6, ob, err, sizeof err), 0);
  assert_memory_equal(oa, ob, nout * sizeof *oa);
  free(x), free(oa), free(ob), free(ga), free(gb), free(pa), free(pb);
  dpt_net_free(a), dpt_net_free(b);
}

/* net.c fuses a relu into the batchnorm before it (forward) and into the maxpool after it
 * (backward); a layer in between (flatten, dropout p=0: exact identities) keeps them apart. */
static void test_fused_relu_is_unfused(void **state) {
  (void)state;
  static const spec bn_fused[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"batchnorm2d", "bn1", ""},
      {"relu", "act1", ""},
      {"flatten", "flat", ""},
      {"linear", "fc1", "out=4"},
      {"batchnorm1d", "bn2", ""},
      {"relu", "act2", ""},
      {"linear", "fc2", "out=3"},
  };
  static const spec bn_apart[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"batchnorm2d", "bn1", ""},
      {"flatten", "flat", ""},
      {"relu", "act1", ""},
      {"linear", "fc1", "out=4"},
      {"batchnorm1d", "bn2", ""},
      {"flatten", "flat2", ""},
      {"relu", "act2", ""},
      {"linear", "fc2", "out=3"},
  };
  dpt_shape in5 = {3, {2, 5, 5}}, in6 = {3, {2, 6, 6}};
  same_nets(&in5, bn_fused, 8, bn_apart, 9);
  /* batchnorm -> relu -> 2x2 maxpool: both fusions; 6x6 and 5x5 (an uncovered row/column) */
  static const spec pool_fused[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"batchnorm2d", "bn", ""},
      {"relu", "act", ""},
      {"maxpool2d", "pool", "kernel=2"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=3"},
  };
  static const spec pool_apart[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"batchnorm2d", "bn", ""},
      {"dropout", "id1", "p=0"},
      {"relu", "act", ""},
      {"dropout", "id2", "p=0"},
      {"maxpool2d", "pool", "kernel=2"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=3"},
  };
  same_nets(&in6, pool_fused, 6, pool_apart, 8);
  same_nets(&in5, pool_fused, 6, pool_apart, 8);
  /* conv -> relu -> overlapping and padded max-pools (the general paths), relu with its own
   * output */
  static const spec gen_fused[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"relu", "act", ""},
      {"maxpool2d", "pool", "kernel=3,stride=2,padding=1"},
      {"conv2d", "conv2", "out=3,kernel=3,padding=1"},
      {"relu", "act2", ""},
      {"maxpool2d", "pool2", "kernel=2,stride=1"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=3"},
  };
  static const spec gen_apart[] = {
      {"conv2d", "conv", "out=3,kernel=3,padding=1"},
      {"relu", "act", ""},
      {"dropout", "id", "p=0"},
      {"maxpool2d", "pool", "kernel=3,stride=2,padding=1"},
      {"conv2d", "conv2", "out=3,kernel=3,padding=1"},
      {"relu", "act2", ""},
      {"dropout", "id2", "p=0"},
      {"maxpool2d", "pool2", "kernel=2,stride=1"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=3"},
  };
  same_nets(&in6, gen_fused, 8, gen_apart, 10);
}

static void test_initialisation_is_torchs(void **state) {
  (void)state;
  static const spec s[] = {{"embedding", "emb", "num=500,dim=40"},
                           {"layernorm", "ln", ""},
                           {"attention", "attn", "heads=4"},
                           {"batchnorm1d", "bn", ""}};
  dpt_shape in = {1, {3}};
  float *p;
  dpt_net *net = make(&in, s, 4, &p, 5);
  int nt;
  const dpt_tensor *t = dpt_net_tensors(net, &nt);
  assert_int_equal(nt, 1 + 2 + 4 + 2);
  /* embedding: N(0, 1) */
  double m = 0, v = 0;
  for (size_t i = 0; i < t[0].numel; i++) m += p[t[0].offset + i];
  m /= (double)t[0].numel;
  for (size_t i = 0; i < t[0].numel; i++) v += (p[t[0].offset + i] - m) * (p[t[0].offset + i] - m);
  v /= (double)t[0].numel;
  assert_true(fabs(m) < 0.03 && fabs(v - 1.0) < 0.05);
  /* layernorm and batchnorm: ones and zeros */
  for (int k = 1; k <= 7; k += 6)
    for (size_t i = 0; i < t[k].numel; i++)
      assert_true(p[t[k].offset + i] == 1.0f && p[t[k + 1].offset + i] == 0.0f);
  /* attention: both Linear uniform within 1/sqrt(C = 40), names as torch's */
  assert_string_equal(t[3].name, "attn.c_attn.weight");
  assert_string_equal(t[6].name, "attn.c_proj.bias");
  assert_int_equal(t[3].dims[0], 120);
  double bound = 1.0 / sqrt(40.0), mx = 0;
  for (int k = 3; k <= 6; k++)
    for (size_t i = 0; i < t[k].numel; i++) mx = fmax(mx, fabs(p[t[k].offset + i]));
  assert_true(mx <= bound && mx > 0.9 * bound);
  /* batchnorm's buffers */
  int nb;
  const dpt_tensor *b = dpt_net_buffers(net, &nb);
  float *bd = dpt_net_buffer_data(net, NULL);
  assert_int_equal(nb, 3);
  assert_int_equal(b[0].numel, 3); /* [3, 40] samples: 3 channels */
  for (size_t i = 0; i < b[0].numel; i++)
    assert_true(bd[b[0].offset + i] == 0.0f && bd[b[1].offset + i] == 1.0f);
  assert_true(bd[b[2].offset] == 0.0f);
  free(p);
  dpt_net_free(net);
}

/* An id outside [0, V) or not an integer cannot fail a pass: its row is NaN (the loss shows
 * it) and it adds no gradient; good ids beside it are unaffected. */
static void test_embedding_bad_ids_are_nan(void **state) {
  (void)state;
  static const spec s[] = {{"embedding", "emb", "num=4,dim=3"}};
  dpt_shape in = {1, {5}};
  float *p;
  dpt_net *net = make(&in, s, 1, &p, 6);
  dpt_layer *l = (dpt_layer *)dpt_net_layer(net, 0);
  float x[5] = {1, 4, -1, 2.5f, 3}, y[15], dy[15], g[12] = {0};
  dpt_layer_pass pass = {.train = 1, .nseg = 1};
  l->ops->forward(l, p, x, y, 1, &pass);
  for (int k = 0; k < 3; k++) {
    assert_memory_equal(&y[k], &p[3 + k], sizeof(float));
    assert_memory_equal(&y[12 + k], &p[9 + k], sizeof(float));
    assert_true(isnan(y[3 + k]) && isnan(y[6 + k]) && isnan(y[9 + k]));
  }
  for (int k = 0; k < 15; k++) dy[k] = 1.0f + (float)k;
  l->ops->param_grad(l, p, x, y, dy, g, 1, &pass);
  float want[12] = {0, 0, 0, 1, 2, 3, 0, 0, 0, 13, 14, 15};
  assert_memory_equal(g, want, sizeof want);
  free(p);
  dpt_net_free(net);
}

static void test_setup_mistakes_are_named(void **state) {
  (void)state;
  static const struct {
    int rank;
    int64_t d0, d1;
    const char *kind, *opts, *want;
  } bad[] = {
      {2, 6, 8, "attention", "heads=3", "heads=3 does not divide"},
      {1, 8, 0, "attention", "heads=2", "expects a sample of shape [T, C], gets [8]"},
      {2, 6, 8, "attention", "", "'heads' is missing"},
      {2, 6, 8, "dropout", "p=1", "p='1' (expected a number in [0,"},
      {2, 6, 8, "dropout", "q=0.1", "not one of dropout's"},
      {2, 6, 8, "batchnorm2d", "", "expects a sample of shape [C, H, W], gets [6, 8]"},
      {2, 6, 8, "batchnorm1d", "momentum=2", "momentum='2'"},
      {2, 6, 8, "layernorm", "eps=-1", "eps='-1'"},
      {2, 6, 8, "embedding", "num=5", "'dim' is missing"},
      {2, 6, 8, "add", "from=nowhere", "from='nowhere' names no earlier layer"},
      {2, 6, 8, "add", "", "'from' is missing"},
      {2, 6, 8, "linear", "out=3,last=2", "last=2"},
      {2, 6, 8, "silu", "x=1", "takes no options"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[DPT_ERR_LEN] = "";
    dpt_shape in = {bad[i].rank, {bad[i].d0, bad[i].d1}};
    dpt_net *net;
    assert_int_equal(dpt_net_create("net", &in, &net, err, sizeof err), 0);
    assert_int_equal(dpt_net_add(net, bad[i].kind, "lay", bad[i].opts, err, sizeof err),
                     DPT_EINVAL);
    if (strncmp(err, "lay: ", 5) || !strstr(err, bad[i].want))
      fail_msg("%s %s: '%s' (expected the layer and '%s')", bad[i].kind, bad[i].opts, err,
               bad[i].want);
    assert_int_equal(dpt_net_nlayers(net), 0);
    assert_int_equal(dpt_net_nparams(net), 0);
    dpt_net_free(net);
  }
  /* a residual of another shape names both */
  char err[DPT_ERR_LEN] = "";
  dpt_shape in = {2, {6, 8}};
  dpt_net *net;
  assert_int_equal(dpt_net_create("net", &in, &net, err, sizeof err), 0);
  assert_int_equal(dpt_net_add(net, "linear", "fc", "out=4,last=1", err, sizeof err), 0);
  assert_int_equal(dpt_net_add(net, "add", "res", "from=input", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "[6, 8]"));
  assert_non_null(strstr(err, "[6, 4]"));
  dpt_net_free(net);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transformer_gradients),
      cmocka_unit_test(test_cnn_with_batchnorm_gradients),
      cmocka_unit_test(test_fused_relu_is_unfused),
      cmocka_unit_test(test_initialisation_is_torchs),
      cmocka_unit_test(test_embedding_bad_ids_are_nan),
      cmocka_unit_test(test_setup_mistakes_are_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

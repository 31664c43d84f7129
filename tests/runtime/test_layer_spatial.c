/* test_layer_spatial.c — conv2d, pooling and flatten inside nets: every parameter gradient of
 * small CNNs agrees with central finite differences (so each layer's input gradient, which the
 * layers before it depend on, is right too); parameters carry torch's names and shapes and
 * torch's initialisation bounds; a batch gives bitwise the rows of its samples run alone; bad
 * shapes and options are refused with one message naming the layer and both shapes, and
 * leave the net as it was. */
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

static dpt_net *build(const dpt_shape *in, const spec *layers, int count) {
  char err[DPT_ERR_LEN] = "";
  dpt_net *n;
  assert_int_equal(dpt_net_create("test", in, &n, err, sizeof err), 0);
  for (int i = 0; i < count; i++)
    if (dpt_net_add(n, layers[i].kind, layers[i].name, layers[i].opts, err, sizeof err))
      fail_msg("%s", err);
  assert_int_equal(dpt_net_set_loss(n, "mse", err, sizeof err), 0);
  return n;
}

/* Analytic gradients of the mse loss of net n on `count` random samples against central
 * differences of dpt_net_evaluate with step eps, for every parameter. */
static void gradcheck(dpt_net *n, size_t count, uint64_t seed, float eps) {
  size_t np = dpt_net_nparams(n), in = 1, k = 1;
  for (int i = 0; i < dpt_net_in(n)->rank; i++) in *= (size_t)dpt_net_in(n)->dims[i];
  for (int i = 0; i < dpt_net_out(n)->rank; i++) k *= (size_t)dpt_net_out(n)->dims[i];
  float *p = malloc(np * sizeof *p), *g = calloc(np, sizeof *g);
  float *x = malloc(count * in * sizeof *x), *y = malloc(count * k * sizeof *y);
  assert_true(p && g && x && y);
  dpt_rng r;
  dpt_rng_seed(&r, seed, 0);
  dpt_layer_rng src = {uniform, &r};
  dpt_net_init(n, p, &src);
  for (size_t i = 0; i < count * in; i++) x[i] = (float)dpt_rng_normal(&r);
  for (size_t i = 0; i < count * k; i++) y[i] = (float)dpt_rng_normal(&r);
  char err[DPT_ERR_LEN] = "";
  double loss = 0, lp, lm;
  int64_t correct = 0;
  assert_int_equal(dpt_net_loss_grad(n, p, g, 1.0f, x, NULL, y, count, &loss, &correct, NULL, NULL,
                                     err, sizeof err),
                   0);
  int nt;
  const dpt_tensor *t = dpt_net_tensors(n, &nt);
  double gnorm = 0;
  for (size_t i = 0; i < np; i++) gnorm += (double)g[i] * g[i];
  assert_true(gnorm > 0);
  for (size_t i = 0; i < np; i++) {
    float p0 = p[i];
    p[i] = p0 + eps;
    assert_int_equal(dpt_net_evaluate(n, p, x, NULL, y, count, &lp, &correct, err, sizeof err), 0);
    p[i] = p0 - eps;
    assert_int_equal(dpt_net_evaluate(n, p, x, NULL, y, count, &lm, &correct, err, sizeof err), 0);
    p[i] = p0;
    double num = (lp - lm) / ((double)(p0 + eps) - (double)(p0 - eps));
    if (fabs(num - g[i]) > 3e-3 * fabs(num) + 2e-4) {
      int ti = 0;
      while (ti + 1 < nt && t[ti + 1].offset <= i) ti++;
      fail_msg("%s[%zu]: analytic %g, numeric %g", t[ti].name, i - t[ti].offset, g[i], num);
    }
  }
  free(p), free(g), free(x), free(y);
}

static void test_conv_avgpool_gradients_match_finite_differences(void **state) {
  (void)state;
  /* [2, 7, 6] -> c1 [4, 4, 3] -> tanh -> c2 depthwise x2 [8, 4, 3] -> avg [8, 5, 4] -> gap
   * [8, 1, 1] -> flatten [8] -> fc [3] */
  const spec layers[] = {
      {"conv2d", "c1", "out=4,kernel=3,stride=2,padding=1"},
      {"tanh", "a1", ""},
      {"conv2d", "c2", "out=8,kernel=3,padding=1,groups=4"},
      {"avgpool2d", "p1", "kernel=2,stride=1,padding=1"},
      {"globalavgpool2d", "gap", ""},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=3"},
  };
  dpt_shape in = {3, {2, 7, 6}};
  dpt_net *n = build(&in, layers, 7);
  const dpt_shape *o = &dpt_net_layer(n, 3)->out;
  assert_true(o->rank == 3 && o->dims[0] == 8 && o->dims[1] == 5 && o->dims[2] == 4);
  gradcheck(n, 3, 11, 1e-2f);
  dpt_net_free(n);
}

static void test_conv_maxpool_gradients_match_finite_differences(void **state) {
  (void)state;
  /* [3, 6, 5] -> c1 [4, 6, 5] -> max 3/2/1 [4, 3, 3] -> c2 rect kernel [2, 2, 1] -> flatten ->
   * fc [2] */
  const spec layers[] = {
      {"conv2d", "c1", "out=4,kernel=3,padding=1"},
      {"maxpool2d", "m1", "kernel=3,stride=2,padding=1"},
      {"conv2d", "c2", "out=2,kh=2,kw=3,stride=2"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=2"},
  };
  dpt_shape in = {3, {3, 6, 5}};
  dpt_net *n = build(&in, layers, 5);
  const dpt_shape *o = &dpt_net_layer(n, 2)->out;
  assert_true(o->rank == 3 && o->dims[0] == 2 && o->dims[1] == 1 && o->dims[2] == 1);
  gradcheck(n, 3, 12, 1e-3f); /* small: a step must not move a maximum */
  dpt_net_free(n);
}

/* "same" convolutions whose padding reaches past the plane (a 5x5 kernel, padding 2, on 2x3
 * planes; a 7x7, padding 3, on 3x2): the shifted-run path with runs that start before the plane
 * and end after it. */
static void test_conv_same_padding_wider_than_plane(void **state) {
  (void)state;
  const spec layers[] = {
      {"conv2d", "c1", "out=3,kernel=5,padding=2"},
      {"tanh", "a1", ""},
      {"conv2d", "c2", "out=2,kernel=3,padding=1"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=2"},
  };
  dpt_shape in = {3, {2, 2, 3}};
  dpt_net *n = build(&in, layers, 5);
  gradcheck(n, 3, 13, 1e-2f);
  dpt_net_free(n);
  const spec wide[] = {
      {"conv2d", "c1", "out=2,kernel=7,padding=3"},
      {"tanh", "a1", ""},
      {"conv2d", "c2", "out=2,kernel=7,padding=3"},
      {"flatten", "flat", ""},
      {"linear", "fc", "out=2"},
  };
  dpt_shape in2 = {3, {1, 3, 2}};
  n = build(&in2, wide, 5);
  gradcheck(n, 2, 14, 1e-2f);
  dpt_net_free(n);
}

static void test_conv_parameters_are_torchs(void **state) {
  (void)state;
  const spec layers[] = {
      {"conv2d", "conv1", "out=64,kernel=3,padding=1"},
      {"conv2d", "dw", "out=64,kernel=5,padding=2,groups=64"},
  };
  dpt_shape in = {3, {16, 8, 8}};
  dpt_net *n = build(&in, layers, 2);
  int nt;
  const dpt_tensor *t = dpt_net_tensors(n, &nt);
  assert_int_equal(nt, 4);
  assert_string_equal(t[0].name, "conv1.weight");
  assert_string_equal(t[1].name, "conv1.bias");
  assert_string_equal(t[2].name, "dw.weight");
  int64_t w0[4] = {64, 16, 3, 3}, w2[4] = {64, 1, 5, 5};
  assert_int_equal(t[0].rank, 4);
  assert_int_equal(t[2].rank, 4);
  assert_memory_equal(t[0].dims, w0, sizeof w0);
  assert_memory_equal(t[2].dims, w2, sizeof w2);
  assert_int_equal(t[1].rank, 1);
  assert_int_equal(t[1].dims[0], 64);
  assert_int_equal(t[1].offset, 64 * 16 * 9);
  size_t np = dpt_net_nparams(n);
  assert_int_equal(np, 64 * 16 * 9 + 64 + 64 * 25 + 64);
  float *p = malloc(np * sizeof *p);
  dpt_rng r;
  dpt_rng_seed(&r, 3, 0);
  dpt_layer_rng src = {uniform, &r};
  dpt_net_init(n, p, &src);
  /* kaiming_uniform_(a=sqrt(5)) and the bias: uniform in +-1/sqrt(fan_in) */
  const double fan_in[4] = {16 * 9, 16 * 9, 25, 25};
  for (int i = 0; i < nt; i++) {
    double bound = 1.0 / sqrt(fan_in[i]), maxabs = 0, sum = 0;
    for (size_t j = 0; j < t[i].numel; j++) {
      double v = p[t[i].offset + j];
      if (fabs(v) > bound) fail_msg("%s[%zu] = %g is outside +-%g", t[i].name, j, v, bound);
      maxabs = fmax(maxabs, fabs(v));
      sum += fabs(v);
    }
    assert_true(maxabs > 0.9 * bound); /* the whole range is used */
    if (t[i].numel > 1000) assert_true(fabs(sum / (double)t[i].numel - bound / 2) < 0.05 * bound);
  }
  free(p);
  dpt_net_free(n);
}

/* Norm-relative distance of a[len] from b[len] (0 when both are zero). */
static double rel_dist(const float *a, const float *b, size_t len) {
  double d = 0, nb = 0;
  for (size_t i = 0; i < len; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  for (size_t i = 0; i < len; i++) nb += (double)b[i] * b[i];
  return nb > 0 ? sqrt(d / nb) : sqrt(d);
}

/* A layer called directly, with scratch of its own for n samples (the net's job otherwise);
 * the scratch starts as NaN so that a pass reading scratch it did not write shows. */
static float *give_scratch(dpt_layer *l, size_t n) {
  size_t f = l->ops->scratch ? l->ops->scratch(l, n) : 0;
  float *s = f ? malloc(f * sizeof *s) : NULL;
  for (size_t i = 0; i < f; i++) s[i] = NAN;
  l->scratch = s;
  return s;
}

/* conv2d goes through sgemm in groups of samples (9 samples of 6x6 planes: groups of 7 and
 * 2): the same batch gives bitwise the same outputs and gradients on every call, and each
 * sample's rows agree with that sample run alone within the layer tolerance (OpenBLAS's sums
 * depend on the product's width); max-pooling and flatten are bitwise per sample. */
static void test_batch_rows_equal_samples_alone(void **state) {
  (void)state;
  const spec layers[] = {
      {"conv2d", "c1", "out=5,kernel=3,stride=1,padding=1,groups=1"},
      {"maxpool2d", "m", "kernel=2"},
      {"flatten", "f", ""},
  };
  dpt_shape in = {3, {3, 6, 6}};
  dpt_net *n = build(&in, layers, 3);
  dpt_layer *c1 = (dpt_layer *)dpt_net_layer(n, 0), *m = (dpt_layer *)dpt_net_layer(n, 1);
  size_t np = dpt_net_nparams(n), in_n = c1->in_numel, mid = c1->out_numel, out = m->out_numel;
  enum { B = 9 };
  /* the scratch of a group of several samples holds its outputs too: more than one sample's
   * columns (27 x 36) */
  assert_true(c1->ops->scratch(c1, B) > 2 * 27 * 36);
  float *p = malloc(np * sizeof *p), *x = malloc(B * in_n * sizeof *x);
  float *h = malloc(B * mid * sizeof *h), *h2 = malloc(B * mid * sizeof *h2);
  float *y = malloc(B * out * sizeof *y), *y1 = malloc(out * sizeof *y1);
  float *h1 = malloc(mid * sizeof *h1), *dy = malloc(B * mid * sizeof *dy);
  float *dx = malloc(B * in_n * sizeof *dx), *dx2 = malloc(B * in_n * sizeof *dx2);
  float *dx1 = malloc(in_n * sizeof *dx1);
  float *g = calloc(np, sizeof *g), *g2 = calloc(np, sizeof *g2), *g1 = calloc(np, sizeof *g1);
  dpt_rng r;
  dpt_rng_seed(&r, 4, 0);
  dpt_layer_rng src = {uniform, &r};
  dpt_net_init(n, p, &src);
  for (size_t i = 0; i < B * in_n; i++) x[i] = (float)dpt_rng_normal(&r);
  for (size_t i = 0; i < B * mid; i++) dy[i] = (float)dpt_rng_normal(&r);
  dpt_layer_pass pass = {.train = 1, .nseg = 1};
  float *sc = give_scratch(c1, B);
  c1->ops->forward(c1, p, x, h, B, &pass);
  c1->ops->param_grad(c1, p, x, h, dy, g, B, &pass);
  c1->ops->backward(c1, p, x, h, dy, dx, B, &pass);
  free(sc);
  sc = give_scratch(c1, B); /* again, from NaN scratch: bitwise the same */
  c1->ops->forward(c1, p, x, h2, B, &pass);
  c1->ops->param_grad(c1, p, x, h2, dy, g2, B, &pass);
  c1->ops->backward(c1, p, x, h2, dy, dx2, B, &pass);
  assert_memory_equal(h, h2, B * mid * sizeof *h);
  assert_memory_equal(g, g2, np * sizeof *g);
  assert_memory_equal(dx, dx2, B * in_n * sizeof *dx);
  m->ops->forward(m, p, h, y, B, &pass);
  for (size_t i = 0; i < B; i++) {
    free(sc);
    sc = give_scratch(c1, 1);
    c1->ops->forward(c1, p, x + i * in_n, h1, 1, &pass);
    c1->ops->param_grad(c1, p, x + i * in_n, h1, dy + i * mid, g1, 1, &pass);
    c1->ops->backward(c1, p, x + i * in_n, h1, dy + i * mid, dx1, 1, &pass);
    if (rel_dist(h1, h + i * mid, mid) > 1e-6) fail_msg("sample %zu: conv output differs", i);
    if (rel_dist(dx1, dx + i * in_n, in_n) > 1e-6) fail_msg("sample %zu: conv dx differs", i);
    m->ops->forward(m, p, h + i * mid, y1, 1, &pass);
    assert_memory_equal(y1, y + i * out, out * sizeof *y1);
  }
  /* g1 summed the samples one at a time */
  if (rel_dist(g1, g, np) > 1e-6)
    fail_msg("conv parameter gradients differ: %g", rel_dist(g1, g, np));
  free(sc);
  c1->scratch = NULL;
  free(p), free(x), free(h), free(h2), free(y), free(y1), free(h1), free(dy), free(dx), free(dx2);
  free(dx1), free(g), free(g2), free(g1);
  dpt_net_free(n);
}

/* maxpool2d's 2x2 stride-2 fast path against torch's rule written out (aten's max_pool2d CPU
 * kernel: m = -inf, index of the first window element; an element replaces m when it is
 * greater or NaN), bitwise, on planes with odd and even sides, ties, NaNs and -inf, and rows
 * long enough for a vector and a tail (40 outputs). */
static void maxpool_reference(const float *x, const float *dy, int planes, int h, int w, float *y,
                              float *dx) {
  int oh = h / 2, ow = w / 2;
  memset(dx, 0, (size_t)planes * (size_t)(h * w) * sizeof *dx);
  for (int q = 0; q < planes; q++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) {
        const float *pl = x + (size_t)q * (size_t)(h * w);
        float m = -INFINITY;
        int best = 2 * oy * w + 2 * ox;
        for (int i = 0; i < 2; i++)
          for (int j = 0; j < 2; j++) {
            int at = (2 * oy + i) * w + 2 * ox + j;
            if (pl[at] > m || isnan(pl[at])) m = pl[at], best = at;
          }
        size_t o = (size_t)q * (size_t)(oh * ow) + (size_t)(oy * ow + ox);
        y[o] = m;
        dx[(size_t)q * (size_t)(h * w) + (size_t)best] += dy[o];
      }
}

static void test_maxpool_2x2_fast_path_is_torchs_rule_bitwise(void **state) {
  (void)state;
  const int sides[][3] = {{3, 5, 7}, {2, 4, 6}, {2, 6, 81}, {1, 2, 2}};
  dpt_rng r;
  dpt_rng_seed(&r, 9, 0);
  for (size_t t = 0; t < sizeof sides / sizeof sides[0]; t++) {
    int c = sides[t][0], h = sides[t][1], w = sides[t][2], oh = h / 2, ow = w / 2, B = 3;
    const spec layers[] = {{"maxpool2d", "m", "kernel=2"}};
    dpt_shape in = {3, {c, h, w}};
    dpt_net *n = build(&in, layers, 1);
    dpt_layer *m = (dpt_layer *)dpt_net_layer(n, 0);
    size_t nin = (size_t)(B * c * h * w), nout = (size_t)(B * c * oh * ow);
    float *x = malloc(nin * sizeof *x), *dx = malloc(nin * sizeof *dx);
    float *rdx = malloc(nin * sizeof *rdx), *dy = malloc(nout * sizeof *dy);
    float *y = malloc(nout * sizeof *y), *ry = malloc(nout * sizeof *ry);
    for (size_t i = 0; i < nin; i++) { /* few distinct values: ties; some NaN, -inf, -0 */
      double u = dpt_rng_uniform(&r);
      x[i] = u < 0.05 ? NAN : u < 0.1 ? -INFINITY : u < 0.15 ? -0.0f : (float)(int)(u * 4) - 1;
    }
    for (size_t i = 0; i < nout; i++) dy[i] = (float)dpt_rng_normal(&r);
    dy[0] = -0.0f;
    dpt_layer_pass pass = {.train = 1, .nseg = 1};
    m->ops->forward(m, NULL, x, y, (size_t)B, &pass);
    for (size_t i = 0; i < nin; i++) dx[i] = NAN; /* backward must write all of dx */
    m->ops->backward(m, NULL, x, y, dy, dx, (size_t)B, &pass);
    maxpool_reference(x, dy, B * c, h, w, ry, rdx);
    assert_memory_equal(y, ry, nout * sizeof *y);
    assert_memory_equal(dx, rdx, nin * sizeof *dx);
    free(x), free(dx), free(rdx), free(dy), free(y), free(ry);
    dpt_net_free(n);
  }
}

/* dpt_net_add(kind, name, opts) on a net of input `in` fails with EINVAL and a message
 * containing want; the net keeps its layers. */
static void refused(dpt_shape in, const char *kind, const char *name, const char *opts,
                    const char *want) {
  char err[DPT_ERR_LEN] = "";
  dpt_net *n;
  assert_int_equal(dpt_net_create("test", &in, &n, err, sizeof err), 0);
  int rc = dpt_net_add(n, kind, name, opts, err, sizeof err);
  if (rc != DPT_EINVAL || !strstr(err, want))
    fail_msg("%s %s '%s': rc %d, message '%s' (wanted '%s')", kind, name, opts, rc, err, want);
  assert_int_equal(dpt_net_nlayers(n), 0);
  assert_int_equal(dpt_net_nparams(n), 0);
  dpt_net_free(n);
}

static void test_bad_shapes_and_options_are_named(void **state) {
  (void)state;
  dpt_shape img = {3, {16, 12, 12}}, flat = {1, {784}}, small = {3, {1, 3, 3}};
  refused(img, "conv2d", "conv2", "in=32,out=8,kernel=3",
          "conv2: expects 32 input channels, "
          "gets 16");
  refused(flat, "conv2d", "conv1", "out=8,kernel=3",
          "conv1: conv2d expects a sample of shape [C, H, W], gets [784]");
  refused(flat, "maxpool2d", "pool1", "kernel=2",
          "pool1: maxpool2d expects a sample of shape "
          "[C, H, W], gets [784]");
  refused(flat, "globalavgpool2d", "gap", "", "gap: globalavgpool2d expects a sample");
  refused(img, "conv2d", "c", "out=8,kernel=3,groups=3", "c: groups=3 must divide");
  refused(img, "conv2d", "c", "out=6,kernel=3,groups=4", "(16) and the output channels (6)");
  refused(small, "conv2d", "c", "out=2,kernel=5",
          "c: kernel 5x5 is larger than the input [1, 3, 3] padded by 0");
  refused(img, "conv2d", "c", "out=8,kernel=3,strde=2",
          "c: option 'strde=2' is not one of "
          "conv2d's");
  refused(img, "conv2d", "c", "out=8", "c: option 'kernel' is missing");
  refused(img, "conv2d", "c", "kernel=3", "c: option 'out' is missing");
  refused(img, "conv2d", "c", "out=8,kernel=3,padding=-1", "c: option padding='-1'");
  refused(img, "conv2d", "c", "out=8,kernel=3,stride=0", "c: option stride='0'");
  refused(img, "maxpool2d", "m", "kernel=3,padding=2", "m: padding=2 is more than half");
  refused(small, "avgpool2d", "a", "kernel=4", "a: kernel 4x4 does not fit the input [1, 3, 3]");
  refused(img, "avgpool2d", "a", "size=2", "a: option 'size=2' is not one of avgpool2d's");
  refused(img, "conv2d", "c", "out=8,kernel=3,kernel=5", "c: option 'kernel' is given twice");
  refused(img, "conv2d", "c", "out=8,kernel", "c: option 'kernel' is not key=value");
  refused(img, "flatten", "f", "start_dim=1", "f: flatten takes no options");
  refused(img, "globalavgpool2d", "g", "kernel=2", "g: globalavgpool2d takes no options");
  /* what is accepted: padding=0, stride defaulting to the kernel, flatten of any shape */
  char err[DPT_ERR_LEN] = "";
  dpt_net *n;
  assert_int_equal(dpt_net_create("test", &img, &n, err, sizeof err), 0);
  assert_int_equal(dpt_net_add(n, "conv2d", "c", "in=16,out=8,kernel=3,padding=0", err, sizeof err),
                   0);
  assert_int_equal(dpt_net_add(n, "maxpool2d", "m", "kernel=2", err, sizeof err), 0);
  assert_int_equal(dpt_net_layer(n, 1)->out.dims[1], 5); /* (10 - 2) / 2 + 1 */
  assert_int_equal(dpt_net_add(n, "flatten", "f", "", err, sizeof err), 0);
  assert_int_equal(dpt_net_out(n)->rank, 1);
  assert_int_equal(dpt_net_out(n)->dims[0], 8 * 5 * 5);
  dpt_net_free(n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_avgpool_gradients_match_finite_differences),
      cmocka_unit_test(test_conv_maxpool_gradients_match_finite_differences),
      cmocka_unit_test(test_conv_same_padding_wider_than_plane),
      cmocka_unit_test(test_conv_parameters_are_torchs),
      cmocka_unit_test(test_maxpool_2x2_fast_path_is_torchs_rule_bitwise),
      cmocka_unit_test(test_batch_rows_equal_samples_alone),
      cmocka_unit_test(test_bad_shapes_and_options_are_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

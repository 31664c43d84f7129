/* test_layer_ref.c — dpt's spatial layers replay torch 1.13 autograd recordings
 * (ref/layers/<kind>.txt, written by gen_layer_ref.py): for each recorded configuration the
 * layer is built through dpt_net_add with the recorded options and input shape, given torch's
 * parameters, and its output shape, forward output, parameter gradients and input gradient are
 * compared with torch's. Conv2d: within REL_TOL norm-relative per tensor (torch's oneDNN
 * kernels sum in another order); pooling and Flatten: bitwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* Issue 19's exactness target for layers with reductions of many products. */
#define REL_TOL 1e-6

#define MAX_T 8
typedef struct {
  char name[32];
  size_t count;
  float *v;
} rtensor;

typedef struct {
  char name[64], kind[32], opts[128];
  int c, h, w, n, orank;
  int64_t odims[3];
  rtensor t[MAX_T];
  int nt;
} rcase;

static char *slurp(const char *kind) {
  char path[1024];
  const char *f = __FILE__, *slash = strrchr(f, '/');
  snprintf(path, sizeof path, "%.*sref/layers/%s.txt", slash ? (int)(slash - f + 1) : 0, f, kind);
  FILE *fp = fopen(path, "rb");
  if (!fp) fail_msg("cannot open %s", path);
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  rewind(fp);
  char *s = malloc((size_t)len + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)len, fp), (size_t)len);
  s[len] = 0;
  fclose(fp);
  return s;
}

static const rtensor *find(const rcase *c, const char *name) {
  for (int i = 0; i < c->nt; i++)
    if (!strcmp(c->t[i].name, name)) return &c->t[i];
  fail_msg("case %s: no tensor '%s' in the recording", c->name, name);
  return NULL;
}

/* Parses the next case from *pos (NULL at the end of the file). Tensors are malloc'ed. */
static int next_case(char **pos, rcase *c) {
  memset(c, 0, sizeof *c);
  for (char *line; (line = strtok_r(NULL, "\n", pos)) || 0;) {
    if (line[0] == '#') continue;
    if (!strncmp(line, "case ", 5)) {
      assert_int_equal(sscanf(line, "case %63s %31s %127s", c->name, c->kind, c->opts), 3);
      if (!strcmp(c->opts, "-")) c->opts[0] = 0;
    } else if (!strncmp(line, "in ", 3)) {
      assert_int_equal(sscanf(line, "in %d %d %d n %d", &c->c, &c->h, &c->w, &c->n), 4);
    } else if (!strncmp(line, "out ", 4)) {
      char *p = line + 4, *e;
      while (c->orank < 3 && (c->odims[c->orank] = strtoll(p, &e, 10), e != p)) c->orank++, p = e;
    } else if (!strncmp(line, "t ", 2)) {
      assert_true(c->nt < MAX_T);
      rtensor *t = &c->t[c->nt++];
      int used = 0;
      assert_int_equal(sscanf(line, "t %31s %zu %n", t->name, &t->count, &used), 2);
      t->v = malloc(t->count * sizeof *t->v);
      assert_non_null(t->v);
      char *p = line + used, *e;
      for (size_t i = 0; i < t->count; i++, p = e) {
        t->v[i] = strtof(p, &e);
        if (e == p) fail_msg("case %s: tensor %s is short at %zu", c->name, t->name, i);
      }
    } else if (!strcmp(line, "end")) {
      return 1;
    }
  }
  return 0;
}

static void free_case(rcase *c) {
  for (int i = 0; i < c->nt; i++) free(c->t[i].v);
}

static void compare(const rcase *c, const char *what, const float *got, const rtensor *want,
                    size_t count, int bitwise) {
  if (count != want->count)
    fail_msg("case %s %s: %zu values, torch has %zu", c->name, what, count, want->count);
  if (bitwise) {
    for (size_t i = 0; i < count; i++)
      if (memcmp(&got[i], &want->v[i], sizeof(float)))
        fail_msg("case %s %s: element %zu is %.9g, torch %.9g (bitwise)", c->name, what, i, got[i],
                 want->v[i]);
    return;
  }
  double d = 0, r = 0;
  for (size_t i = 0; i < count; i++) {
    d += ((double)got[i] - want->v[i]) * ((double)got[i] - want->v[i]);
    r += (double)want->v[i] * want->v[i];
  }
  double rel = sqrt(d) / sqrt(r);
  if (!(rel <= REL_TOL))
    fail_msg("case %s %s: norm-relative difference %.3g > %g", c->name, what, rel, REL_TOL);
}

/* Replays every case of ref/layers/<kind>.txt; returns how many. */
static int replay(const char *kind, int bitwise) {
  char *text = slurp(kind), *pos = NULL, err[DPT_ERR_LEN] = "";
  strtok_r(text, "\n", &pos); /* the header comment */
  rcase c;
  int cases = 0;
  while (next_case(&pos, &c)) {
    assert_string_equal(c.kind, kind);
    dpt_shape in = {3, {c.c, c.h, c.w}};
    dpt_net *net;
    assert_int_equal(dpt_net_create("ref", &in, &net, err, sizeof err), 0);
    if (dpt_net_add(net, kind, "l", c.opts, err, sizeof err)) fail_msg("%s: %s", c.name, err);
    dpt_layer *l = (dpt_layer *)dpt_net_layer(net, 0);
    assert_int_equal(l->out.rank, c.orank);
    for (int i = 0; i < c.orank; i++) assert_int_equal(l->out.dims[i], c.odims[i]);
    size_t n = (size_t)c.n, np = dpt_net_nparams(net);
    int nt;
    const dpt_tensor *tt = dpt_net_tensors(net, &nt);
    float *params = malloc((np + 1) * sizeof *params), *grad = calloc(np + 1, sizeof *grad);
    float *y = malloc(n * l->out_numel * sizeof *y), *dx = malloc(n * l->in_numel * sizeof *dx);
    assert_true(params && grad && y && dx);
    for (int i = 0; i < nt; i++) { /* "l.weight" <- torch's "weight", same layout */
      const rtensor *r = find(&c, tt[i].name + 2);
      assert_int_equal(r->count, tt[i].numel);
      memcpy(params + tt[i].offset, r->v, r->count * sizeof *params);
    }
    float *scratch = l->ops->scratch ? malloc(l->ops->scratch(l, n) * sizeof(float) + 1) : NULL;
    l->scratch = scratch;
    const float *x = find(&c, "x")->v, *dy = find(&c, "dy")->v;
    assert_int_equal(find(&c, "x")->count, n * l->in_numel);
    dpt_layer_pass p = {.train = 1, .nseg = 1};
    l->ops->forward(l, params, x, y, n, &p);
    compare(&c, "y", y, find(&c, "y"), n * l->out_numel, bitwise);
    if (l->ops->param_grad) l->ops->param_grad(l, params, x, y, dy, grad, n, &p);
    for (int i = 0; i < nt; i++) {
      char name[48];
      snprintf(name, sizeof name, "grad.%s", tt[i].name + 2);
      compare(&c, name, grad + tt[i].offset, find(&c, name), tt[i].numel, bitwise);
    }
    for (size_t i = 0; i < n * l->in_numel; i++) dx[i] = NAN; /* backward writes all of dx */
    l->ops->backward(l, params, x, y, dy, dx, n, &p);
    compare(&c, "dx", dx, find(&c, "dx"), n * l->in_numel, bitwise);
    free(scratch), free(params), free(grad), free(y), free(dx);
    dpt_net_free(net);
    free_case(&c);
    cases++;
  }
  free(text);
  return cases;
}

static void test_conv2d_matches_torch(void **state) {
  (void)state;
  assert_int_equal(replay("conv2d", 0), 7);
}
static void test_maxpool2d_matches_torch_bitwise(void **state) {
  (void)state;
  assert_int_equal(replay("maxpool2d", 1), 4);
}
static void test_avgpool2d_matches_torch_bitwise(void **state) {
  (void)state;
  assert_int_equal(replay("avgpool2d", 1), 4);
}
static void test_globalavgpool2d_matches_torch_bitwise(void **state) {
  (void)state;
  assert_int_equal(replay("globalavgpool2d", 1), 2);
}
static void test_flatten_matches_torch_bitwise(void **state) {
  (void)state;
  assert_int_equal(replay("flatten", 1), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv2d_matches_torch),
      cmocka_unit_test(test_maxpool2d_matches_torch_bitwise),
      cmocka_unit_test(test_avgpool2d_matches_torch_bitwise),
      cmocka_unit_test(test_globalavgpool2d_matches_torch_bitwise),
      cmocka_unit_test(test_flatten_matches_torch_bitwise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* train_ref.h — what the torch training comparisons share (test_cnn_train_ref.c,
 * test_gpt_train_ref.c): reading a recording written by a tests/runtime/gen_*_train_ref.py
 * (`config ...` then tensors `t <name> <count> v v ...`, %.9g), finding its tensors by name,
 * loading its init.<name> tensors into a model's flat buffer, and the norm-relative difference
 * the comparisons bound. Header-only (static), one copy per test program.
 */
#ifndef DPT_TEST_TRAIN_REF_H
#define DPT_TEST_TRAIN_REF_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* Issue 19's target for the training comparisons: losses and final parameters agree within
 * this, norm-relative (per tensor). */
#define TRAIN_TOL 1e-5

#define REF_MAX_TENSORS 128
typedef struct {
  char name[64];
  size_t count;
  float *v;
} ref_tensor;

typedef struct {
  char config[512]; /* the `config` line after "config " */
  ref_tensor t[REF_MAX_TENSORS];
  int n;
} ref_file;

/* Reads ref/<file> next to this test's source (cmocka failure on any problem). */
static void ref_load(ref_file *r, const char *file) {
  char path[1024];
  const char *f = __FILE__, *slash = strrchr(f, '/');
  snprintf(path, sizeof path, "%.*sref/%s", slash ? (int)(slash - f + 1) : 0, f, file);
  memset(r, 0, sizeof *r);
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
      snprintf(r->config, sizeof r->config, "%s", line + 7);
    } else if (!strncmp(line, "t ", 2)) {
      assert_true(r->n < REF_MAX_TENSORS);
      ref_tensor *t = &r->t[r->n++];
      int used = 0;
      assert_int_equal(sscanf(line, "t %63s %zu %n", t->name, &t->count, &used), 2);
      t->v = malloc((t->count ? t->count : 1) * sizeof *t->v);
      assert_non_null(t->v);
      char *p = line + used, *e;
      for (size_t i = 0; i < t->count; i++, p = e) {
        t->v[i] = strtof(p, &e);
        if (e == p) fail_msg("%s: tensor %s is short at %zu", file, t->name, i);
      }
    }
  }
  free(s);
  if (!r->config[0]) fail_msg("%s: no config line", file);
}

static void ref_free(ref_file *r) {
  for (int i = 0; i < r->n; i++) free(r->t[i].v);
  r->n = 0;
}

static const ref_tensor *ref_find(const ref_file *r, const char *name) {
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->t[i].name, name)) return &r->t[i];
  fail_msg("no tensor '%s' in the recording", name);
  return NULL;
}

/* The number of recorded tensors whose name starts with prefix. */
__attribute__((unused)) static int ref_count(const ref_file *r, const char *prefix) {
  int k = 0;
  for (int i = 0; i < r->n; i++) k += !strncmp(r->t[i].name, prefix, strlen(prefix));
  return k;
}

/* ||got - want|| / ||want|| (the plain norm when want is 0). */
static double ref_rel(const float *got, const float *want, size_t n) {
  double d = 0, w = 0;
  for (size_t i = 0; i < n; i++)
    d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]), w += (double)want[i] * want[i];
  return w > 0 ? sqrt(d / w) : sqrt(d);
}

/* Copies <prefix><name> of the recording into params for each of the nt tensors tt (the
 * recording must have each, with its element count). */
static void ref_load_params(const ref_file *r, const char *prefix, const dpt_tensor *tt, int nt,
                            float *params) {
  for (int i = 0; i < nt; i++) {
    char name[96];
    snprintf(name, sizeof name, "%s%s", prefix, tt[i].name);
    const ref_tensor *t = ref_find(r, name);
    if (t->count != tt[i].numel)
      fail_msg("%s: %zu values recorded, the model's tensor has %zu", name, t->count, tt[i].numel);
    memcpy(params + tt[i].offset, t->v, t->count * sizeof *params);
  }
}

/* Checks each of the nt tensors tt of data against <prefix><name> within TRAIN_TOL, printing
 * each difference; returns the worst. skip (NULL: none) may narrow a tensor to the elements it
 * should be compared on: it returns their [*lo, *hi) ranges one at a time (nonzero while there
 * are more; k counts calls from 0). */
typedef int (*ref_range_fn)(const dpt_tensor *t, int k, size_t *lo, size_t *hi);
__attribute__((unused)) static double
ref_check_tensors_ranges(const ref_file *r, const char *prefix, const dpt_tensor *tt, int nt,
                         const float *data, ref_range_fn ranges) {
  double worst = 0;
  for (int i = 0; i < nt; i++) {
    char name[96];
    snprintf(name, sizeof name, "%s%s", prefix, tt[i].name);
    const float *want = ref_find(r, name)->v, *got = data + tt[i].offset;
    double d = 0, num = 0, den = 0;
    size_t lo = 0, hi = tt[i].numel;
    for (int k = 0; ranges ? ranges(&tt[i], k, &lo, &hi) : k == 0; k++)
      for (size_t j = lo; j < hi; j++)
        num += ((double)got[j] - want[j]) * ((double)got[j] - want[j]),
            den += (double)want[j] * want[j];
    d = den > 0 ? sqrt(num / den) : sqrt(num);
    printf("%s: norm-relative difference %.3g\n", tt[i].name, d);
    if (!(d <= TRAIN_TOL)) fail_msg("%s differs by %.3g > %g", tt[i].name, d, TRAIN_TOL);
    if (d > worst) worst = d;
  }
  return worst;
}

__attribute__((unused)) static double ref_check_tensors(const ref_file *r, const char *prefix,
                                                        const dpt_tensor *tt, int nt,
                                                        const float *data) {
  return ref_check_tensors_ranges(r, prefix, tt, nt, data, NULL);
}

#endif /* DPT_TEST_TRAIN_REF_H */

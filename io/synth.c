/* synth.c — dpt_io_synth: writes a generated, learnable classification dataset (the demo
 * fallback when no real data is at hand).
 *
 * Invariants:
 * - Deterministic: the same (n_train, n_test, features, classes, seed) give the same file on
 *   every machine (base.h's splitmix64 generator, Box-Muller normals in double).
 * - Classes are Gaussian clusters: centres c_k ~ N(0, I), a sample of class k is
 *   (c_k + sigma * N(0, I)) / sqrt(1 + sigma^2), so every feature has variance ~1. With
 *   sigma = sqrt(features / 2) / 2.4 the distance between two centres is ~2.4 noise sd on
 *   either side of the midpoint: ~99% pairwise separable, ~90% for 10 classes.
 * - The file is written atomically (io_internal.h writer); x float32 [n, features], y int32 [n],
 *   scale 1 / offset 0, root num_classes = classes.
 */
#include "io_internal.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
  uint64_t s;
  int have_spare;
  double spare;
} rng_t;

static uint64_t rng_next(rng_t *r) {
  return dpt_splitmix64(&r->s);
}

/* Uniform in (0, 1]. */
static double rng_unit(rng_t *r) {
  return ((double)(rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
}

static double rng_normal(rng_t *r) {
  if (r->have_spare) {
    r->have_spare = 0;
    return r->spare;
  }
  const double two_pi = 6.283185307179586476925286766559;
  double rad = sqrt(-2.0 * log(rng_unit(r))), th = two_pi * rng_unit(r);
  r->spare = rad * sin(th);
  r->have_spare = 1;
  return rad * cos(th);
}

/* Uniform in [0, k) (k small: modulo bias is negligible for a demo). */
static int64_t rng_below(rng_t *r, int64_t k) {
  return (int64_t)(rng_next(r) % (uint64_t)k);
}

typedef struct {
  int64_t features, classes;
  double sigma, norm;
  const double *centres; /* [classes * features] */
} cluster_model;

static void draw_samples(rng_t *r, const cluster_model *m, int64_t n, float *x, int32_t *y) {
  size_t f = (size_t)m->features;
  for (int64_t i = 0; i < n; i++) {
    int64_t k = rng_below(r, m->classes);
    y[i] = (int32_t)k;
    const double *c = m->centres + (size_t)k * f;
    for (size_t j = 0; j < f; j++)
      x[(size_t)i * f + j] = (float)((c[j] + m->sigma * rng_normal(r)) * m->norm);
  }
}

/* Generates and writes one split. */
static int synth_split(dpt_io__writer *w, const char *name, rng_t *r, const cluster_model *m,
                       int64_t n, char *err, size_t errlen) {
  size_t f = (size_t)m->features;
  float *x = malloc((size_t)n * f * sizeof *x);
  int32_t *y = malloc((size_t)n * sizeof *y);
  int rc = DPT_OK;
  if (!x || !y) {
    rc = dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory for %lld x %lld samples", w->out,
                      (long long)n, (long long)m->features);
  } else {
    draw_samples(r, m, n, x, y);
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)f};
    dpt_io__split_data s = {name, H5T_NATIVE_FLOAT, 2, dims, x, H5T_NATIVE_INT32, y, 1.0, 0.0};
    rc = dpt_io__write_split(w, &s, err, errlen);
  }
  free(y);
  free(x);
  return rc;
}

static int check_args(const char *out, int64_t n_train, int64_t n_test, int64_t features,
                      int64_t classes, char *err, size_t errlen) {
  if (!out || !*out) return dpt_io__errf(err, errlen, DPT_EINVAL, "dpt_io_synth: empty path");
  if (n_train <= 0 || n_test < 0 || features <= 0 || classes < 2 || classes > INT32_MAX)
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: bad synthetic dataset shape n_train=%lld n_test=%lld features=%lld "
                        "classes=%lld (expected n_train > 0, n_test >= 0, features > 0, "
                        "classes >= 2)",
                        out, (long long)n_train, (long long)n_test, (long long)features,
                        (long long)classes);
  uint64_t n = (uint64_t)(n_train > n_test ? n_train : n_test);
  uint64_t cap = SIZE_MAX / sizeof(double);
  if ((uint64_t)features > cap / n || (uint64_t)features > cap / (uint64_t)classes)
    return dpt_io__errf(err, errlen, DPT_EINVAL, "%s: synthetic dataset too large", out);
  return DPT_OK;
}

static int synth_all(dpt_io__writer *w, rng_t *r, const cluster_model *m, int64_t n_train,
                     int64_t n_test, char *err, size_t errlen) {
  int rc = dpt_io__writer_open(w, w->out, err, errlen);
  if (rc == DPT_OK) rc = synth_split(w, "train", r, m, n_train, err, errlen);
  if (rc == DPT_OK && n_test > 0) rc = synth_split(w, "test", r, m, n_test, err, errlen);
  if (rc == DPT_OK) rc = dpt_io__writer_commit(w, m->classes, err, errlen);
  if (rc != DPT_OK) dpt_io__writer_abort(w);
  return rc;
}

int dpt_io_synth(const char *out, int64_t n_train, int64_t n_test, int64_t features,
                 int64_t classes, uint64_t seed, char *err, size_t errlen) {
  int rc = check_args(out, n_train, n_test, features, classes, err, errlen);
  if (rc < 0) return rc;
  size_t nc = (size_t)classes * (size_t)features;
  double *centres = malloc(nc * sizeof *centres);
  if (!centres) return dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory", out);
  rng_t r = {seed, 0, 0.0};
  for (size_t i = 0; i < nc; i++) centres[i] = rng_normal(&r);
  double sigma = sqrt((double)features / 2.0) / 2.4;
  cluster_model m = {features, classes, sigma, 1.0 / sqrt(1.0 + sigma * sigma), centres};
  dpt_io__writer w = {H5I_INVALID_HID, out, NULL};
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  rc = synth_all(&w, &r, &m, n_train, n_test, err, errlen);
  dpt_io__quiet_end(&q);
  free(centres);
  return rc;
}

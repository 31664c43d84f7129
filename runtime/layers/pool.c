/* pool.c — torch's 2-d pooling per channel plane: MaxPool2d, AvgPool2d (count_include_pad,
 * ceil_mode off, dilation 1) and global average pooling ([C, H, W] -> [C, 1, 1], as
 * AdaptiveAvgPool2d(1)).
 *
 * Invariants:
 * - Bitwise torch 1.13's CPU kernels (aten/src/ATen/native/cpu/{Max,Avg}PoolKernel.cpp): the
 *   window is clipped as there; max takes the first maximum in row-major window order (a NaN
 *   wins); an average is the float sum in row-major window order divided by the window size
 *   counted with padding; backward adds, output position by output position in row-major
 *   order, dy (max) or dy / size (average) into a zeroed dx.
 * - Global average pooling is avgpool2d with the whole plane as kernel (what the recordings
 *   compare bitwise); torch's AdaptiveAvgPool2d(1) computes a mean whose summation order
 *   differs in the last bits.
 * - No parameters, no scratch: max backward finds the maximum again from x.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

/* Largest plane or kernel side: a window's size (kh*kw) and every index stay within int. */
#define POOL_MAX_SIDE (1 << 15)

typedef struct {
  int c, h, w, oh, ow;
  int kh, kw, sh, sw, ph, pw;
} pool_state;

static const char *const pool_keys[] = {"kernel", "kh", "kw", "stride", "padding", NULL};

static int pool_finish(dpt_layer *l, pool_state *st, char *err, size_t errlen) {
  pool_state *s = malloc(sizeof *s);
  if (!s) {
    snprintf(err, errlen, "%s: out of memory", l->name);
    return DPT_ENOMEM;
  }
  *s = *st;
  l->state = s;
  l->out.rank = 3;
  l->out.dims[0] = s->c, l->out.dims[1] = s->oh, l->out.dims[2] = s->ow;
  return DPT_OK;
}

static int pool_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  int rc = dpt_layer_opt_known(l, opts, pool_keys, err, errlen);
  if (!rc) rc = dpt_layer_chw(l, err, errlen);
  if (rc) return rc;
  long k, kh, kw, s, sh, sw, pad;
  if ((rc = dpt_layer_opt_long(l, opts, "kernel", 0, &k, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "kh", k, &kh, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "kw", k, &kw, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "stride", 0, &s, err, errlen)) ||
      (rc = dpt_layer_opt_count(l, opts, "padding", 0, &pad, err, errlen)))
    return rc;
  if (!kh || !kw) {
    snprintf(err, errlen, "%s: option 'kernel' is missing (expected %s)", l->name, l->ops->help);
    return DPT_EINVAL;
  }
  sh = s ? s : kh, sw = s ? s : kw; /* torch: stride defaults to the kernel */
  if (2 * pad > kh || 2 * pad > kw) {
    snprintf(err, errlen, "%s: padding=%ld is more than half the kernel %ldx%ld", l->name, pad, kh,
             kw);
    return DPT_EINVAL;
  }
  int64_t h = l->in.dims[1], w = l->in.dims[2];
  if (h > POOL_MAX_SIDE || w > POOL_MAX_SIDE || kh > POOL_MAX_SIDE || kw > POOL_MAX_SIDE) {
    snprintf(err, errlen, "%s: a plane or kernel side above %d is not supported", l->name,
             POOL_MAX_SIDE);
    return DPT_EINVAL;
  }
  if (h + 2 * pad < kh || w + 2 * pad < kw) {
    char got[96];
    snprintf(err, errlen, "%s: kernel %ldx%ld does not fit the input %s padded by %ld", l->name, kh,
             kw, dpt_layer_shape_str(&l->in, got, sizeof got), pad);
    return DPT_EINVAL;
  }
  pool_state st = {.c = (int)l->in.dims[0],
                   .h = (int)h,
                   .w = (int)w,
                   .oh = (int)((h + 2 * pad - kh) / sh + 1),
                   .ow = (int)((w + 2 * pad - kw) / sw + 1),
                   .kh = (int)kh,
                   .kw = (int)kw,
                   .sh = (int)sh,
                   .sw = (int)sw,
                   .ph = (int)pad,
                   .pw = (int)pad};
  return pool_finish(l, &st, err, errlen);
}

static int gap_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  if (opts && opts[0]) {
    snprintf(err, errlen, "%s: %s takes no options (got '%s')", l->name, l->ops->kind, opts);
    return DPT_EINVAL;
  }
  int rc = dpt_layer_chw(l, err, errlen);
  if (rc) return rc;
  if (l->in.dims[1] > POOL_MAX_SIDE || l->in.dims[2] > POOL_MAX_SIDE) {
    snprintf(err, errlen, "%s: a plane of %lldx%lld is too large (sides up to %d)", l->name,
             (long long)l->in.dims[1], (long long)l->in.dims[2], POOL_MAX_SIDE);
    return DPT_EINVAL;
  }
  int h = (int)l->in.dims[1], w = (int)l->in.dims[2];
  pool_state st = {.c = (int)l->in.dims[0],
                   .h = h,
                   .w = w,
                   .oh = 1,
                   .ow = 1,
                   .kh = h,
                   .kw = w,
                   .sh = h,
                   .sw = w};
  return pool_finish(l, &st, err, errlen);
}

static void pool_destroy(dpt_layer *l) {
  free(l->state);
  l->state = NULL;
}

/* The window of output (oy, ox) clipped to the input: rows [*y0, *y1), columns [*x0, *x1);
 * returns the window's size counted with padding (torch's pool_size). */
static int window(const pool_state *s, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
  int a = oy * s->sh - s->ph, b = ox * s->sw - s->pw;
  int a1 = a + s->kh < s->h + s->ph ? a + s->kh : s->h + s->ph;
  int b1 = b + s->kw < s->w + s->pw ? b + s->kw : s->w + s->pw;
  int size = (a1 - a) * (b1 - b);
  *y0 = a > 0 ? a : 0, *x0 = b > 0 ? b : 0;
  *y1 = a1 < s->h ? a1 : s->h, *x1 = b1 < s->w ? b1 : s->w;
  return size;
}

/* --- max --- */

/* Index in the plane of the first maximum of the window (torch's maxindex). */
static size_t argmax(const pool_state *s, const float *plane, int oy, int ox, float *maxval) {
  int y0, y1, x0, x1;
  window(s, oy, ox, &y0, &y1, &x0, &x1);
  size_t best = (size_t)y0 * (size_t)s->w + (size_t)x0;
  float m = -INFINITY;
  for (int iy = y0; iy < y1; iy++)
    for (int ix = x0; ix < x1; ix++) {
      size_t at = (size_t)iy * (size_t)s->w + (size_t)ix;
      float v = plane[at];
      if (v > m || isnan(v)) m = v, best = at;
    }
  *maxval = m;
  return best;
}

static void maxpool_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                            const dpt_layer_pass *p) {
  (void)params, (void)p;
  const pool_state *s = l->state;
  size_t in_plane = (size_t)s->h * (size_t)s->w, out_plane = (size_t)s->oh * (size_t)s->ow;
  for (size_t q = 0; q < n * (size_t)s->c; q++)
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++)
        argmax(s, x + q * in_plane, oy, ox, &y[q * out_plane + (size_t)oy * (size_t)s->ow + ox]);
}

static void maxpool_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                             const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  const pool_state *s = l->state;
  size_t in_plane = (size_t)s->h * (size_t)s->w, out_plane = (size_t)s->oh * (size_t)s->ow;
  memset(dx, 0, n * l->in_numel * sizeof *dx);
  for (size_t q = 0; q < n * (size_t)s->c; q++)
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++) {
        float m;
        size_t at = argmax(s, x + q * in_plane, oy, ox, &m);
        dx[q * in_plane + at] += dy[q * out_plane + (size_t)oy * (size_t)s->ow + ox];
      }
}

/* --- average --- */

static void avgpool_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                            const dpt_layer_pass *p) {
  (void)params, (void)p;
  const pool_state *s = l->state;
  size_t in_plane = (size_t)s->h * (size_t)s->w, out_plane = (size_t)s->oh * (size_t)s->ow;
  for (size_t q = 0; q < n * (size_t)s->c; q++) {
    const float *plane = x + q * in_plane;
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++) {
        int y0, y1, x0, x1, size = window(s, oy, ox, &y0, &y1, &x0, &x1);
        float sum = 0.0f;
        for (int iy = y0; iy < y1; iy++)
          for (int ix = x0; ix < x1; ix++) sum += plane[(size_t)iy * (size_t)s->w + (size_t)ix];
        y[q * out_plane + (size_t)oy * (size_t)s->ow + ox] = sum / (float)size;
      }
  }
}

static void avgpool_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                             const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)x, (void)y, (void)p;
  const pool_state *s = l->state;
  size_t in_plane = (size_t)s->h * (size_t)s->w, out_plane = (size_t)s->oh * (size_t)s->ow;
  memset(dx, 0, n * l->in_numel * sizeof *dx);
  for (size_t q = 0; q < n * (size_t)s->c; q++) {
    float *plane = dx + q * in_plane;
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++) {
        int y0, y1, x0, x1, size = window(s, oy, ox, &y0, &y1, &x0, &x1);
        float delta = dy[q * out_plane + (size_t)oy * (size_t)s->ow + ox] / (float)size;
        for (int iy = y0; iy < y1; iy++)
          for (int ix = x0; ix < x1; ix++) plane[(size_t)iy * (size_t)s->w + (size_t)ix] += delta;
      }
  }
}

#define POOL_HELP ", stride=kernel, padding=0 (at most kernel/2); input [C, H, W]"
const dpt_layer_ops dpt_layer_maxpool2d = {
    .kind = "maxpool2d",
    .help = "kernel=K (or kh=,kw=)" POOL_HELP,
    .setup = pool_setup,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .destroy = pool_destroy,
};
const dpt_layer_ops dpt_layer_avgpool2d = {
    .kind = "avgpool2d",
    .help = "kernel=K (or kh=,kw=)" POOL_HELP " (padding counts in the average)",
    .setup = pool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .destroy = pool_destroy,
};
const dpt_layer_ops dpt_layer_globalavgpool2d = {
    .kind = "globalavgpool2d",
    .help = "no options: [C, H, W] -> [C, 1, 1], the mean of each plane",
    .setup = gap_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .destroy = pool_destroy,
};

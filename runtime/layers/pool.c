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

/* Without padding every window lies inside the plane (oh, ow are floor divisions): the
 * window's row-major scan starts at (oy*sh, ox*sw); the same first-maximum rule as argmax. */
static size_t argmax_inside(const pool_state *s, const float *restrict plane, size_t at0,
                            float *maxval) {
  size_t best = at0;
  float m = plane[at0]; /* argmax's first step: v > -inf, or v is NaN, or v = -inf = m */
  for (int i = 0; i < s->kh; i++)
    for (int j = 0; j < s->kw; j++) {
      size_t at = at0 + (size_t)i * (size_t)s->w + (size_t)j;
      float v = plane[at];
      if (v > m || v != v) m = v, best = at;
    }
  *maxval = m;
  return best;
}

/* --- 2x2 windows at stride 2, no padding: the usual CNN pooling, on one pair of input rows
 * r0, r1 (ow outputs). The first maximum in the order r0[2ox], r0[2ox+1], r1[2ox], r1[2ox+1]
 * with argmax's rule (v > m or v is NaN replaces m), without branches: on data the
 * comparisons are coin flips that a branch predictor loses. Forward writes y[ox]; backward
 * writes the whole 2x2 window of dx: dy at the maximum (as 0 + dy, what += into a zeroed dx
 * gives), 0 elsewhere. --- */

#ifdef __AVX512F__
#include <immintrin.h>

/* Masks of the input floats of outputs [ox, ox + len), len <= 16: 2*len floats from 2*ox, in
 * two vectors of 16. */
static inline void pair_masks(int len, __mmask16 *klo, __mmask16 *khi) {
  *klo = (__mmask16)(len >= 8 ? 0xffff : (1u << (2 * len)) - 1);
  *khi = (__mmask16)(len >= 16 ? 0xffff : len > 8 ? (1u << (2 * (len - 8))) - 1 : 0);
}

/* Window offsets of the maximum (0: r0 even, 1: r0 odd, 2: r1 even, 3: r1 odd) and its value
 * for outputs [ox, ox + len), len <= 16 (lanes past len are 0). */
static inline __m512i max22_v(const float *r0, const float *r1, int ox, int len, __m512 *maxv) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  __mmask16 klo, khi;
  pair_masks(len, &klo, &khi);
  __m512 a0 = _mm512_maskz_loadu_ps(klo, r0 + 2 * ox),
         a1 = _mm512_maskz_loadu_ps(khi, r0 + 2 * ox + 16);
  __m512 b0 = _mm512_maskz_loadu_ps(klo, r1 + 2 * ox),
         b1 = _mm512_maskz_loadu_ps(khi, r1 + 2 * ox + 16);
  __m512 v[4] = {_mm512_permutex2var_ps(a0, even, a1), _mm512_permutex2var_ps(a0, odd, a1),
                 _mm512_permutex2var_ps(b0, even, b1), _mm512_permutex2var_ps(b0, odd, b1)};
  __m512 m = v[0];
  __m512i at = _mm512_setzero_si512();
  for (int q = 1; q < 4; q++) {
    __mmask16 t =
        _mm512_cmp_ps_mask(v[q], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v[q], v[q], _CMP_UNORD_Q);
    m = _mm512_mask_mov_ps(m, t, v[q]);
    at = _mm512_mask_mov_epi32(at, t, _mm512_set1_epi32(q));
  }
  *maxv = m;
  return at;
}

static void max22_fwd(const float *r0, const float *r1, int ow, float *y) {
  for (int ox = 0; ox < ow; ox += 16) {
    int len = ow - ox >= 16 ? 16 : ow - ox;
    __mmask16 k = (__mmask16)(len == 16 ? 0xffff : (1u << len) - 1);
    __m512 m;
    max22_v(r0, r1, ox, len, &m);
    _mm512_mask_storeu_ps(y + ox, k, m);
  }
}

static void max22_bwd(const float *r0, const float *r1, int ow, const float *dy, float *d0,
                      float *d1, int relu) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  for (int ox = 0; ox < ow; ox += 16) {
    int len = ow - ox >= 16 ? 16 : ow - ox;
    __mmask16 k = (__mmask16)(len == 16 ? 0xffff : (1u << len) - 1);
    __m512 m;
    __m512i at = max22_v(r0, r1, ox, len, &m);
    __m512 g = _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(k, dy + ox));
    if (relu) /* relu's backward: 0 where its output, the window's maximum, is <= 0 */
      g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_NLE_UQ), g);
    __m512 w[4];
    for (int q = 0; q < 4; q++)
      w[q] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(q)), g);
    __mmask16 klo, khi;
    pair_masks(len, &klo, &khi);
    _mm512_mask_storeu_ps(d0 + 2 * ox, klo, _mm512_permutex2var_ps(w[0], lo, w[1]));
    _mm512_mask_storeu_ps(d0 + 2 * ox + 16, khi, _mm512_permutex2var_ps(w[0], hi, w[1]));
    _mm512_mask_storeu_ps(d1 + 2 * ox, klo, _mm512_permutex2var_ps(w[2], lo, w[3]));
    _mm512_mask_storeu_ps(d1 + 2 * ox + 16, khi, _mm512_permutex2var_ps(w[2], hi, w[3]));
  }
}
#else
static inline int max22_at(const float *r0, const float *r1, int ox, float *maxval) {
  float v[4] = {r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]}, m = v[0];
  int at = 0;
  for (int q = 1; q < 4; q++) {
    int t = v[q] > m || v[q] != v[q];
    m = t ? v[q] : m, at = t ? q : at;
  }
  *maxval = m;
  return at;
}

static void max22_fwd(const float *r0, const float *r1, int ow, float *y) {
  for (int ox = 0; ox < ow; ox++) max22_at(r0, r1, ox, &y[ox]);
}

static void max22_bwd(const float *r0, const float *r1, int ow, const float *dy, float *d0,
                      float *d1, int relu) {
  for (int ox = 0; ox < ow; ox++) {
    float m, g = 0.0f + dy[ox];
    int at = max22_at(r0, r1, ox, &m);
    if (relu && m <= 0.0f) g = 0.0f;
    d0[2 * ox] = at == 0 ? g : 0.0f, d0[2 * ox + 1] = at == 1 ? g : 0.0f;
    d1[2 * ox] = at == 2 ? g : 0.0f, d1[2 * ox + 1] = at == 3 ? g : 0.0f;
  }
}
#endif

static void maxpool_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                            const dpt_layer_pass *p) {
  (void)params, (void)p;
  const pool_state *s = l->state;
  size_t in_plane = (size_t)s->h * (size_t)s->w, out_plane = (size_t)s->oh * (size_t)s->ow;
  size_t w = (size_t)s->w;
  if (s->ph == 0 && s->pw == 0) {
    int k22 = s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2;
    for (size_t q = 0; q < n * (size_t)s->c; q++) {
      const float *plane = x + q * in_plane;
      float *yq = y + q * out_plane;
      for (int oy = 0; oy < s->oh; oy++) {
        const float *r0 = plane + (size_t)oy * (size_t)s->sh * w;
        float *yr = yq + (size_t)oy * (size_t)s->ow;
        if (k22)
          max22_fwd(r0, r0 + w, s->ow, yr);
        else
          for (int ox = 0; ox < s->ow; ox++)
            argmax_inside(s, plane, (size_t)(r0 - plane) + (size_t)ox * (size_t)s->sw, &yr[ox]);
      }
    }
    return;
  }
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
  size_t w = (size_t)s->w;
  int k22 = s->ph == 0 && s->pw == 0 && s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2;
  /* with relu_in, the preceding relu's backward too: nothing reaches a position whose value
   * (relu's output) is <= 0, which relu would have zeroed (the rest of dx is 0 either way) */
  int relu = l->relu_in;
  /* the 2x2 path writes every window whole: only an odd last row or column stays to zero */
  if (!k22 || s->h % 2 || s->w % 2) memset(dx, 0, n * l->in_numel * sizeof *dx);
  if (s->ph == 0 && s->pw == 0) { /* as maxpool_forward */
    for (size_t q = 0; q < n * (size_t)s->c; q++) {
      const float *plane = x + q * in_plane, *dyq = dy + q * out_plane;
      float *dxq = dx + q * in_plane;
      for (int oy = 0; oy < s->oh; oy++) {
        size_t r = (size_t)oy * (size_t)s->sh * w;
        const float *dyr = dyq + (size_t)oy * (size_t)s->ow;
        float m;
        if (k22) /* disjoint windows, each written whole */
          max22_bwd(plane + r, plane + r + w, s->ow, dyr, dxq + r, dxq + r + w, relu);
        else
          for (int ox = 0; ox < s->ow; ox++) {
            size_t at = argmax_inside(s, plane, r + (size_t)ox * (size_t)s->sw, &m);
            if (!(relu && m <= 0.0f)) dxq[at] += dyr[ox];
          }
      }
    }
    return;
  }
  for (size_t q = 0; q < n * (size_t)s->c; q++)
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++) {
        float m;
        size_t at = argmax(s, x + q * in_plane, oy, ox, &m);
        if (!(relu && m <= 0.0f))
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
    .fuse_relu_bwd = 1,
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

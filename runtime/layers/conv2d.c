/* conv2d.c — torch.nn.Conv2d (dilation 1, zero padding, bias) through cblas_sgemm: the columns
 * (im2col) of a group of samples side by side, one product per conv group; backward is the
 * transposed products and col2im.
 *
 * Invariants:
 * - Parameters "<name>.weight" [out, in/groups, kh, kw] then "<name>.bias" [out], contiguous,
 *   as torch's state_dict; initialised as torch does: weight kaiming_uniform_(a=sqrt(5)), i.e.
 *   uniform in +-gain*sqrt(3/fan_in) with gain = sqrt(2/(1+a^2)), then bias uniform in
 *   +-1/sqrt(fan_in), fan_in = in/groups*kh*kw. Both bounds are 1/sqrt(fan_in).
 * - Working memory is the net's scratch (conv_scratch: the columns [in*kh*kw, nb*oh*ow] and the
 *   outputs or output gradients [out, nb*oh*ow] of nb samples, a conv group's rows contiguous)
 *   and the bias sums allocated in setup: forward and backward allocate nothing.
 * - Samples go in groups of group_n(n) in sample order, a function of the batch size n only,
 *   so the same inputs and batch size give bitwise the same results (OpenBLAS's sums depend on
 *   the product's width, so a sample's output may differ in the last bits between batch
 *   sizes; the net calls a layer once per segment, so the sizes do not depend on W). The bias
 *   gradient is summed in double, sample by sample in CONV_LANES partial sums.
 * - Stride-1 "same" convolutions (output plane = input plane) copy and add each kernel tap's
 *   plane as one shifted run (same_shift), the columns that would wrap around a row's end
 *   selected away by a per-column bit mask (cmask); the others go row by row.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

typedef struct {
  int cin, h, w;      /* input [cin, h, w] */
  int cout, oh, ow;   /* output [cout, oh, ow] */
  int kh, kw, sh, sw; /* kernel and stride */
  int ph, pw, groups; /* zero padding on each side, groups */
  int kg;             /* column rows per group: cin/groups*kh*kw */
  double *bacc;       /* [cout] bias-gradient sums */
  uint32_t *cmask;    /* same_shift only: [kw][oh*ow], all ones where kernel column j reads
                         inside the input row, zero where it would wrap (NULL otherwise) */
} conv_state;

static const char *const conv_keys[] = {"out",     "kernel", "kh", "kw", "stride",
                                        "padding", "groups", "in", NULL};

static int same_shift(const conv_state *s);

static int conv_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  int rc = dpt_layer_opt_known(l, opts, conv_keys, err, errlen);
  if (!rc) rc = dpt_layer_chw(l, err, errlen);
  if (rc) return rc;
  long out, k, kh, kw, s, pad, g, in;
  int64_t c = l->in.dims[0], h = l->in.dims[1], w = l->in.dims[2];
  if ((rc = dpt_layer_opt_long(l, opts, "out", -1, &out, err, errlen))) return rc;
  if ((rc = dpt_layer_opt_long(l, opts, "kernel", 0, &k, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "kh", k, &kh, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "kw", k, &kw, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "stride", 1, &s, err, errlen)) ||
      (rc = dpt_layer_opt_count(l, opts, "padding", 0, &pad, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "groups", 1, &g, err, errlen)) ||
      (rc = dpt_layer_opt_long(l, opts, "in", c, &in, err, errlen)))
    return rc;
  if (!kh || !kw) {
    snprintf(err, errlen, "%s: option 'kernel' is missing (expected %s)", l->name, l->ops->help);
    return DPT_EINVAL;
  }
  if (in != c) {
    snprintf(err, errlen, "%s: expects %ld input channels, gets %lld", l->name, in, (long long)c);
    return DPT_EINVAL;
  }
  if (c % g || out % g) {
    snprintf(err, errlen,
             "%s: groups=%ld must divide the input channels (%lld) and the output channels (%ld)",
             l->name, g, (long long)c, out);
    return DPT_EINVAL;
  }
  if (h + 2 * pad > INT_MAX / 2 || w + 2 * pad > INT_MAX / 2) {
    snprintf(err, errlen, "%s: padding=%ld is too large", l->name, pad);
    return DPT_EINVAL;
  }
  if (h + 2 * pad < kh || w + 2 * pad < kw) {
    char got[96];
    snprintf(err, errlen, "%s: kernel %ldx%ld is larger than the input %s padded by %ld", l->name,
             kh, kw, dpt_layer_shape_str(&l->in, got, sizeof got), pad);
    return DPT_EINVAL;
  }
  /* the sides are below 2^30 now, so oh*ow and the index arithmetic in int cannot overflow */
  int64_t oh = (h + 2 * pad - kh) / s + 1, ow = (w + 2 * pad - kw) / s + 1, ncol = oh * ow;
  int64_t kg = c / g * kh * kw, rows, cells;
  if (__builtin_mul_overflow(c, kh * kw, &rows) || __builtin_mul_overflow(rows, ncol, &cells) ||
      cells > INT_MAX) {
    snprintf(err, errlen, "%s: convolution too large for its column buffer (%lld x %lld x %lld)",
             l->name, (long long)c, (long long)(kh * kw), (long long)ncol);
    return DPT_EINVAL;
  }
  int64_t wdims[4] = {out, c / g, kh, kw}, bdims[1] = {out};
  if ((rc = dpt_layer_param(l, "weight", 4, wdims, err, errlen)) < 0) return rc;
  if ((rc = dpt_layer_param(l, "bias", 1, bdims, err, errlen)) < 0) return rc;
  conv_state *st = calloc(1, sizeof *st);
  double *bacc = malloc((size_t)out * sizeof *bacc);
  if (!st || !bacc) {
    free(st), free(bacc);
    snprintf(err, errlen, "%s: out of memory", l->name);
    return DPT_ENOMEM;
  }
  *st = (conv_state){.cin = (int)c,
                     .h = (int)h,
                     .w = (int)w,
                     .cout = (int)out,
                     .oh = (int)oh,
                     .ow = (int)ow,
                     .kh = (int)kh,
                     .kw = (int)kw,
                     .sh = (int)s,
                     .sw = (int)s,
                     .ph = (int)pad,
                     .pw = (int)pad,
                     .groups = (int)g,
                     .kg = (int)kg,
                     .bacc = bacc};
  l->state = st;
  if (same_shift(st)) {
    size_t n = (size_t)oh * (size_t)ow;
    st->cmask = malloc((size_t)kw * n * sizeof *st->cmask);
    if (!st->cmask) {
      snprintf(err, errlen, "%s: out of memory", l->name);
      return DPT_ENOMEM; /* conv_destroy frees the state */
    }
    for (long j = 0; j < kw; j++)
      for (size_t q = 0; q < n; q++) {
        long c = (long)(q % (size_t)ow) + j - pad;
        st->cmask[(size_t)j * n + q] = c >= 0 && c < w ? UINT32_MAX : 0;
      }
  }
  l->out.rank = 3;
  l->out.dims[0] = out, l->out.dims[1] = oh, l->out.dims[2] = ow;
  return DPT_OK;
}

static void conv_destroy(dpt_layer *l) {
  conv_state *s = l->state;
  if (s) free(s->bacc), free(s->cmask);
  free(s);
  l->state = NULL;
}

static void conv_init(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  const dpt_tensor *wt = &l->tensors[0];
  double fan_in = (double)(wt->dims[1] * wt->dims[2] * wt->dims[3]);
  double a = sqrt(5.0), gain = sqrt(2.0 / (1.0 + a * a));
  double bound[2] = {gain * sqrt(3.0 / fan_in), 1.0 / sqrt(fan_in)};
  for (int t = 0; t < 2; t++) {
    float *p = params + dpt_layer_at(l, t);
    for (size_t i = 0; i < l->tensors[t].numel; i++)
      p[i] = (float)((2.0 * rng->uniform(rng->ctx) - 1.0) * bound[t]);
  }
}

/* --- im2col / col2im for one sample ---
 * The sample's columns are a [cin*kh*kw, ncol] block of a wider matrix with leading
 * dimension ld (a group of samples side by side). */

/* The output columns [*lo, *hi) whose input column ox*sw - pw + j lies inside [0, w). */
static void inside(int ow, int sw, int pw, int w, int j, int *lo, int *hi) {
  int a = pw - j, b = w + pw - j; /* ox*sw >= a and ox*sw < b */
  *lo = a <= 0 ? 0 : (a + sw - 1) / sw;
  *hi = b <= 0 ? 0 : (b + sw - 1) / sw;
  if (*hi > ow) *hi = ow;
  if (*lo > *hi) *lo = *hi;
}

/* The output rows [*lo, *hi) whose input row oy*sh - ph + i lies inside [0, h). */
static void inside_rows(const conv_state *s, int i, int *lo, int *hi) {
  inside(s->oh, s->sh, s->ph, s->h, i, lo, hi);
}

/* Stride 1 and ow == w (a "same" convolution): kernel tap (i, j) reads the plane shifted by
 * (i - ph) rows and (j - pw) columns, so its column row is one contiguous copy of the plane at
 * that offset, with the rows above and below the plane and the columns that wrapped around a
 * row's end set to zero. */
static int same_shift(const conv_state *s) {
  return s->sh == 1 && s->sw == 1 && s->ow == s->w && s->oh == s->h;
}

/* For same_shift: tap (i, j) reads x[p + off] for output position p, off = (i - ph) * w +
 * (j - pw); positions [*lo, *hi) read inside the plane, and of those the ones whose column
 * wraps (cmask zero) read padding. */
static long shift_off(const conv_state *s, int i, int j, size_t *lo, size_t *hi) {
  long off = (long)(i - s->ph) * s->w + (j - s->pw), plane_n = (long)s->h * s->w;
  long a = off < 0 ? -off : 0, b = off > 0 ? plane_n - off : plane_n;
  if (a > plane_n) a = plane_n;
  if (b < a) b = a;
  *lo = (size_t)a, *hi = (size_t)b;
  return off;
}

/* same_shift: a tap's column row r[p] = x[p + off] where cmask (a select, exact), 0 elsewhere;
 * loops the compiler vectorises, no call per row */
static void shift_copy(const conv_state *s, int i, int j, const float *plane, float *restrict r) {
  size_t lo, hi, n = (size_t)s->h * (size_t)s->w;
  long off = shift_off(s, i, j, &lo, &hi);
  const uint32_t *restrict m = s->cmask + (size_t)j * n + lo;
  const float *restrict src = plane + ((long)lo + off);
  float *restrict dst = r + lo;
  for (size_t p = 0; p < lo; p++) r[p] = 0.0f;
  for (size_t q = 0; q < hi - lo; q++) dst[q] = m[q] ? src[q] : 0.0f;
  for (size_t p = hi; p < n; p++) r[p] = 0.0f;
}

/* same_shift's adjoint: plane[p + off] += r[p] where cmask, += +0 elsewhere inside the plane (a
 * sum that starts at +0 is never -0, so adding +0 changes no bit) */
static void shift_add(const conv_state *s, int i, int j, const float *r, float *plane) {
  size_t lo, hi, n = (size_t)s->h * (size_t)s->w;
  long off = shift_off(s, i, j, &lo, &hi);
  const uint32_t *restrict m = s->cmask + (size_t)j * n + lo;
  const float *restrict src = r + lo;
  float *restrict dst = plane + ((long)lo + off);
  for (size_t q = 0; q < hi - lo; q++) dst[q] += m[q] ? src[q] : 0.0f;
}

/* col[(c*kh + i)*kw + j][oy*ow + ox] = x[c][oy*sh - ph + i][ox*sw - pw + j], 0 outside. */
static void im2col(const conv_state *s, const float *restrict x, float *restrict col, size_t ld) {
  size_t plane_n = (size_t)s->h * (size_t)s->w, ow = (size_t)s->ow;
  int same = same_shift(s);
  for (int c = 0; c < s->cin; c++)
    for (int i = 0; i < s->kh; i++) {
      int ylo, yhi;
      inside_rows(s, i, &ylo, &yhi);
      for (int j = 0; j < s->kw; j++) {
        float *restrict row = col + (size_t)((c * s->kh + i) * s->kw + j) * ld;
        const float *plane = x + (size_t)c * plane_n;
        int lo, hi;
        inside(s->ow, s->sw, s->pw, s->w, j, &lo, &hi);
        if (same) {
          shift_copy(s, i, j, plane, row);
          continue;
        }
        memset(row, 0, (size_t)ylo * ow * sizeof *row);
        memset(row + (size_t)yhi * ow, 0, (size_t)(s->oh - yhi) * ow * sizeof *row);
        for (int oy = ylo; oy < yhi; oy++) {
          int iy = oy * s->sh - s->ph + i;
          float *restrict r = row + (size_t)oy * ow;
          const float *restrict src = plane + (size_t)iy * (size_t)s->w + j - s->pw;
          for (int ox = 0; ox < lo; ox++) r[ox] = 0.0f;
          if (s->sw == 1)
            for (int ox = lo; ox < hi; ox++) r[ox] = src[ox];
          else
            for (int ox = lo; ox < hi; ox++) r[ox] = src[(size_t)ox * (size_t)s->sw];
          for (int ox = hi; ox < s->ow; ox++) r[ox] = 0.0f;
        }
      }
    }
}

/* dx += the columns scattered back (the adjoint of im2col): each element of dx receives its
 * terms in (c, i, j) order, oy and ox being fixed by the position. dx is zeroed by the caller;
 * col is overwritten (the same-shift path zeroes the wrapped columns, adding +0 to a sum that
 * started at +0 changes nothing). */
static void col2im(const conv_state *s, float *restrict col, size_t ld, float *restrict dx) {
  size_t plane_n = (size_t)s->h * (size_t)s->w, ow = (size_t)s->ow;
  int same = same_shift(s);
  for (int c = 0; c < s->cin; c++)
    for (int i = 0; i < s->kh; i++) {
      int ylo, yhi;
      inside_rows(s, i, &ylo, &yhi);
      for (int j = 0; j < s->kw; j++) {
        float *restrict row = col + (size_t)((c * s->kh + i) * s->kw + j) * ld;
        float *plane = dx + (size_t)c * plane_n;
        int lo, hi;
        inside(s->ow, s->sw, s->pw, s->w, j, &lo, &hi);
        if (same) {
          shift_add(s, i, j, row, plane);
          continue;
        }
        for (int oy = ylo; oy < yhi; oy++) {
          int iy = oy * s->sh - s->ph + i;
          const float *restrict r = row + (size_t)oy * ow;
          float *restrict dst = plane + (size_t)iy * (size_t)s->w + j - s->pw;
          if (s->sw == 1)
            for (int ox = lo; ox < hi; ox++) dst[ox] += r[ox];
          else
            for (int ox = lo; ox < hi; ox++) dst[(size_t)ox * (size_t)s->sw] += r[ox];
        }
      }
    }
}

/* --- groups of samples ---
 * nb samples at a time: their columns side by side in col [cin*kh*kw, nb*ncol] (sample k's at
 * column k*ncol), outputs and output gradients in the same order in t [cout, nb*ncol]. One
 * sample's columns are usually enough: its products run near the sgemm rate from the cache
 * (for 14x14 planes and 32 input channels, [288, 196] is 226 KB); wider groups spill the
 * columns out of the core's cache and run slower. Small planes get groups up to about
 * CONV_GROUP_COLS columns so that the products are not too narrow. */
#define CONV_GROUP_COLS 256
#define CONV_GROUP_BYTES (512 * 1024) /* a group's columns stay in a 2 MB L2 with the rest */

/* Samples per group for a call on n samples: a function of n and the layer's shape only (the
 * grouping, hence every sum's order, is fixed by the batch size), never decreasing in n (the
 * scratch sized for the largest batch fits every smaller one). */
static size_t group_n(const conv_state *s, size_t n) {
  size_t ncol = (size_t)s->oh * (size_t)s->ow;
  size_t rows = (size_t)s->cin * (size_t)s->kh * (size_t)s->kw;
  size_t g = CONV_GROUP_COLS / ncol, gb = CONV_GROUP_BYTES / (rows * ncol * sizeof(float));
  if (gb < g) g = gb;
  if (g < 1) g = 1;
  return g < n ? g : n;
}

static size_t conv_scratch(const dpt_layer *l, size_t n) {
  const conv_state *s = l->state;
  size_t nb = group_n(s, n), cols = nb * (size_t)s->oh * (size_t)s->ow;
  /* t is needed only for groups of several samples (one sample's outputs are y itself) */
  return ((size_t)s->cin * (size_t)s->kh * (size_t)s->kw + (nb > 1 ? (size_t)s->cout : 0)) * cols;
}

/* t[o][k*ncol + p] = dy[k][o][p] for the group's nb samples. */
static void gather(const dpt_layer *l, const float *restrict dy, size_t nb, float *restrict t) {
  const conv_state *s = l->state;
  size_t ncol = (size_t)s->oh * (size_t)s->ow, ld = nb * ncol;
  for (size_t k = 0; k < nb; k++)
    for (int o = 0; o < s->cout; o++)
      memcpy(t + (size_t)o * ld + k * ncol, dy + k * l->out_numel + (size_t)o * ncol,
             ncol * sizeof *t);
}

/* Adds r[0, len) to *acc in double, in CONV_LANES interleaved partial sums combined in a fixed
 * order (a single chain of dependent double additions would cost its latency per element). */
#define CONV_LANES 8
static void sum_into(const float *restrict r, size_t len, double *acc) {
  double lane[CONV_LANES] = {0};
  size_t q = 0;
  for (; q + CONV_LANES <= len; q += CONV_LANES)
    for (int k = 0; k < CONV_LANES; k++) lane[k] += (double)r[q + (size_t)k];
  for (int k = 0; q < len; q++, k++) lane[k] += (double)r[q];
  double a = *acc;
  for (int k = 0; k < CONV_LANES; k++) a += lane[k];
  *acc = a;
}

/* --- passes --- */

static void conv_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                         const dpt_layer_pass *p) {
  (void)p;
  const conv_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  size_t ncol = (size_t)s->oh * (size_t)s->ow, og = (size_t)(s->cout / s->groups),
         kg = (size_t)s->kg, gn = group_n(s, n);
  for (size_t i0 = 0; i0 < n; i0 += gn) {
    size_t nb = n - i0 < gn ? n - i0 : gn, ld = nb * ncol;
    float *col = l->scratch, *yi = y + i0 * l->out_numel;
    /* one sample: y = b, then y += w col (the product added once to the bias, as below);
     * several: t = w col, then y = t + b sample by sample */
    float *t = nb > 1 ? col + (size_t)s->cin * (size_t)s->kh * (size_t)s->kw * ld : yi;
    if (nb == 1)
      for (int o = 0; o < s->cout; o++)
        for (size_t q = 0; q < ncol; q++) yi[(size_t)o * ncol + q] = b[o];
    for (size_t k = 0; k < nb; k++) im2col(s, x + (i0 + k) * l->in_numel, col + k * ncol, ld);
    for (int g = 0; g < s->groups; g++) /* t_g[og, ld] (+)= w_g[og, kg] col_g[kg, ld] */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)og, (int)ld, (int)kg, 1.0f,
                  w + (size_t)g * og * kg, (int)kg, col + (size_t)g * kg * ld, (int)ld,
                  nb == 1 ? 1.0f : 0.0f, t + (size_t)g * og * ld, (int)ld);
    if (nb > 1)
      for (size_t k = 0; k < nb; k++)
        for (int o = 0; o < s->cout; o++) {
          const float *restrict src = t + (size_t)o * ld + k * ncol;
          float *restrict dst = yi + k * l->out_numel + (size_t)o * ncol;
          float bo = b[o];
          for (size_t q = 0; q < ncol; q++) dst[q] = src[q] + bo;
        }
  }
}

/* dy of samples [i0, i0 + nb) as one [cout, nb * ncol] matrix (gathered behind the column
 * buffer when the group has several samples; one sample's dy already is one). */
static const float *grouped_dy(const dpt_layer *l, const conv_state *s, const float *dy, size_t i0,
                               size_t nb, size_t ld) {
  const float *t = dy + i0 * l->out_numel;
  if (nb == 1) return t;
  float *tt = l->scratch + (size_t)s->cin * (size_t)s->kh * (size_t)s->kw * ld;
  gather(l, t, nb, tt);
  return tt;
}

static void conv_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                            const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  const conv_state *s = l->state;
  float *gw = grad + dpt_layer_at(l, 0), *gb = grad + dpt_layer_at(l, 1);
  size_t ncol = (size_t)s->oh * (size_t)s->ow, og = (size_t)(s->cout / s->groups),
         kg = (size_t)s->kg, gn = group_n(s, n);
  double *acc = s->bacc;
  for (int o = 0; o < s->cout; o++) acc[o] = 0.0;
  for (size_t i0 = 0; i0 < n; i0 += gn) {
    size_t nb = n - i0 < gn ? n - i0 : gn, ld = nb * ncol;
    float *col = l->scratch;
    const float *t = grouped_dy(l, s, dy, i0, nb, ld);
    for (size_t k = 0; k < nb; k++) im2col(s, x + (i0 + k) * l->in_numel, col + k * ncol, ld);
    for (int g = 0; g < s->groups; g++) /* gw_g[og, kg] += t_g[og, ld] col_g[kg, ld]^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)og, (int)kg, (int)ld, 1.0f,
                  t + (size_t)g * og * ld, (int)ld, col + (size_t)g * kg * ld, (int)ld, 1.0f,
                  gw + (size_t)g * og * kg, (int)kg);
    for (int o = 0; o < s->cout; o++) sum_into(t + (size_t)o * ld, ld, &acc[o]);
  }
  for (int o = 0; o < s->cout; o++) gb[o] += (float)acc[o];
}

static void conv_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                          const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)x, (void)y, (void)p;
  const conv_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0);
  size_t ncol = (size_t)s->oh * (size_t)s->ow, og = (size_t)(s->cout / s->groups),
         kg = (size_t)s->kg, gn = group_n(s, n);
  for (size_t i0 = 0; i0 < n; i0 += gn) {
    size_t nb = n - i0 < gn ? n - i0 : gn, ld = nb * ncol;
    float *col = l->scratch;
    const float *t = grouped_dy(l, s, dy, i0, nb, ld);
    for (int g = 0; g < s->groups; g++) /* col_g[kg, ld] = w_g[og, kg]^T t_g[og, ld] */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kg, (int)ld, (int)og, 1.0f,
                  w + (size_t)g * og * kg, (int)kg, t + (size_t)g * og * ld, (int)ld, 0.0f,
                  col + (size_t)g * kg * ld, (int)ld);
    for (size_t k = 0; k < nb; k++) {
      float *dxi = dx + (i0 + k) * l->in_numel;
      memset(dxi, 0, l->in_numel * sizeof *dxi);
      col2im(s, col + k * ncol, ld, dxi);
    }
  }
}

const dpt_layer_ops dpt_layer_conv2d = {
    .kind = "conv2d",
    .help = "out=N, kernel=K (or kh=,kw=), stride=1, padding=0, groups=1 (in/groups channels per "
            "filter; groups=in is depthwise), in=C (optional check); with bias; input [C, H, W]",
    .setup = conv_setup,
    .init = conv_init,
    .forward = conv_forward,
    .param_grad = conv_param_grad,
    .backward = conv_backward,
    .scratch = conv_scratch,
    .destroy = conv_destroy,
};

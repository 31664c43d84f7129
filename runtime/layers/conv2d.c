/* conv2d.c — torch.nn.Conv2d (dilation 1, zero padding, bias): per sample, im2col of the input
 * into a fixed buffer and one cblas_sgemm per group; backward is the transposed products and
 * col2im.
 *
 * Invariants:
 * - Parameters "<name>.weight" [out, in/groups, kh, kw] then "<name>.bias" [out], contiguous,
 *   as torch's state_dict; initialised as torch does: weight kaiming_uniform_(a=sqrt(5)), i.e.
 *   uniform in +-gain*sqrt(3/fan_in) with gain = sqrt(2/(1+a^2)), then bias uniform in
 *   +-1/sqrt(fan_in), fan_in = in/groups*kh*kw. Both bounds are 1/sqrt(fan_in).
 * - The column buffer [in*kh*kw, oh*ow] (one sample, all groups; a group's rows contiguous) and
 *   the bias sums are allocated in setup: forward and backward allocate nothing. A 1x1
 *   convolution with stride 1 and no padding skips im2col (the sample is its column matrix).
 * - Samples are processed one after another and parameter gradients accumulate in sample
 *   order, so results are deterministic; the bias gradient is summed in double.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
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
  int direct;         /* 1x1, stride 1, no padding: the input is its own column matrix */
  float *col;         /* [cin*kh*kw, oh*ow] */
  double *bacc;       /* [cout] bias-gradient sums */
} conv_state;

static const char *const conv_keys[] = {"out",     "kernel", "kh", "kw", "stride",
                                        "padding", "groups", "in", NULL};

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
  float *col = malloc((size_t)cells * sizeof *col);
  double *bacc = malloc((size_t)out * sizeof *bacc);
  if (!st || !col || !bacc) {
    free(st), free(col), free(bacc);
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
                     .col = col,
                     .bacc = bacc,
                     .direct = kh == 1 && kw == 1 && s == 1 && pad == 0};
  l->state = st;
  l->out.rank = 3;
  l->out.dims[0] = out, l->out.dims[1] = oh, l->out.dims[2] = ow;
  return DPT_OK;
}

static void conv_destroy(dpt_layer *l) {
  conv_state *s = l->state;
  if (s) free(s->col), free(s->bacc);
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

/* --- im2col / col2im for one sample --- */

/* col[(c*kh + i)*kw + j][oy*ow + ox] = x[c][oy*sh - ph + i][ox*sw - pw + j], 0 outside. */
static void im2col(const conv_state *s, const float *restrict x, float *restrict col) {
  size_t ncol = (size_t)s->oh * (size_t)s->ow;
  for (int c = 0; c < s->cin; c++)
    for (int i = 0; i < s->kh; i++)
      for (int j = 0; j < s->kw; j++) {
        float *row = col + ((size_t)(c * s->kh + i) * (size_t)s->kw + (size_t)j) * ncol;
        const float *plane = x + (size_t)c * (size_t)s->h * (size_t)s->w;
        for (int oy = 0; oy < s->oh; oy++) {
          int iy = oy * s->sh - s->ph + i;
          float *r = row + (size_t)oy * (size_t)s->ow;
          if (iy < 0 || iy >= s->h) {
            for (int ox = 0; ox < s->ow; ox++) r[ox] = 0.0f;
            continue;
          }
          const float *src = plane + (size_t)iy * (size_t)s->w;
          for (int ox = 0; ox < s->ow; ox++) {
            int ix = ox * s->sw - s->pw + j;
            r[ox] = ix >= 0 && ix < s->w ? src[ix] : 0.0f;
          }
        }
      }
}

/* dx += the columns scattered back (the adjoint of im2col); dx is zeroed by the caller. */
static void col2im(const conv_state *s, const float *restrict col, float *restrict dx) {
  size_t ncol = (size_t)s->oh * (size_t)s->ow;
  for (int c = 0; c < s->cin; c++)
    for (int i = 0; i < s->kh; i++)
      for (int j = 0; j < s->kw; j++) {
        const float *row = col + ((size_t)(c * s->kh + i) * (size_t)s->kw + (size_t)j) * ncol;
        float *plane = dx + (size_t)c * (size_t)s->h * (size_t)s->w;
        for (int oy = 0; oy < s->oh; oy++) {
          int iy = oy * s->sh - s->ph + i;
          if (iy < 0 || iy >= s->h) continue;
          const float *r = row + (size_t)oy * (size_t)s->ow;
          float *dst = plane + (size_t)iy * (size_t)s->w;
          for (int ox = 0; ox < s->ow; ox++) {
            int ix = ox * s->sw - s->pw + j;
            if (ix >= 0 && ix < s->w) dst[ix] += r[ox];
          }
        }
      }
}

/* --- passes --- */

static void conv_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                         const dpt_layer_pass *p) {
  (void)p;
  const conv_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0), *b = params + dpt_layer_at(l, 1);
  int ncol = s->oh * s->ow, og = s->cout / s->groups;
  for (size_t i = 0; i < n; i++) {
    const float *xi = x + i * l->in_numel;
    float *yi = y + i * l->out_numel;
    for (int o = 0; o < s->cout; o++)
      for (int k = 0; k < ncol; k++) yi[(size_t)o * (size_t)ncol + (size_t)k] = b[o];
    const float *col = s->direct ? xi : s->col;
    if (!s->direct) im2col(s, xi, s->col);
    for (int g = 0; g < s->groups; g++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, og, ncol, s->kg, 1.0f,
                  w + (size_t)g * (size_t)og * (size_t)s->kg, s->kg,
                  col + (size_t)g * (size_t)s->kg * (size_t)ncol, ncol, 1.0f,
                  yi + (size_t)g * (size_t)og * (size_t)ncol, ncol);
  }
}

static void conv_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                            const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)y, (void)p;
  const conv_state *s = l->state;
  float *gw = grad + dpt_layer_at(l, 0), *gb = grad + dpt_layer_at(l, 1);
  int ncol = s->oh * s->ow, og = s->cout / s->groups;
  double *acc = s->bacc;
  for (int o = 0; o < s->cout; o++) acc[o] = 0.0;
  for (size_t i = 0; i < n; i++) {
    const float *dyi = dy + i * l->out_numel;
    const float *xi = x + i * l->in_numel, *col = s->direct ? xi : s->col;
    if (!s->direct) im2col(s, xi, s->col);
    for (int g = 0; g < s->groups; g++) /* gw_g[og, kg] += dy_g[og, ncol] col_g[kg, ncol]^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, og, s->kg, ncol, 1.0f,
                  dyi + (size_t)g * (size_t)og * (size_t)ncol, ncol,
                  col + (size_t)g * (size_t)s->kg * (size_t)ncol, ncol, 1.0f,
                  gw + (size_t)g * (size_t)og * (size_t)s->kg, s->kg);
    for (int o = 0; o < s->cout; o++)
      for (int k = 0; k < ncol; k++) acc[o] += dyi[(size_t)o * (size_t)ncol + (size_t)k];
  }
  for (int o = 0; o < s->cout; o++) gb[o] += (float)acc[o];
}

static void conv_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                          const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)x, (void)y, (void)p;
  const conv_state *s = l->state;
  const float *w = params + dpt_layer_at(l, 0);
  int ncol = s->oh * s->ow, og = s->cout / s->groups;
  for (size_t i = 0; i < n; i++) {
    const float *dyi = dy + i * l->out_numel;
    float *dxi = dx + i * l->in_numel, *col = s->direct ? dxi : s->col;
    for (int g = 0; g < s->groups; g++) /* col_g[kg, ncol] = w_g[og, kg]^T dy_g[og, ncol] */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->kg, ncol, og, 1.0f,
                  w + (size_t)g * (size_t)og * (size_t)s->kg, s->kg,
                  dyi + (size_t)g * (size_t)og * (size_t)ncol, ncol, 0.0f,
                  col + (size_t)g * (size_t)s->kg * (size_t)ncol, ncol);
    if (s->direct) continue;
    memset(dxi, 0, l->in_numel * sizeof *dxi);
    col2im(s, s->col, dxi);
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
    .destroy = conv_destroy,
};

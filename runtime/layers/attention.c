/* attention.c — causal multi-head self-attention on [T, C] samples, as nanoGPT's
 * CausalSelfAttention without dropout: qkv = c_attn(x) split into q, k, v of C each, heads of
 * hd = C / heads, att = softmax(mask((q @ k^T) * (1 / sqrt(hd)))), y = c_proj(att @ v).
 *
 * Invariants:
 * - Parameters "<name>.c_attn.weight" [3C, C], ".c_attn.bias" [3C], ".c_proj.weight" [C, C],
 *   ".c_proj.bias" [C], initialised as two torch nn.Linear (uniform +-1/sqrt(C), weight then
 *   bias), so a torch module with submodules c_attn and c_proj loads them (nanoGPT's causal
 *   "bias" mask buffer is not a parameter; torch needs it non-persistent or strict=False).
 * - The projections (c_attn, c_proj, their gradients) are one product over the call's n * T
 *   rows, as linear.c's (the net calls a layer per segment, so in deterministic mode their
 *   shapes do not depend on W); the attention products are one sample's and head's, in
 *   blocks of ATTN_BLOCK rows (or columns) over the unmasked part only (the masked entries,
 *   exact zeros, are left out of the sums rather than added).
 * - Per-sample activations (qkv, the attention probabilities, the heads' output) live in the
 *   scratch, each kind in its own region of `cap` samples (so the call's samples are
 *   consecutive rows there), at sample pass->at + i. param_grad overwrites what it no longer
 *   needs: the heads' output by its gradient (once c_proj's weight gradient is taken), each
 *   sample's qkv by its gradient (the heads' gradients go to a one-sample temp first), and
 *   backward only multiplies the qkv gradient by c_attn.weight, relying on the net's order
 *   (param_grad once, then backward, with the same dy). No allocation per step.
 * - Bias gradients are summed in double, row by row in order. A softmax row's sum (and its
 *   backward's dot) is in double through vmath.h's lane sums (a fixed order, bitwise the
 *   same for any batch or W, that vectorises); exp is vmath.h's.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "vmath.h"

typedef struct {
  int t, c, heads, hd;
  size_t cap;  /* samples the scratch holds (its last scratch(n) call) */
  size_t temp; /* scratch floats shared by the samples (first in the scratch) */
  double *acc; /* [4C] bias-gradient sums */
} attn_state;

static const char *const attn_keys[] = {"heads", NULL};

static int attn_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  long heads;
  int rc = dpt_layer_opt_known(l, opts, attn_keys, err, errlen);
  if (!rc) rc = dpt_layer_opt_long(l, opts, "heads", -1, &heads, err, errlen);
  if (rc) return rc;
  char got[96];
  if (l->in.rank != 2)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: attention expects a sample of shape [T, C], gets %s", l->name,
                    dpt_layer_shape_str(&l->in, got, sizeof got));
  int64_t t = l->in.dims[0], c = l->in.dims[1];
  if (c % heads)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: heads=%ld does not divide the %lld channels of %s", l->name, heads,
                    (long long)c, dpt_layer_shape_str(&l->in, got, sizeof got));
  if (t > (1 << 15) || c > INT_MAX / 3 || (double)t * (double)t * (double)heads > 1e12 ||
      (double)t * (double)c * 3 > INT_MAX)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: sample %s is too large for attention", l->name,
                    dpt_layer_shape_str(&l->in, got, sizeof got));
  int64_t wa[2] = {3 * c, c}, ba[1] = {3 * c}, wp[2] = {c, c}, bp[1] = {c};
  if ((rc = dpt_layer_param(l, "c_attn.weight", 2, wa, err, errlen)) < 0 ||
      (rc = dpt_layer_param(l, "c_attn.bias", 1, ba, err, errlen)) < 0 ||
      (rc = dpt_layer_param(l, "c_proj.weight", 2, wp, err, errlen)) < 0 ||
      (rc = dpt_layer_param(l, "c_proj.bias", 1, bp, err, errlen)) < 0)
    return rc;
  attn_state *s = malloc(sizeof *s);
  double *acc = malloc(4 * (size_t)c * sizeof *acc);
  if (!s || !acc) {
    free(s), free(acc);
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  }
  size_t T = (size_t)t;
  s->t = (int)t, s->c = (int)c, s->heads = (int)heads, s->hd = (int)(c / heads), s->acc = acc;
  s->cap = 0;
  s->temp = T * T + 3 * T * (size_t)c; /* datt, one sample's dqkv */
  l->state = s;
  l->out = l->in;
  return DPT_OK;
}

static void attn_destroy(dpt_layer *l) {
  attn_state *s = l->state;
  if (s) free(s->acc);
  free(s);
  l->state = NULL;
}

static void attn_init(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  double bound = 1.0 / sqrt((double)l->tensors[0].dims[1]); /* both Linear have fan-in C */
  for (int t = 0; t < 4; t++) {
    float *p = params + dpt_layer_at(l, t);
    for (size_t i = 0; i < l->tensors[t].numel; i++)
      p[i] = (float)((2.0 * rng->uniform(rng->ctx) - 1.0) * bound);
  }
}

/* per sample: qkv 3TC (then its gradient), att H T T, the heads' y TC (then its gradient) */
static size_t per_sample(const attn_state *s) {
  size_t T = (size_t)s->t, C = (size_t)s->c;
  return 3 * T * C + (size_t)s->heads * T * T + T * C;
}

static size_t attn_scratch(const dpt_layer *l, size_t n) {
  attn_state *s = l->state; /* the regions' size: the net lays the scratch out for n */
  s->cap = n;
  return s->temp + n * per_sample(s);
}

/* The causal products are taken in blocks of ATTN_BLOCK rows (forward) or columns (the
 * transposed backward products), each over the columns (rows) it can see, so the masked upper
 * triangle is mostly not computed: at T = 128, 62.5% of the full products' work. */
#define ATTN_BLOCK 32

/* sample a's activations in the scratch's regions */
typedef struct {
  float *qkv, *att, *ya; /* after param_grad: qkv and ya hold their gradients */
} attn_acts;

static attn_acts acts(const dpt_layer *l, size_t a) {
  const attn_state *s = l->state;
  size_t T = (size_t)s->t, C = (size_t)s->c, n = s->cap;
  float *base = l->scratch + s->temp;
  attn_acts r;
  r.qkv = base + a * 3 * T * C;
  base += n * 3 * T * C;
  r.att = base + a * (size_t)s->heads * T * T;
  base += n * (size_t)s->heads * T * T;
  r.ya = base + a * T * C;
  return r;
}

/* out[rows, o] = in[rows, k] W^T + b (nn.Linear on rows) */
static void dense(int rows, int o, int k, const float *in, const float *w, const float *b,
                  float *out) {
  for (int i = 0; i < rows; i++) memcpy(out + (size_t)i * (size_t)o, b, (size_t)o * sizeof *out);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, o, k, 1.0f, in, k, w, k, 1.0f, out, o);
}

/* Rows [r0, r1) of one head's [T, T] scores: scaled, masked and softmaxed; a row's masked
 * entries are zeroed up to column r1 only, the block's last (no product reads further). */
static void softmax_rows(float *att, int T, int r0, int r1, float scale) {
  for (int r = r0; r < r1; r++) { /* scale, causal mask, softmax over j <= r */
    float *restrict row = att + (size_t)r * (size_t)T, part[DPT_LANES];
    for (int k = 0; k < DPT_LANES; k++) part[k] = -INFINITY;
    int j = 0; /* the row's max over lanes (a max is the same in any order) */
    for (; j + DPT_LANES <= r + 1; j += DPT_LANES)
      for (int k = 0; k < DPT_LANES; k++) {
        float v = row[j + k] * scale;
        row[j + k] = v;
        part[k] = v > part[k] ? v : part[k];
      }
    for (int k = 0; j <= r; j++, k++) {
      float v = row[j] * scale;
      row[j] = v;
      part[k] = v > part[k] ? v : part[k];
    }
    float mx = part[0];
    for (int k = 1; k < DPT_LANES; k++) mx = part[k] > mx ? part[k] : mx;
    /* the exps, then their sum (two loops: GCC vectorises the exps only in a loop of their own) */
    for (j = 0; j <= r; j++) row[j] = dpt_vexpf(row[j] - mx);
    float inv = (float)(1.0 / dpt_lane_sum(row, r + 1));
    for (j = 0; j <= r; j++) row[j] *= inv;
    for (j = r + 1; j < r1; j++) row[j] = 0.0f;
  }
}

static void attn_forward(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                         const dpt_layer_pass *p) {
  const attn_state *s = l->state;
  int T = s->t, C = s->c, hd = s->hd, C3 = 3 * C;
  const float *wa = params + dpt_layer_at(l, 0), *ba = params + dpt_layer_at(l, 1);
  const float *wp = params + dpt_layer_at(l, 2), *bp = params + dpt_layer_at(l, 3);
  float scale = (float)(1.0 / sqrt((double)hd)); /* nanoGPT: 1.0 / math.sqrt(hd) */
  size_t tt = (size_t)T * (size_t)T;
  int rows = (int)n * T;
  if (n == 0) return;
  dense(rows, C3, C, x, wa, ba, acts(l, p->at).qkv);
  for (size_t i = 0; i < n; i++) {
    attn_acts a = acts(l, p->at + i);
    for (int h = 0; h < s->heads; h++) {
      const float *q = a.qkv + h * hd, *k = q + C, *v = q + 2 * C;
      float *att = a.att + (size_t)h * tt;
      for (int r0 = 0; r0 < T; r0 += ATTN_BLOCK) { /* rows [r0, r1) see columns [0, r1) */
        int r1 = r0 + ATTN_BLOCK < T ? r0 + ATTN_BLOCK : T;
        size_t o0 = (size_t)r0 * (size_t)T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hd, 1.0f,
                    q + (size_t)r0 * (size_t)C3, C3, k, C3, 0.0f, att + o0, T);
        softmax_rows(att, T, r0, r1, scale);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hd, r1, 1.0f, att + o0, T,
                    v, C3, 0.0f, a.ya + (size_t)r0 * (size_t)C + (size_t)(h * hd), C);
      }
    }
  }
  dense(rows, C, C, acts(l, p->at).ya, wp, bp, y);
}

static void attn_param_grad(dpt_layer *l, const float *params, const float *x, const float *y,
                            const float *dy, float *grad, size_t n, const dpt_layer_pass *p) {
  (void)y;
  const attn_state *s = l->state;
  int T = s->t, C = s->c, hd = s->hd, C3 = 3 * C;
  const float *wp = params + dpt_layer_at(l, 2);
  float *gwa = grad + dpt_layer_at(l, 0), *gba = grad + dpt_layer_at(l, 1);
  float *gwp = grad + dpt_layer_at(l, 2), *gbp = grad + dpt_layer_at(l, 3);
  float scale = (float)(1.0 / sqrt((double)hd));
  size_t tt = (size_t)T * (size_t)T;
  float *datt = l->scratch, *dqkv = datt + tt; /* the shared temp */
  double *acc = s->acc;                        /* [3C] c_attn.bias, [C] c_proj.bias */
  int rows = (int)n * T;
  for (int j = 0; j < 4 * C; j++) acc[j] = 0.0;
  if (n == 0) return;
  attn_acts a0 = acts(l, p->at);
  /* c_proj over the call's rows: its weight and bias gradients, the heads' y gradient */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, C, rows, 1.0f, dy, C, a0.ya, C, 1.0f, gwp,
              C);
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < C; j++) acc[C3 + j] += dy[(size_t)r * (size_t)C + (size_t)j];
  /* the heads' y gradient over their y (which only gwp needed) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, C, C, 1.0f, dy, C, wp, C, 0.0f,
              a0.ya, C);
  for (size_t i = 0; i < n; i++) {
    attn_acts a = acts(l, p->at + i);
    for (int h = 0; h < s->heads; h++) {
      const float *q = a.qkv + h * hd, *k = q + C, *v = q + 2 * C, *dyh = a.ya + h * hd;
      const float *att = a.att + (size_t)h * tt;
      float *dq = dqkv + h * hd, *dk = dq + C, *dv = dq + 2 * C;
      for (int r0 = 0; r0 < T; r0 += ATTN_BLOCK) { /* rows [r0, r1) of datt and dq */
        int r1 = r0 + ATTN_BLOCK < T ? r0 + ATTN_BLOCK : T;
        size_t o0 = (size_t)r0 * (size_t)T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hd, 1.0f,
                    dyh + (size_t)r0 * (size_t)C, C, v, C3, 0.0f, datt + o0, T);
        for (int r = r0; r < r1; r++) { /* softmax backward, then the scale */
          const float *restrict pr = att + (size_t)r * (size_t)T;
          float *restrict dr = datt + (size_t)r * (size_t)T;
          double dot = dpt_lane_dot(pr, dr, r + 1);
          for (int j = 0; j <= r; j++)
            dr[j] = (float)((double)pr[j] * ((double)dr[j] - dot)) * scale;
          for (int j = r + 1; j < r1; j++) dr[j] = 0.0f; /* (as softmax_rows) */
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hd, r1, 1.0f, datt + o0, T,
                    k, C3, 0.0f, dq + (size_t)r0 * (size_t)C3, C3);
      }
      for (int c0 = 0; c0 < T; c0 += ATTN_BLOCK) { /* rows [c0, c1) of dv and dk: rows >= c0 */
        int c1 = c0 + ATTN_BLOCK < T ? c0 + ATTN_BLOCK : T;
        size_t o0 = (size_t)c0 * (size_t)T + (size_t)c0, d0 = (size_t)c0 * (size_t)C3;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hd, T - c0, 1.0f, att + o0, T,
                    dyh + (size_t)c0 * (size_t)C, C, 0.0f, dv + d0, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, hd, T - c0, 1.0f, datt + o0,
                    T, q + d0, C3, 0.0f, dk + d0, C3);
      }
    }
    memcpy(a.qkv, dqkv, 3 * (size_t)T * (size_t)C * sizeof *dqkv); /* qkv is done with */
  }
  /* c_attn over the call's rows */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C3, C, rows, 1.0f, a0.qkv, C3, x, C, 1.0f,
              gwa, C);
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < C3; j++) acc[j] += a0.qkv[(size_t)r * (size_t)C3 + (size_t)j];
  for (int j = 0; j < C3; j++) gba[j] += (float)acc[j];
  for (int j = 0; j < C; j++) gbp[j] += (float)acc[C3 + j];
}

static void attn_backward(dpt_layer *l, const float *params, const float *x, const float *y,
                          const float *dy, float *dx, size_t n, const dpt_layer_pass *p) {
  (void)x, (void)y, (void)dy;
  const attn_state *s = l->state;
  int T = s->t, C = s->c;
  const float *wa = params + dpt_layer_at(l, 0);
  if (n == 0) return;
  /* dx = dqkv c_attn.weight over the call's rows, dqkv from param_grad (in qkv's region) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n * T, C, 3 * C, 1.0f,
              acts(l, p->at).qkv, 3 * C, wa, C, 0.0f, dx, C);
}

const dpt_layer_ops dpt_layer_attention = {
    .kind = "attention",
    .help = "heads=N (dividing C); causal self-attention on [T, C] samples (nanoGPT's)",
    .setup = attn_setup,
    .init = attn_init,
    .scratch = attn_scratch,
    .forward = attn_forward,
    .param_grad = attn_param_grad,
    .backward = attn_backward,
    .destroy = attn_destroy,
};

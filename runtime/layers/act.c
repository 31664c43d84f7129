/* act.c — elementwise activations: relu, tanh, gelu (exact, erf), gelu_tanh (approximate='tanh'),
 * sigmoid and silu, as torch's (the scalar formulas of aten/src/ATen/native/cpu/Activation.cpp).
 *
 * Invariants:
 * - One flat loop per activation and direction, with no branch or call per element but the
 *   activation's own, so that ReLU (the common case) vectorises: a switch inside the loop
 *   made ReLU's forward a branchy scalar loop, 10% of an MLP step.
 * - Backward runs in place (dx == dy: d[i] *= act'(x[i])), using the stored output y where
 *   that is cheaper (gelu: the 1 + erf its forward kept in the scratch); the values are the
 *   scalar formulas', element by element.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "layers.h"
#include "vmath.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

static int act_setup(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  if (opts && opts[0]) {
    snprintf(err, errlen, "%s: %s takes no options (got '%s')", l->name, l->ops->kind, opts);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

static void relu_forward(dpt_layer *l, const float *params, const float *restrict z,
                         float *restrict h, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) h[i] = z[i] <= 0.0f ? 0.0f : z[i]; /* NaN stays, as torch */
}

static void relu_backward(dpt_layer *l, const float *params, const float *restrict z,
                          const float *h, const float *dy, float *restrict d, size_t n,
                          const dpt_layer_pass *p) {
  (void)params, (void)h, (void)dy, (void)p;
  size_t len = n * l->in_numel;
  /* torch's threshold_backward: a select (0, not dy * 0 = -0 for a negative dy) */
  for (size_t i = 0; i < len; i++) d[i] = z[i] <= 0.0f ? 0.0f : d[i];
}

static void tanh_forward(dpt_layer *l, const float *params, const float *restrict z,
                         float *restrict h, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) h[i] = tanhf(z[i]);
}

static void tanh_backward(dpt_layer *l, const float *params, const float *z,
                          const float *restrict h, const float *dy, float *restrict d, size_t n,
                          const dpt_layer_pass *p) {
  (void)params, (void)z, (void)dy, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) d[i] *= 1.0f - h[i] * h[i];
}

/* gelu keeps 1 + erf(x / sqrt(2)) of every element in its scratch (sample p->at on), which
 * forward computes anyway and backward would compute again (the erf is half its work) */
static size_t gelu_scratch(const dpt_layer *l, size_t n) {
  return n * l->in_numel;
}

static void gelu_forward(dpt_layer *l, const float *params, const float *restrict z,
                         float *restrict h, size_t n, const dpt_layer_pass *p) {
  (void)params;
  size_t len = n * l->in_numel;
  float *restrict e = l->scratch + p->at * l->in_numel;
  /* torch's vectorised kernel: x * 0.5 * (1 + erf(x * M_SQRT1_2)), its erf (vmath.h) */
  for (size_t i = 0; i < len; i++) {
    float t = 1.0f + dpt_verff(z[i] * INV_SQRT2);
    e[i] = t;
    h[i] = z[i] * 0.5f * t;
  }
}

static void gelu_backward(dpt_layer *l, const float *params, const float *restrict z,
                          const float *h, const float *dy, float *restrict d, size_t n,
                          const dpt_layer_pass *p) {
  (void)params, (void)h, (void)dy;
  size_t len = n * l->in_numel;
  const float *restrict e = l->scratch + p->at * l->in_numel;
  for (size_t i = 0; i < len; i++) { /* torch's: dy * (cdf + x * pdf) */
    float v = z[i];
    float cdf = 0.5f * e[i];
    float pdf = INV_SQRT2PI * dpt_vexpf(v * v * -0.5f);
    d[i] *= cdf + v * pdf;
  }
}

static void sigmoid_forward(dpt_layer *l, const float *params, const float *restrict z,
                            float *restrict h, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) h[i] = 1.0f / (1.0f + expf(-z[i]));
}

static void sigmoid_backward(dpt_layer *l, const float *params, const float *z,
                             const float *restrict h, const float *dy, float *restrict d, size_t n,
                             const dpt_layer_pass *p) {
  (void)params, (void)z, (void)dy, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) d[i] *= h[i] * (1.0f - h[i]);
}

/* torch's tanh-approximate GELU: kBeta = sqrt(2) * (2 / sqrt(pi)) * 0.5, kKappa = 0.044715 */
#define GELU_BETA 0.79788456080286535588f
#define GELU_KAPPA 0.044715f

static void gelu_tanh_forward(dpt_layer *l, const float *params, const float *restrict z,
                              float *restrict h, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) {
    float x = z[i], inner = GELU_BETA * (x + GELU_KAPPA * (x * x * x));
    h[i] = 0.5f * x * (1.0f + tanhf(inner));
  }
}

static void gelu_tanh_backward(dpt_layer *l, const float *params, const float *restrict z,
                               const float *h, const float *dy, float *restrict d, size_t n,
                               const dpt_layer_pass *p) {
  (void)params, (void)h, (void)dy, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) {
    float x = z[i], x2 = x * x, inner = GELU_BETA * (x + GELU_KAPPA * (x2 * x));
    float t = tanhf(inner);
    float left = 0.5f * x, right = 1.0f + t;
    float dright = left * ((1.0f - t * t) * (GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * x2)));
    d[i] *= 0.5f * right + dright;
  }
}

static void silu_forward(dpt_layer *l, const float *params, const float *restrict z,
                         float *restrict h, size_t n, const dpt_layer_pass *p) {
  (void)params, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) h[i] = z[i] / (1.0f + expf(-z[i]));
}

static void silu_backward(dpt_layer *l, const float *params, const float *restrict z,
                          const float *h, const float *dy, float *restrict d, size_t n,
                          const dpt_layer_pass *p) {
  (void)params, (void)h, (void)dy, (void)p;
  size_t len = n * l->in_numel;
  for (size_t i = 0; i < len; i++) {
    float s = 1.0f / (1.0f + expf(-z[i]));
    d[i] *= s * (1.0f + z[i] * (1.0f - s));
  }
}

#define ACT(NAME, HELP)                                                                            \
  const dpt_layer_ops dpt_layer_##NAME = {.kind = #NAME,                                           \
                                          .help = HELP,                                            \
                                          .elementwise = 1,                                        \
                                          .setup = act_setup,                                      \
                                          .forward = NAME##_forward,                               \
                                          .backward = NAME##_backward};
ACT(relu, "no options: max(x, 0)")
ACT(tanh, "no options: tanh(x)")
const dpt_layer_ops dpt_layer_gelu = {.kind = "gelu",
                                      .help = "no options: x * Phi(x), exact (erf)",
                                      .elementwise = 1,
                                      .setup = act_setup,
                                      .scratch = gelu_scratch,
                                      .forward = gelu_forward,
                                      .backward = gelu_backward};
ACT(sigmoid, "no options: 1 / (1 + exp(-x))")
ACT(gelu_tanh, "no options: torch's GELU(approximate='tanh')")
ACT(silu, "no options: x * sigmoid(x)")

/* vmath.h — exp and erf for the layers' hot loops, written branch-free so that GCC vectorises
 * the loops that call them (glibc's expf and erff are scalar calls: with them the exact GELU and
 * attention's softmax were 35% of a gpt:tiny step). Private to runtime/layers/.
 *
 * Invariants:
 * - dpt_vexpf(x) is expf(x) within 2 ulp for x in [-87.3, 88.3] (the clamp range: below it the
 *   result is exp(-87.3) ~ 1.2e-38 instead of a subnormal or 0, above it exp(88.3)); NaN gives
 *   NaN. Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, a degree-5 polynomial, times 2^n.
 * - dpt_verff(x) is the erf that PyTorch 1.13's vectorised CPU kernels use
 *   (aten/src/ATen/cpu/vec/vec512/vec512_float.h, Vectorized<float>::erf: Abramowitz and
 *   Stegun 7.1.26, absolute error <= 1.5e-7), with its fused multiply-adds as fmaf and
 *   dpt_vexpf for its Sleef_expf; torch's GELU takes it for every contiguous tensor it
 *   vectorises, so dpt's GELU matches torch's more closely than with glibc's erff.
 * - Both are pure functions of x: the same input gives bitwise the same output everywhere.
 * - Row reductions (softmax sums, LayerNorm statistics) are in double over DPT_LANES
 *   interleaved partial sums (lane k takes elements k, k + DPT_LANES, ...) added in lane order:
 *   a fixed order, so bitwise the same for any batch or W, that vectorises where one running
 *   sum would wait on each add.
 */
#ifndef DPT_LAYERS_VMATH_H
#define DPT_LAYERS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float dpt_vexpf(float x) {
  const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  const float round = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to integer */
  x = x < -87.3f ? -87.3f : x;     /* comparisons keep a NaN */
  x = x > 88.3f ? 88.3f : x;
  float n = (x * log2e + round) - round;
  float r = fmaf(-n, ln2_lo, fmaf(-n, ln2_hi, x));
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = fmaf(p, r * r, r) + 1.0f;
  int32_t e = (int32_t)(n == n ? n : 0.0f) + 127; /* in [1, 254] after the clamp */
  uint32_t bits = (uint32_t)e << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline float dpt_verff(float x) {
  const float p = 0.3275911f, p1 = 0.254829592f, p2 = -0.284496736f, p3 = 1.421413741f,
              p4 = -1.453152027f, p5 = 1.061405429f;
  float a = fabsf(x);
  float t = 1.0f / fmaf(p, a, 1.0f);
  float r = fmaf(fmaf(fmaf(fmaf(p5, t, p4), t, p3), t, p2), t, p1);
  float e = -dpt_vexpf(-(x * x));
  float v = fmaf(e * t, r, 1.0f); /* 1 - r t exp(-x^2) */
  return copysignf(v, x);
}

/* 8 doubles fill one AVX-512 register */
#define DPT_LANES 8

/* DPT_LANES doubles or floats as one vector (GCC's and clang's vector extensions): element-wise
 * arithmetic, the same operations as a loop over an array of lanes, for loops that GCC 12 left
 * scalar when written over arrays (double lanes fed from floats). */
typedef double dpt_d8 __attribute__((vector_size(DPT_LANES * sizeof(double))));
typedef float dpt_f8 __attribute__((vector_size(DPT_LANES * sizeof(float))));

static inline dpt_d8 dpt_load_d8(const double *p) {
  dpt_d8 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void dpt_store_d8(double *p, dpt_d8 v) {
  memcpy(p, &v, sizeof v);
}
/* p[0, 8) widened to double */
static inline dpt_d8 dpt_widen8(const float *p) {
  dpt_f8 f;
  memcpy(&f, p, sizeof f);
  return __builtin_convertvector(f, dpt_d8);
}

/* the lanes' total, in lane order */
static inline double dpt_lanes_total(const double *part) {
  double s = 0.0;
  for (int k = 0; k < DPT_LANES; k++) s += part[k];
  return s;
}

/* sum of a[0, n) in double, lane by lane */
static inline double dpt_lane_sum(const float *restrict a, int n) {
  double part[DPT_LANES] = {0};
  int j = 0;
  for (; j + DPT_LANES <= n; j += DPT_LANES)
    for (int k = 0; k < DPT_LANES; k++) part[k] += (double)a[j + k];
  for (int k = 0; j < n; j++, k++) part[k] += (double)a[j];
  return dpt_lanes_total(part);
}

/* sum of a[j] * b[j] over [0, n) in double, lane by lane */
static inline double dpt_lane_dot(const float *restrict a, const float *restrict b, int n) {
  double part[DPT_LANES] = {0};
  int j = 0;
  for (; j + DPT_LANES <= n; j += DPT_LANES)
    for (int k = 0; k < DPT_LANES; k++) part[k] += (double)a[j + k] * (double)b[j + k];
  for (int k = 0; j < n; j++, k++) part[k] += (double)a[j] * (double)b[j];
  return dpt_lanes_total(part);
}

#endif /* DPT_LAYERS_VMATH_H */

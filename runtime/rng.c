/* rng.c — xoshiro256** (Blackman & Vigna) seeded with splitmix64: a small, fast generator whose
 * streams are reproducible on every rank and platform. */
#include <math.h>

#include "runtime.h"

void dpt_rng_seed(dpt_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
  for (int i = 0; i < 4; i++) r->s[i] = dpt_splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t dpt_rng_next(dpt_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double dpt_rng_uniform(dpt_rng *r) {
  return (double)(dpt_rng_next(r) >> 11) * 0x1.0p-53;
}

double dpt_rng_normal(dpt_rng *r) {
  double u1 = dpt_rng_uniform(r), u2 = dpt_rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

uint64_t dpt_rng_below(dpt_rng *r, uint64_t n) {
  /* rejection: drop the top partial range so every value is equally likely */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = dpt_rng_next(r);
  while (x >= limit);
  return x % n;
}

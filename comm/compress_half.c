/* compress_half.c — DPT_REDUCE_HALF (--compress bf16 | fp16): the rank-order algorithm with
 * 16-bit values on the wire, half the bytes of fp32 both ways.
 *
 * Per bucket (while backward runs) each rank rounds its gradient to 16 bits (to nearest, ties
 * to even) and sends each peer the part in that peer's shard (MPI_Ialltoallv of uint16). In
 * the wait, each rank widens every rank's copy of its shard back to fp32 (exact) and sums them
 * in fp32 in rank order 0..W-1, as reduce_rank_order.c does; the sum is rounded to 16 bits
 * once, and those 16-bit sums are all-gathered. Every rank (the owner too) widens the same
 * 16-bit sums, so the result is bitwise the same on every rank, whatever the bucket size,
 * overlap or shard_only; the one rounding of each contribution and of the sum is the loss.
 * fp16 overflows above 65504 (an infinity: the trainer's non-finite check names it) and loses
 * precision below 2^-14; bf16 keeps fp32's range.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

/* --- the encodings --- */

static uint32_t bits_of(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

static float float_of(uint32_t b) {
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

uint16_t dpt_comm_bf16_from_float(float x) {
  uint32_t b = bits_of(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40u); /* quiet NaN */
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

float dpt_comm_bf16_to_float(uint16_t h) {
  return float_of((uint32_t)h << 16);
}

uint16_t dpt_comm_fp16_from_float(float x) {
  uint32_t b = bits_of(x), sign = (b >> 16) & 0x8000u, a = b & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* >= 65520: ties to inf, even */
  if (a >= 0x38800000u) {                                    /* a normal half: >= 2^-14 */
    uint32_t h = (a - 0x38000000u) >> 13, rem = a & 0x1fffu; /* exponent rebiased 127 -> 15 */
    h += rem > 0x1000u || (rem == 0x1000u && (h & 1u));      /* a carry moves the exponent */
    return (uint16_t)(sign | h);
  }
  if (a < 0x33000000u) return (uint16_t)sign; /* below 2^-25 (2^-25 itself ties to 0) */
  uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u, shift = 126 - e; /* 14 .. 24 */
  uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  h += rem > half || (rem == half && (h & 1u)); /* units of 2^-24, the smallest subnormal */
  return (uint16_t)(sign | h);
}

float dpt_comm_fp16_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13));
  if (e) return float_of(sign | ((e + 112) << 23) | (m << 13));
  float v = (float)m * 0x1p-24f; /* zero or subnormal: exact (m < 2^10) */
  return sign ? -v : v;
}

/* x86's F16C instructions convert 8 halves at once, rounding as the functions above do (to
 * nearest even, subnormals kept, NaNs quieted the same way): the scalar fp16 conversion's
 * branches cost 30 ns an element on random gradients, 6 times the whole bf16 path. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define DPT_HAVE_F16C 1
__attribute__((target("avx,f16c"))) static void fp16_encode_f16c(const float *restrict x,
                                                                 uint16_t *restrict h, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(h + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) h[i] = dpt_comm_fp16_from_float(x[i]);
}
__attribute__((target("avx,f16c"))) static void fp16_decode_f16c(const uint16_t *restrict h,
                                                                 float *restrict x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
  for (; i < n; i++) x[i] = dpt_comm_fp16_to_float(h[i]);
}
/* F16C from CPUID (clang's __builtin_cpu_supports does not know "f16c"), AVX (with the OS's
 * support of its registers) from the builtin */
static int have_f16c(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  return (c & bit_F16C) && __builtin_cpu_supports("avx");
}
#else
#define DPT_HAVE_F16C 0
#endif

/* One flat loop per direction and format (no branch on the format per element). */
static void encode(int bf16, const float *restrict x, uint16_t *restrict h, size_t n) {
  if (bf16) {
    for (size_t i = 0; i < n; i++) h[i] = dpt_comm_bf16_from_float(x[i]);
    return;
  }
#if DPT_HAVE_F16C
  if (have_f16c()) {
    fp16_encode_f16c(x, h, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) h[i] = dpt_comm_fp16_from_float(x[i]);
}

static void decode(int bf16, const uint16_t *restrict h, float *restrict x, size_t n) {
  if (bf16) {
    for (size_t i = 0; i < n; i++) x[i] = dpt_comm_bf16_to_float(h[i]);
    return;
  }
#if DPT_HAVE_F16C
  if (have_f16c()) {
    fp16_decode_f16c(h, x, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++) x[i] = dpt_comm_fp16_to_float(h[i]);
}

/* --- the algorithm --- */

typedef struct {
  int bf16;        /* 1: bfloat16, 0: IEEE half */
  uint16_t *wire;  /* n: this rank's gradient in 16 bits, then the all-gathered sums */
  uint16_t *stage; /* size * shards[rank].len: every rank's copy of this rank's shard */
  float *row;      /* shards[rank].len: one widened row */
} half_state;

static void release(dpt_reducer *r) {
  half_state *s = r->state;
  if (s) {
    free(s->wire);
    free(s->stage);
    free(s->row);
  }
  free(s);
  r->state = NULL;
}

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  size_t L = r->shards[r->rank].len;
  half_state *s = calloc(1, sizeof *s);
  r->state = s;
  if (s) {
    s->bf16 = p->compress == DPT_COMPRESS_BF16;
    s->wire = malloc((r->n + 1) * sizeof *s->wire);
    s->stage = malloc(((size_t)r->size * L + 1) * sizeof *s->stage);
    s->row = malloc((L + 1) * sizeof *s->row);
  }
  if (!s || !s->wire || !s->stage || !s->row) {
    release(r);
    snprintf(err, errlen, "cannot allocate the 16-bit reducer's buffers (%zu elements)", r->n);
    return DPT_ENOMEM;
  }
  return DPT_OK;
}

/* Bucket k: rounds it to 16 bits and sends each peer the part in that peer's shard. */
static int start(dpt_reducer *r, int k) {
  half_state *s = r->state;
  int w = r->size;
  size_t b0 = dpt_reducer_bucket_start(r, k);
  encode(s->bf16, r->buf + b0, s->wire + b0, dpt_reducer_bucket_len(r, k));
  int *sc = dpt_reducer_exchange_counts(r, k), *sd = sc + w, *rc = sd + w, *rd = rc + w;
  return MPI_Ialltoallv(s->wire, sc, sd, MPI_UINT16_T, s->stage, rc, rd, MPI_UINT16_T, r->comm,
                        &r->req[k]);
}

/* The fp32 sum of every rank's widened copy of this rank's shard in rank order 0..W-1, rounded
 * to 16 bits into wire (and widened back into buf, as every other rank will see it). */
static void sum_shard(dpt_reducer *r) {
  half_state *s = r->state;
  size_t L = r->shards[r->rank].len, off = r->shards[r->rank].offset;
  float *restrict out = r->buf + off;
  decode(s->bf16, s->stage, out, L);
  for (int q = 1; q < r->size; q++) {
    const float *restrict row = s->row;
    decode(s->bf16, s->stage + (size_t)q * L, s->row, L);
    for (size_t i = 0; i < L; i++) out[i] = out[i] + row[i];
  }
  encode(s->bf16, out, s->wire + off, L);
  decode(s->bf16, s->wire + off, out, L);
}

static int finish(dpt_reducer *r, char *err, size_t errlen) {
  half_state *s = r->state;
  sum_shard(r);
  if (r->shard_only || r->size == 1) return DPT_OK;
  int w = r->size, *counts = r->counts, *displs = r->counts + w; /* every bucket is done */
  for (int q = 0; q < w; q++) {
    counts[q] = (int)r->shards[q].len;
    displs[q] = (int)r->shards[q].offset;
  }
  int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->wire, counts, displs, MPI_UINT16_T,
                          r->comm);
  if (rc != MPI_SUCCESS) return dpt_comm_mpi_error(rc, "gradient reduction", err, errlen);
  for (int q = 0; q < w; q++)
    if (q != r->rank)
      decode(s->bf16, s->wire + r->shards[q].offset, r->buf + r->shards[q].offset,
             r->shards[q].len);
  return DPT_OK;
}

/* What the state holds: the 16-bit wire copy of the buffer, the rows of this rank's shard, and
 * one widened row. */
static size_t bytes(const dpt_reducer *r) {
  size_t L = r->shards[r->rank].len;
  return (r->n + 1 + (size_t)r->size * L + 1) * sizeof(uint16_t) + (L + 1) * sizeof(float);
}

const dpt_reduce_algo dpt_reduce_half = {"half", init, release, start, finish, NULL, bytes, NULL};

/* compress_powersgd.c — DPT_REDUCE_POWERSGD (--compress powersgd[:R]): PowerSGD (Vogels,
 * Karimireddy, Jaggi 2019) as torch's ddp_comm_hooks/powerSGD_hook.py does it, per step:
 *
 *   for each matrix tensor M (rows n x cols m, torch's view(shape[0], -1); worth compressing
 *   when (n + m) R * 2 < n m, torch's min_compression_rate 2; R = min(n, m, rank)):
 *     M += e                      error feedback: what the last step's factors did not carry
 *     orthogonalise Q (m x R)     random on the first compressed step (the same seed on every
 *                                 rank), then the last step's Q (warm start)
 *     P = M Q; sum P over ranks (with the uncompressed tensors); orthogonalise P
 *     Q = M^T P; sum Q over ranks
 *     sum ~= P Q^T; e = M - P Q^T / W
 *   every other element (vectors, biases, small matrices) is summed exactly.
 *
 * The first compress_start steps sum the whole gradient uncompressed (torch's
 * start_powerSGD_iter). All sums go through rank-order reducers (reduce_rank_order.c), and
 * the factors are computed from those sums alone, so the result is bitwise the same on every
 * rank. Everything runs in dpt_reducer_wait (each sum needs the one before): no overlap with
 * backward. The residuals, factors and step count are not checkpointed (comm.h); a NaN or Inf
 * in a matrix resets its residual and the warm start, so one bad step does not poison the rest.
 * Differences from torch: the residual is kept for the compressed matrices only (torch keeps
 * one for the uncompressed tensors too, M_i - mean, which sums to zero over ranks), and the sum
 * rather than the mean is returned, as every dpt reducer does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

/* torch's min_compression_rate default: a matrix is compressed when its factors are at most
 * half its size. */
#define PSGD_MIN_RATE 2

/* The seed of the first Q's normal samples (any constant: every rank must use the same). */
#define PSGD_SEED 0x5eed5eedu

typedef struct {
  size_t off, n, m; /* the matrix buf[off, off + n m), n x m row-major */
  size_t rk;        /* its factors' rank */
  size_t p, q;      /* offsets of its P^T (rk x n) and Q^T (rk x m) in pq and q */
} psgd_mat;

typedef struct {
  int nmat;
  psgd_mat *mats; /* in buffer order, not overlapping */
  long start, iter;
  int warm;      /* Q holds the last step's factors */
  float *resid;  /* n: error feedback, zero outside the matrices */
  size_t nrest;  /* elements outside the matrices: pq[0, nrest) */
  float *pq;     /* nrest + the P's: summed by first */
  float *q;      /* the Q's: summed by second */
  float *row;    /* the widest matrix's row: decompress's scratch */
  size_t wide;   /* its columns */
  size_t np, nq; /* elements of the P's and the Q's */
  dpt_reducer *plain, *first, *second;
} psgd_state;

/* --- the option --- */

int dpt_reducer_compress_parse(const char *spec, dpt_compress *c, int *rank, char *err,
                               size_t errlen) {
  static const char *const names[] = {"none", "bf16", "fp16"};
  *rank = DPT_POWERSGD_RANK;
  for (int i = 0; i < 3; i++)
    if (!strcmp(spec, names[i])) {
      *c = (dpt_compress)i;
      return 0;
    }
  if (!strncmp(spec, "powersgd", 8) && (!spec[8] || spec[8] == ':')) {
    *c = DPT_COMPRESS_POWERSGD;
    if (!spec[8]) return 0;
    char *end;
    long v = strtol(spec + 9, &end, 10);
    if (spec[9] >= '0' && spec[9] <= '9' && !*end && v >= 1 && v <= 1024) {
      *rank = (int)v;
      return 0;
    }
  }
  snprintf(err, errlen,
           "'%s' is not one of none, bf16, fp16, powersgd or powersgd:R (R from 1 to 1024)", spec);
  return -1;
}

/* --- dense kernels over the small factors ---
 * Factors are stored transposed, one factor column per contiguous row: P^T (rk x n) and
 * Q^T (rk x m), so Gram-Schmidt walks rows and the products below run over contiguous rows of
 * M (flat loops the compiler vectorises without reassociating a sum). */

/* Lanes of the explicit partial sums of a dot product: the order is fixed here (lane l sums
 * elements l, l + 8, ...; the lanes are added in order), so it vectorises and stays the same
 * on every machine. */
#define PSGD_LANES 8

/* Gram-Schmidt on the rk rows of a (rk x len), as torch's _orthogonalize_gram_schmidt with
 * epsilon 0 on the columns of its transpose (a zero column stays zero). */
static void orthogonalize(float *restrict a, size_t len, size_t rk) {
  for (size_t c = 0; c < rk; c++) {
    float *restrict col = a + c * len;
    double ss = 0;
    for (size_t i = 0; i < len; i++) ss += (double)col[i] * col[i];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (size_t i = 0; i < len; i++) col[i] *= inv;
    for (size_t d = c + 1; d < rk; d++) {
      float *restrict rest = a + d * len, dot = 0;
      for (size_t i = 0; i < len; i++) dot += col[i] * rest[i];
      for (size_t i = 0; i < len; i++) rest[i] -= dot * col[i];
    }
  }
}

/* sum of x[i] y[i] over [0, len), in PSGD_LANES fixed lanes */
static float dot(const float *restrict x, const float *restrict y, size_t len) {
  float lane[PSGD_LANES] = {0};
  size_t i = 0;
  for (; i + PSGD_LANES <= len; i += PSGD_LANES)
    for (int l = 0; l < PSGD_LANES; l++) lane[l] += x[i + l] * y[i + l];
  float s = 0;
  for (int l = 0; l < PSGD_LANES; l++) s += lane[l];
  for (; i < len; i++) s += x[i] * y[i];
  return s;
}

/* P^T (rk x n): P = M (n x m) Q, row i of P from row i of M */
static void mul_mq(const float *restrict M, size_t n, size_t m, const float *restrict qt, size_t rk,
                   float *restrict pt) {
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < rk; k++) pt[k * n + i] = dot(M + i * m, qt + k * m, m);
}

/* Q^T (rk x m): Q = M^T P, accumulated row by row of M */
static void mul_mtp(const float *restrict M, size_t n, size_t m, const float *restrict pt,
                    size_t rk, float *restrict qt) {
  memset(qt, 0, rk * m * sizeof *qt);
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < rk; k++) {
      const float *restrict row = M + i * m;
      float *restrict out = qt + k * m, v = pt[k * n + i];
      for (size_t j = 0; j < m; j++) out[j] += row[j] * v;
    }
}

/* M <- P Q^T (the sum over ranks); e <- M_before - P Q^T / w; row (m floats) is scratch */
static void decompress(float *restrict M, float *restrict e, size_t n, size_t m,
                       const float *restrict pt, const float *restrict qt, size_t rk, float w,
                       float *restrict row) {
  for (size_t i = 0; i < n; i++) {
    memset(row, 0, m * sizeof *row);
    for (size_t k = 0; k < rk; k++) {
      const float *restrict q = qt + k * m;
      float v = pt[k * n + i];
      for (size_t j = 0; j < m; j++) row[j] += v * q[j];
    }
    float *restrict mi = M + i * m, *restrict ei = e + i * m;
    for (size_t j = 0; j < m; j++) {
      ei[j] = mi[j] - row[j] / w;
      mi[j] = row[j];
    }
  }
}

/* 1 if x[0, n) holds no NaN or Inf (x * 0 is 0 for every finite x, NaN otherwise). */
static int finite_all(const float *restrict x, size_t n) {
  float acc = 0;
  for (size_t i = 0; i < n; i++) acc += x[i] * 0.0f;
  return acc == 0;
}

/* Standard normal samples from splitmix64 and Box-Muller: the same on every rank. */
static void fill_normal(float *x, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i++) {
    double u[2];
    for (int k = 0; k < 2; k++) {
      uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      u[k] = ((double)(z >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
    }
    x[i] = (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
  }
}

/* --- the algorithm --- */

static void release(dpt_reducer *r) {
  psgd_state *s = r->state;
  if (s) {
    dpt_reducer_free(s->plain);
    dpt_reducer_free(s->first);
    dpt_reducer_free(s->second);
    free(s->mats);
    free(s->resid);
    free(s->pq);
    free(s->q);
    free(s->row);
  }
  free(s);
  r->state = NULL;
}

static int cmp_mat(const void *a, const void *b) {
  const psgd_mat *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* The matrices worth compressing, sorted, checked against the buffer. */
static int find_mats(dpt_reducer *r, const dpt_reducer_params *p, psgd_state *s, char *err,
                     size_t errlen) {
  s->mats = calloc((size_t)p->ntensors + 1, sizeof *s->mats);
  if (!s->mats) return DPT_ENOMEM;
  for (int t = 0; t < p->ntensors; t++) {
    size_t off = p->tensor_offset[t], len = p->tensor_len[t];
    size_t n = p->tensor_rows ? p->tensor_rows[t] : 1;
    if (off > r->n || len > r->n - off || (n && len % n)) {
      snprintf(err, errlen,
               "PowerSGD: tensor %d ([%zu, +%zu) of %zu rows) is not a matrix inside the %zu "
               "gradient elements",
               t, off, len, n, r->n);
      return DPT_EINVAL;
    }
    if (n < 2 || len == 0) continue;
    size_t m = len / n, rk = (size_t)p->compress_rank;
    if (rk > n) rk = n;
    if (rk > m) rk = m;
    if ((n + m) * rk * PSGD_MIN_RATE >= n * m) continue;
    s->mats[s->nmat++] = (psgd_mat){off, n, m, rk, 0, 0};
  }
  qsort(s->mats, (size_t)s->nmat, sizeof *s->mats, cmp_mat);
  size_t end = 0;
  for (int i = 0; i < s->nmat; i++) {
    psgd_mat *a = &s->mats[i];
    if (a->off < end) {
      snprintf(err, errlen, "PowerSGD: the tensor at element %zu overlaps the one before", a->off);
      return DPT_EINVAL;
    }
    s->nrest += a->off - end;
    end = a->off + a->n * a->m;
    a->p = s->np;
    a->q = s->nq;
    s->np += a->n * a->rk;
    s->nq += a->m * a->rk;
  }
  s->nrest += r->n - end;
  return DPT_OK;
}

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  if (p->compress_rank < 1 || p->compress_start < 0) {
    snprintf(err, errlen, "PowerSGD: rank %d and start %ld (expected >= 1 and >= 0)",
             p->compress_rank, p->compress_start);
    return DPT_EINVAL;
  }
  psgd_state *s = calloc(1, sizeof *s);
  r->state = s;
  int rc = s ? find_mats(r, p, s, err, errlen) : DPT_ENOMEM;
  if (!rc) {
    s->start = p->compress_start;
    s->resid = calloc(r->n + 1, sizeof *s->resid);
    s->pq = malloc((s->nrest + s->np + 1) * sizeof *s->pq);
    s->q = malloc((s->nq + 1) * sizeof *s->q);
    for (int i = 0; i < s->nmat; i++)
      if (s->mats[i].m > s->wide) s->wide = s->mats[i].m;
    s->row = malloc((s->wide + 1) * sizeof *s->row);
    if (!s->resid || !s->pq || !s->q || !s->row) rc = DPT_ENOMEM;
  }
  if (rc == DPT_ENOMEM)
    snprintf(err, errlen, "cannot allocate PowerSGD's state (%zu gradient elements)", r->n);
  /* the sums: rank-order (or what auto picks for the plain steps), all at the wait */
  dpt_reducer_params ip = dpt_reducer_defaults();
  ip.bucket_bytes = p->bucket_bytes;
  ip.overlap = 0;
  ip.algorithm = p->algorithm;
  if (!rc) rc = dpt_reducer_create(r->comm, r->buf, r->n, &ip, &s->plain, err, errlen);
  ip.algorithm = DPT_REDUCE_RANK_ORDER;
  if (!rc) rc = dpt_reducer_create(r->comm, s->pq, s->nrest + s->np, &ip, &s->first, err, errlen);
  if (!rc) rc = dpt_reducer_create(r->comm, s->q, s->nq, &ip, &s->second, err, errlen);
  if (rc) release(r);
  return rc;
}

static int start(dpt_reducer *r, int k) { /* everything happens in the wait */
  r->req[k] = MPI_REQUEST_NULL;
  return MPI_SUCCESS;
}

/* Copies the elements outside the matrices between buf and pq[0, nrest) (to_pq: 1 there). */
static void move_rest(dpt_reducer *r, psgd_state *s, int to_pq) {
  size_t at = 0, end = 0;
  for (int i = 0; i <= s->nmat; i++) {
    size_t lo = end, hi = i < s->nmat ? s->mats[i].off : r->n;
    if (hi > lo) {
      if (to_pq)
        memcpy(s->pq + at, r->buf + lo, (hi - lo) * sizeof *s->pq);
      else
        memcpy(r->buf + lo, s->pq + at, (hi - lo) * sizeof *s->pq);
    }
    at += hi - lo;
    if (i < s->nmat) end = s->mats[i].off + s->mats[i].n * s->mats[i].m;
  }
}

static int finish(dpt_reducer *r, char *err, size_t errlen) {
  psgd_state *s = r->state;
  if (s->iter < s->start) {
    s->iter++;
    return dpt_reducer_wait(s->plain, NULL, err, errlen);
  }
  float *P = s->pq + s->nrest;
  for (int i = 0; i < s->nmat; i++) { /* M = g + e */
    const psgd_mat *a = &s->mats[i];
    float *restrict g = r->buf + a->off;
    const float *restrict e = s->resid + a->off;
    for (size_t j = 0; j < a->n * a->m; j++) g[j] += e[j];
  }
  if (!s->warm) {
    uint64_t seed = PSGD_SEED;
    fill_normal(s->q, s->nq, &seed);
    s->warm = 1;
  }
  for (int i = 0; i < s->nmat; i++) {
    const psgd_mat *a = &s->mats[i];
    orthogonalize(s->q + a->q, a->m, a->rk);
    mul_mq(r->buf + a->off, a->n, a->m, s->q + a->q, a->rk, P + a->p);
  }
  move_rest(r, s, 1);
  int rc = dpt_reducer_wait(s->first, NULL, err, errlen);
  if (rc) return rc;
  move_rest(r, s, 0);
  for (int i = 0; i < s->nmat; i++) {
    const psgd_mat *a = &s->mats[i];
    orthogonalize(P + a->p, a->n, a->rk);
    mul_mtp(r->buf + a->off, a->n, a->m, P + a->p, a->rk, s->q + a->q);
  }
  if ((rc = dpt_reducer_wait(s->second, NULL, err, errlen))) return rc;
  for (int i = 0; i < s->nmat; i++) {
    const psgd_mat *a = &s->mats[i];
    decompress(r->buf + a->off, s->resid + a->off, a->n, a->m, P + a->p, s->q + a->q, a->rk,
               (float)r->size, s->row);
    /* a NaN or Inf (the step the trainer reports or skips) must not live on in the residual or
     * the warm start: both start afresh (the sum in buf still shows it) */
    if (!finite_all(s->resid + a->off, a->n * a->m) || !finite_all(s->q + a->q, a->m * a->rk)) {
      memset(s->resid + a->off, 0, a->n * a->m * sizeof *s->resid);
      s->warm = 0;
    }
  }
  s->iter++;
  return DPT_OK;
}

const float *dpt_reducer_compress_residual(const dpt_reducer *r) {
  return r->algo == &dpt_reduce_powersgd ? ((const psgd_state *)r->state)->resid : NULL;
}

/* What the state holds: the residual, the P and Q sums' buffers, the row, and the three inner
 * reducers' staging. */
static size_t bytes(const dpt_reducer *r) {
  const psgd_state *s = r->state;
  size_t floats = (r->n + 1) + (s->nrest + s->np + 1) + (s->nq + 1) + (s->wide + 1);
  return floats * sizeof(float) + (size_t)s->nmat * sizeof *s->mats + dpt_reducer_bytes(s->plain) +
         dpt_reducer_bytes(s->first) + dpt_reducer_bytes(s->second);
}

const dpt_reduce_algo dpt_reduce_powersgd = {"powersgd", init, release, start,
                                             finish,     NULL, bytes,   NULL};

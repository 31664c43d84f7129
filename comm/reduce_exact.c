/* reduce_exact.c — DPT_REDUCE_EXACT, deterministic mode's algorithm: the step's gradient as an
 * exact sum of micro-shard gradients (moved here from runtime/det.c).
 *
 * The global batch is cut into G fixed micro-shards; whichever rank holds a micro-shard
 * computes its gradient alone (from zero), so its bits do not depend on W. Each micro-shard
 * gradient is converted to fixed point, per tensor t at a scale 2^S_t shared by all ranks, and
 * added into 64-bit integers; integer sums are exact, so neither the split of micro-shards
 * over ranks, nor MPI's reduction order, nor the bucket size can change the result.
 * The sums are final only after dpt_reducer_exact_check, so nothing can overlap backward:
 * start() posts nothing and finish() reduces the whole buffer with one blocking
 * MPI_Allreduce (MPI_Reduce_scatter with shard_only), which Open MPI runs faster than its
 * nonblocking forms (235k int64 at W = 2: 0.29 ms blocking, 0.80 ms MPI_Iallreduce).
 *
 * Invariants:
 * - S_t is a function of the run's history only (the global maxima of earlier steps), never of
 *   W: it is part of the training position and saved in checkpoints.
 * - No sum can overflow: a pass is accepted only if every micro-shard value is below 2^LIMIT
 *   after scaling, so the sum of G <= 2^(62 - LIMIT) of them stays below 2^62. A pass that would
 *   break this is redone at a scale chosen from its own (agreed) maxima, which then fits. So is
 *   a pass whose largest value falls below 2^FLOOR (gradients shrank 2^16-fold in one step):
 *   the resolution is never coarser than 2^-26 of a tensor's largest value.
 * - The next step's scale keeps HEADROOM bits above this step's largest value: gradients may
 *   grow 2^HEADROOM-fold from one step to the next before a pass has to be redone, and a value
 *   at the maximum keeps LIMIT - HEADROOM = 42 bits, far more than a float's 24.
 * - Conversions are exact or correctly rounded, with no data-dependent branch, so they
 *   vectorise: to fixed point by adding 1.5 * 2^52 in double (round to nearest even, valid below
 *   2^51 > 2^LIMIT), back to double as (high 32 bits) * 2^32 + (low 32 bits), rounded once.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

#define HEADROOM 8
#define LIMIT 50                       /* |value| < 2^LIMIT per micro-shard after scaling */
#define MAX_SHARDS (1 << (62 - LIMIT)) /* so that G of them stay below 2^62 */
#define MAGIC 6755399441055744.0       /* 1.5 * 2^52 */
#define FLOOR                                                                                      \
  (LIMIT - HEADROOM - 16) /* a largest value below 2^FLOOR after scaling: too                      \
                             coarse (fewer than 26 bits), redo the pass */

/* A range added early (dpt_reducer_exact_add_early): its own fixed-point sums. */
typedef struct {
  size_t off, len;
  int64_t *sums;
} early_range;

typedef struct {
  int ntensors;
  size_t *offset, *numel; /* the tensors' ranges of the buffer (copied) */
  size_t n;
  double *scale; /* S_t per tensor (NAN: not known yet); the caller's storage */
  double *max;   /* this pass: largest |value| per tensor over this rank's micro-shards; then
                    over all ranks. One extra slot counts non-finite values. */
  int64_t *acc;  /* the fixed-point sum, n (shard_buf: of the current range only, acc_cap) */
  int64_t *part; /* this rank's shard of the sum over all ranks (shard_only) */
  /* shard_buf (ZeRO-2): ranges come whole (a layer's span), each once per micro-shard of this
   * rank in a row; after the last one its sums are reduce-scattered into part at once, so no
   * whole-model sum exists */
  size_t acc_cap, cur_off, cur_len;
  int cur_adds, per_rank;
  /* shard_buf: ranges added early (dpt_reducer_exact_add_early: a tied use's share of a later
   * range), each kept as its own fixed-point sums until its range comes */
  int nearly;
  early_range *early;
  int mpi_rc;    /* the first failed reduce-scatter (reported by the wait) */
  int shards;    /* G */
  int local_bad; /* the first tensor where this rank's micro-shards had a NaN/Inf, or -1 */
  double sumsq;  /* the squared norm of the last sum */
} exact;

static void release(dpt_reducer *r) {
  exact *d = r->state;
  if (d) {
    free(d->offset);
    free(d->numel);
    free(d->max);
    free(d->acc);
    free(d->part);
    for (int e = 0; e < d->nearly; e++) free(d->early[e].sums);
    free(d->early);
  }
  free(d);
  r->state = NULL;
}

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  if (p->ntensors <= 0 || !p->tensor_offset || !p->tensor_len || !p->scales) {
    snprintf(err, errlen, "the exact reduction needs the buffer's tensors and their scales");
    return DPT_EINVAL;
  }
  if (p->micro_shards < 1 || p->micro_shards > MAX_SHARDS) {
    snprintf(err, errlen,
             "%d micro-shards: expected 1 to %d (the fixed-point sums must not "
             "overflow)",
             p->micro_shards, MAX_SHARDS);
    return DPT_EINVAL;
  }
  for (int t = 0; t < p->ntensors; t++)
    if (p->tensor_offset[t] > r->n || p->tensor_len[t] > r->n - p->tensor_offset[t]) {
      snprintf(err, errlen, "tensor %d [%zu, +%zu) lies outside the %zu-element buffer", t,
               p->tensor_offset[t], p->tensor_len[t], r->n);
      return DPT_EINVAL;
    }
  exact *d = calloc(1, sizeof *d);
  r->state = d;
  size_t nt = (size_t)p->ntensors;
  if (d) {
    d->offset = malloc(nt * sizeof *d->offset);
    d->numel = malloc(nt * sizeof *d->numel);
    d->max = calloc(nt + 1, sizeof *d->max);
    d->acc = r->shard_buf ? NULL : malloc((r->n ? r->n : 1) * sizeof *d->acc);
    d->part = malloc((r->shards[r->rank].len + 1) * sizeof *d->part);
  }
  if (!d || !d->offset || !d->numel || !d->max || (!d->acc && !r->shard_buf) || !d->part) {
    release(r);
    snprintf(err, errlen, "out of memory for the deterministic mode's sums (%zu parameters)", r->n);
    return DPT_ENOMEM;
  }
  d->ntensors = p->ntensors;
  memcpy(d->offset, p->tensor_offset, nt * sizeof *d->offset);
  memcpy(d->numel, p->tensor_len, nt * sizeof *d->numel);
  d->n = r->n;
  d->shards = p->micro_shards;
  d->per_rank = p->micro_shards / r->size;
  d->scale = p->scales;
  d->local_bad = -1;
  r->overlap = 0; /* the sums are final only after dpt_reducer_exact_check */
  return DPT_OK;
}

int dpt_reducer_exact_max_shards(void) {
  return MAX_SHARDS;
}

int dpt_reducer_exact_local_bad(const dpt_reducer *r) {
  return ((const exact *)r->state)->local_bad;
}

double dpt_reducer_exact_sumsq(const dpt_reducer *r) {
  return ((const exact *)r->state)->sumsq;
}

void dpt_reducer_exact_begin(dpt_reducer *r) {
  exact *d = r->state;
  d->local_bad = -1;
  if (r->shard_buf) { /* the shard's sums arrive range by range */
    memset(d->part, 0, r->shards[r->rank].len * sizeof *d->part);
    d->cur_len = 0, d->cur_adds = 0, d->mpi_rc = 0;
    for (int e = 0; e < d->nearly; e++)
      memset(d->early[e].sums, 0, d->early[e].len * sizeof *d->early[e].sums);
  } else {
    memset(d->acc, 0, d->n * sizeof *d->acc);
  }
  memset(d->max, 0, ((size_t)d->ntensors + 1) * sizeof *d->max);
}

/* S for a tensor whose largest value is mx > 0: mx * 2^S < 2^(LIMIT - HEADROOM). */
static double scale_for(double mx) {
  int e;
  frexp(mx, &e); /* mx < 2^e */
  return (double)(LIMIT - HEADROOM - e);
}

/* The largest |x[i]| as the bits of a non-negative float (which order like the values);
 * >= 0x7f800000 means some value is Inf or NaN. With scale s != 0 also acc[i] +=
 * round(x[i] * s), valid for |x[i] * s| < 2^51 (beyond, garbage: the pass is then redone).
 * One pass, integer compares: it vectorises. */
static uint32_t max_and_fix(int64_t *restrict acc, const float *restrict x, size_t n, double s) {
  uint32_t mb = 0;
  if (s == 0) {
    for (size_t i = 0; i < n; i++) {
      uint32_t b;
      memcpy(&b, &x[i], sizeof b);
      b &= 0x7fffffffu;
      mb = b > mb ? b : mb;
    }
    return mb;
  }
  int64_t magic;
  double m = MAGIC;
  memcpy(&magic, &m, sizeof magic);
  for (size_t i = 0; i < n; i++) {
    uint32_t b;
    memcpy(&b, &x[i], sizeof b);
    b &= 0x7fffffffu;
    mb = b > mb ? b : mb;
    double v = (double)x[i] * s + MAGIC;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    /* modulo 2^64: a value out of range only makes garbage, never undefined behaviour */
    acc[i] = (int64_t)((uint64_t)acc[i] + (bits - (uint64_t)magic));
  }
  return mb;
}

/* x[i] = (float)(acc[i] * inv), the int64 -> double conversion rounded once */
static void from_fixed(float *restrict x, const int64_t *restrict acc, size_t n, double inv) {
  for (size_t i = 0; i < n; i++) {
    double hi = (double)(int32_t)(acc[i] >> 32), lo = (double)(uint32_t)acc[i];
    x[i] = (float)((hi * 4294967296.0 + lo) * inv);
  }
}

/* Adds tensor t of one micro-shard, x[0, numel_t), at the current scale into its sums dst. */
static void add_tensor_at(exact *d, int t, const float *x, int64_t *dst) {
  double s = isnan(d->scale[t]) ? 0 : ldexp(1.0, (int)d->scale[t]); /* 0: only measure */
  uint32_t mb = max_and_fix(dst, x, d->numel[t], s);
  if (mb >= 0x7f800000u) {
    d->max[d->ntensors] += 1; /* non-finite */
    if (d->local_bad < 0 || t < d->local_bad) d->local_bad = t;
    return;
  }
  float mx;
  memcpy(&mx, &mb, sizeof mx);
  if ((double)mx > d->max[t]) d->max[t] = mx;
}

static void add_tensor(exact *d, int t, const float *x) {
  add_tensor_at(d, t, x, d->acc + d->offset[t]);
}

void dpt_reducer_exact_add(dpt_reducer *r, const float *g) {
  exact *d = r->state;
  for (int t = 0; t < d->ntensors; t++) add_tensor(d, t, g + d->offset[t]);
}

/* shard_buf: the range [off, off + len)'s sums of this rank, acc[0, len), summed over ranks
 * into each rank's part of it (MPI_Reduce_scatter; int64 sums are exact in any order).
 * Collective: every rank completes the same ranges in the same order. */
static void scatter_range(dpt_reducer *r, exact *d, size_t off, size_t len) {
  int *counts = r->counts, w = r->size;
  size_t mylo = 0, myhi = 0;
  for (int q = 0; q < w; q++) {
    size_t s0 = r->shards[q].offset, s1 = s0 + r->shards[q].len;
    size_t lo = off > s0 ? off : s0, hi = off + len < s1 ? off + len : s1;
    counts[q] = hi > lo ? (int)(hi - lo) : 0;
    if (q == r->rank && hi > lo) mylo = lo, myhi = hi;
  }
  int64_t *out = d->part + (myhi > mylo ? mylo - r->shards[r->rank].offset : 0);
  int rc = MPI_Reduce_scatter(d->acc, out, counts, MPI_INT64_T, MPI_SUM, r->comm);
  if (rc != MPI_SUCCESS && !d->mpi_rc) d->mpi_rc = rc;
}

void dpt_reducer_exact_add_range(dpt_reducer *r, size_t offset, size_t len, const float *g) {
  exact *d = r->state;
  if (r->shard_buf) {
    if (d->cur_len != len || d->cur_off != offset || d->cur_adds == 0) { /* a new range */
      if (len > d->acc_cap) {
        int64_t *a = realloc(d->acc, len * sizeof *a);
        if (!a) { /* joins the collectives with what it has; the wait fails */
          if (!d->mpi_rc) d->mpi_rc = MPI_ERR_NO_MEM;
          len = d->acc_cap;
        } else {
          d->acc = a, d->acc_cap = len;
        }
      }
      memset(d->acc, 0, len * sizeof *d->acc);
      d->cur_off = offset, d->cur_len = len, d->cur_adds = 0;
      for (int e = 0; e < d->nearly; e++) { /* the sums added early join it (exact) */
        const early_range *x = &d->early[e];
        if (x->off < offset || x->off + x->len > offset + len) continue;
        int64_t *restrict a = d->acc + (x->off - offset);
        const int64_t *restrict b = x->sums;
        for (size_t i = 0; i < x->len; i++) a[i] += b[i];
      }
    }
  }
  for (int t = 0; t < d->ntensors; t++) {
    if (d->offset[t] < offset || d->offset[t] + d->numel[t] > offset + len) continue;
    size_t at = r->shard_buf ? d->offset[t] - offset : d->offset[t]; /* acc's own index */
    add_tensor_at(d, t, g + (d->offset[t] - offset), d->acc + at);
  }
  if (r->shard_buf && ++d->cur_adds == d->per_rank) {
    scatter_range(r, d, offset, len);
    d->cur_adds = 0;
  }
}

void dpt_reducer_exact_add_early(dpt_reducer *r, size_t offset, size_t len, const float *g) {
  exact *d = r->state;
  if (!r->shard_buf) { /* the whole sums exist: they take it now */
    dpt_reducer_exact_add_range(r, offset, len, g);
    return;
  }
  int e = 0;
  while (e < d->nearly && (d->early[e].off != offset || d->early[e].len != len)) e++;
  if (e == d->nearly) { /* a range not seen before: its own sums (kept for later steps) */
    early_range *b = realloc(d->early, (size_t)(e + 1) * sizeof *b);
    if (b) d->early = b;
    int64_t *sums = b ? calloc(len ? len : 1, sizeof *sums) : NULL;
    if (!sums) { /* its share is lost: the wait fails on this rank */
      if (!d->mpi_rc) d->mpi_rc = MPI_ERR_NO_MEM;
      return;
    }
    d->early[d->nearly++] = (early_range){offset, len, sums};
  }
  for (int t = 0; t < d->ntensors; t++) {
    if (d->offset[t] < offset || d->offset[t] + d->numel[t] > offset + len) continue;
    add_tensor_at(d, t, g + (d->offset[t] - offset), d->early[e].sums + (d->offset[t] - offset));
  }
}

int dpt_reducer_exact_check(dpt_reducer *r, int *nonfinite, char *err, size_t errlen) {
  exact *d = r->state;
  if (dpt_comm_max(r->comm, d->max, d->ntensors + 1, err, errlen)) return DPT_EMPI;
  *nonfinite = d->max[d->ntensors] > 0;
  if (*nonfinite) return 0;
  int redo = 0;
  for (int t = 0; t < d->ntensors; t++) {
    double mx = d->max[t];
    if (mx == 0) continue;
    double top = isnan(d->scale[t]) ? 0 : mx * ldexp(1.0, (int)d->scale[t]);
    if (top >= ldexp(1.0, LIMIT) || top < ldexp(1.0, FLOOR)) {
      d->scale[t] = scale_for(mx);
      redo = 1;
    }
  }
  return redo;
}

/* Nothing per bucket: see the top of the file. */
static int start(dpt_reducer *r, int k) {
  (void)r, (void)k;
  return MPI_SUCCESS;
}

/* g[i - lo] = (float)(acc[i - lo] * 2^-S) for the elements [lo, lo + len) of the flat buffer:
 * g and acc hold them from their [0]. */
static void convert_range(const exact *d, float *g, const int64_t *acc, size_t lo, size_t len) {
  for (int t = 0; t < d->ntensors; t++) {
    size_t a = d->offset[t] > lo ? d->offset[t] : lo;
    size_t b = d->offset[t] + d->numel[t] < lo + len ? d->offset[t] + d->numel[t] : lo + len;
    if (a >= b) continue;
    if (isnan(d->scale[t])) /* nothing was ever non-zero here */
      memset(g + (a - lo), 0, (b - a) * sizeof *g);
    else
      from_fixed(g + (a - lo), acc + (a - lo), b - a, ldexp(1.0, -(int)d->scale[t]));
  }
}

/* The squared L2 norm of the elements [lo, lo + len), g holding them from g[0], the same whichever
 * rank takes which part: squares are exact in double, summed in fixed blocks of 16 (shard
 * boundaries are multiples of 16), and each block sum is rounded to fixed point at 2^q, q chosen
 * from a bound on every value (G micro-shard maxima) so that the sum of all n squares stays below
 * 2^62. */
static int64_t sumsq_fixed(const exact *d, const float *g, size_t lo, size_t len, int *q) {
  double bound = 0;
  for (int t = 0; t < d->ntensors; t++)
    bound = d->max[t] * d->shards > bound ? d->max[t] * d->shards : bound;
  int e, ln = 0;
  frexp(bound > 0 ? bound : 1, &e); /* |value| < 2^e */
  while (((size_t)1 << ln) < d->n) ln++;
  *q = 62 - 2 * e - ln;
  const double s = ldexp(1.0, *q);
  int64_t total = 0;
  for (size_t b = lo; b < lo + len; b += 16) {
    size_t end = b + 16 < lo + len ? b + 16 : lo + len;
    double blk = 0;
    for (size_t i = b; i < end; i++) blk += (double)g[i - lo] * (double)g[i - lo];
    total += (int64_t)llrint(blk * s);
  }
  return total;
}

/* The sums into buf (all of it, or this rank's shard), their norm, the next step's scales. */
static int finish(dpt_reducer *r, char *err, size_t errlen) {
  exact *d = r->state;
  dpt_range own = r->shards[r->rank];
  int rc;
  if (r->shard_buf) { /* part is complete: reduce-scattered range by range in the pass */
    rc = d->mpi_rc ? dpt_comm_mpi_error(d->mpi_rc, "MPI_Reduce_scatter (exact sum)", err, errlen)
                   : DPT_OK;
  } else if (!r->shard_only) {
    rc = dpt_comm_sum_exact(r->comm, d->acc, d->n, err, errlen);
  } else {
    int *counts = r->counts; /* every rank's shard */
    for (int q = 0; q < r->size; q++) counts[q] = (int)r->shards[q].len;
    rc = MPI_Reduce_scatter(d->acc, d->part, counts, MPI_INT64_T, MPI_SUM, r->comm);
    if (rc != MPI_SUCCESS)
      rc = dpt_comm_mpi_error(rc, "MPI_Reduce_scatter (exact sum)", err, errlen);
  }
  if (rc) return rc;
  /* shard_buf: buf is the shard alone */
  float *mine = r->shard_buf ? r->buf : r->buf + own.offset;
  if (!r->shard_only)
    convert_range(d, r->buf, d->acc, 0, d->n);
  else
    convert_range(d, mine, d->part, own.offset, own.len);
  int q = 0;
  int64_t ss = sumsq_fixed(d, mine, own.offset, own.len, &q);
  rc = dpt_comm_sum_exact(r->comm, &ss, 1, err, errlen);
  if (rc) return rc;
  d->sumsq = ldexp((double)ss, -q);
  for (int t = 0; t < d->ntensors; t++) /* the scales of the next step */
    if (d->max[t] > 0) d->scale[t] = scale_for(d->max[t]);
  return DPT_OK;
}

static size_t bytes(const dpt_reducer *r) {
  const exact *d = r->state;
  size_t early = 0;
  for (int e = 0; e < d->nearly; e++) early += d->early[e].len;
  return ((r->shard_buf ? d->acc_cap : d->n) + r->shards[r->rank].len + 2 + early) *
             sizeof(int64_t) +
         ((size_t)d->ntensors * 2 + 1) * (sizeof(size_t) + sizeof(double));
}

const dpt_reduce_algo dpt_reduce_exact = {"exact", init, release, start, finish, NULL, bytes, NULL};

/* reducer.c — the gradient reducer's bookkeeping: parameters, fixed bucket order, ready ranges,
 * progress and the wait. Which collective sums a bucket is the algorithm's (reduce_impl.h).
 *
 * A bucket starts only when it is complete and every bucket after it has started, so the
 * sequence of nonblocking collectives is identical on every rank. Outstanding requests are
 * tested on every dpt_reducer_ready call so Open MPI progresses them while backward runs.
 */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reduce_impl.h"

/* One entry per dpt_reduce_algorithm, in its order. */
static const dpt_reduce_algo *const algorithms[DPT_REDUCE_COUNT] = {
    [DPT_REDUCE_RANK_ORDER] = &dpt_reduce_rank_order,
    [DPT_REDUCE_EXACT] = &dpt_reduce_exact,
    [DPT_REDUCE_NODE] = &dpt_reduce_node,
    [DPT_REDUCE_RING] = &dpt_reduce_ring,
    [DPT_REDUCE_HALF] = &dpt_reduce_half,
    [DPT_REDUCE_POWERSGD] = &dpt_reduce_powersgd,
};

const char *dpt_reducer_algorithm_name(dpt_reduce_algorithm a) {
  if (a == DPT_REDUCE_AUTO) return "auto";
  return (unsigned)a < DPT_REDUCE_COUNT ? algorithms[a]->name : NULL;
}

int dpt_reducer_algorithm_parse(const char *name, dpt_reduce_algorithm *a, char *err,
                                size_t errlen) {
  for (int i = -1; i < DPT_REDUCE_HALF; i++) /* the lossy ones: by dpt_reducer_params.compress */
    if (!strcmp(name, dpt_reducer_algorithm_name((dpt_reduce_algorithm)i))) {
      *a = (dpt_reduce_algorithm)i;
      return 0;
    }
  snprintf(err, errlen, "'%s' is not one of auto, rank-order, node, ring, exact", name);
  return -1;
}

dpt_reduce_algorithm dpt_reducer_algorithm(const dpt_reducer *r) {
  for (int i = 0; i < DPT_REDUCE_COUNT; i++)
    if (r->algo == algorithms[i]) return (dpt_reduce_algorithm)i;
  return DPT_REDUCE_AUTO;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

dpt_reducer_params dpt_reducer_defaults(void) {
  dpt_reducer_params p;
  memset(&p, 0, sizeof p);
  p.bucket_bytes = DPT_REDUCER_BUCKET_BYTES;
  p.overlap = 1;
  p.shard_only = 0;
  p.algorithm = DPT_REDUCE_AUTO;
  p.compress = DPT_COMPRESS_NONE;
  p.compress_rank = DPT_POWERSGD_RANK;
  p.compress_start = DPT_POWERSGD_START;
  return p;
}

/* The buckets' starts (r->bstart, nbuckets + 1 of them, the last n): every r->bucket elements;
 * with shard_buf and spans, each span cut into the fewest equal buckets of at most r->bucket,
 * so that no bucket crosses a span boundary (r->bucket then becomes the longest). -1 if out of
 * memory. */
static int cut_buckets(dpt_reducer *r, const dpt_reducer_params *p) {
  size_t n = r->n, b = r->bucket;
  int spans = r->shard_buf && p->nspans > 0 && p->span_offset;
  size_t count = n ? (n + b - 1) / b : 0;
  if (spans) /* a span of len takes ceil(len / b): at most one more than its share */
    count += (size_t)p->nspans + 1;
  if (!(r->bstart = malloc((count + 1) * sizeof *r->bstart))) return -1;
  int k = 0;
  if (!spans) {
    for (; (size_t)k < (n ? (n + b - 1) / b : 0); k++) r->bstart[k] = (size_t)k * b;
  } else {
    size_t longest = 0;
    for (int s = -1; s < p->nspans; s++) { /* s = -1: what lies before the first span */
      size_t lo = s < 0 ? 0 : p->span_offset[s];
      size_t hi = s + 1 < p->nspans ? p->span_offset[s + 1] : n;
      if (hi > n) hi = n;
      if (hi <= lo) continue;
      size_t pieces = (hi - lo + b - 1) / b;
      for (size_t i = 0; i < pieces; i++) r->bstart[k++] = lo + (hi - lo) * i / pieces;
      size_t len = (hi - lo + pieces - 1) / pieces;
      if (len > longest) longest = len;
    }
    r->bucket = longest ? longest : 1;
  }
  r->bstart[k] = n;
  r->nbuckets = k;
  r->uniform = !spans;
  return 0;
}

/* The bucket that holds element i (< n). */
static int bucket_of(const dpt_reducer *r, size_t i) {
  if (r->uniform) return (int)(i / r->bucket);
  int lo = 0, hi = r->nbuckets - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (r->bstart[mid] <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

int dpt_reducer_create(MPI_Comm comm, float *buf, size_t n, const dpt_reducer_params *p,
                       dpt_reducer **out, char *err, size_t errlen) {
  *out = NULL;
  if (p->bucket_bytes < sizeof(float)) {
    snprintf(err, errlen, "bucket size %zu bytes is too small (expected >= 4)", p->bucket_bytes);
    return DPT_EINVAL;
  }
  if (n > (size_t)INT_MAX) {
    snprintf(err, errlen, "%zu gradient elements exceed MPI's int counts", n);
    return DPT_EINVAL;
  }
  dpt_reduce_algorithm algo = p->algorithm;
  if (p->compress != DPT_COMPRESS_NONE) { /* lossy: in place of rank-order's exchange */
    if (algo != DPT_REDUCE_AUTO && algo != DPT_REDUCE_RANK_ORDER) {
      snprintf(err, errlen,
               "gradient compression works with the auto and rank-order reductions, not %s",
               algo == DPT_REDUCE_EXACT           ? "exact (deterministic mode)"
               : dpt_reducer_algorithm_name(algo) ? dpt_reducer_algorithm_name(algo)
                                                  : "an unknown one");
      return DPT_EINVAL;
    }
    algo = p->compress == DPT_COMPRESS_POWERSGD ? DPT_REDUCE_POWERSGD : DPT_REDUCE_HALF;
  } else if (algo == DPT_REDUCE_HALF || algo == DPT_REDUCE_POWERSGD) {
    snprintf(err, errlen, "the %s reduction is chosen by compress, not by algorithm",
             dpt_reducer_algorithm_name(algo));
    return DPT_EINVAL;
  }
  if (algo == DPT_REDUCE_AUTO) { /* from where the ranks run (collective, like the rest) */
    dpt_topology t;
    int blocked = 0, rc = dpt_reduce_node_layout(comm, &t, &blocked, err, errlen);
    if (rc) return rc;
    /* measured in tests/bench/netns_reduce.sh (README "Across nodes"): the chain wins an
     * allreduce at 2 nodes x 2 ranks (1.9x) and 4 x 1 (1.2x), ties at 2 x 1; a reduce-scatter
     * sends every partial sum along it but only half the sums back, where rank-order sends each
     * rank only its shard: rank-order is as fast or faster at every layout measured. At 4 x 1
     * the ring all-gather beat the chain (1.1x) and rank-order (1.3x) */
    int node = t.nodes > 1 && blocked && !p->shard_only && t.max_per_node > 1;
    int ring = t.nodes > 2 && t.max_per_node == 1 && !p->shard_only;
    algo = node ? DPT_REDUCE_NODE : ring ? DPT_REDUCE_RING : DPT_REDUCE_RANK_ORDER;
  }
  if ((unsigned)algo >= DPT_REDUCE_COUNT) {
    snprintf(err, errlen, "reduction algorithm %d is not one of the %d dpt has", (int)p->algorithm,
             DPT_REDUCE_COUNT);
    return DPT_EINVAL;
  }
  if (p->shard_buf &&
      (!p->shard_only || (algo != DPT_REDUCE_RANK_ORDER && algo != DPT_REDUCE_EXACT))) {
    snprintf(err, errlen,
             "a shard-only gradient buffer (ZeRO-2) needs shard_only and the rank-order or exact "
             "reduction, not %s",
             dpt_reducer_algorithm_name(algo));
    return DPT_EINVAL;
  }
  struct dpt_reducer *r = calloc(1, sizeof *r);
  if (!r) goto nomem;
  r->comm = MPI_COMM_NULL;
  r->buf = buf;
  r->n = n;
  r->bucket = p->bucket_bytes / sizeof(float);
  if (r->bucket > (size_t)1 << 30) r->bucket = (size_t)1 << 30;
  r->shard_buf = p->shard_only && p->shard_buf;
  if (cut_buckets(r, p)) goto nomem;
  r->overlap = p->overlap;
  r->shard_only = p->shard_only;
  int rc = dpt_comm_dup_returning(comm, &r->comm, err, errlen);
  if (rc) {
    dpt_reducer_free(r);
    return rc;
  }
  MPI_Comm_rank(r->comm, &r->rank);
  MPI_Comm_size(r->comm, &r->size);
  r->shards = malloc((size_t)r->size * sizeof *r->shards);
  r->counts = malloc(4 * (size_t)r->size * ((size_t)r->nbuckets + 1) * sizeof *r->counts);
  r->done = calloc((size_t)r->nbuckets + 1, sizeof *r->done);
  r->req = malloc(((size_t)r->nbuckets + 1) * sizeof *r->req);
  r->lent = calloc((size_t)r->nbuckets + 1, sizeof *r->lent);
  if (!r->shards || !r->counts || !r->done || !r->req || !r->lent) goto nomem;
  for (int q = 0; q < r->size; q++) r->shards[q] = dpt_comm_shard(n, q, r->size);
  for (int k = 0; k < r->nbuckets; k++) r->req[k] = MPI_REQUEST_NULL;
  r->next = r->nbuckets - 1;
  r->algo = algorithms[algo];
  if (r->shard_buf && r->algo->bucket_buf) r->overlap = 1; /* the pool needs buckets to go */
  if ((rc = r->algo->init(r, p, err, errlen))) {
    r->algo = NULL; /* init cleaned up after itself */
    dpt_reducer_free(r);
    return rc;
  }
  *out = r;
  return DPT_OK;
nomem:
  dpt_reducer_free(r);
  snprintf(err, errlen, "cannot allocate the gradient reducer (%zu elements)", n);
  return DPT_ENOMEM;
}

void dpt_reducer_free(dpt_reducer *r) {
  if (!r) return;
  if (r->req) /* an error left some in flight: every rank started them, so they complete */
    for (int k = 0; k < r->nbuckets; k++)
      if (r->req[k] != MPI_REQUEST_NULL) MPI_Wait(&r->req[k], MPI_STATUS_IGNORE);
  if (r->algo) r->algo->free(r);
  if (r->comm != MPI_COMM_NULL) MPI_Comm_free(&r->comm);
  free(r->shards);
  free(r->counts);
  free(r->done);
  free(r->req);
  free(r->lent);
  free(r->bstart);
  free(r);
}

size_t dpt_reducer_bucket_len(const dpt_reducer *r, int k) {
  return r->bstart[k + 1] - r->bstart[k];
}

size_t dpt_reducer_bucket_start(const dpt_reducer *r, int k) {
  return r->bstart[k];
}

void dpt_reducer_bucket_part(const dpt_reducer *r, int k, int q, size_t *lo, size_t *hi) {
  size_t b0 = r->bstart[k], b1 = r->bstart[k + 1];
  size_t s0 = r->shards[q].offset, s1 = s0 + r->shards[q].len;
  *lo = b0 > s0 ? b0 : s0;
  *hi = b1 < s1 ? b1 : s1;
  if (*hi < *lo) *hi = *lo;
}

int *dpt_reducer_exchange_counts(dpt_reducer *r, int k) {
  int w = r->size;
  int *sc = r->counts + (size_t)4 * w * k, *sd = sc + w, *rc = sd + w, *rd = rc + w;
  size_t mylo, myhi, L = r->shards[r->rank].len;
  dpt_reducer_bucket_part(r, k, r->rank, &mylo, &myhi);
  for (int q = 0; q < w; q++) {
    size_t lo, hi;
    dpt_reducer_bucket_part(r, k, q, &lo, &hi);
    sc[q] = (int)(hi - lo);
    sd[q] = (int)lo;
    rc[q] = (int)(myhi - mylo);
    rd[q] = (int)((size_t)q * L + (mylo - r->shards[r->rank].offset));
  }
  return sc;
}

/* Starts buckets in the fixed order while the next one is complete. */
static void start_ready(dpt_reducer *r) {
  while (r->next >= 0 && r->done[r->next] == dpt_reducer_bucket_len(r, r->next)) {
    int rc = r->algo->start(r, r->next);
    if (rc != MPI_SUCCESS && !r->mpi_rc) r->mpi_rc = rc;
    r->next--;
  }
}

/* Starts what is complete and lets MPI progress the buckets in flight. */
static void progress(dpt_reducer *r) {
  start_ready(r);
  int flag; /* let MPI progress what is in flight */
  for (int k = r->nbuckets - 1; k > r->next; k--)
    if (r->req[k] != MPI_REQUEST_NULL) {
      int rc = MPI_Test(&r->req[k], &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS && !r->mpi_rc) r->mpi_rc = rc;
    }
}

void dpt_reducer_ready(void *ctx, size_t offset, size_t len) {
  dpt_reducer *r = ctx;
  while (len > 0) {
    int k = bucket_of(r, offset);
    size_t end = r->bstart[k + 1];
    size_t take = offset + len < end ? len : end - offset;
    r->done[k] += take;
    offset += take;
    len -= take;
  }
  if (r->overlap) progress(r);
}

int dpt_reducer_wait_yielding(MPI_Request *req) {
  for (;;) {
    int flag = 0, rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || flag) return rc;
    sched_yield();
  }
}

/* put and lend: from the end down (buckets fill in the order they start); a bucket whose whole
 * range lies in g is lent when lend is set and the algorithm takes it, else copied. */
static void hand_over(dpt_reducer *r, size_t offset, size_t len, const float *g, int lend) {
  if (!r->shard_buf || !r->algo->bucket_buf) { /* a misuse: say so in the wait */
    if (!r->mpi_rc) r->mpi_rc = MPI_ERR_OTHER;
    return;
  }
  lend = lend && r->algo->bucket_lend;
  while (len > 0 && !r->mpi_rc) {
    size_t end = offset + len;
    int k = bucket_of(r, end - 1), rc = MPI_SUCCESS;
    size_t b0 = r->bstart[k], lo = offset > b0 ? offset : b0;
    if (lend && lo == b0 && end == r->bstart[k + 1] && !r->done[k]) {
      r->lent[k] = g + (b0 - offset);
      if (r->algo->bucket_lend(r, k, &rc)) {
        r->lent[k] = NULL;
        r->mpi_rc = rc != MPI_SUCCESS ? rc : MPI_ERR_NO_MEM;
        return;
      }
    } else {
      float *b = r->algo->bucket_buf(r, k, &rc);
      if (!b) {
        r->mpi_rc = rc != MPI_SUCCESS ? rc : MPI_ERR_NO_MEM;
        return;
      }
      memcpy(b + (lo - b0), g + (lo - offset), (end - lo) * sizeof *g);
    }
    r->done[k] += end - lo;
    len = lo - offset;
    progress(r); /* a full bucket goes now, and those in flight move on */
  }
}

void dpt_reducer_put(dpt_reducer *r, size_t offset, size_t len, const float *g) {
  hand_over(r, offset, len, g, 0);
}

void dpt_reducer_lend(dpt_reducer *r, size_t offset, size_t len, const float *g) {
  hand_over(r, offset, len, g, 1);
}

/* Ends the loans of g[0, len) that can end: those whose exchange completed (waiting for them
 * when wait is set) and those not started (copied into the bucket's own buffer). 1 if none is
 * left. */
static int end_loans(dpt_reducer *r, const float *g, size_t len, int wait) {
  int left = 0;
  for (int k = r->nbuckets - 1; k >= 0; k--) {
    const float *p = r->lent[k];
    if (!p || p < g || p >= g + len) continue;
    if (k > r->next) { /* started: its exchange reads p until it completes */
      int rc = MPI_SUCCESS, flag = 1;
      if (r->req[k] != MPI_REQUEST_NULL)
        rc = wait ? dpt_reducer_wait_yielding(&r->req[k])
                  : MPI_Test(&r->req[k], &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS && !r->mpi_rc) r->mpi_rc = rc;
      if (!flag && rc == MPI_SUCCESS) {
        left = 1;
        continue;
      }
    } else { /* not started yet (ranges out of backward's order): into the bucket's own */
      int rc = MPI_SUCCESS;
      float *b = r->algo->bucket_buf(r, k, &rc);
      if (b)
        memcpy(b, p, dpt_reducer_bucket_len(r, k) * sizeof *b);
      else if (!r->mpi_rc)
        r->mpi_rc = rc != MPI_SUCCESS ? rc : MPI_ERR_NO_MEM;
    }
    r->lent[k] = NULL;
  }
  return !left;
}

void dpt_reducer_take_back(dpt_reducer *r, const float *g, size_t len) {
  end_loans(r, g, len, 1);
}

int dpt_reducer_try_take_back(dpt_reducer *r, const float *g, size_t len) {
  return end_loans(r, g, len, 0);
}

size_t dpt_reducer_bytes(const dpt_reducer *r) {
  return r && r->algo && r->algo->bytes ? r->algo->bytes(r) : 0;
}

int dpt_reducer_wait(dpt_reducer *r, double *wait_s, char *err, size_t errlen) {
  double t0 = now();
  int rc = r->mpi_rc;
  for (; r->next >= 0 && !rc; r->next--) rc = r->algo->start(r, r->next);
  if (!rc) rc = MPI_Waitall(r->nbuckets, r->req, MPI_STATUSES_IGNORE);
  int drc = rc != MPI_SUCCESS ? dpt_comm_mpi_error(rc, "gradient reduction", err, errlen)
                              : r->algo->finish(r, err, errlen);
  if (wait_s) *wait_s = now() - t0;
  memset(r->done, 0, (size_t)r->nbuckets * sizeof *r->done);
  memset(r->lent, 0, (size_t)r->nbuckets * sizeof *r->lent);
  r->next = r->nbuckets - 1;
  r->mpi_rc = 0;
  return drc;
}

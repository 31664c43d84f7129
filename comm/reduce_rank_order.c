/* reduce_rank_order.c — DPT_REDUCE_RANK_ORDER, the default algorithm: bitwise-reproducible
 * float sums in rank order.
 *
 * A bucket's reduction is an exchange (MPI_Ialltoallv: each rank receives every rank's copy of
 * the part of the bucket inside its own shard) followed, once every bucket has arrived, by a
 * local sum in rank order. So the result does not depend on MPI's algorithm, on the bucket size
 * or on whether every rank wants the whole sum (allreduce: the shards are then all-gathered) or
 * only its shard (reduce-scatter, ZeRO-1 and 2): ZeRO stages 0, 1 and 2 see bitwise the same
 * gradient.
 *
 * With shard_buf (ZeRO-2) there is no whole gradient: dpt_reducer_put copies each range into
 * the buffer of its bucket, one of a pool of slots (a bucket's buffer and its staging rows, W
 * copies of the bucket's part in this rank's shard). A slot is freed when its bucket completed
 * and was summed, in the same rank order, into buf (this rank's shard). With dpt_reducer_lend a
 * bucket lying whole in the lent range sends from there and its slot holds only the staging
 * rows (the send buffer is allocated only for a bucket that is copied). Backward fills buckets
 * in the order they start, so two slots would do (one filling, one in flight); there are
 * four (STREAM_SLOTS), so that fewer waits fall inside backward: a bucket that needs a slot
 * while all are taken waits for the oldest in flight, yielding the core between polls (a rank
 * spinning there would take the CPU a peer computes on when ranks share cores). The pool grows
 * only if ranges come out of that order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

/* shard_buf: the pool's starting size (see the top of the file). 2 made stage 2 1.12x stage
 * 1's step time at W = 2 on the loaded 2-core machine, 4 made it 1.02x (median of 42 steps) */
#define STREAM_SLOTS 4
/* and the staging the pool may grow to, rather than wait, while a peer is behind */
#define STREAM_BYTES ((size_t)128 << 20)

typedef struct {
  int k;        /* the bucket it holds, -1: free */
  float *send;  /* [bucket]: this rank's gradient of the bucket */
  float *stage; /* [size * part]: every rank's copy of the bucket's part in this rank's shard */
} slot;

typedef struct {
  float *stage; /* size * shards[rank].len: every rank's copy of this rank's shard */
  slot *slots;  /* shard_buf: the pool */
  int nslots;
  size_t part;   /* shard_buf: the largest part of a bucket in this rank's shard */
  int max_slots; /* shard_buf: the pool grows to this many while peers lag (STREAM_BYTES) */
  float none[1]; /* the receive buffer of an exchange that receives nothing */
  float *spare;  /* shard_buf: [bucket], made at init: a send buffer for a bucket that must be
                    copied when none can be allocated in the step (one bucket at a time) */
} rank_order;

static int add_slot(dpt_reducer *r, rank_order *s) {
  slot *n = realloc(s->slots, ((size_t)s->nslots + 1) * sizeof *n);
  if (!n) return -1;
  s->slots = n;
  slot *t = &n[s->nslots];
  t->k = -1;
  t->send = NULL; /* bucket_buf allocates it when the bucket is not lent */
  t->stage = malloc(((size_t)r->size * s->part + 1) * sizeof *t->stage);
  if (!t->stage) return -1;
  s->nslots++;
  return 0;
}

static void release(dpt_reducer *r) {
  rank_order *s = r->state;
  if (s) {
    free(s->stage);
    for (int i = 0; i < s->nslots; i++) {
      if (s->slots[i].send != s->spare) free(s->slots[i].send);
      free(s->slots[i].stage);
    }
    free(s->spare);
    free(s->slots);
  }
  free(s);
  r->state = NULL;
}

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  (void)p;
  rank_order *s = calloc(1, sizeof *s);
  r->state = s;
  int ok = s != NULL;
  if (ok && r->shard_buf) {
    for (int k = 0; k < r->nbuckets; k++) {
      size_t lo, hi;
      dpt_reducer_bucket_part(r, k, r->rank, &lo, &hi);
      if (hi - lo > s->part) s->part = hi - lo;
    }
    if (r->bucket > r->n) r->bucket = r->n ? r->n : 1; /* a slot needs no more than the whole */
    for (int i = 0; ok && i < STREAM_SLOTS; i++) ok = add_slot(r, s) == 0;
    ok = ok && (s->spare = malloc(r->bucket * sizeof *s->spare)) != NULL;
    size_t per = ((size_t)r->size * s->part + 1) * sizeof(float);
    s->max_slots = STREAM_BYTES / per > STREAM_SLOTS ? (int)(STREAM_BYTES / per) : STREAM_SLOTS;
  } else if (ok) {
    ok = (s->stage = malloc(((size_t)r->size * r->shards[r->rank].len + 1) * sizeof *s->stage)) !=
         NULL;
  }
  if (!ok) {
    release(r);
    snprintf(err, errlen, "cannot allocate the gradient reducer's staging (%zu elements)", r->n);
    return DPT_ENOMEM;
  }
  return DPT_OK;
}

/* The sum over ranks of rows[0, size) of len each, in rank order, into out. */
static void sum_rows(float *restrict out, const float *restrict st, size_t len, int size) {
  for (size_t i = 0; i < len; i++) out[i] = st[i];
  for (int q = 1; q < size; q++) {
    const float *restrict row = st + (size_t)q * len;
    for (size_t i = 0; i < len; i++) out[i] = out[i] + row[i];
  }
}

/* shard_buf: bucket t->k completed: its part of this rank's shard into buf; the slot is free. */
static void reclaim(dpt_reducer *r, slot *t) {
  size_t lo, hi;
  dpt_reducer_bucket_part(r, t->k, r->rank, &lo, &hi);
  sum_rows(r->buf + (lo - r->shards[r->rank].offset), t->stage, hi - lo, r->size);
  t->k = -1;
}

/* shard_buf: the slot of bucket k, taken from the pool if it has none (see the top of the file).
 * Started buckets are those above r->next; the oldest of them is the highest. */
static slot *take_slot(dpt_reducer *r, int k, int *mpi_rc) {
  rank_order *s = r->state;
  int free_slot = -1, oldest = -1; /* indices: add_slot may move the pool */
  for (int i = 0; i < s->nslots; i++) {
    slot *t = &s->slots[i];
    if (t->k == k) return t;
    if (t->k > r->next && r->req[t->k] == MPI_REQUEST_NULL) reclaim(r, t); /* done meanwhile */
    if (t->k < 0 && free_slot < 0) free_slot = i;
    if (t->k > r->next && (oldest < 0 || t->k > s->slots[oldest].k)) oldest = i;
  }
  if (free_slot < 0 && oldest >= 0 && s->nslots < s->max_slots) { /* the oldest done? else grow */
    int flag = 0, rc = MPI_Test(&r->req[s->slots[oldest].k], &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      *mpi_rc = rc;
      return NULL;
    }
    if (flag)
      reclaim(r, &s->slots[oldest]), free_slot = oldest;
    else if (!add_slot(r, s)) /* (out of memory: wait for the oldest instead) */
      free_slot = s->nslots - 1;
  }
  if (free_slot < 0 && oldest >= 0) {
    int rc = dpt_reducer_wait_yielding(&r->req[s->slots[oldest].k]);
    if (rc != MPI_SUCCESS) {
      *mpi_rc = rc;
      return NULL;
    }
    reclaim(r, &s->slots[oldest]);
    free_slot = oldest;
  }
  if (free_slot < 0) { /* every slot is filling: ranges out of backward's order */
    if (add_slot(r, s)) return NULL;
    free_slot = s->nslots - 1;
  }
  s->slots[free_slot].k = k;
  return &s->slots[free_slot];
}

/* shard_buf: bucket k's buffer (see dpt_reduce_algo.bucket_buf); a slot's is allocated when a
 * bucket first needs it (lent buckets need none). */
static float *bucket_buf(dpt_reducer *r, int k, int *mpi_rc) {
  rank_order *s = r->state;
  slot *t = take_slot(r, k, mpi_rc);
  if (!t || t->send) return t ? t->send : NULL;
  if ((t->send = malloc(r->bucket * sizeof *t->send))) return t->send;
  /* out of memory inside the step: the spare, once the bucket that has it completed (so
   * that this rank still takes part in every exchange) */
  for (int i = 0; i < s->nslots; i++) {
    slot *h = &s->slots[i];
    if (h->send != s->spare) continue;
    if (h->k >= 0 && h->k <= r->next) return NULL; /* still filling: two copied at once */
    if (h->k >= 0) {
      int rc =
          r->req[h->k] == MPI_REQUEST_NULL ? MPI_SUCCESS : dpt_reducer_wait_yielding(&r->req[h->k]);
      if (rc != MPI_SUCCESS) {
        *mpi_rc = rc;
        return NULL;
      }
      reclaim(r, h);
    }
    h->send = NULL;
  }
  return t->send = s->spare;
}

/* A lent bucket with no part in this rank's shard receives nothing, so it needs no slot: only
 * its request is in flight (which is what lets backward run ahead of a peer without waiting). */
static int part_len(const dpt_reducer *r, int k) {
  size_t lo, hi;
  dpt_reducer_bucket_part(r, k, r->rank, &lo, &hi);
  return hi > lo;
}

static int bucket_lend(dpt_reducer *r, int k, int *mpi_rc) {
  return !part_len(r, k) || take_slot(r, k, mpi_rc) ? 0 : -1;
}

static slot *slot_of(rank_order *s, int k) {
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].k == k) return &s->slots[i];
  return NULL;
}

static size_t bytes(const dpt_reducer *r) {
  const rank_order *s = r->state;
  if (!r->shard_buf) return ((size_t)r->size * r->shards[r->rank].len + 1) * sizeof(float);
  size_t b = r->bucket * sizeof(float); /* the spare */
  for (int i = 0; i < s->nslots; i++) {
    const slot *t = &s->slots[i];
    b += ((t->send && t->send != s->spare ? r->bucket : 0) + (size_t)r->size * s->part + 1) *
         sizeof(float);
  }
  return b;
}

/* Bucket k: every rank sends each peer the part of the bucket in that peer's shard, and
 * receives every rank's copy of the part in its own shard into the staging rows. */
static int start(dpt_reducer *r, int k) {
  rank_order *s = r->state;
  int w = r->size;
  int *sc = dpt_reducer_exchange_counts(r, k), *sd = sc + w, *rc = sd + w, *rd = rc + w;
  if (!r->shard_buf)
    return MPI_Ialltoallv(r->buf, sc, sd, MPI_FLOAT, s->stage, rc, rd, MPI_FLOAT, r->comm,
                          &r->req[k]);
  /* shard_buf: from the bucket's own buffer into its slot's rows of P = myhi - mylo each */
  slot *t = slot_of(s, k);
  if (!t && r->lent[k]) { /* lent, no part here: it only sends */
    for (int q = 0; q < w; q++) sd[q] -= (int)dpt_reducer_bucket_start(r, k), rd[q] = 0;
    return MPI_Ialltoallv(r->lent[k], sc, sd, MPI_FLOAT, s->none, rc, rd, MPI_FLOAT, r->comm,
                          &r->req[k]);
  }
  if (!t) { /* nothing was put into it (a failed rank joins with zeros) */
    int mrc = MPI_SUCCESS;
    float *b = bucket_buf(r, k, &mrc);
    if (!b) return mrc != MPI_SUCCESS ? mrc : MPI_ERR_NO_MEM;
    memset(b, 0, dpt_reducer_bucket_len(r, k) * sizeof *b);
    t = slot_of(s, k);
  }
  size_t b0 = dpt_reducer_bucket_start(r, k);
  for (int q = 0; q < w; q++) { /* rc[q] is this rank's part, P, for every q */
    sd[q] -= (int)b0;
    rd[q] = q * rc[q];
  }
  const float *src = r->lent[k] ? r->lent[k] : t->send;
  return MPI_Ialltoallv(src, sc, sd, MPI_FLOAT, t->stage, rc, rd, MPI_FLOAT, r->comm, &r->req[k]);
}

/* The sum of every rank's copy of this rank's shard, in rank order 0, 1, ..., W-1: the same
 * association whatever the bucket size, the MPI algorithm or the stage. */
static void sum_shard(dpt_reducer *r) {
  rank_order *s = r->state;
  if (r->shard_buf) { /* what has not been summed on the way */
    for (int i = 0; i < s->nslots; i++)
      if (s->slots[i].k >= 0) reclaim(r, &s->slots[i]);
    return;
  }
  sum_rows(r->buf + r->shards[r->rank].offset, s->stage, r->shards[r->rank].len, r->size);
}

static int finish(dpt_reducer *r, char *err, size_t errlen) {
  sum_shard(r);
  if (r->shard_only || r->size == 1) return DPT_OK;
  int w = r->size, *counts = r->counts, *displs = r->counts + w; /* every bucket is done */
  for (int q = 0; q < w; q++) {
    counts[q] = (int)r->shards[q].len;
    displs[q] = (int)r->shards[q].offset;
  }
  int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, r->buf, counts, displs, MPI_FLOAT,
                          r->comm);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "gradient reduction", err, errlen);
}

const dpt_reduce_algo dpt_reduce_rank_order = {"rank-order", init,       release, start,
                                               finish,       bucket_buf, bytes,   bucket_lend};

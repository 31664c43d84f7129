/* reduce_rank_order.c — DPT_REDUCE_RANK_ORDER, the default algorithm: bitwise-reproducible
 * float sums in rank order.
 *
 * A bucket's reduction is an exchange (MPI_Ialltoallv: each rank receives every rank's copy of
 * the part of the bucket inside its own shard) followed, once every bucket has arrived, by a
 * local sum in rank order. So the result does not depend on MPI's algorithm, on the bucket size
 * or on whether every rank wants the whole sum (allreduce: the shards are then all-gathered) or
 * only its shard (reduce-scatter, ZeRO-1 and 2): ZeRO stages 0, 1 and 2 see bitwise the same
 * gradient.
 */
#include <stdio.h>
#include <stdlib.h>

#include "reduce_impl.h"

typedef struct {
  float *stage; /* size * shards[rank].len: every rank's copy of this rank's shard */
} rank_order;

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  (void)p;
  rank_order *s = calloc(1, sizeof *s);
  if (s) s->stage = malloc(((size_t)r->size * r->shards[r->rank].len + 1) * sizeof *s->stage);
  if (!s || !s->stage) {
    free(s);
    snprintf(err, errlen, "cannot allocate the gradient reducer's staging (%zu elements)", r->n);
    return DPT_ENOMEM;
  }
  r->state = s;
  return DPT_OK;
}

static void release(dpt_reducer *r) {
  rank_order *s = r->state;
  if (s) free(s->stage);
  free(s);
  r->state = NULL;
}

/* Bucket k: every rank sends each peer the part of the bucket in that peer's shard, and
 * receives every rank's copy of the part in its own shard into the staging rows. */
static int start(dpt_reducer *r, int k) {
  rank_order *s = r->state;
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
  return MPI_Ialltoallv(r->buf, sc, sd, MPI_FLOAT, s->stage, rc, rd, MPI_FLOAT, r->comm,
                        &r->req[k]);
}

/* The sum of every rank's copy of this rank's shard, in rank order 0, 1, ..., W-1: the same
 * association whatever the bucket size, the MPI algorithm or the stage. */
static void sum_shard(dpt_reducer *r) {
  rank_order *s = r->state;
  size_t L = r->shards[r->rank].len;
  float *restrict out = r->buf + r->shards[r->rank].offset;
  const float *restrict st = s->stage;
  for (size_t i = 0; i < L; i++) out[i] = st[i];
  for (int q = 1; q < r->size; q++) {
    const float *restrict row = st + (size_t)q * L;
    for (size_t i = 0; i < L; i++) out[i] = out[i] + row[i];
  }
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

const dpt_reduce_algo dpt_reduce_rank_order = {"rank-order", init, release, start, finish};

/* reduce_ring.c — DPT_REDUCE_RING: rank-order's sums, bitwise (the same exchange, the same
 * sum function over the same rows), with the all-gather as a pipelined ring for TCP links.
 *
 * reduce_rank_order.c all-gathers the summed shards with one MPI_Allgatherv, which at 4 nodes x
 * 1 rank over 1 Gbit/s TCP took longer than the exchange before it (tests/bench/netns_reduce.sh:
 * 0.95 s against 0.75 s for 64 MiB). Here:
 *
 * 1. Per bucket, while backward runs: rank-order's exchange (MPI_Ialltoallv: each rank gets
 *    every rank's copy of the part of the bucket in its shard).
 * 2. In the wait: each rank sums the W copies of its shard in rank order 0..W-1
 *    (reduce_rank_order.c's sum).
 * 3. Unless shard_only, a ring all-gather: W-1 rounds in which rank r passes shard r - j on to
 *    r + 1 and receives shard r - j - 1 from r - 1, in 256 KiB messages with at most 4 in
 *    flight (reduce_node.c's chunk and window). Every link carries one flow each way, on a
 *    connection that carries nothing the other way (a rendezvous go-ahead never waits behind
 *    data: reduce_node.c's note); (W-1)/W n bytes per link, a ring allreduce's all-gather.
 *
 * A pairwise-round exchange in place of step 1 (round j: r sends to r + j, receives from
 * r - j) was measured too: slower than the Ialltoallv at 4 x 1 (0.85 s against 0.75 s), and it
 * cannot overlap backward.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

/* Elements per message: 256 KiB, as reduce_node.c's DPT_NODE_CHUNK (2 ms at 1 Gbit/s against a
 * TCP round trip of 0.1-0.3 ms). */
#define DPT_RING_CHUNK ((size_t)65536)

/* Sends in flight per round: reduce_node.c's DPT_NODE_WINDOW (1 MiB keeps a 1 Gbit/s link
 * busy). */
#define DPT_RING_WINDOW 4

enum { TAG_GATHER = 2 };

typedef struct {
  float *stage;     /* size * shards[rank].len: every rank's copy of this rank's shard */
  MPI_Request *req; /* chunks of the largest shard, twice: receives then sends */
} ring_state;

static size_t chunks(size_t len) {
  return (len + DPT_RING_CHUNK - 1) / DPT_RING_CHUNK;
}

static void release(dpt_reducer *r) {
  ring_state *s = r->state;
  if (s) {
    free(s->stage);
    free(s->req);
  }
  free(s);
  r->state = NULL;
}

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  (void)p;
  size_t L = r->shards[r->rank].len, most = 0;
  for (int q = 0; q < r->size; q++)
    if (r->shards[q].len > most) most = r->shards[q].len;
  ring_state *s = calloc(1, sizeof *s);
  r->state = s;
  if (s) {
    s->stage = malloc(((size_t)r->size * L + 1) * sizeof *s->stage);
    s->req = malloc((2 * chunks(most) + 1) * sizeof *s->req);
  }
  if (!s || !s->stage || !s->req) {
    release(r);
    snprintf(err, errlen, "cannot allocate the ring reducer's buffers (%zu elements)", r->n);
    return DPT_ENOMEM;
  }
  return DPT_OK;
}

/* Bucket k: reduce_rank_order.c's exchange (each peer gets the part of the bucket in its
 * shard; this rank gets every rank's copy of the part in its own into the staging rows). */
static int start(dpt_reducer *r, int k) {
  ring_state *s = r->state;
  int w = r->size;
  int *sc = dpt_reducer_exchange_counts(r, k), *sd = sc + w, *rc = sd + w, *rd = rc + w;
  return MPI_Ialltoallv(r->buf, sc, sd, MPI_FLOAT, s->stage, rc, rd, MPI_FLOAT, r->comm,
                        &r->req[k]);
}

/* One round: send[0, slen) to dst and recv[0, rlen) from src, in chunks, every receive posted
 * at once and at most DPT_RING_WINDOW sends in flight. Returns MPI's result. */
static int round_trip(dpt_reducer *r, const float *send, size_t slen, int dst, float *recv,
                      size_t rlen, int src, int tag) {
  ring_state *s = r->state;
  int nr = (int)chunks(rlen), ns = (int)chunks(slen), rc = MPI_SUCCESS;
  MPI_Request *rr = s->req, *sr = s->req + nr;
  for (int c = 0; c < nr && rc == MPI_SUCCESS; c++) {
    size_t off = (size_t)c * DPT_RING_CHUNK, len = rlen - off;
    if (len > DPT_RING_CHUNK) len = DPT_RING_CHUNK;
    rc = MPI_Irecv(recv + off, (int)len, MPI_FLOAT, src, tag, r->comm, &rr[c]);
  }
  int posted = 0;
  while (posted < ns && rc == MPI_SUCCESS) {
    if (posted >= DPT_RING_WINDOW) { /* one finished before the next starts */
      int idx;
      rc = MPI_Waitany(posted, sr, &idx, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) break;
    }
    size_t off = (size_t)posted * DPT_RING_CHUNK, len = slen - off;
    if (len > DPT_RING_CHUNK) len = DPT_RING_CHUNK;
    rc = MPI_Isend(send + off, (int)len, MPI_FLOAT, dst, tag, r->comm, &sr[posted++]);
  }
  if (rc == MPI_SUCCESS) rc = MPI_Waitall(posted, sr, MPI_STATUSES_IGNORE);
  if (rc == MPI_SUCCESS) rc = MPI_Waitall(nr, rr, MPI_STATUSES_IGNORE);
  return rc;
}

/* reduce_rank_order.c's sum: every rank's copy of this rank's shard, in rank order. */
static void sum_shard(dpt_reducer *r) {
  ring_state *s = r->state;
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
  int w = r->size, me = r->rank, rc = MPI_SUCCESS;
  sum_shard(r);
  /* in round j rank r passes on shard r - j and receives shard r - j - 1 */
  for (int j = 0; j < w - 1 && !r->shard_only && rc == MPI_SUCCESS; j++) {
    int out = ((me - j) % w + w) % w, in = ((me - j - 1) % w + w) % w;
    rc = round_trip(r, r->buf + r->shards[out].offset, r->shards[out].len, (me + 1) % w,
                    r->buf + r->shards[in].offset, r->shards[in].len, (me - 1 + w) % w, TAG_GATHER);
  }
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "gradient reduction", err, errlen);
}

/* What the state holds: every rank's copy of this rank's shard, and the requests. */
static size_t bytes(const dpt_reducer *r) {
  size_t L = r->shards[r->rank].len, most = 0;
  for (int q = 0; q < r->size; q++)
    if (r->shards[q].len > most) most = r->shards[q].len;
  return ((size_t)r->size * L + 1) * sizeof(float) + (2 * chunks(most) + 1) * sizeof(MPI_Request);
}

const dpt_reduce_algo dpt_reduce_ring = {"ring", init, release, start, finish, NULL, bytes, NULL};

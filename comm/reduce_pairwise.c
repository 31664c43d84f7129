/* reduce_pairwise.c — DPT_REDUCE_PAIRWISE: rank-order's sums, bitwise (the same sum function
 * over the same rows), with the exchange scheduled so that no node's link carries more than one
 * flow each way at a time.
 *
 * reduce_rank_order.c posts each bucket's exchange as one MPI_Ialltoallv: every rank sends to
 * and receives from all W-1 peers at once. Over TCP at 4 nodes x 1 rank that reached 0.65 of
 * iperf3 (README "Across nodes"): W-1 flows converge on every receiving link, and a pair's
 * rendezvous go-ahead waits behind the data queued the other way (reduce_node.c's note). Here:
 *
 * 1. Reduce-scatter in W-1 rounds: in round j rank r sends its copy of rank r+j's shard to
 *    r+j and receives rank r-j's copy of its own shard (mod W): each round is a permutation,
 *    one flow out and one in per link. Messages are 256 KiB chunks with at most 4 sends in
 *    flight (the window reduce_node.c measured).
 * 2. Each rank sums the W copies of its shard in rank order 0..W-1 (reduce_rank_order.c's sum).
 * 3. Unless shard_only: a ring all-gather, W-1 rounds of shard-sized messages r -> r+1.
 *
 * Bytes per link each way: (W-1)/W n for the reduce-scatter and again for the all-gather, a
 * ring allreduce's. Everything runs in dpt_reducer_wait: no overlap with backward (start posts
 * nothing), the price of scheduling rounds that the reducer's one request per bucket cannot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

/* Elements per message: 256 KiB, as reduce_node.c's DPT_NODE_CHUNK (2 ms at 1 Gbit/s against a
 * TCP round trip of 0.1-0.3 ms). */
#define DPT_PAIRWISE_CHUNK ((size_t)65536)

/* Sends in flight per round: reduce_node.c's DPT_NODE_WINDOW (a short queue ahead of the
 * peer's go-ahead messages on a connection used both ways). */
#define DPT_PAIRWISE_WINDOW 4

enum { TAG_SCATTER = 1, TAG_GATHER = 2 };

typedef struct {
  float *stage;     /* size * shards[rank].len: every rank's copy of this rank's shard */
  MPI_Request *req; /* chunks of the largest shard, twice: receives then sends */
} pairwise_state;

static size_t chunks(size_t len) {
  return (len + DPT_PAIRWISE_CHUNK - 1) / DPT_PAIRWISE_CHUNK;
}

static void release(dpt_reducer *r) {
  pairwise_state *s = r->state;
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
  pairwise_state *s = calloc(1, sizeof *s);
  r->state = s;
  if (s) {
    s->stage = malloc(((size_t)r->size * L + 1) * sizeof *s->stage);
    s->req = malloc((2 * chunks(most) + 1) * sizeof *s->req);
  }
  if (!s || !s->stage || !s->req) {
    release(r);
    snprintf(err, errlen, "cannot allocate the pairwise reducer's buffers (%zu elements)", r->n);
    return DPT_ENOMEM;
  }
  return DPT_OK;
}

static int start(dpt_reducer *r, int k) { /* the rounds run in the wait */
  r->req[k] = MPI_REQUEST_NULL;
  return MPI_SUCCESS;
}

/* One round: send[0, slen) to dst and recv[0, rlen) from src, in chunks, every receive posted
 * at once and at most DPT_PAIRWISE_WINDOW sends in flight. Returns MPI's result. */
static int round_trip(dpt_reducer *r, const float *send, size_t slen, int dst, float *recv,
                      size_t rlen, int src, int tag) {
  pairwise_state *s = r->state;
  int nr = (int)chunks(rlen), ns = (int)chunks(slen), rc = MPI_SUCCESS;
  MPI_Request *rr = s->req, *sr = s->req + nr;
  for (int c = 0; c < nr && rc == MPI_SUCCESS; c++) {
    size_t off = (size_t)c * DPT_PAIRWISE_CHUNK, len = rlen - off;
    if (len > DPT_PAIRWISE_CHUNK) len = DPT_PAIRWISE_CHUNK;
    rc = MPI_Irecv(recv + off, (int)len, MPI_FLOAT, src, tag, r->comm, &rr[c]);
  }
  int posted = 0;
  while (posted < ns && rc == MPI_SUCCESS) {
    if (posted >= DPT_PAIRWISE_WINDOW) { /* one finished before the next starts */
      int idx;
      rc = MPI_Waitany(posted, sr, &idx, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) break;
    }
    size_t off = (size_t)posted * DPT_PAIRWISE_CHUNK, len = slen - off;
    if (len > DPT_PAIRWISE_CHUNK) len = DPT_PAIRWISE_CHUNK;
    rc = MPI_Isend(send + off, (int)len, MPI_FLOAT, dst, tag, r->comm, &sr[posted++]);
  }
  if (rc == MPI_SUCCESS) rc = MPI_Waitall(posted, sr, MPI_STATUSES_IGNORE);
  if (rc == MPI_SUCCESS) rc = MPI_Waitall(nr, rr, MPI_STATUSES_IGNORE);
  return rc;
}

/* reduce_rank_order.c's sum: every rank's copy of this rank's shard, in rank order. */
static void sum_shard(dpt_reducer *r) {
  pairwise_state *s = r->state;
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
  pairwise_state *s = r->state;
  int w = r->size, me = r->rank, rc = MPI_SUCCESS;
  size_t L = r->shards[me].len;
  memcpy(s->stage + (size_t)me * L, r->buf + r->shards[me].offset, L * sizeof *s->stage);
  for (int j = 1; j < w && rc == MPI_SUCCESS; j++) {
    int dst = (me + j) % w, src = (me - j + w) % w;
    rc = round_trip(r, r->buf + r->shards[dst].offset, r->shards[dst].len, dst,
                    s->stage + (size_t)src * L, L, src, TAG_SCATTER);
  }
  if (rc == MPI_SUCCESS) sum_shard(r);
  /* the ring all-gather: in round j rank r passes on shard r - j, receives shard r - j - 1 */
  for (int j = 0; j < w - 1 && !r->shard_only && rc == MPI_SUCCESS; j++) {
    int out = ((me - j) % w + w) % w, in = ((me - j - 1) % w + w) % w;
    rc = round_trip(r, r->buf + r->shards[out].offset, r->shards[out].len, (me + 1) % w,
                    r->buf + r->shards[in].offset, r->shards[in].len, (me - 1 + w) % w, TAG_GATHER);
  }
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "gradient reduction", err, errlen);
}

const dpt_reduce_algo dpt_reduce_pairwise = {"pairwise", init, release, start, finish};

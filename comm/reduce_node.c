/* reduce_node.c — DPT_REDUCE_NODE: node-aware reduction, bitwise the rank-order algorithm's sum.
 *
 * For jobs whose ranks sit in blocks of consecutive ranks, the same number per node (mpirun's
 * default --map-by slot): node k holds ranks k*m .. k*m+m-1. The buffer is cut into m segments,
 * one per local rank j (dpt_comm_shard(n, j, m)); local rank j of every node does the
 * inter-node work for segment j, so a node's m ranks share its link.
 *
 * 1. Within a node (per bucket, nonblocking, while backward runs): local rank j receives every
 *    local rank's copy of segment j (MPI_Ialltoallv over shared memory).
 * 2. Across nodes, in chunks, along a chain in rank order: node 0 sums its m copies in rank
 *    order and sends the partial sum to node 1, which adds its copies in rank order and passes
 *    it on, ..., node N-1 adds the last and holds the final sum. Every element is summed in
 *    the order ((g_0 + g_1) + g_2) + ... + g_{W-1}, the order of reduce_rank_order.c, so the
 *    result is bitwise the same whatever the node count.
 * 3. The final sums go on round the same ring (N-1 -> 0 -> 1 -> ... -> N-2), chunk by chunk,
 *    as soon as each is final, so both directions of every link carry data at once; with
 *    shard_only a chunk goes only to the nodes whose ranks' shards it touches.
 * 4. Within a node: the segments are all-gathered (or, shard_only, each rank gets its shard).
 *
 * Bytes over a node's link, each way, for n gradient bytes: 2 nodes: n (the flat rank-order
 * algorithm: 2n at 2 ranks per node, n at 1); N > 2: up to 2n for the middle nodes (ring
 * allreduce: 2(N-1)/N n), the price of the fixed summation order. Steps 2-4 run in
 * dpt_reducer_wait (the reducer's interface posts one request per bucket): they do not overlap
 * backward.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce_impl.h"

/* Elements per chain message: 256 KiB, about 2 ms at 1 Gbit/s, against a TCP round trip of
 * 0.1-0.3 ms (tests/netns), so the per-message cost stays small while the pipeline fills after
 * one chunk. */
#define DPT_NODE_CHUNK ((size_t)65536)

/* Chain sends in flight per flow. Open MPI's TCP transport queues a peer's control messages
 * (the go-ahead for a large message coming the other way) behind the data already queued for
 * it: with every chunk's send posted at once, the final sums flowing back waited for all the
 * partial sums going out, and a link carried one direction at a time (half the rate). Four
 * chunks (1 MiB, 8 ms at 1 Gbit/s) keep a link busy and the queue short. */
#define DPT_NODE_WINDOW 4

enum { TAG_PARTIAL = 1, TAG_FINAL = 2 };

typedef struct {
  MPI_Comm node;   /* this node's ranks, in rank order */
  MPI_Comm column; /* local rank j of every node, in node order */
  int m, j;        /* ranks per node, this rank's place on its node */
  int nodes, k;    /* nodes, this rank's node */
  dpt_range *segs; /* m: local rank q's segment of the buffer */
  float *stage;    /* m rows of segs[j].len: every local rank's copy of segment j */
  float *part;     /* segs[j].len: the partial sums passed along the chain */
  int nchunks;
  MPI_Request *req; /* 4 per chunk: partial in, partial out, final in, final out */
  int *cnt;         /* 4 m ints for the node collectives of finish */
} node_state;

int dpt_reduce_node_layout(MPI_Comm comm, dpt_topology *t, int *blocked, char *err, size_t errlen) {
  int rc = dpt_comm_topology(comm, t, err, errlen);
  if (rc) return rc;
  int rank;
  MPI_Comm_rank(comm, &rank);
  int mine = t->local_size == t->max_per_node && rank == t->node * t->max_per_node + t->local_rank;
  int mpi = MPI_Allreduce(&mine, blocked, 1, MPI_INT, MPI_MIN, comm);
  return mpi == MPI_SUCCESS ? DPT_OK
                            : dpt_comm_mpi_error(mpi, "MPI_Allreduce (node layout)", err, errlen);
}

static void release(dpt_reducer *r) {
  node_state *s = r->state;
  if (!s) return;
  if (s->node != MPI_COMM_NULL) MPI_Comm_free(&s->node);
  if (s->column != MPI_COMM_NULL) MPI_Comm_free(&s->column);
  free(s->segs);
  free(s->stage);
  free(s->part);
  free(s->req);
  free(s->cnt);
  free(s);
  r->state = NULL;
}

static int init(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen) {
  dpt_topology t;
  int blocked = 1;
  if (p->node_ranks > 0) { /* nodes as the caller says */
    if (r->size % p->node_ranks) {
      snprintf(err, errlen, "%d ranks per node do not divide the %d ranks", p->node_ranks, r->size);
      return DPT_EINVAL;
    }
    t.max_per_node = t.local_size = p->node_ranks;
    t.nodes = r->size / p->node_ranks;
    t.node = r->rank / p->node_ranks;
    t.local_rank = r->rank % p->node_ranks;
  } else {
    int rc = dpt_reduce_node_layout(r->comm, &t, &blocked, err, errlen);
    if (rc) return rc;
  }
  if (!blocked) {
    snprintf(err, errlen,
             "the node-aware reduction needs the same number of ranks on every node, in blocks "
             "of consecutive ranks (mpirun --map-by slot); this job has %d ranks on %d nodes, up "
             "to %d per node",
             r->size, t.nodes, t.max_per_node);
    return DPT_EINVAL;
  }
  node_state *s = calloc(1, sizeof *s);
  if (!s) goto nomem;
  s->node = s->column = MPI_COMM_NULL;
  r->state = s;
  s->m = t.max_per_node, s->j = t.local_rank, s->nodes = t.nodes, s->k = t.node;
  int mpi = MPI_Comm_split(r->comm, s->k, r->rank, &s->node);
  if (mpi == MPI_SUCCESS) mpi = MPI_Comm_split(r->comm, s->j, s->k, &s->column);
  if (mpi != MPI_SUCCESS) {
    release(r);
    return dpt_comm_mpi_error(mpi, "MPI_Comm_split (node reduction)", err, errlen);
  }
  MPI_Comm_set_errhandler(s->node, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(s->column, MPI_ERRORS_RETURN);
  s->segs = malloc((size_t)s->m * sizeof *s->segs);
  if (!s->segs) goto nomem;
  for (int q = 0; q < s->m; q++) s->segs[q] = dpt_comm_shard(r->n, q, s->m);
  size_t L = s->segs[s->j].len;
  s->nchunks = (int)((L + DPT_NODE_CHUNK - 1) / DPT_NODE_CHUNK);
  s->stage = malloc(((size_t)s->m * L + 1) * sizeof *s->stage);
  s->part = malloc((L + 1) * sizeof *s->part);
  s->req = malloc((4 * (size_t)s->nchunks + 1) * sizeof *s->req);
  s->cnt = malloc(4 * (size_t)s->m * sizeof *s->cnt);
  if (!s->stage || !s->part || !s->req || !s->cnt) goto nomem;
  return DPT_OK;
nomem:
  release(r);
  snprintf(err, errlen, "cannot allocate the node-aware reducer's buffers (%zu elements)", r->n);
  return DPT_ENOMEM;
}

/* [lo, hi) of bucket k inside range g (empty: lo == hi). */
static void bucket_in(const dpt_reducer *r, int k, dpt_range g, size_t *lo, size_t *hi) {
  size_t b0 = dpt_reducer_bucket_start(r, k), b1 = b0 + dpt_reducer_bucket_len(r, k);
  *lo = b0 > g.offset ? b0 : g.offset;
  *hi = b1 < g.offset + g.len ? b1 : g.offset + g.len;
  if (*hi < *lo) *hi = *lo;
}

/* Step 1 for bucket k: local rank q gets the part of the bucket in segment q from every local
 * rank, into its staging rows. */
static int start(dpt_reducer *r, int k) {
  node_state *s = r->state;
  int m = s->m;
  int *sc = r->counts + (size_t)4 * r->size * k, *sd = sc + m, *rc = sd + m, *rd = rc + m;
  dpt_range mine = s->segs[s->j];
  size_t mylo, myhi;
  bucket_in(r, k, mine, &mylo, &myhi);
  for (int q = 0; q < m; q++) {
    size_t lo, hi;
    bucket_in(r, k, s->segs[q], &lo, &hi);
    sc[q] = (int)(hi - lo);
    sd[q] = (int)lo;
    rc[q] = (int)(myhi - mylo);
    rd[q] = (int)((size_t)q * mine.len + (mylo - mine.offset));
  }
  return MPI_Ialltoallv(r->buf, sc, sd, MPI_FLOAT, s->stage, rc, rd, MPI_FLOAT, s->node,
                        &r->req[k]);
}

/* Does a node from `from` to N-2 need chunk c of this rank's segment? Every node needs all of
 * it for an allreduce; with shard_only only the nodes whose ranks' shards it touches. */
static int needed_from(const dpt_reducer *r, const node_state *s, int c, int from) {
  if (from > s->nodes - 2) return 0;
  if (!r->shard_only) return 1;
  dpt_range seg = s->segs[s->j];
  size_t c0 = seg.offset + (size_t)c * DPT_NODE_CHUNK;
  size_t c1 =
      c0 + DPT_NODE_CHUNK < seg.offset + seg.len ? c0 + DPT_NODE_CHUNK : seg.offset + seg.len;
  size_t a0 = r->shards[from * s->m].offset, a1 = r->shards[(s->nodes - 1) * s->m].offset;
  return c0 < a1 && a0 < c1;
}

/* Chunk c: the sum in rank order of the incoming partial (none on node 0) and this node's
 * copies, into dst. */
static void sum_chunk(const node_state *s, int c, float *restrict dst) {
  size_t L = s->segs[s->j].len, c0 = (size_t)c * DPT_NODE_CHUNK;
  size_t len = c0 + DPT_NODE_CHUNK < L ? DPT_NODE_CHUNK : L - c0;
  const float *restrict row = s->stage + c0;
  if (s->k == 0) {
    for (size_t i = 0; i < len; i++) dst[i] = row[i];
  } else {
    const float *restrict in = s->part + c0;
    for (size_t i = 0; i < len; i++) dst[i] = in[i] + row[i];
  }
  for (int q = 1; q < s->m; q++) {
    row = s->stage + (size_t)q * L + c0;
    for (size_t i = 0; i < len; i++) dst[i] = dst[i] + row[i];
  }
}

/* Sends final chunk c (out: this rank's segment of the buffer) to column rank `to`, with at
 * most DPT_NODE_WINDOW final sends in flight. */
static int send_final(node_state *s, float *out, int c, int to, MPI_Request *fout) {
  size_t L = s->segs[s->j].len, c0 = (size_t)c * DPT_NODE_CHUNK;
  int len = (int)(c0 + DPT_NODE_CHUNK < L ? DPT_NODE_CHUNK : L - c0), rc = MPI_SUCCESS;
  for (int q = c - DPT_NODE_WINDOW; q >= 0 && rc == MPI_SUCCESS; q--) /* the oldest still out */
    if (fout[q] != MPI_REQUEST_NULL) {
      rc = MPI_Wait(&fout[q], MPI_STATUS_IGNORE);
      break;
    }
  if (rc != MPI_SUCCESS) return rc;
  return MPI_Isend(out + c0, len, MPI_FLOAT, to, TAG_FINAL, s->column, &fout[c]);
}

/* Steps 2 and 3: the chain and the ring of final sums, over the column communicator. */
static int chain(dpt_reducer *r, node_state *s) {
  size_t L = s->segs[s->j].len;
  float *out = r->buf + s->segs[s->j].offset;
  int N = s->nodes, k = s->k, nc = s->nchunks, rc = MPI_SUCCESS;
  MPI_Request *pin = s->req, *pout = pin + nc, *fin = pout + nc, *fout = fin + nc;
  for (int i = 0; i < 4 * nc; i++) s->req[i] = MPI_REQUEST_NULL;
  int prev = (k + N - 1) % N, next = (k + 1) % N;
  for (int c = 0; c < nc && rc == MPI_SUCCESS; c++) {
    size_t c0 = (size_t)c * DPT_NODE_CHUNK;
    int len = (int)(c0 + DPT_NODE_CHUNK < L ? DPT_NODE_CHUNK : L - c0);
    if (k > 0) rc = MPI_Irecv(s->part + c0, len, MPI_FLOAT, prev, TAG_PARTIAL, s->column, &pin[c]);
    if (rc == MPI_SUCCESS && k < N - 1 && needed_from(r, s, c, k))
      rc = MPI_Irecv(out + c0, len, MPI_FLOAT, prev, TAG_FINAL, s->column, &fin[c]);
  }
  int f = 0; /* the next final chunk to forward */
  for (int c = 0; c < nc && rc == MPI_SUCCESS; c++) {
    size_t c0 = (size_t)c * DPT_NODE_CHUNK;
    int len = (int)(c0 + DPT_NODE_CHUNK < L ? DPT_NODE_CHUNK : L - c0);
    if (k > 0) rc = MPI_Wait(&pin[c], MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) break;
    if (k < N - 1) {
      sum_chunk(s, c, s->part + c0);
      if (c >= DPT_NODE_WINDOW) rc = MPI_Wait(&pout[c - DPT_NODE_WINDOW], MPI_STATUS_IGNORE);
      if (rc == MPI_SUCCESS)
        rc = MPI_Isend(s->part + c0, len, MPI_FLOAT, next, TAG_PARTIAL, s->column, &pout[c]);
    } else {
      sum_chunk(s, c, out + c0);
      if (N > 1 && needed_from(r, s, c, 0)) rc = send_final(s, out, c, next, fout);
    }
    /* pass on the final chunks that have arrived, in order */
    for (int done = 1; f < nc && rc == MPI_SUCCESS && done; f++) {
      if (fin[f] != MPI_REQUEST_NULL) rc = MPI_Test(&fin[f], &done, MPI_STATUS_IGNORE);
      if (!done) break;
      if (rc == MPI_SUCCESS && k < N - 1 && needed_from(r, s, f, k + 1))
        rc = send_final(s, out, f, next, fout);
    }
  }
  for (; f < nc && rc == MPI_SUCCESS; f++) {
    rc = MPI_Wait(&fin[f], MPI_STATUS_IGNORE);
    if (rc == MPI_SUCCESS && k < N - 1 && needed_from(r, s, f, k + 1))
      rc = send_final(s, out, f, next, fout);
  }
  int wrc = MPI_Waitall(4 * nc, s->req, MPI_STATUSES_IGNORE);
  return rc != MPI_SUCCESS ? rc : wrc;
}

/* Step 4: every local rank gets every segment (allreduce) or its own shard (shard_only). */
static int spread(dpt_reducer *r, node_state *s) {
  int m = s->m, *c0 = s->cnt, *d0 = c0 + m, *c1 = d0 + m, *d1 = c1 + m;
  if (!r->shard_only) {
    for (int q = 0; q < m; q++) c0[q] = (int)s->segs[q].len, d0[q] = (int)s->segs[q].offset;
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, r->buf, c0, d0, MPI_FLOAT, s->node);
  }
  /* local rank j sends local rank q the part of its segment in q's shard; the receiver stages
   * the pieces (send and receive buffers must not overlap) and copies them into place */
  dpt_range seg = s->segs[s->j], me = r->shards[r->rank];
  size_t staged = 0;
  for (int q = 0; q < m; q++) {
    dpt_range sh = r->shards[s->k * m + q], g = s->segs[q];
    size_t lo = seg.offset > sh.offset ? seg.offset : sh.offset;
    size_t hi =
        seg.offset + seg.len < sh.offset + sh.len ? seg.offset + seg.len : sh.offset + sh.len;
    c0[q] = hi > lo ? (int)(hi - lo) : 0, d0[q] = (int)lo;
    lo = g.offset > me.offset ? g.offset : me.offset;
    hi = g.offset + g.len < me.offset + me.len ? g.offset + g.len : me.offset + me.len;
    c1[q] = hi > lo ? (int)(hi - lo) : 0, d1[q] = (int)staged;
    staged += (size_t)c1[q];
  }
  int rc = MPI_Alltoallv(r->buf, c0, d0, MPI_FLOAT, s->stage, c1, d1, MPI_FLOAT, s->node);
  if (rc == MPI_SUCCESS) memcpy(r->buf + me.offset, s->stage, staged * sizeof *s->stage);
  return rc;
}

static int finish(dpt_reducer *r, char *err, size_t errlen) {
  node_state *s = r->state;
  int rc = chain(r, s);
  if (rc == MPI_SUCCESS) rc = spread(r, s);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "gradient reduction", err, errlen);
}

/* What the state holds: the node's copies of this rank's segment, the partial sums, the
 * requests and counts. */
static size_t bytes(const dpt_reducer *r) {
  const node_state *s = r->state;
  size_t L = s->segs[s->j].len;
  return ((size_t)s->m * L + 1 + L + 1) * sizeof(float) +
         (4 * (size_t)s->nchunks + 1) * sizeof(MPI_Request) + 4 * (size_t)s->m * sizeof(int) +
         (size_t)s->m * sizeof(dpt_range);
}

const dpt_reduce_algo dpt_reduce_node = {"node", init, release, start, finish, NULL, bytes, NULL};

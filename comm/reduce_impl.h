/* reduce_impl.h — private to comm/ (not installed, never included outside comm/): the reducer's
 * state and the interface every reduction algorithm implements.
 *
 * The bookkeeping (reducer.c) decides when bucket k starts; the algorithm decides how: start()
 * posts one nonblocking collective for the bucket into r->req[k], and finish() turns what the
 * completed requests left into the sum in r->buf. Calls are per bucket, never per element.
 *
 * The node-aware algorithm (reduce_node.c) calls dpt_comm_topology(r->comm) in its init()
 * and keeps its node and column communicators in r->state. With shard_buf (ZeRO-2), the
 * gradient comes through dpt_reducer_put into bucket buffers the algorithm owns (put() below):
 * that changes where start() reads bucket k from, not the bookkeeping.
 */
#ifndef DPT_COMM_REDUCE_IMPL_H
#define DPT_COMM_REDUCE_IMPL_H

#include "comm.h"

typedef struct dpt_reduce_algo dpt_reduce_algo;

struct dpt_reducer {
  MPI_Comm comm; /* private duplicate with MPI_ERRORS_RETURN */
  int rank, size;
  float *buf;    /* borrowed gradient buffer */
  size_t n;      /* its length */
  size_t bucket; /* elements per bucket (with spans, the longest) */
  int nbuckets;
  size_t *bstart;     /* [nbuckets + 1]: bucket k is [bstart[k], bstart[k + 1]) */
  int uniform;        /* bstart[k] is k * bucket */
  int overlap;        /* start buckets as they complete (1) or all in wait (0) */
  int shard_only;     /* 1: only this rank's shard is summed (reduce-scatter); 0: all of it */
  int shard_buf;      /* 1: buf is this rank's shard only (ZeRO-2); the gradient comes by put */
  dpt_range *shards;  /* dpt_comm_shard of every rank */
  int *counts;        /* 4 * size ints per bucket (and one spare set) for an algorithm's MPI
                         count/displacement arrays, which must live until the bucket completes */
  size_t *done;       /* elements marked final per bucket this step */
  MPI_Request *req;   /* per bucket; MPI_REQUEST_NULL when not started or finished */
  const float **lent; /* per bucket: where its gradient is, lent by dpt_reducer_lend (NULL: in
                         the algorithm's own buffer), until its exchange completed */
  int next;           /* next bucket to start: nbuckets-1 down to 0; -1 when all started */
  int mpi_rc;         /* first MPI error met in dpt_reducer_ready (reported by wait) */
  const dpt_reduce_algo *algo;
  void *state; /* the algorithm's own (init allocates, free frees) */
};

struct dpt_reduce_algo {
  const char *name;
  /* Allocates r->state for r's shape and p; a dpt error code with a message. */
  int (*init)(dpt_reducer *r, const dpt_reducer_params *p, char *err, size_t errlen);
  void (*free)(dpt_reducer *r);
  /* Posts bucket k's nonblocking collective into r->req[k]; returns MPI's result. */
  int (*start)(dpt_reducer *r, int k);
  /* Every bucket completed: leaves the sum in r->buf; a dpt error code with a message. */
  int (*finish)(dpt_reducer *r, char *err, size_t errlen);
  /* shard_buf only (NULL: the algorithm does not take dpt_reducer_put): the buffer of bucket k,
   * dpt_reducer_bucket_len(r, k) floats, where put copies its part; NULL if it cannot be had
   * (*mpi_rc: MPI's error, else out of memory). */
  float *(*bucket_buf)(dpt_reducer *r, int k, int *mpi_rc);
  size_t (*bytes)(const dpt_reducer *r); /* what state holds */
  /* shard_buf only (NULL: lending is not taken, dpt_reducer_lend copies): bucket k's gradient
   * is r->lent[k], whole; whatever else the bucket needs (staging) is taken as bucket_buf
   * takes it. DPT_OK, or (*mpi_rc: MPI's error) -1. */
  int (*bucket_lend)(dpt_reducer *r, int k, int *mpi_rc);
};

extern const dpt_reduce_algo dpt_reduce_rank_order;
extern const dpt_reduce_algo dpt_reduce_exact;
extern const dpt_reduce_algo dpt_reduce_node;
extern const dpt_reduce_algo dpt_reduce_ring;
extern const dpt_reduce_algo dpt_reduce_half;
extern const dpt_reduce_algo dpt_reduce_powersgd;

/* Where comm's ranks run (*t) and whether they sit in equal blocks of consecutive ranks per
 * node (*blocked, the same on every rank), as DPT_REDUCE_NODE needs. Collective. */
int dpt_reduce_node_layout(MPI_Comm comm, dpt_topology *t, int *blocked, char *err, size_t errlen);

/* Elements in bucket k, and its first element's index. */
size_t dpt_reducer_bucket_len(const dpt_reducer *r, int k);
size_t dpt_reducer_bucket_start(const dpt_reducer *r, int k);

/* [lo, hi) of bucket k intersected with rank q's shard (empty: lo == hi). */
void dpt_reducer_bucket_part(const dpt_reducer *r, int k, int q, size_t *lo, size_t *hi);

/* Rank-order's exchange of bucket k as MPI_Ialltoallv counts and displacements in elements,
 * into r->counts' four rows of bucket k (returned: send counts, then send displacements,
 * receive counts, receive displacements, W each): every peer gets the part of the bucket in
 * its shard (displacements into the bucket's buffer), this rank receives every rank's copy of
 * the part in its own shard into row q of a [W, shard] staging buffer. */
int *dpt_reducer_exchange_counts(dpt_reducer *r, int k);

/* MPI_Wait that gives the core away between polls: a rank waiting inside backward for its
 * peers must not take the CPU they compute on when ranks share cores. */
int dpt_reducer_wait_yielding(MPI_Request *req);

#endif

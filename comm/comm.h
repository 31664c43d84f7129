/* comm.h — dpt's collective layer over MPI: the gradient reducer (bucket bookkeeping with
 * pluggable reduction algorithms), shard ranges, node topology, and the small reductions the
 * trainer needs. The whole public surface of comm/.
 *
 * Files of comm/:
 *   comm.h              this header: everything a caller uses.
 *   reducer.c           the reducer: parameters and defaults, fixed bucket order, ready ranges,
 *                       progress (MPI_Test) while backward runs, the wait; knows no algorithm.
 *   reduce_impl.h       private to comm/: the reducer's state and dpt_reduce_algo, the
 *                       interface an algorithm implements (init, free, start a bucket, finish).
 *   reduce_rank_order.c DPT_REDUCE_RANK_ORDER: Ialltoallv per bucket, a rank-order sum of each
 *                       rank's shard, Allgatherv unless shard_only.
 *   reduce_exact.c      DPT_REDUCE_EXACT (deterministic mode): micro-shard gradients summed in
 *                       64-bit fixed point, so neither W nor MPI's order changes a bit.
 *   reduce_node.c       DPT_REDUCE_NODE: within a node over shared memory, a rank-order chain
 *                       across nodes shared by each node's ranks; bitwise rank-order's sum.
 *   reduce_ring.c       DPT_REDUCE_RING: rank-order's exchange and sums, the all-gather as a
 *                       pipelined ring (one flow per link each way), for TCP links.
 *   compress_half.c     DPT_REDUCE_HALF (--compress bf16|fp16): rank-order's exchange with
 *                       16-bit values on the wire, fp32 sums in rank order, 16-bit results.
 *   compress_powersgd.c DPT_REDUCE_POWERSGD (--compress powersgd): low-rank matrices with error
 *                       feedback, as torch's powerSGD_hook; vectors summed exactly.
 *   collectives.c       shards, topology, small checked collectives, error agreement.
 *
 * How to add a reduction algorithm (two files touched, one added): write comm/reduce_<name>.c
 * implementing dpt_reduce_algo (reduce_impl.h: init/free its state, start one nonblocking
 * collective per bucket into r->req[k], finish once every bucket completed; CMake picks the
 * file up), add DPT_REDUCE_<NAME> to dpt_reduce_algorithm below, and its entry to the table
 * in reducer.c. Callers choose it with dpt_reducer_params.algorithm (the trainer: make_reducer
 * in runtime/train.c). The bookkeeping (bucket order, overlap, ready ranges, progress, errors)
 * is shared and does not change.
 *
 * Invariants:
 * - Knows nothing of solvers or models: it sees a flat fp32 buffer and ranges of it.
 * - Buckets are fixed slices of the buffer, [k*E, (k+1)*E) for E = bucket elements, and are
 *   started in one fixed order (last bucket first, the order backward produces them) on every
 *   rank, whatever order the ready ranges arrive in, so nonblocking collectives always match.
 * - Every MPI result is checked; a failure becomes DPT_EMPI with MPI's error string. MPI
 *   returns errors only on a communicator whose handler is MPI_ERRORS_RETURN: the reducer's
 *   private one is, and so is the trainer's; on MPI_ERRORS_ARE_FATAL (MPI's default) MPI
 *   aborts first. After such an error the peers cannot be trusted: the caller should stop.
 */
#ifndef DPT_COMM_H
#define DPT_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h" /* the error space (DPT_E*, DPT_ERR_LEN) */

/* Shard boundaries are multiples of this many floats (64 bytes: a cache line, one AVX-512
 * vector), so every rank's slice starts aligned when the buffer does. */
#define DPT_COMM_ALIGN 16

/* A contiguous range of a flat buffer, in elements. */
typedef struct {
  size_t offset, len;
} dpt_range;

/* The shard of rank r of W over a buffer of n elements: contiguous, boundaries multiples of
 * DPT_COMM_ALIGN, as even as alignment allows; shards of all ranks tile [0, n). */
dpt_range dpt_comm_shard(size_t n, int rank, int size);

/* --- gradient reduction --- */

typedef struct dpt_reducer dpt_reducer;

/* How a bucket is summed over ranks. Every algorithm gives the same result whatever the
 * bucket size, overlap and shard_only (see each one's file for its promise). */
typedef enum {
  DPT_REDUCE_RANK_ORDER, /* float sums in rank order 0..W-1 (reduce_rank_order.c) */
  DPT_REDUCE_EXACT,      /* fixed-point sums of micro-shards, independent of W (reduce_exact.c) */
  DPT_REDUCE_NODE,       /* rank-order sums within a node over shared memory, then along the nodes;
                            bitwise DPT_REDUCE_RANK_ORDER's result (reduce_node.c) */
  DPT_REDUCE_RING,       /* rank-order's exchange and sums, a ring all-gather; bitwise
                            DPT_REDUCE_RANK_ORDER's result (reduce_ring.c) */
  DPT_REDUCE_HALF,       /* lossy: chosen by dpt_reducer_params.compress bf16/fp16, not by name
                            (compress_half.c) */
  DPT_REDUCE_POWERSGD,   /* lossy: chosen by compress powersgd (compress_powersgd.c) */
  DPT_REDUCE_COUNT,
  DPT_REDUCE_AUTO = -1 /* for a whole sum (not shard_only) across nodes: DPT_REDUCE_NODE when the
                          ranks sit in equal blocks of consecutive ranks, several per node;
                          DPT_REDUCE_RING at more than 2 nodes of one rank; else
                          DPT_REDUCE_RANK_ORDER (where each is faster: dpt_reducer_create,
                          tests/bench/netns_reduce.sh) */
} dpt_reduce_algorithm;

/* 25 MiB: PyTorch DDP's bucket_cap_mb default, and --bucket-mb's. */
#define DPT_REDUCER_BUCKET_BYTES ((size_t)25 << 20)

/* Lossy gradient compression (--compress), off by default; never with DPT_REDUCE_EXACT. */
typedef enum {
  DPT_COMPRESS_NONE,
  DPT_COMPRESS_BF16,    /* bfloat16 on the wire (8-bit mantissa, fp32's range) */
  DPT_COMPRESS_FP16,    /* IEEE half on the wire (11-bit mantissa, |x| <= 65504) */
  DPT_COMPRESS_POWERSGD /* rank-R factors of each matrix, error feedback (Vogels et al. 2019) */
} dpt_compress;

/* PowerSGD's defaults, torch's PowerSGDState's: matrix_approximation_rank 1 and
 * start_powerSGD_iter 1000 (steps summed uncompressed first, so error feedback starts from
 * gradients past the first, fastest-changing phase). */
#define DPT_POWERSGD_RANK 1
#define DPT_POWERSGD_START 1000

typedef struct {
  size_t bucket_bytes; /* per bucket (>= 4); DPT_REDUCER_BUCKET_BYTES */
  int overlap;         /* 1: a bucket starts as soon as it is final (dpt_reducer_ready); 0: all
                          start in dpt_reducer_wait. Default 1. DPT_REDUCE_EXACT ignores both
                          (its sums are final only after the check: it sums all in the wait) */
  int shard_only;      /* 1: each rank gets the sum only over its own shard (dpt_comm_shard; a
                          reduce-scatter, ZeRO-1 and 2); 0: every rank gets all of it. Default 0 */
  int shard_buf;       /* 1 (with shard_only; DPT_REDUCE_RANK_ORDER or DPT_REDUCE_EXACT): buf is
                          only this rank's shard (dpt_comm_shard's len floats), where the sum lands;
                          the whole gradient never exists (ZeRO-2). Rank-order then takes the
                          gradient through dpt_reducer_put into a few bucket-sized buffers it owns,
                          reused (overlap is then always on); exact through
                          dpt_reducer_exact_add_range. Default 0 */
  int nspans;          /* shard_buf, rank-order: the ranges the gradient is handed over in */
  const size_t *span_offset; /* (layers; their first elements, increasing): each span is cut into
                                the fewest equal buckets of at most bucket_bytes, so none crosses
                                a span's edge and dpt_reducer_lend lends every bucket whole.
                                0 / NULL, the default: every bucket_bytes. Read by create only */
  dpt_reduce_algorithm algorithm; /* default DPT_REDUCE_AUTO */
  int node_ranks;        /* DPT_REDUCE_NODE: take blocks of this many consecutive ranks as one node
                            (must divide the rank count); 0, the default: the nodes MPI reports
                            (MPI_COMM_TYPE_SHARED). For tests: nodes made of one host's ranks */
  dpt_compress compress; /* default DPT_COMPRESS_NONE; else the algorithm must be auto or
                            rank-order, and becomes DPT_REDUCE_HALF or DPT_REDUCE_POWERSGD */
  int compress_rank;     /* PowerSGD: the rank R of each matrix's factors (>= 1) */
  long compress_start;   /* PowerSGD: steps (dpt_reducer_wait calls) summed uncompressed first */
  /* DPT_REDUCE_EXACT and DPT_REDUCE_POWERSGD: */
  int ntensors;                /* tensors of the buffer: [tensor_offset[t], +tensor_len[t]) */
  const size_t *tensor_offset; /* ntensors each; copied by dpt_reducer_create */
  const size_t *tensor_len;
  const size_t *tensor_rows; /* PowerSGD: tensor t is a tensor_rows[t] x (len / rows) row-major
                                matrix (torch's view(shape[0], -1)); NULL or 1: a vector */
  int micro_shards;          /* G, the micro-shards of a step over all ranks (1 to
                                dpt_reducer_exact_max_shards()) */
  double *scales;            /* ntensors fixed-point exponents (NAN: not known yet); borrowed,
                                updated every step; part of the training position */
} dpt_reducer_params;

/* bucket 25 MiB, overlap on, whole sum, algorithm auto, no compression (PowerSGD rank and
 * start at DPT_POWERSGD_*); no tensors. */
dpt_reducer_params dpt_reducer_defaults(void);

/* The algorithm's name by value ("rank-order", "exact", "node", "ring", "half", "powersgd",
 * "auto"); NULL if none. */
const char *dpt_reducer_algorithm_name(dpt_reduce_algorithm a);
/* The algorithm by name; -1 (with a message naming the choices) if none. */
int dpt_reducer_algorithm_parse(const char *name, dpt_reduce_algorithm *a, char *err,
                                size_t errlen);
/* The algorithm a reducer uses (auto resolved). */
dpt_reduce_algorithm dpt_reducer_algorithm(const dpt_reducer *r);

/* Creates a reducer that sums buf[0, n) over every rank of comm as p says (on a private
 * duplicate of comm that returns MPI errors). buf is borrowed (must outlive the reducer).
 * Collective over comm: every rank must call it with the same n and parameters. */
int dpt_reducer_create(MPI_Comm comm, float *buf, size_t n, const dpt_reducer_params *p,
                       dpt_reducer **out, char *err, size_t errlen);
void dpt_reducer_free(dpt_reducer *r);

/* Marks buf[offset, offset+len) final for this step; starts the reduction of every bucket that
 * is now complete and next in the fixed order, and lets MPI progress the ones in flight. Ranges
 * must not overlap within a step. Matches dpt_grad_ready_fn (ctx is the dpt_reducer). An MPI
 * error is kept and reported by dpt_reducer_wait. */
void dpt_reducer_ready(void *r, size_t offset, size_t len);

/* With shard_buf (rank-order): hands over g[0, len), the final gradient of buf's elements
 * [offset, offset + len) of the whole (n-element) gradient, in place of writing it into buf and
 * calling dpt_reducer_ready. Copies it into the buckets' own buffers (taking one from the pool,
 * or waiting for the oldest bucket in flight to complete and summing it into buf when none is
 * free), then starts and progresses buckets as dpt_reducer_ready does. Ranges come in
 * decreasing order of offset (backward's order) for the pool to stay at its two buffers; any
 * order is correct. Errors are kept for dpt_reducer_wait. */
void dpt_reducer_put(dpt_reducer *r, size_t offset, size_t len, const float *g);

/* As dpt_reducer_put, but g is lent, not copied, for each bucket whose whole range lies in it
 * (rank-order): that bucket's exchange sends from g itself, so backward writes each gradient
 * element once and nothing copies it (the buckets at the range's ends, shared with the next
 * range, are copied). g must not change until dpt_reducer_take_back of it or dpt_reducer_wait
 * returns. Errors are kept for dpt_reducer_wait. */
void dpt_reducer_lend(dpt_reducer *r, size_t offset, size_t len, const float *g);

/* Ends every loan of g[0, len): waits (yielding the core) for the exchanges that read from it,
 * and copies the lent buckets that have not started into the reducer's own buffers. g may be
 * written afterwards. Errors are kept for dpt_reducer_wait. */
void dpt_reducer_take_back(dpt_reducer *r, const float *g, size_t len);
/* As dpt_reducer_take_back without waiting: ends the loans of g[0, len) that can end now; 1 if
 * none is left (g may be written), 0 if an exchange still reads from it. */
int dpt_reducer_try_take_back(dpt_reducer *r, const float *g, size_t len);

/* Bytes the reducer holds besides buf (staging, bucket buffers, fixed-point sums): its share
 * of a rank's working memory, for the memory report. */
size_t dpt_reducer_bytes(const dpt_reducer *r);

/* Starts whatever has not started and waits for every bucket: afterwards buf holds the sum over
 * ranks (with shard_only: in this rank's shard; the rest of buf is then unspecified).
 * Collective. *wait_s (may be NULL) receives the time spent blocked here. Resets the reducer
 * for the next step. */
int dpt_reducer_wait(dpt_reducer *r, double *wait_s, char *err, size_t errlen);

/* "none", "bf16", "fp16", "powersgd" or "powersgd:R" into *c and *rank (R, or
 * DPT_POWERSGD_RANK); -1 with a message naming the choices if it is none of them. */
int dpt_reducer_compress_parse(const char *spec, dpt_compress *c, int *rank, char *err,
                               size_t errlen);

/* PowerSGD's error feedback after dpt_reducer_wait: this rank's residual e[0, n) (what its
 * gradient held that the compressed sum did not carry, added to the next step's gradient;
 * zero outside the compressed matrices); NULL for any other algorithm. Not checkpointed: a
 * resumed run starts with zero residuals, new factors and compress_start plain steps. */
const float *dpt_reducer_compress_residual(const dpt_reducer *r);

/* IEEE binary32 to bfloat16 and half, rounding to nearest, ties to even (NaN stays a quiet
 * NaN, overflow gives infinity), and back (exact). The encodings of DPT_REDUCE_HALF. */
uint16_t dpt_comm_bf16_from_float(float x);
float dpt_comm_bf16_to_float(uint16_t h);
uint16_t dpt_comm_fp16_from_float(float x);
float dpt_comm_fp16_to_float(uint16_t h);

/* --- the exact algorithm's fixed-point encoding (DPT_REDUCE_EXACT only) ---
 * A step: begin; add each of this rank's micro-shard gradients; check (redo the pass while it
 * says so); dpt_reducer_wait (buf then holds the sum); dpt_reducer_exact_sumsq. */

/* The most micro-shards whose fixed-point sum cannot overflow. */
int dpt_reducer_exact_max_shards(void);
/* Starts a pass over this rank's micro-shards: zero sums and maxima. */
void dpt_reducer_exact_begin(dpt_reducer *r);
/* Adds one micro-shard's gradient g[0, n) at the current scales (g may be buf). */
void dpt_reducer_exact_add(dpt_reducer *r, const float *g);
/* The same for the range [offset, offset + len) of one micro-shard's gradient, g[0, len): the
 * range covers whole tensors (a layer's span). Adding every range of a micro-shard once is
 * bitwise dpt_reducer_exact_add of the whole. */
void dpt_reducer_exact_add_range(dpt_reducer *r, size_t offset, size_t len, const float *g);
/* A range of one micro-shard's gradient (whole tensors) that belongs to a range added later (a
 * tied use's share of an earlier layer's span, which backward reaches after it): with
 * shard_buf its fixed-point values are kept apart and join that range's sums when it comes,
 * so the sums are bitwise those of adding it with dpt_reducer_exact_add_range to whole sums
 * (which it does without shard_buf). */
void dpt_reducer_exact_add_early(dpt_reducer *r, size_t offset, size_t len, const float *g);
/* Agrees on the pass's maxima (collective). 1: the pass must be redone (the scales were set to
 * fit it), 0: the sums are good, < 0: MPI error. *nonfinite: some value was NaN or Inf. */
int dpt_reducer_exact_check(dpt_reducer *r, int *nonfinite, char *err, size_t errlen);
/* The first tensor in which this rank's micro-shards of the pass had a NaN or Inf (-1: none). */
int dpt_reducer_exact_local_bad(const dpt_reducer *r);
/* After dpt_reducer_wait: the squared L2 norm of the sum, the same for every W and for
 * shard_only or not. */
double dpt_reducer_exact_sumsq(const dpt_reducer *r);

/* --- node topology --- */

typedef struct {
  int nodes;        /* nodes the ranks are on (ranks that share memory are one node) */
  int node;         /* this rank's node, 0 .. nodes-1, numbered in the order of their lowest rank */
  int local_rank;   /* this rank's place among its node's ranks (in rank order) */
  int local_size;   /* ranks on this rank's node */
  int max_per_node; /* the most ranks on one node */
} dpt_topology;

/* Where the ranks of comm run (MPI_Comm_split_type, MPI_COMM_TYPE_SHARED). Collective. */
int dpt_comm_topology(MPI_Comm comm, dpt_topology *out, char *err, size_t errlen);

/* --- small collectives (collective over comm) --- */

/* Gathers every rank's shard (dpt_comm_shard) of buf[0, n) so every rank holds all of it:
 * ZeRO's parameter all-gather after each rank updated the shard it owns. */
int dpt_comm_allgather(MPI_Comm comm, float *buf, size_t n, char *err, size_t errlen);

/* Sums v[0, n) over ranks in place (doubles: losses, counts, norms). */
int dpt_comm_sum(MPI_Comm comm, double *v, int n, char *err, size_t errlen);

/* Ordered sum of rows: v holds nrows rows of len doubles (every rank the same nrows); on return
 * v[0, len) is the sum of all ranks' rows taken in rank order, then row order, one after the
 * other from zero, on every rank bitwise the same. So the result depends only on the global
 * order of the rows, not on how they are split over ranks (the batch statistics of
 * deterministic mode). work: nranks * nrows * len doubles. */
int dpt_comm_sum_rows(MPI_Comm comm, double *v, size_t len, int nrows, double *work, char *err,
                      size_t errlen);

/* Maximum of v[0, n) over ranks in place. */
int dpt_comm_max(MPI_Comm comm, double *v, int n, char *err, size_t errlen);

/* Minimum of v[0, n) of 64-bit integers over ranks in place. */
int dpt_comm_min_int64(MPI_Comm comm, int64_t *v, int n, char *err, size_t errlen);

/* Sums v[0, n) of 64-bit integers over ranks in place. Integer addition is exact and
 * associative (modulo 2^64, so even a wrap-around in between cancels), so the result is the
 * same whatever the rank count and the reduction order. */
int dpt_comm_sum_exact(MPI_Comm comm, int64_t *v, size_t n, char *err, size_t errlen);

/* Broadcasts root's *v (a status) to every rank. */
int dpt_comm_bcast_int(MPI_Comm comm, int *v, int root, char *err, size_t errlen);

/* Agreement on failure: returns the most negative rc over ranks (0 if all are 0); DPT_EMPI if
 * the agreement itself failed. Every rank calls it at the same point, so one rank's bad input
 * stops every rank with no hang. */
int dpt_comm_agree(MPI_Comm comm, int rc);

/* Makes the message of the lowest rank whose rc is non-zero the message in err on every rank
 * (for one clear line from rank 0 whoever failed); an MPI failure puts MPI's message in err. */
void dpt_comm_share_error(MPI_Comm comm, int rc, char *err, size_t errlen);

/* Both in one collective: the most negative rc over ranks (0 if all are 0) and, when it is
 * non-zero, the lowest failing rank's message in err on every rank; DPT_EMPI with MPI's message
 * if MPI fails. */
int dpt_comm_agree_error(MPI_Comm comm, int rc, char *err, size_t errlen);

/* An MPI result rc != MPI_SUCCESS as a dpt error: "<what> failed: <MPI's message>" in err,
 * DPT_EMPI returned. For callers that make MPI calls of their own. */
int dpt_comm_mpi_error(int rc, const char *what, char *err, size_t errlen);

/* Duplicates comm into *out with MPI_ERRORS_RETURN, so MPI failures on it come back as codes
 * (free it with MPI_Comm_free). Collective. */
int dpt_comm_dup_returning(MPI_Comm comm, MPI_Comm *out, char *err, size_t errlen);

#endif /* DPT_COMM_H */

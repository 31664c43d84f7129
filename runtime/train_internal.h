/* train_internal.h — what the trainer's files share (train.c: set-up, the loop, teardown;
 * step.c: one step; eval.c: evaluation; stop.c: signals and the time limit). Private to
 * runtime/.
 *
 * Invariants:
 * - Global step s of epoch e covers samples perm_e[s*B, (s+1)*B) whatever W is; rank r takes
 *   the r-th B/W of it, cut into `accum` micro-batches. The gradient is the mean over the
 *   global batch (each rank adds 1/B times its sum; the reduction sums).
 * - Every rank leaves through the same door: set-up failures are agreed with
 *   dpt_comm_agree_error, failures inside a step travel in the step's metrics reduction, so
 *   nobody hangs in a collective a peer will never call.
 */
#ifndef DPT_RUNTIME_TRAIN_INTERNAL_H
#define DPT_RUNTIME_TRAIN_INTERNAL_H

#include <signal.h>

#include "comm.h"
#include "internal.h"
#include "io.h"

/* Everything one run holds; freed in one place. */
#define DPT_SPAN_POOL 4 /* stage 2's span buffers at most (zero.c) */

typedef struct {
  MPI_Comm comm; /* the trainer's duplicate of the caller's, with MPI_ERRORS_RETURN */
  int rank, size;
  dpt_model *model;
  dpt_dataset *data;
  dpt_tokens *tokens; /* a token dataset (then data is NULL): samples are windows of --context */
  size_t lps;         /* labels per sample: 1, or T for windows of a token dataset */
  size_t eval_chunk;  /* test samples per evaluation chunk */
  dpt_split_info train, test;
  int has_test;
  float *params; /* the whole parameters [nparams]; NULL in stage 3 (zero.c) */
  float *pshard; /* the parameters of shard: params + shard.offset, or stage 3's own [shard.len] */
  float *grads;  /* the whole gradient [nparams]; NULL in stage 2 when streamed (zero.c) */
  float *gshard; /* the gradient of shard (grads + shard.offset, or stage 2's own buffer) */
  float *gown;   /* the gradient of own (the same when streamed: own == shard) */
  int stream;    /* stage 2 streamed: layers' gradients go to the reducer (dpt_reducer_put) */
  float *span_buf; /* stage 2 streamed: the layer's gradient backward adds into [span_cap] */
  size_t span_cap;
  /* outside deterministic mode, span_buf is one of a few buffers lent to the reducer in turn,
   * 2 at first, more while peers lag (zero.c); span_n 0: span_buf alone, copied */
  float *span_pool[DPT_SPAN_POOL];
  int span_n, span_cur;
  int zero; /* ZeRO stage in effect (0 to 3), the same on every rank */
  /* stage 3: a layer's parameters are gathered into one of two working buffers [gcap] (the
   * widest layer) before its forward and its backward; the next layer's gather runs while this
   * one computes (zero.c) */
  float *gbuf[2];
  size_t gcap;
  int gspan[2];           /* the layer span each buffer holds in this pass (-1: none) */
  MPI_Request greq[2];    /* its gather while in flight (MPI_REQUEST_NULL: complete) */
  int gcur;               /* the buffer the net reads now (-1: none) */
  int gpos;               /* position in the pass's gather order (-1: before the first) */
  int gtrain;             /* the pass is training's (forward and backward), else evaluation's */
  int prefetch;           /* --zero-prefetch */
  float **gkeep;          /* [nlayers]: the layer's parameters kept from forward for backward
                             (--zero-keep-mb; NULL: gathered again) */
  size_t gkept;           /* the elements they hold */
  int *gorder, norder;    /* a training pass's gather order: the spans, forward then backward */
  int *gback;             /* [nlayers]: the position of the layer's backward in gorder */
  float *gdst[2];         /* where each buffer's gather lands: gbuf[b], or the layer's gkeep */
  int *gcounts, *gdispls; /* [size] one gather's counts and displacements */
  int saving;             /* checkpoints are written */
  dpt_train_pos pos;      /* where training stands (restored by --resume) */
  dpt_range shard;        /* what this rank's solver owns (all of it without ZeRO) */
  dpt_range own;          /* this rank's ZeRO shard (whatever the stage): its share of norms */
  dpt_solver *solver;
  dpt_sched *sched;
  dpt_reducer *reducer; /* rank-order, or exact in deterministic mode */
  int64_t *perm;        /* this epoch's permutation of the training set */
  int64_t *idx;         /* one micro-batch's sample indices */
  float *x, *y;
  int32_t *labels;
  size_t micro; /* samples per micro-batch on this rank */
  long steps_per_epoch, total_steps;
  dpt_report *report;
  dpt_fault fault;                   /* test-only: DPT_FAULT */
  double t_start;                    /* when the run began (dpt_now) */
  double time_limit;                 /* --time-limit in seconds (0: none) */
  double slowest_step, slowest_ckpt; /* seconds: what stopping in time must allow for */
  dpt_topology topo;                 /* nodes of the communicator, and the most ranks on one */
  int det;                           /* deterministic mode: the reducer is DPT_REDUCE_EXACT */
  double *slots; /* deterministic mode: one slot per micro-shard loss, then flags */
  /* batch statistics across ranks (dpt_layer_pass.batch_sum): dpt_comm_sum_rows' work buffer,
   * grown to the largest call; the first failure of a pass, returned after it */
  double *rows_work;
  size_t rows_cap;
  int rows_rc;
  char rows_err[DPT_ERR_LEN];
  float *buffers_saved; /* the model's buffers before the step (restored on a redo or skip) */
  dpt_timing timing;    /* where the step's time goes (timing.c) */
} run;

/* --- step.c --- */

/* Fisher-Yates from (seed, epoch): identical on every rank and for every W. */
void dpt_train_shuffle(int64_t *perm, int64_t n, uint64_t seed, int epoch);

/* Token datasets: the start of every window of epoch `epoch` (n of them, batch per step):
 * global sample g (step g / batch, index g % batch in the global batch) starts at a position
 * drawn from (seed, epoch, step, index) by splitmix64, uniform over [0, ntokens - T): the same
 * for every W, and recomputed on resume. */
void dpt_train_windows(int64_t *starts, int64_t n, int64_t ntokens, int64_t t, uint64_t seed,
                       int epoch, long batch);

/* Global step s of the epoch: compute, reduce, clip, update, all-gather; fills info. A failure
 * on any rank is every rank's (collective). */
int dpt_train_step(run *r, const dpt_train_opts *o, long s, dpt_step_info *info, char *err,
                   size_t errlen);

/* A failure on some rank (sum > 0): every rank returns its code with that rank's message. */
int dpt_train_shared_failure(run *r, int rc, char *err, size_t errlen);

/* --- timing.c --- */

/* Floats per gradient bucket as the reducer cuts them (--bucket-mb). */
size_t dpt_train_bucket_floats(const dpt_train_opts *o);

/* At the end of a log interval (--log-every steps, the run's last step, an agreed stop): every
 * rank's timings to rank 0, into the metrics file (and --verbose's line); else nothing.
 * Collective at those steps only. */
int dpt_train_timing_interval(run *r, const dpt_train_opts *o, const dpt_step_info *info, char *err,
                              size_t errlen);

/* --- zero.c --- */

/* The parameters' and gradient's buffers for r->zero (set first, with shard and own): the
 * whole parameters, or in stage 3 only the shard, initialised here (m->init), and two layers'
 * working buffers (sets pshard; a model stage 3 cannot gather layer by layer is DPT_EINVAL
 * naming why); the whole gradient, or
 * in stages 2 and 3 only the shard and one layer's working buffer (sets r->stream). DPT_ENOMEM
 * with dpt_zero_oom's message. */
int dpt_zero_alloc(run *r, const dpt_train_opts *o, char *err, size_t errlen);
void dpt_zero_free(run *r);
/* Makes the BLAS library map its working buffer now, at set-up, after checking that the address
 * space holds it: there, a failure is DPT_ENOMEM with dpt_zero_oom's message, where inside a step
 * OpenBLAS would retry for ever (zero.c says why). Call last in set-up, before the agreement. */
int dpt_zero_blas_reserve(const run *r, const dpt_train_opts *o, char *err, size_t errlen);
/* "out of memory for <what>: ZeRO stage S on W ranks needs N bytes per rank ...": DPT_ENOMEM. */
int dpt_zero_oom(const run *r, const dpt_train_opts *o, const char *what, char *err, size_t errlen);
/* Stage 2 streamed: dpt_layer_pass.grad_at and .ready with the run as ready_ctx. */
float *dpt_zero_grad_at(void *ctx, size_t offset, size_t len);
void dpt_zero_ready(void *ctx, size_t offset, size_t len);

/* Stage 2 streamed, deterministic mode: a rank whose pass failed before backward joins the
 * layers' reduce-scatters of the exact sums with zeros (per micro-shards each), so that no
 * peer waits for it; the failure is then shared as usual. */
void dpt_zero_exact_join(run *r, int per);

/* What a rank holds, bytes: parameters, gradient, optimizer state, working buffers (reducer,
 * layer gradient, batch, data order, model buffers), and the peak resident memory so far. */
typedef struct {
  double param_bytes, grad_bytes, state_bytes, buffer_bytes, peak_rss_bytes;
} dpt_zero_mem;
void dpt_zero_memory(const run *r, const dpt_train_opts *o, dpt_zero_mem *out);

/* Stage 3: dpt_layer_pass.params_at with the run as params_ctx. A failure (MPI) is kept in
 * rows_rc and returned after the pass. */
const float *dpt_zero_params_at(void *ctx, size_t offset, size_t len, int backward);
/* Stage 3, around each pass (train: a training pass, forward and backward; 0: an evaluation's
 * forward): begin forgets what the buffers held; end finishes the pass's gathers (a pass that
 * stopped before its forward, or an evaluation round without a chunk, takes part in the ones
 * its peers make). Collective when r->zero == 3; nothing otherwise. (A training rank whose
 * data could not be read runs its pass on zeros instead, step.c, so that every collective of
 * the pass matches: batch statistics and exact sums too.) */
void dpt_zero_gather_begin(run *r, int train);
void dpt_zero_gather_end(run *r);
/* Stage 3: every rank's shard all-gathered into out[nparams] (the whole parameters, for
 * evaluation and the caller's copy). Collective. */
int dpt_zero_gather_all(run *r, float *out, char *err, size_t errlen);

/* --- eval.c --- */

/* Mean loss and accuracy on the test split, the same for every W. Collective. */
int dpt_train_evaluate(run *r, double *loss, double *acc, char *err, size_t errlen);

/* --- stop.c --- */

/* The stop signals' handlers (mask: bit s for signal s), and the ones they replaced. */
typedef struct {
  unsigned mask;
  struct sigaction old[32];
} stop_handlers;

void dpt_stop_handlers_install(stop_handlers *h, unsigned mask);
void dpt_stop_handlers_restore(const stop_handlers *h);
/* A stop signal arrived since the handlers were installed. */
int dpt_stop_signal_pending(void);
/* The stop signal this process received ("SIGTERM"), or NULL if none reached it. */
const char *dpt_stop_signal_name(void);
/* Would one more step and a checkpoint overrun --time-limit? */
int dpt_out_of_time(const run *r, const dpt_train_opts *o);

#endif

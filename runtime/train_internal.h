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
  float *params;
  float *grads;    /* the whole gradient [nparams]; NULL in stage 2 when streamed (zero.c) */
  float *gshard;   /* the gradient of shard (grads + shard.offset, or stage 2's own buffer) */
  float *gown;     /* the gradient of own (the same when streamed: own == shard) */
  int stream;      /* stage 2 streamed: layers' gradients go to the reducer (dpt_reducer_put) */
  float *span_buf; /* stage 2 streamed: one layer's gradient [span_cap], reused */
  size_t span_cap;
  int zero;          /* ZeRO stage in effect (0, 1 or 2), the same on every rank */
  int saving;        /* checkpoints are written */
  dpt_train_pos pos; /* where training stands (restored by --resume) */
  dpt_range shard;   /* what this rank's solver owns (all of it without ZeRO) */
  dpt_range own;     /* this rank's ZeRO shard (whatever the stage): its share of norms */
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

/* The gradient's buffers for r->zero (set first, with shard and own): the whole gradient, or
 * in stage 2 only the shard and one layer's working buffer (sets r->stream). DPT_ENOMEM with
 * dpt_zero_oom's message. */
int dpt_zero_alloc(run *r, const dpt_train_opts *o, char *err, size_t errlen);
void dpt_zero_free(run *r);
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

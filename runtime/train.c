/* train.c — the data-parallel training loop: read a global batch's share, forward and backward,
 * reduce gradients (overlapped, bucketed), clip, step the solver on the shard this rank owns,
 * all-gather parameters, step the scheduler, report; evaluate every epoch.
 *
 * Invariants:
 * - Global step s of epoch e covers samples perm_e[s*B, (s+1)*B) whatever W is; rank r takes
 *   the r-th B/W of it, cut into `accum` micro-batches. The gradient is the mean over the
 *   global batch (each rank adds 1/B times its sum; the reduction sums).
 * - Every rank leaves through the same door: set-up failures are agreed with dpt_comm_agree,
 *   failures inside a step travel in the step's metrics reduction, so nobody hangs in a
 *   collective a peer will never call.
 */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "internal.h"
#include "io.h"

/* Everything one run holds; freed in one place. */
typedef struct {
  MPI_Comm comm;
  int rank, size;
  dpt_model *model;
  dpt_dataset *data;
  dpt_split_info train, test;
  int has_test;
  float *params, *grads;
  int zero;              /* ZeRO stage in effect (0, 1 or 2), the same on every rank */
  int saving;            /* checkpoints are written */
  dpt_train_pos pos;     /* where training stands (restored by --resume) */
  dpt_range shard;       /* what this rank's solver owns (all of it without ZeRO) */
  dpt_range own;         /* this rank's ZeRO shard (whatever the stage): its share of norms */
  dpt_solver *solver;
  dpt_sched *sched;
  dpt_comm *reducer;
  int64_t *perm;         /* this epoch's permutation of the training set */
  int64_t *idx;          /* one micro-batch's sample indices */
  float *x, *y;
  int32_t *labels;
  size_t micro;          /* samples per micro-batch on this rank */
  long steps_per_epoch, total_steps;
  dpt_report *report;
  dpt_fault fault;       /* test-only: DPT_FAULT */
  double t_start;        /* when the run began (dpt_now) */
  double time_limit;     /* --time-limit in seconds (0: none) */
  double slowest_step, slowest_ckpt; /* seconds: what stopping in time must allow for */
  int nodes, per_node;   /* nodes of the communicator, and the most ranks on one */
  dpt_det *det;          /* deterministic mode (NULL otherwise) */
  double *slots;         /* deterministic mode: one slot per micro-shard loss, then flags */
} run;

static float *alloc_floats(size_t n) {
  size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
  float *p = aligned_alloc(64, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

/* --- set-up: every check that can fail on bad input happens here, before any step --- */

static int check_data(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  dpt_model *m = r->model;
  if (r->train.features != m->in_features) {
    snprintf(err, errlen,
             "%s: /train/x has %lld features per sample but model %s takes %lld inputs",
             o->data, (long long)r->train.features, o->model, (long long)m->in_features);
    return DPT_EINVAL;
  }
  if (m->wants_labels && !r->train.y_labels) {
    snprintf(err, errlen,
             "%s: /train/y holds float targets but loss '%s' needs integer class labels",
             o->data, o->loss);
    return DPT_EINVAL;
  }
  if (!m->wants_labels && (r->train.y_labels || r->train.y_width != m->out_features)) {
    snprintf(err, errlen,
             "%s: /train/y must hold %lld float targets per sample for loss '%s' (it holds %s)",
             o->data, (long long)m->out_features, o->loss,
             r->train.y_labels ? "integer labels" : "a different number");
    return DPT_EINVAL;
  }
  for (int t = 0; t < 1 + r->has_test; t++) {
    const dpt_split_info *s = t ? &r->test : &r->train;
    if (m->wants_labels && s->label_max >= m->out_features) {
      snprintf(err, errlen,
               "%s: /%s/y has label %lld but model %s has %lld outputs (labels must be < %lld)",
               o->data, t ? "test" : "train", (long long)s->label_max, o->model,
               (long long)m->out_features, (long long)m->out_features);
      return DPT_EINVAL;
    }
    if (t && (s->features != r->train.features || s->y_labels != r->train.y_labels)) {
      snprintf(err, errlen, "%s: /test does not match /train's sample shape or label type",
               o->data);
      return DPT_EINVAL;
    }
  }
  if (o->batch % r->size) {
    snprintf(err, errlen,
             "--batch %ld is not divisible by the %d ranks (each rank takes batch/ranks "
             "samples; use a multiple of %d)",
             o->batch, r->size, r->size);
    return DPT_EINVAL;
  }
  if ((o->batch / r->size) % o->accum) {
    snprintf(err, errlen,
             "--accum %d does not divide the per-rank batch %ld (--batch %ld over %d ranks)",
             o->accum, o->batch / r->size, o->batch, r->size);
    return DPT_EINVAL;
  }
  if (o->deterministic && (o->micro_shards % r->size || o->batch % o->micro_shards)) {
    snprintf(err, errlen,
             "--deterministic: the %d ranks must divide --micro-shards %d, and %d must divide "
             "--batch %ld (pick G as a multiple of every rank count you will use)",
             r->size, o->micro_shards, o->micro_shards, o->batch);
    return DPT_EINVAL;
  }
  if (o->deterministic && o->micro_shards > dpt_det_max_shards()) {
    snprintf(err, errlen, "--micro-shards %d: at most %d (the fixed-point sums must not "
             "overflow)", o->micro_shards, dpt_det_max_shards());
    return DPT_EINVAL;
  }
  if (o->deterministic && o->accum != 1) {
    snprintf(err, errlen, "--accum %d: not used with --deterministic, where each of the "
             "--micro-shards is computed on its own; leave it at 1", o->accum);
    return DPT_EINVAL;
  }
  if (o->batch > r->train.n) {
    snprintf(err, errlen, "--batch %ld is larger than the %lld training samples in %s",
             o->batch, (long long)r->train.n, o->data);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

static int setup(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  char ioerr[DPT_ERR_LEN];
  int rc = dpt_io_dataset_open(o->data, (size_t)(o->cache_mb * 1048576.0), &r->data, ioerr,
                               sizeof ioerr);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return rc;
  }
  dpt_io_dataset_info(r->data, DPT_SPLIT_TRAIN, &r->train);
  r->has_test = o->eval_every > 0 && dpt_io_dataset_info(r->data, DPT_SPLIT_TEST, &r->test) == 0;
  if ((rc = check_data(r, o, err, errlen))) return rc;

  dpt_model *m = r->model;
  r->params = alloc_floats(m->nparams);
  r->grads = alloc_floats(m->nparams);
  r->micro = o->deterministic ? (size_t)(o->batch / o->micro_shards)
                              : (size_t)(o->batch / r->size / o->accum);
  size_t eval_chunk = 1024;
  size_t rows = r->micro > eval_chunk ? r->micro : eval_chunk;
  r->perm = malloc((size_t)r->train.n * sizeof *r->perm);
  r->idx = malloc(rows * sizeof *r->idx);
  r->x = alloc_floats(rows * (size_t)m->in_features);
  r->y = alloc_floats(rows * (size_t)m->out_features);
  r->labels = malloc(rows * sizeof *r->labels);
  if (!r->params || !r->grads || !r->perm || !r->idx || !r->x || !r->y || !r->labels) {
    snprintf(err, errlen, "out of memory for %zu parameters and batch buffers", m->nparams);
    return DPT_ENOMEM;
  }
  if ((rc = m->init(m, r->params, (uint64_t)o->seed, err, errlen))) return rc;

  r->zero = o->zero < 0 ? (r->size > 1) : o->zero;
  r->own = dpt_comm_shard(m->nparams, r->rank, r->size);
  r->shard = r->zero ? r->own
                  : (dpt_range){0, m->nparams};
  char oerr[DPT_ERR_LEN];
  if (dpt_solver_create(&o->solver, r->shard.len, &r->solver, oerr, sizeof oerr)) {
    snprintf(err, errlen, "%s", oerr);
    return DPT_EINVAL;
  }
  r->steps_per_epoch = (long)(r->train.n / o->batch);
  r->total_steps = r->steps_per_epoch * o->epochs;
  if (o->max_steps > 0 && o->max_steps < r->total_steps) r->total_steps = o->max_steps;
  long sched_steps = o->sched.interval == DPT_SCHED_EVERY_STEP ? r->total_steps : o->epochs;
  if (dpt_sched_create(&o->sched, o->solver.lr, dpt_solver_has_momentum(r->solver),
                       dpt_solver_momentum(r->solver), sched_steps, &r->sched, oerr,
                       sizeof oerr)) {
    snprintf(err, errlen, "%s", oerr);
    return DPT_EINVAL;
  }
  for (int t = 0; t < DPT_MAX_TENSORS; t++) r->pos.grad_scale[t] = NAN;
  if (o->deterministic) { /* no bucketed reducer: exact sums of micro-shards instead */
    r->slots = calloc((size_t)o->micro_shards + 3, sizeof *r->slots);
    if (!r->slots) return DPT_ENOMEM;
    int rc2 = dpt_det_create(m, o->micro_shards, r->pos.grad_scale, &r->det, err, errlen);
    if (rc2) return rc2;
  } else {
    char cerr[DPT_ERR_LEN];
    /* stages 1 and 2 reduce-scatter: a rank steps only its shard, so all-gathering the
     * reduced gradient (as DDP under ZeroRedundancyOptimizer does) would be wasted traffic */
    if (dpt_comm_create(r->comm, r->grads, m->nparams, (size_t)(o->bucket_mb * 1048576.0),
                        o->overlap, r->zero >= 1, &r->reducer, cerr, sizeof cerr)) {
      snprintf(err, errlen, "%s", cerr);
      return DPT_EMPI;
    }
  }
  return DPT_OK;
}

static void teardown(run *r) {
  dpt_report_close(r->report);
  dpt_comm_free(r->reducer);
  dpt_det_free(r->det);
  free(r->slots);
  dpt_sched_free(r->sched);
  dpt_solver_free(r->solver);
  dpt_io_dataset_close(r->data);
  free(r->params);
  free(r->grads);
  free(r->perm);
  free(r->idx);
  free(r->x);
  free(r->y);
  free(r->labels);
}

/* --- stopping on request: a signal, or the time limit ---
 * A handler only records the signal; each step's reduction tells every rank whether any rank
 * wants to stop, so all stop after the same step, write a checkpoint and return DPT_ESTOPPED. */

static volatile sig_atomic_t g_stop_signal; /* the last stop signal received (0: none) */

static void on_stop_signal(int sig) { g_stop_signal = sig; }

static int stop_signal_pending(void) { return g_stop_signal != 0; }

typedef struct {
  unsigned mask;
  struct sigaction old[32];
} stop_handlers;

static void stop_handlers_install(stop_handlers *h, unsigned mask) {
  g_stop_signal = 0;
  h->mask = mask;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s = 1; s < 32; s++)
    if (mask & (1u << s)) sigaction(s, &sa, &h->old[s]);
}

static void stop_handlers_restore(const stop_handlers *h) {
  for (int s = 1; s < 32; s++)
    if (h->mask & (1u << s)) sigaction(s, &h->old[s], NULL);
}

/* Would one more step and a checkpoint overrun --time-limit? */
static int out_of_time(const run *r, const dpt_train_opts *o) {
  if (r->time_limit <= 0) return 0;
  double need = r->slowest_step + r->slowest_ckpt + o->stop_margin;
  return dpt_now() - r->t_start + need >= r->time_limit;
}

/* --- one step --- */

/* Fisher-Yates from (seed, epoch): identical on every rank and for every W. */
static void shuffle(int64_t *perm, int64_t n, uint64_t seed, int epoch) {
  dpt_rng g;
  dpt_rng_seed(&g, seed, 1000 + (uint64_t)epoch);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)dpt_rng_below(&g, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

/* Reads n training samples by index into r->x and r->labels or r->y. */
static int read_samples(run *r, const int64_t *idx, size_t n, char *err, size_t errlen) {
  dpt_model *m = r->model;
  char ioerr[DPT_ERR_LEN];
  memcpy(r->idx, idx, n * sizeof *r->idx);
  if (dpt_io_dataset_read(r->data, DPT_SPLIT_TRAIN, r->idx, n, r->x,
                          m->wants_labels ? r->labels : NULL, m->wants_labels ? NULL : r->y,
                          ioerr, sizeof ioerr)) {
    snprintf(err, errlen, "%s", ioerr);
    return DPT_EIO;
  }
  return DPT_OK;
}

/* DPT_FAULT=nan:RANK@STEP (tests): a NaN in this rank's input of that step. */
static void inject_nan(run *r) {
  if (r->fault.nan && r->fault.rank == r->rank && r->fault.step == r->pos.step) r->x[0] = NAN;
}

/* Forward and backward over this rank's share of global step `s`; adds into r->grads. */
static int compute(run *r, const dpt_train_opts *o, long s, int reduce, double *loss_sum,
                   char *err, size_t errlen) {
  dpt_model *m = r->model;
  size_t per_rank = (size_t)(o->batch / r->size);
  const int64_t *mine = r->perm + (size_t)s * (size_t)o->batch + (size_t)r->rank * per_rank;
  for (int k = 0; k < o->accum; k++) {
    int rc = read_samples(r, mine + (size_t)k * r->micro, r->micro, err, errlen);
    if (rc) return rc;
    inject_nan(r);
    int last = k == o->accum - 1;
    double part = 0;
    int64_t correct = 0;
    rc = m->loss_grad(m, r->params, r->grads, (float)(1.0 / (double)o->batch), r->x,
                      r->labels, r->y, r->micro, &part, &correct,
                      last && reduce ? dpt_comm_ready : NULL, r->reducer, err, errlen);
    if (rc) return rc;
    *loss_sum += part;
  }
  return DPT_OK;
}

/* Sum of squares of g[0, n) in double, four interleaved partial sums (for instruction-level
 * parallelism) combined in a fixed order: the same on every rank for the same data. */
static double sum_squares(const float *g, size_t n) {
  double s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) s[k] += (double)g[i + k] * g[i + k];
  for (; i < n; i++) s[0] += (double)g[i] * g[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/* What the ranks agreed on in a step's reduction. */
typedef struct {
  double loss;   /* summed over the global batch */
  double sumsq;  /* squared L2 norm of the reduced gradient */
  double wait;   /* seconds this rank waited for the gradient */
  int stop, stop_ranks; /* see dpt_step_info */
  int nonfinite;        /* some rank's loss or gradient is NaN/Inf (all ranks agree) */
  int local_bad_loss;   /* this rank's own loss is */
} step_sums;

/* A failure on some rank (sum > 0): every rank returns its code with that rank's message. */
static int shared_failure(run *r, int rc, char *err, size_t errlen) {
  rc = dpt_comm_agree(r->comm, rc);
  dpt_comm_share_error(r->comm, rc, err, errlen);
  return rc;
}

/* Default mode: the bucketed reducer (overlapped with backward, rank-order sums) leaves this
 * rank's part of the averaged gradient in r->grads. */
static int reduce_buckets(run *r, const dpt_train_opts *o, long s, step_sums *out, char *err,
                          size_t errlen) {
  double loss = 0;
  memset(r->grads, 0, r->model->nparams * sizeof(float));
  int rc = compute(r, o, s, 1, &loss, err, errlen);
  /* Even a failed rank joins the reduction (with what it has), then says so below. */
  char cerr[DPT_ERR_LEN];
  dpt_progress_wait(r->pos.step + 1, "the gradient reduction");
  int wrc = dpt_comm_wait(r->reducer, &out->wait, cerr, sizeof cerr);
  dpt_progress_done();
  if (wrc) {
    snprintf(err, errlen, "%s", cerr);
    return DPT_EMPI;
  }
  /* one reduction carries the loss, any rank's failure, the squared gradient norm of each
   * rank's shard (ranks sum disjoint shards of the same reduced gradient), and the ranks that
   * want to stop after this step (a signal; the time limit): all see the same sums, so all
   * stop at the same step whichever ranks the signal reached */
  double red[5] = {loss, rc ? 1.0 : 0.0, sum_squares(r->grads + r->own.offset, r->own.len),
                   stop_signal_pending() ? 1.0 : 0.0, out_of_time(r, o) ? 1.0 : 0.0};
  dpt_progress_wait(r->pos.step + 1, "the step's loss and norm reduction");
  wrc = dpt_comm_sum(r->comm, red, 5, cerr, sizeof cerr);
  dpt_progress_done();
  if (wrc) {
    snprintf(err, errlen, "%s", cerr);
    return DPT_EMPI;
  }
  if (red[1] > 0) return shared_failure(r, rc, err, errlen);
  out->loss = red[0], out->sumsq = red[2];
  out->local_bad_loss = !isfinite(loss);
  out->nonfinite = !isfinite(red[0]) || !isfinite(red[2]);
  out->stop = red[3] > 0 ? 1 : red[4] > 0 ? 2 : 0;
  out->stop_ranks = (int)(red[3] > 0 ? red[3] : red[4]);
  return DPT_OK;
}

/* Deterministic mode: this rank's micro-shards, each computed alone, summed exactly in fixed
 * point with every other rank's (det.c), which also gives a norm that does not depend on how
 * the gradient is split. Losses travel in one slot per micro-shard and are added in
 * micro-shard order. Nothing here depends on W. */
static int reduce_exact(run *r, const dpt_train_opts *o, long s, step_sums *out, char *err,
                        size_t errlen) {
  dpt_model *m = r->model;
  int shards = o->micro_shards, per = shards / r->size;
  const int64_t *batch = r->perm + (size_t)s * (size_t)o->batch;
  double *slot = r->slots; /* [0, G) losses; G failure; G+1 signal; G+2 out of time */
  char cerr[DPT_ERR_LEN];
  int rc = DPT_OK, redo;
  do {
    memset(slot, 0, (size_t)(shards + 3) * sizeof *slot);
    dpt_det_begin(r->det);
    for (int k = r->rank * per; k < (r->rank + 1) * per && !rc; k++) {
      memset(r->grads, 0, m->nparams * sizeof(float));
      rc = read_samples(r, batch + (size_t)k * r->micro, r->micro, err, errlen);
      if (!rc) inject_nan(r);
      int64_t correct = 0;
      if (!rc)
        rc = m->loss_grad(m, r->params, r->grads, (float)(1.0 / (double)o->batch), r->x,
                          r->labels, r->y, r->micro, &slot[k], &correct, NULL, NULL, err,
                          errlen);
      if (!rc) dpt_det_add(r->det, r->grads);
    }
    slot[shards] = rc ? 1 : 0;
    slot[shards + 1] = stop_signal_pending() ? 1 : 0;
    slot[shards + 2] = out_of_time(r, o) ? 1 : 0;
    out->local_bad_loss = 0;
    for (int k = r->rank * per; k < (r->rank + 1) * per; k++)
      out->local_bad_loss |= !isfinite(slot[k]);
    /* one contributor per loss slot (the others add zeros), small counts: exact sums */
    dpt_progress_wait(r->pos.step + 1, "the step's loss reduction");
    int wrc = dpt_comm_sum(r->comm, slot, shards + 3, cerr, sizeof cerr);
    dpt_progress_done();
    if (wrc) {
      snprintf(err, errlen, "%s", cerr);
      return DPT_EMPI;
    }
    if (slot[shards] > 0) return shared_failure(r, rc, err, errlen);
    int nonfinite = 0;
    dpt_progress_wait(r->pos.step + 1, "the gradient maxima reduction");
    redo = dpt_det_check(r->det, r->comm, &nonfinite, err, errlen);
    dpt_progress_done();
    if (redo < 0) return redo;
    if (nonfinite) { /* the caller names it (or skips the step) */
      out->nonfinite = 1;
      out->loss = NAN;
      return DPT_OK;
    }
  } while (redo);
  double t = dpt_now();
  /* ZeRO stages 1 and 2 need only this rank's shard of the gradient */
  dpt_progress_wait(r->pos.step + 1, "the exact gradient reduction");
  rc = dpt_det_finish(r->det, r->comm, !r->zero, r->grads, &out->sumsq, err, errlen);
  dpt_progress_done();
  if (rc) return rc;
  out->wait = dpt_now() - t;
  out->loss = 0;
  for (int k = 0; k < shards; k++) out->loss += slot[k];
  out->nonfinite = !isfinite(out->loss) || !isfinite(out->sumsq);
  out->stop = slot[shards + 1] > 0 ? 1 : slot[shards + 2] > 0 ? 2 : 0;
  out->stop_ranks = (int)(slot[shards + 1] > 0 ? slot[shards + 1] : slot[shards + 2]);
  return DPT_OK;
}

/* The first tensor of g[lo, hi) with a NaN or Inf, or -1. */
static int first_bad_tensor(const dpt_model *m, const float *g, size_t lo, size_t hi) {
  for (int t = 0; t < m->ntensors; t++) {
    size_t a = m->tensors[t].offset, b = a + m->tensors[t].numel;
    for (size_t i = a > lo ? a : lo; i < (b < hi ? b : hi); i++)
      if (!isfinite(g[i])) return t;
  }
  return -1;
}

/* A NaN or Inf reached the step's sums: say where it came from. Each rank checks its own
 * share of the batch (loss, and the first tensor of its own gradient with a NaN or Inf); the
 * lowest rank that finds one is named. Collective. */
static int nonfinite_error(run *r, const dpt_train_opts *o, long s, const step_sums *sums,
                           char *err, size_t errlen) {
  const dpt_model *m = r->model;
  /* this rank's own gradient: the reduction overwrote it, so compute it again (failure path
   * only); the deterministic mode kept note of it */
  int bad_loss = sums->local_bad_loss, t;
  if (r->det) {
    t = dpt_det_local_bad(r->det);
  } else {
    double loss = 0;
    char ignored[DPT_ERR_LEN];
    memset(r->grads, 0, m->nparams * sizeof(float));
    compute(r, o, s, 0, &loss, ignored, sizeof ignored);
    t = first_bad_tensor(m, r->grads, 0, m->nparams);
    bad_loss |= !isfinite(loss);
  }
  int tier = bad_loss || t >= 0 ? 0 : 2;
  int code = tier < 2 ? (tier << 24) | (r->rank << 12) | (t >= 0 ? t : 4095) : INT_MAX;
  int first = code;
  MPI_Allreduce(&code, &first, 1, MPI_INT, MPI_MIN, r->comm);
  int who = (first >> 12) & 4095, what = first & 4095;
  const char *tensor = what < m->ntensors ? m->tensors[what].name : "?";
  if (first == INT_MAX)
    snprintf(err, errlen, "step %ld: the gradient norm became non-finite", r->pos.step + 1);
  else if (what < m->ntensors)
    snprintf(err, errlen, "step %ld: non-finite values in the gradient of %s on rank %d (its "
             "share of the batch)", r->pos.step + 1, tensor, who);
  else
    snprintf(err, errlen, "step %ld: the loss became non-finite on rank %d (its share of the "
             "batch)", r->pos.step + 1, who);
  snprintf(err + strlen(err), errlen - strlen(err),
           "; nothing was applied. Try a smaller --lr, --clip-norm, or --on-nonfinite skip");
  return DPT_ENONFINITE;
}

static int step(run *r, const dpt_train_opts *o, long s, dpt_step_info *info, char *err,
                size_t errlen) {
  dpt_model *m = r->model;
  double t0 = dpt_now();
  step_sums sums = {0};
  int rc = r->det ? reduce_exact(r, o, s, &sums, err, errlen)
                  : reduce_buckets(r, o, s, &sums, err, errlen);
  if (rc) return rc;
  double norm = sqrt(sums.sumsq);
  if (sums.nonfinite) {
    if (strcmp(o->on_nonfinite, "skip")) return nonfinite_error(r, o, s, &sums, err, errlen);
    /* skipped: nothing reaches the parameters or the solver's state */
    info->skipped = 1;
    info->loss = info->grad_norm = NAN;
    info->lr = dpt_sched_lr(r->sched);
    info->stop = sums.stop, info->stop_ranks = sums.stop_ranks;
    info->samples_per_s = (double)o->batch / (dpt_now() - t0);
    return DPT_OK;
  }
  if (o->clip_norm > 0) { /* torch.nn.utils.clip_grad_norm_: coef = max/(norm+1e-6), <= 1 */
    double coef = o->clip_norm / (norm + 1e-6);
    if (coef < 1) {
      float c = (float)coef;
      float *g = r->grads + r->shard.offset; /* the only part reduced and stepped */
      for (size_t i = 0; i < r->shard.len; i++) g[i] *= c;
    }
  }
  dpt_solver_set_lr(r->solver, dpt_sched_lr(r->sched));
  if (dpt_sched_cycles_momentum(r->sched))
    dpt_solver_set_momentum(r->solver, dpt_sched_momentum(r->sched));
  dpt_solver_step(r->solver, r->params + r->shard.offset, r->grads + r->shard.offset);
  char cerr[DPT_ERR_LEN];
  if (r->zero) {
    dpt_progress_wait(r->pos.step + 1, "the parameter all-gather");
    int grc = dpt_comm_allgather(r->comm, r->params, m->nparams, cerr, sizeof cerr);
    dpt_progress_done();
    if (grc) {
      snprintf(err, errlen, "%s", cerr);
      return DPT_EMPI;
    }
  }
  info->loss = sums.loss / (double)o->batch;
  info->lr = dpt_sched_lr(r->sched);
  info->grad_norm = norm;
  info->comm_wait = sums.wait;
  info->stop = sums.stop;
  info->stop_ranks = sums.stop_ranks;
  info->samples_per_s = (double)o->batch / (dpt_now() - t0);
  if (o->sched.interval == DPT_SCHED_EVERY_STEP) dpt_sched_step(r->sched, info->loss);
  return DPT_OK;
}

/* Mean loss and accuracy on the test split, in fixed chunks of EVAL_CHUNK samples dealt out
 * round-robin; each chunk's sums travel in their own slots and are added in chunk order, so
 * the result is the same for every W. */
#define EVAL_CHUNK 1024
static int evaluate(run *r, double *loss, double *acc, char *err, size_t errlen) {
  dpt_model *m = r->model;
  int64_t n = r->test.n, nchunks = (n + EVAL_CHUNK - 1) / EVAL_CHUNK;
  double *slot = calloc(2 * (size_t)nchunks + 1, sizeof *slot); /* losses, correct, failure */
  if (dpt_comm_agree(r->comm, slot ? DPT_OK : DPT_ENOMEM)) { /* before any other collective */
    free(slot);
    snprintf(err, errlen, "out of memory for %lld evaluation chunks", (long long)nchunks);
    return DPT_ENOMEM;
  }
  int rc = DPT_OK;
  char ioerr[DPT_ERR_LEN];
  for (int64_t c = r->rank; c < nchunks && !rc; c += r->size) {
    int64_t i = c * EVAL_CHUNK;
    size_t cnt = (size_t)(n - i) < EVAL_CHUNK ? (size_t)(n - i) : EVAL_CHUNK;
    for (size_t j = 0; j < cnt; j++) r->idx[j] = i + (int64_t)j;
    if (dpt_io_dataset_read(r->data, DPT_SPLIT_TEST, r->idx, cnt, r->x,
                            m->wants_labels ? r->labels : NULL, m->wants_labels ? NULL : r->y,
                            ioerr, sizeof ioerr)) {
      snprintf(err, errlen, "%s", ioerr);
      rc = DPT_EIO;
      break;
    }
    int64_t correct = 0;
    rc = m->evaluate(m, r->params, r->x, r->labels, r->y, cnt, &slot[c], &correct, err, errlen);
    slot[nchunks + c] = (double)correct;
  }
  size_t nred = 2 * (size_t)nchunks + 1;
  slot[nred - 1] = rc ? 1 : 0;
  char cerr[DPT_ERR_LEN];
  dpt_progress_wait(r->pos.step, "the evaluation reduction");
  int wrc = dpt_comm_sum(r->comm, slot, (int)nred, cerr, sizeof cerr);
  dpt_progress_done();
  if (wrc) {
    snprintf(err, errlen, "%s", cerr);
    free(slot);
    return DPT_EMPI;
  }
  if (slot[nred - 1] > 0) {
    free(slot);
    return shared_failure(r, rc, err, errlen);
  }
  double l = 0, k = 0;
  for (int64_t c = 0; c < nchunks; c++) l += slot[c], k += slot[nchunks + c];
  free(slot);
  *loss = l / (double)n;
  *acc = m->wants_labels ? k / (double)n : NAN;
  return DPT_OK;
}

/* --- the loop --- */

/* Writes a checkpoint of where the run stands (collective). */
static int save(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  r->pos.world_size = r->size;
  r->pos.zero = r->zero;
  double t = dpt_now();
  dpt_progress_wait(r->pos.step, "the checkpoint write");
  int rc = dpt_ckpt_save_run(o, r->model, r->comm, r->params, r->solver, r->shard.offset,
                             r->sched, &r->pos, &r->fault, err, errlen);
  dpt_progress_done();
  t = dpt_now() - t;
  if (t > r->slowest_ckpt) r->slowest_ckpt = t;
  return rc;
}

/* Ends the run early at the step every rank agreed on, with a checkpoint (unless one was just
 * written at this step). DPT_ESTOPPED and a message saying why and how to continue. */
static int stop_early(run *r, const dpt_train_opts *o, const dpt_step_info *info, int saved,
                      dpt_train_result *res, char *err, size_t errlen) {
  int rc = saved ? DPT_OK : save(r, o, err, errlen);
  if (rc) return rc;
  res->stopped = info->stop;
  res->steps = r->pos.step;
  char why[160];
  if (info->stop == 1)
    snprintf(why, sizeof why, "a stop signal (%s) reached %d of %d ranks",
             o->stop_signals, info->stop_ranks, r->size);
  else
    snprintf(why, sizeof why, "another step and checkpoint would overrun --time-limit %s",
             o->time_limit);
  snprintf(err, errlen, "stopped after step %ld of %ld: %s; checkpoint %s/ckpt-%010ld.h5 "
           "written; the same command with --resume auto continues", r->pos.step,
           r->total_steps, why, o->ckpt_dir, r->pos.step);
  return DPT_ESTOPPED;
}

static int loop(run *r, const dpt_train_opts *o, dpt_train_result *res, char *err,
                size_t errlen) {
  double t0 = dpt_now();
  long first = r->pos.step;
  res->test_loss = res->test_accuracy = NAN;
  for (int e = (int)r->pos.epoch; e < o->epochs && r->pos.step < r->total_steps; e++) {
    shuffle(r->perm, r->train.n, (uint64_t)o->seed, e);
    for (long s = r->pos.step_in_epoch; s < r->steps_per_epoch && r->pos.step < r->total_steps;
         s++) {
      dpt_step_info info = {0};
      if (r->fault.rank == r->rank && !r->fault.in_ckpt && !r->fault.nan &&
          r->fault.step == r->pos.step)
        dpt_fault_kill(NULL);
      double ts = dpt_now();
      int rc = step(r, o, s, &info, err, errlen);
      if (rc) return rc;
      double took = dpt_now() - ts;
      res->step_s += took;
      if (took > r->slowest_step) r->slowest_step = took;
      res->comm_wait_s += info.comm_wait;
      r->pos.step++;
      r->pos.step_in_epoch = s + 1;
      if (info.skipped) res->skipped++;
      else r->pos.epoch_loss += info.loss;
      info.step = r->pos.step;
      info.epoch = e;
      dpt_report_step(r->report, &info);
      int saved = r->saving && o->ckpt_every > 0 && r->pos.step % o->ckpt_every == 0;
      if (saved && (rc = save(r, o, err, errlen))) return rc;
      if (info.stop && r->pos.step < r->total_steps)
        return stop_early(r, o, &info, saved, res, err, errlen);
    }
    if (r->pos.step_in_epoch < r->steps_per_epoch) break; /* stopped by --max-steps */
    dpt_epoch_info ei = {e, r->pos.step, r->pos.epoch_loss / (double)r->steps_per_epoch, NAN,
                         NAN, 0};
    if (r->has_test && (e + 1) % o->eval_every == 0) {
      int rc = evaluate(r, &ei.test_loss, &ei.test_accuracy, err, errlen);
      if (rc) return rc;
      res->test_loss = ei.test_loss;
      res->test_accuracy = ei.test_accuracy;
    }
    if (o->sched.interval == DPT_SCHED_EVERY_EPOCH)
      dpt_sched_step(r->sched, isnan(ei.test_loss) ? ei.train_loss : ei.test_loss);
    ei.lr = dpt_sched_lr(r->sched);
    dpt_report_epoch(r->report, &ei);
    res->epochs = e + 1;
    res->train_loss = ei.train_loss;
    r->pos.epoch = e + 1, r->pos.step_in_epoch = 0, r->pos.epoch_loss = 0;
    if (r->saving && o->ckpt_epochs > 0 && (e + 1) % o->ckpt_epochs == 0) {
      int rc = save(r, o, err, errlen);
      if (rc) return rc;
    }
  }
  if (r->saving && !(o->ckpt_every > 0 && r->pos.step % o->ckpt_every == 0 &&
                     r->pos.step_in_epoch > 0)) {
    int rc = save(r, o, err, errlen);
    if (rc) return rc;
  }
  res->steps = r->pos.step;
  res->seconds = dpt_now() - t0;
  res->samples_per_s = (double)(r->pos.step - first) * (double)o->batch / res->seconds;
  res->state_bytes = dpt_solver_state_bytes(r->solver);
  return DPT_OK;
}

/* How many nodes the ranks are on (ranks that share memory are one node), and the most ranks
 * on one. Collective. */
static void count_nodes(run *r) {
  MPI_Comm local;
  int lrank = 0, lsize = 1;
  if (MPI_Comm_split_type(r->comm, MPI_COMM_TYPE_SHARED, r->rank, MPI_INFO_NULL, &local) ==
      MPI_SUCCESS) {
    MPI_Comm_rank(local, &lrank);
    MPI_Comm_size(local, &lsize);
    MPI_Comm_free(&local);
  }
  int v[2] = {lrank == 0, lsize}, sum[2];
  MPI_Allreduce(&v[0], &sum[0], 1, MPI_INT, MPI_SUM, r->comm);
  MPI_Allreduce(&v[1], &sum[1], 1, MPI_INT, MPI_MAX, r->comm);
  r->nodes = sum[0], r->per_node = sum[1];
}

/* One line on rank 0: who runs, where, and what (the log prefix names the SLURM job). */
static void startup_line(const run *r, const dpt_train_opts *o) {
  dpt_log(DPT_LOG_INFO, "%d rank%s on %d node%s (%d per node), solver %s, scheduler %s, "
          "ZeRO stage %d, %ld steps, run directory %s", r->size, r->size > 1 ? "s" : "",
          r->nodes, r->nodes > 1 ? "s" : "", r->per_node,
          dpt_optim_solver_name(o->solver.kind), dpt_optim_sched_name(o->sched.kind), r->zero,
          r->total_steps, o->run_dir);
}

/* --resume / --init: load before the first step. Every rank reads; all agree. */
static int restore(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  char path[1200] = "";
  int rc = DPT_OK;
  if (o->resume[0]) {
    rc = dpt_ckpt_resolve(o, path, sizeof path, err, errlen);
    if (!rc && path[0])
      rc = dpt_ckpt_load_run(path, o, r->model, r->params, r->solver, r->shard.offset,
                             r->sched, &r->pos, 0, err, errlen);
    if (!rc && path[0] && r->pos.step > r->total_steps) {
      snprintf(err, errlen, "%s: is at step %ld, beyond this run's %ld steps", path,
               r->pos.step, r->total_steps);
      rc = DPT_EINVAL;
    }
    if (!rc && path[0]) dpt_log(DPT_LOG_INFO, "resuming from %s at step %ld", path, r->pos.step);
  }
  if (!rc) rc = dpt_ckpt_check_start(o, path, &r->pos, r->steps_per_epoch, r->size, r->zero,
                                     r->rank, r->saving, err, errlen);
  /* --init starts a run that has nothing to resume (also with --resume auto finding none) */
  if (!rc && (!o->resume[0] || !path[0]) && o->init[0]) {
    rc = dpt_ckpt_load_run(o->init, o, r->model, r->params, r->solver, r->shard.offset,
                           r->sched, &r->pos, 1, err, errlen);
  }
  return rc;
}

int dpt_train_run_model(const dpt_train_opts *o, dpt_model *m, MPI_Comm comm,
                        dpt_train_result *res, float *params_out, char *err, size_t errlen) {
  run r = {0};
  r.comm = comm;
  r.model = m;
  MPI_Comm_rank(comm, &r.rank);
  MPI_Comm_size(comm, &r.size);
  memset(res, 0, sizeof *res);
  int rc = dpt_train_validate(o, err, errlen);
  if (!rc) rc = dpt_fault_from_env(&r.fault, err, errlen);
  r.t_start = dpt_now();
  /* defaults that depend on the run: runs/dpt (runs/slurm-<job> in a SLURM job, the same
   * after a requeue, so that --resume auto finds it), and <run_dir>/ckpt */
  dpt_train_opts eff = *o;
  char job[48];
  dpt_job_id(job, sizeof job);
  if (!eff.run_dir[0])
    snprintf(eff.run_dir, sizeof eff.run_dir, "runs/%s%s", job[0] ? "slurm-" : "dpt", job);
  r.saving = o->ckpt || o->ckpt_every > 0 || o->ckpt_epochs > 0 || o->ckpt_dir[0];
  if (!eff.ckpt_dir[0])
    snprintf(eff.ckpt_dir, sizeof eff.ckpt_dir, "%.1000s/ckpt", eff.run_dir);
  o = &eff;
  unsigned signals = 0;
  if (!rc && (dpt_parse_duration(o->time_limit, &r.time_limit) ||
              dpt_parse_signals(o->stop_signals, &signals, err, errlen)))
    rc = DPT_EINVAL; /* (dpt_train_validate said so already) */
  if (!rc) rc = setup(&r, o, err, errlen);
  if (!rc) rc = restore(&r, o, err, errlen);
  /* the metrics file: continued by a resumed run, started afresh otherwise */
  if (!rc && r.rank == 0)
    rc = dpt_report_open(o, r.total_steps, r.pos.step > 0, &r.report, err, errlen);
  /* set-up: agree, so one rank's bad input stops all, with that rank's message */
  int all = dpt_comm_agree(comm, rc);
  if (all) {
    dpt_comm_share_error(comm, rc, err, errlen);
    teardown(&r);
    return all;
  }
  /* what each rank holds: the memory side of ZeRO, in the log and the metrics file */
  double bytes[2] = {(double)dpt_solver_state_bytes(r.solver), 0};
  bytes[1] = bytes[0];
  MPI_Allreduce(MPI_IN_PLACE, &bytes[0], 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &bytes[1], 1, MPI_DOUBLE, MPI_SUM, comm);
  char label[256];
  if (o->label[0]) snprintf(label, sizeof label, "%s", o->label);
  else if (o->sched.kind == DPT_SCHED_NONE)
    snprintf(label, sizeof label, "%s", dpt_optim_solver_name(o->solver.kind));
  else
    snprintf(label, sizeof label, "%s/%s", dpt_optim_solver_name(o->solver.kind),
             dpt_optim_sched_name(o->sched.kind));
  dpt_report_run(r.report, label, r.size, r.zero, m->nparams, bytes[0], bytes[1]);
  if (o->verbose)
    dpt_log(DPT_LOG_INFO, "%d ranks, ZeRO stage %d: optimizer state %.2f MiB per rank "
            "(largest), %.2f MiB over all ranks, %zu parameters", r.size, r.zero,
            bytes[0] / 1048576.0, bytes[1] / 1048576.0, m->nparams);
  count_nodes(&r);
  if (r.rank == 0) startup_line(&r, o);
  stop_handlers h;
  stop_handlers_install(&h, signals);
  rc = loop(&r, o, res, err, errlen);
  rc = dpt_report_finish(r.report, comm, rc, err, errlen);
  stop_handlers_restore(&h);
  if ((!rc || rc == DPT_ESTOPPED) && params_out) memcpy(params_out, r.params, m->nparams * sizeof(float));
  teardown(&r);
  return rc;
}

int dpt_train_run(const dpt_train_opts *o, MPI_Comm comm, dpt_train_result *res, char *err,
                  size_t errlen) {
  dpt_model m;
  int rc = dpt_mlp_create(o->model, o->activation, o->loss, &m, err, errlen);
  int all = dpt_comm_agree(comm, rc);
  if (all) {
    if (!rc) m.destroy(&m);
    return all;
  }
  rc = dpt_train_run_model(o, &m, comm, res, NULL, err, errlen);
  m.destroy(&m);
  return rc;
}

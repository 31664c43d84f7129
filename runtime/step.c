/* step.c — one training step: read this rank's share of the global batch, forward and
 * backward, reduce the gradient (the bucketed reducer overlapped with backward, or
 * deterministic mode's exact sums), diagnose non-finite values, clip, step the solver on the
 * shard this rank owns, all-gather parameters (ZeRO 1 and 2; stage 3 gathers each layer in the
 * pass, zero.c), step the scheduler. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* --- one step --- */

void dpt_train_shuffle(int64_t *perm, int64_t n, uint64_t seed, int epoch) {
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

void dpt_train_windows(int64_t *starts, int64_t n, int64_t ntokens, int64_t t, uint64_t seed,
                       int epoch, long batch) {
  uint64_t valid = (uint64_t)(ntokens - t); /* a window needs t + 1 tokens */
  for (int64_t g = 0; g < n; g++) {
    uint64_t st = seed;
    st = dpt_splitmix64(&st) ^ (uint64_t)epoch;
    st = dpt_splitmix64(&st) ^ (uint64_t)(g / batch);
    st = dpt_splitmix64(&st) ^ (uint64_t)(g % batch);
    starts[g] = (int64_t)(dpt_splitmix64(&st) % valid);
  }
}

/* Reads n training samples by index into r->x and r->labels or r->y (a token dataset: the
 * windows starting at those positions, and their next tokens as labels). */
static int read_samples(run *r, const int64_t *idx, size_t n, char *err, size_t errlen) {
  dpt_model *m = r->model;
  char ioerr[DPT_ERR_LEN];
  memcpy(r->idx, idx, n * sizeof *r->idx);
  if (r->tokens) {
    int rc = dpt_io_tokens_read(r->tokens, DPT_SPLIT_TRAIN, r->idx, n, (int64_t)r->lps, r->x,
                                r->labels, ioerr, sizeof ioerr);
    if (rc) snprintf(err, errlen, "%s", ioerr);
    return rc ? DPT_EIO : DPT_OK;
  }
  if (dpt_io_dataset_read(r->data, DPT_SPLIT_TRAIN, r->idx, n, r->x,
                          m->wants_labels ? r->labels : NULL, m->wants_labels ? NULL : r->y, ioerr,
                          sizeof ioerr)) {
    snprintf(err, errlen, "%s", ioerr);
    return DPT_EIO;
  }
  return DPT_OK;
}

/* DPT_FAULT=nan:RANK@STEP (tests): a NaN in this rank's input of that step. */
static void inject_nan(run *r) {
  if (r->fault.nan && r->fault.rank == r->rank && r->fault.step == r->pos.step) r->x[0] = NAN;
}

/* --- the pass: batch statistics over ranks, per-segment gradients --- */

/* dpt_layer_pass.batch_sum: the rows of every rank summed in global order (dpt_comm_sum_rows).
 * A failure is kept in the run and returned after the pass (the layer cannot stop). */
static void batch_sum(void *ctx, double *v, size_t len, int nseg) {
  run *r = ctx;
  size_t need = (size_t)r->size * (size_t)nseg * len;
  if (r->rows_rc) {
    memset(v, 0, len * sizeof *v);
    return;
  }
  if (need > r->rows_cap) {
    double *w = realloc(r->rows_work, need * sizeof *w);
    if (!w) {
      r->rows_rc = DPT_ENOMEM;
      snprintf(r->rows_err, sizeof r->rows_err, "out of memory for batch statistics");
      memset(v, 0, len * sizeof *v);
      return;
    }
    r->rows_work = w, r->rows_cap = need;
  }
  dpt_timing_wait(&r->timing, DPT_WAIT_STATS, r->pos.step + 1, "the batch statistics reduction");
  int rc = dpt_comm_sum_rows(r->comm, v, len, nseg, r->rows_work, r->rows_err, sizeof r->rows_err);
  dpt_timing_done(&r->timing);
  if (rc) r->rows_rc = rc, memset(v, 0, len * sizeof *v);
}

/* dpt_layer_pass.seg_grad in deterministic mode: each micro-shard's range into the exact sums */
static void seg_grad(void *ctx, int seg, size_t offset, size_t len, const float *g) {
  (void)seg;
  dpt_reducer_exact_add_range(ctx, offset, len, g);
}

/* dpt_layer_pass.tie_grad: a tied use's range, kept apart until its owner's span comes */
static void tie_grad(void *ctx, int seg, size_t offset, size_t len, const float *g) {
  (void)seg;
  dpt_reducer_exact_add_early(ctx, offset, len, g);
}

/* The reducer's ready callback, through the run: timing.c sees when the first bucket starts. */
static void grad_ready(void *ctx, size_t offset, size_t len) {
  run *r = ctx;
  dpt_timing_ready(&r->timing, offset, len);
  dpt_reducer_ready(r->reducer, offset, len);
  dpt_timing_ready_done(&r->timing);
}

/* Stage 3: a rank that has no batch to compute (its read failed, or its pass stopped before
 * forward) still runs the pass, on zeros, so that it takes part in every collective its peers
 * make inside theirs (layer gathers interleaved with the gradient's hand-over, batch
 * statistics, the layers' exact sums) in their order; the step then fails on every rank with
 * its message. That pass is over one sample per segment: the same collectives whatever the
 * rows, and the least memory, so that it runs where the batch's activations could not be
 * allocated (set-up made a sample's: train.c). */
static void on_zeros(run *r, size_t n) {
  const dpt_model *m = r->model;
  memset(r->x, 0, n * (size_t)m->in_features * sizeof *r->x);
  memset(r->y, 0, n * (size_t)m->out_features * sizeof *r->y);
  memset(r->labels, 0, n * r->lps * sizeof *r->labels);
}

/* Forward and backward on the n samples in r->x: loss_grad_pass when the model has it (the
 * pass says where the samples are in the step's global batch), else loss_grad. zeros: this is
 * on_zeros' pass (never redone). */
static int model_pass(run *r, const dpt_train_opts *o, int64_t sample0, size_t n, int nseg,
                      int exact, dpt_grad_ready_fn ready, double *loss_sum, double *seg_loss,
                      int zeros, char *err, size_t errlen) {
  dpt_model *m = r->model;
  int64_t correct = 0;
  float scale = (float)(1.0 / (double)o->batch);
  if (!m->loss_grad_pass) /* (not in stage 3: zero.c refuses it) */
    return m->loss_grad(m, r->params, r->grads, scale, r->x, r->labels, r->y, n, loss_sum, &correct,
                        ready, r, err, errlen);
  dpt_layer_pass p = {.train = 1,
                      .seed = (uint64_t)o->seed,
                      .step = r->pos.step,
                      .sample0 = sample0,
                      .nseg = nseg,
                      .seg = n / (size_t)nseg,
                      .batch_sum = r->size > 1 || exact ? batch_sum : NULL,
                      .batch_ctx = r,
                      .seg_grad = exact ? seg_grad : NULL,
                      .tie_grad = exact ? tie_grad : NULL,
                      .seg_ctx = r->reducer,
                      .ready = ready,
                      .ready_ctx = r,
                      .seg_loss = seg_loss};
  if (r->stream && !exact) /* stages 2 and 3: each layer's gradient to the reducer (zero.c) */
    p.grad_at = dpt_zero_grad_at, p.ready = dpt_zero_ready, p.ready_ctx = r;
  if (r->zero == 3) /* each layer's parameters gathered (zero.c) */
    p.params_at = dpt_zero_params_at, p.params_ctx = r;
  r->rows_rc = DPT_OK;
  dpt_zero_gather_begin(r, 1);
  int rc = m->loss_grad_pass(m, r->params, r->grads, scale, r->x, r->labels, r->y, n, loss_sum,
                             &correct, &p, err, errlen);
  if (rc && r->zero == 3 && r->gpos < 0 && !zeros) { /* failed before forward: see on_zeros */
    double ignored = 0;
    char ierr[DPT_ERR_LEN];
    on_zeros(r, (size_t)nseg);
    model_pass(r, o, sample0, (size_t)nseg, nseg, exact, ready, &ignored, seg_loss, 1, ierr,
               sizeof ierr);
  }
  dpt_zero_gather_end(r);
  if (!rc && r->rows_rc) {
    snprintf(err, errlen, "%s", r->rows_err);
    rc = r->rows_rc;
  }
  if (rc == DPT_ENOMEM && !zeros) { /* the batch's activations: the stage's line, and the way out */
    char what[DPT_ERR_LEN + 96];
    snprintf(what, sizeof what, "step %ld's pass over %zu samples on rank %d (%s)", r->pos.step + 1,
             n, r->rank, err);
    dpt_zero_oom(r, o, what, err, errlen);
    size_t len = strlen(err);
    snprintf(err + len, errlen - len, "; --accum K computes a rank's share in K parts");
  }
  return rc;
}

/* Forward and backward over this rank's share of global step `s`; adds into r->grads. */
static int compute(run *r, const dpt_train_opts *o, long s, int reduce, double *loss_sum, char *err,
                   size_t errlen) {
  size_t per_rank = (size_t)(o->batch / r->size);
  const int64_t *mine = r->perm + (size_t)s * (size_t)o->batch + (size_t)r->rank * per_rank;
  for (int k = 0; k < o->accum; k++) {
    int rc = read_samples(r, mine + (size_t)k * r->micro, r->micro, err, errlen);
    int from = k; /* the first micro-batch whose pass the peers make and this rank has not */
    if (!rc) {
      inject_nan(r);
      int last = k == o->accum - 1;
      double part = 0;
      rc = model_pass(r, o, (int64_t)(r->rank * per_rank + (size_t)k * r->micro), r->micro, 1, 0,
                      last && reduce ? grad_ready : NULL, &part, NULL, 0, err, errlen);
      if (!rc) {
        *loss_sum += part;
        continue;
      }
      from = k + 1; /* (this one's collectives: model_pass made them, on zeros if need be) */
    }
    for (int j = from; r->zero == 3 && j < o->accum; j++) { /* the peers' passes: on zeros */
      double ignored = 0;
      char ierr[DPT_ERR_LEN];
      on_zeros(r, 1);
      model_pass(r, o, (int64_t)(r->rank * per_rank + (size_t)j * r->micro), 1, 1, 0,
                 j == o->accum - 1 && reduce ? grad_ready : NULL, &ignored, NULL, 1, ierr,
                 sizeof ierr);
    }
    return rc;
  }
  return DPT_OK;
}

/* The model's buffers (running statistics) saved before a step and put back when the step is
 * redone or skipped, so that they see each step once. */
static void buffers_save(run *r) {
  if (r->buffers_saved)
    memcpy(r->buffers_saved, r->model->buffer_data, r->model->nbuffer_floats * sizeof(float));
}
static void buffers_restore(run *r) {
  if (r->buffers_saved)
    memcpy(r->model->buffer_data, r->buffers_saved, r->model->nbuffer_floats * sizeof(float));
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
  double loss;          /* summed over the global batch */
  double sumsq;         /* squared L2 norm of the reduced gradient */
  double wait;          /* seconds this rank waited for the gradient */
  int stop, stop_ranks; /* see dpt_step_info */
  int nonfinite;        /* some rank's loss or gradient is NaN/Inf (all ranks agree) */
  int local_bad_loss;   /* this rank's own loss is */
} step_sums;

int dpt_train_shared_failure(run *r, int rc, char *err, size_t errlen) {
  return dpt_comm_agree_error(r->comm, rc, err, errlen);
}

/* Default mode: the bucketed reducer (overlapped with backward, rank-order sums) leaves this
 * rank's part of the averaged gradient in r->grads. */
static int reduce_buckets(run *r, const dpt_train_opts *o, long s, step_sums *out, char *err,
                          size_t errlen) {
  double loss = 0;
  if (!r->stream) memset(r->grads, 0, r->model->nparams * sizeof(float));
  int rc = compute(r, o, s, 1, &loss, err, errlen);
  dpt_timing_backward_done(&r->timing);
  /* Even a failed rank joins the reduction (with what it has), then says so below. */
  char cerr[DPT_ERR_LEN];
  dpt_timing_wait(&r->timing, DPT_WAIT_GRAD, r->pos.step + 1, "the gradient reduction");
  int wrc = dpt_reducer_wait(r->reducer, &out->wait, cerr, sizeof cerr);
  dpt_timing_done(&r->timing);
  if (wrc) {
    snprintf(err, errlen, "%s", cerr);
    return DPT_EMPI;
  }
  /* one reduction carries the loss, any rank's failure, the squared gradient norm of each
   * rank's shard (ranks sum disjoint shards of the same reduced gradient), and the ranks that
   * want to stop after this step (a signal; the time limit): all see the same sums, so all
   * stop at the same step whichever ranks the signal reached */
  double red[5] = {loss, rc ? 1.0 : 0.0, sum_squares(r->gown, r->own.len),
                   dpt_stop_signal_pending() ? 1.0 : 0.0, dpt_out_of_time(r, o) ? 1.0 : 0.0};
  dpt_timing_wait(&r->timing, DPT_WAIT_SMALL, r->pos.step + 1,
                  "the step's loss and norm reduction");
  wrc = dpt_comm_sum(r->comm, red, 5, cerr, sizeof cerr);
  dpt_timing_done(&r->timing);
  if (wrc) {
    snprintf(err, errlen, "%s", cerr);
    return DPT_EMPI;
  }
  if (red[1] > 0) return dpt_train_shared_failure(r, rc, err, errlen);
  out->loss = red[0], out->sumsq = red[2];
  out->local_bad_loss = !isfinite(loss);
  out->nonfinite = !isfinite(red[0]) || !isfinite(red[2]);
  out->stop = red[3] > 0 ? 1 : red[4] > 0 ? 2 : 0;
  out->stop_ranks = (int)(red[3] > 0 ? red[3] : red[4]);
  return DPT_OK;
}

/* Deterministic mode: this rank's micro-shards, each computed alone, summed exactly in fixed
 * point with every other rank's (the reducer's DPT_REDUCE_EXACT, comm/reduce_exact.c), which
 * also gives a norm that does not depend on how the gradient is split. Losses travel in one
 * slot per micro-shard and are added in micro-shard order. Nothing here depends on W. */
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
    buffers_restore(r); /* a redone pass sees the statistics the first one saw */
    dpt_reducer_exact_begin(r->reducer);
    if (m->loss_grad_pass) {
      /* all of this rank's micro-shards in one pass, each a segment: layers run per segment
       * (the shapes of one micro-shard, whatever W), batch statistics are summed over all
       * segments of all ranks in global order, each segment's gradient goes to the exact sums
       * alone, and each segment's loss to its own slot */
      size_t first = (size_t)r->rank * (size_t)per * r->micro;
      double total = 0;
      rc = read_samples(r, batch + first, (size_t)per * r->micro, err, errlen);
      if (!rc) inject_nan(r);
      if (!rc) {
        rc = model_pass(r, o, (int64_t)first, (size_t)per * r->micro, per, 1, NULL, &total,
                        &slot[r->rank * per], 0, err, errlen);
      } else if (r->zero == 3) { /* no batch: the peers' pass on zeros (on_zeros) */
        double ignored = 0, *seg = calloc((size_t)per, sizeof *seg);
        char ierr[DPT_ERR_LEN];
        on_zeros(r, (size_t)per);
        model_pass(r, o, (int64_t)first, (size_t)per, per, 1, NULL, &ignored, seg, 1, ierr,
                   sizeof ierr);
        free(seg);
      } else if (r->stream) { /* no pass: join the peers' collectives of one (zero.c) */
        dpt_zero_exact_join(r, per);
      }
    }
    for (int k = r->rank * per; !m->loss_grad_pass && k < (r->rank + 1) * per && !rc; k++) {
      memset(r->grads, 0, m->nparams * sizeof(float));
      rc = read_samples(r, batch + (size_t)k * r->micro, r->micro, err, errlen);
      if (!rc) inject_nan(r);
      int64_t correct = 0;
      if (!rc)
        rc = m->loss_grad(m, r->params, r->grads, (float)(1.0 / (double)o->batch), r->x, r->labels,
                          r->y, r->micro, &slot[k], &correct, NULL, NULL, err, errlen);
      if (!rc) dpt_reducer_exact_add(r->reducer, r->grads);
    }
    slot[shards] = rc ? 1 : 0;
    slot[shards + 1] = dpt_stop_signal_pending() ? 1 : 0;
    slot[shards + 2] = dpt_out_of_time(r, o) ? 1 : 0;
    out->local_bad_loss = 0;
    for (int k = r->rank * per; k < (r->rank + 1) * per; k++)
      out->local_bad_loss |= !isfinite(slot[k]);
    /* one contributor per loss slot (the others add zeros), small counts: exact sums */
    dpt_timing_wait(&r->timing, DPT_WAIT_SMALL, r->pos.step + 1, "the step's loss reduction");
    int wrc = dpt_comm_sum(r->comm, slot, shards + 3, cerr, sizeof cerr);
    dpt_timing_done(&r->timing);
    if (wrc) {
      snprintf(err, errlen, "%s", cerr);
      return DPT_EMPI;
    }
    if (slot[shards] > 0) return dpt_train_shared_failure(r, rc, err, errlen);
    int nonfinite = 0;
    dpt_timing_wait(&r->timing, DPT_WAIT_SMALL, r->pos.step + 1, "the gradient maxima reduction");
    redo = dpt_reducer_exact_check(r->reducer, &nonfinite, err, errlen);
    dpt_timing_done(&r->timing);
    if (redo < 0) return redo;
    if (nonfinite) { /* the caller names it (or skips the step) */
      out->nonfinite = 1;
      out->loss = NAN;
      return DPT_OK;
    }
  } while (redo);
  /* ZeRO stages 1 and 2 need only this rank's shard of the gradient (the reducer's shard_only) */
  dpt_timing_wait(&r->timing, DPT_WAIT_GRAD, r->pos.step + 1, "the exact gradient reduction");
  rc = dpt_reducer_wait(r->reducer, &out->wait, err, errlen);
  dpt_timing_done(&r->timing);
  if (rc) return rc;
  out->sumsq = dpt_reducer_exact_sumsq(r->reducer);
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
    t = dpt_reducer_exact_local_bad(r->reducer);
  } else {
    double loss = 0;
    char ignored[DPT_ERR_LEN];
    /* stage 2 has no whole gradient: a temporary one for this diagnosis */
    int stream = r->stream;
    if (stream) r->grads = calloc(m->nparams ? m->nparams : 1, sizeof(float)), r->stream = 0;
    t = -1;
    if (r->grads) {
      memset(r->grads, 0, m->nparams * sizeof(float));
      compute(r, o, s, 0, &loss, ignored, sizeof ignored);
      t = first_bad_tensor(m, r->grads, 0, m->nparams);
    }
    if (stream) free(r->grads), r->grads = NULL, r->stream = 1;
    bad_loss |= !isfinite(loss);
  }
  /* the lowest rank that found one, and its tensor (NONE: its loss): rank << 31 | tensor, one
   * minimum over ranks; ranks and tensor indices are ints, so 31 bits each hold any */
  const int64_t NONE = INT_MAX;
  int64_t first = bad_loss || t >= 0 ? (int64_t)r->rank << 31 | (t >= 0 ? t : NONE) : INT64_MAX;
  int mrc = dpt_comm_min_int64(r->comm, &first, 1, err, errlen);
  if (mrc) return mrc;
  int who = (int)(first >> 31), what = (int)(first & NONE);
  const char *tensor = what < m->ntensors ? m->tensors[what].name : "?";
  if (first == INT64_MAX)
    snprintf(err, errlen, "step %ld: the gradient norm became non-finite", r->pos.step + 1);
  else if (what < m->ntensors)
    snprintf(err, errlen,
             "step %ld: non-finite values in the gradient of %s on rank %d (its "
             "share of the batch)",
             r->pos.step + 1, tensor, who);
  else
    snprintf(err, errlen,
             "step %ld: the loss became non-finite on rank %d (its share of the "
             "batch)",
             r->pos.step + 1, who);
  snprintf(err + strlen(err), errlen - strlen(err),
           "; nothing was applied. Try a smaller --lr, --clip-norm, or --on-nonfinite skip");
  return DPT_ENONFINITE;
}

int dpt_train_step(run *r, const dpt_train_opts *o, long s, dpt_step_info *info, char *err,
                   size_t errlen) {
  dpt_model *m = r->model;
  double t0 = dpt_now();
  step_sums sums = {0};
  dpt_timing_step_begin(&r->timing, o->overlap && !r->det, m->nparams, dpt_train_bucket_floats(o));
  buffers_save(r);
  int rc = r->det ? reduce_exact(r, o, s, &sums, err, errlen)
                  : reduce_buckets(r, o, s, &sums, err, errlen);
  if (rc) return rc;
  double norm = sqrt(sums.sumsq);
  if (sums.nonfinite) {
    if (strcmp(o->on_nonfinite, "skip")) return nonfinite_error(r, o, s, &sums, err, errlen);
    /* skipped: nothing reaches the parameters, the solver's state or the model's buffers */
    buffers_restore(r);
    info->skipped = 1;
    info->loss = info->grad_norm = NAN;
    info->lr = dpt_sched_lr(r->sched);
    info->stop = sums.stop, info->stop_ranks = sums.stop_ranks;
    dpt_timing_step_end(&r->timing, r->pos.step + 1, &info->timing);
    info->comm_wait = info->timing.wait_total;
    info->samples_per_s = (double)o->batch / (dpt_now() - t0);
    return DPT_OK;
  }
  if (o->clip_norm > 0) { /* torch.nn.utils.clip_grad_norm_: coef = max/(norm+1e-6), <= 1 */
    double coef = o->clip_norm / (norm + 1e-6);
    if (coef < 1) {
      float c = (float)coef;
      float *g = r->gshard; /* the only part reduced and stepped */
      for (size_t i = 0; i < r->shard.len; i++) g[i] *= c;
    }
  }
  dpt_solver_set_lr(r->solver, dpt_sched_lr(r->sched));
  if (dpt_sched_cycles_momentum(r->sched))
    dpt_solver_set_momentum(r->solver, dpt_sched_momentum(r->sched));
  dpt_solver_step(r->solver, r->pshard, r->gshard);
  char cerr[DPT_ERR_LEN];
  if (r->zero == 1 || r->zero == 2) { /* (stage 3 gathers each layer when it needs it) */
    dpt_timing_wait(&r->timing, DPT_WAIT_GATHER, r->pos.step + 1, "the parameter all-gather");
    int grc = dpt_comm_allgather(r->comm, r->params, m->nparams, cerr, sizeof cerr);
    dpt_timing_done(&r->timing);
    if (grc) {
      snprintf(err, errlen, "%s", cerr);
      return DPT_EMPI;
    }
  }
  info->loss = sums.loss / (double)o->batch;
  info->lr = dpt_sched_lr(r->sched);
  info->grad_norm = norm;
  info->stop = sums.stop;
  info->stop_ranks = sums.stop_ranks;
  dpt_timing_step_end(&r->timing, r->pos.step + 1, &info->timing);
  info->comm_wait = info->timing.wait_total;
  info->samples_per_s = (double)o->batch / (dpt_now() - t0);
  if (o->sched.interval == DPT_SCHED_EVERY_STEP) dpt_sched_step(r->sched, info->loss);
  return DPT_OK;
}

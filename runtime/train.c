/* train.c — a training run from start to end: check the inputs and set up (data, model,
 * solver, scheduler, reducer), restore a checkpoint, then the loop — for each epoch shuffle,
 * for each step dpt_train_step (step.c) and the checkpoints it calls for, evaluate
 * (eval.c) — stopping early when a signal or the time limit says so (stop.c); teardown.
 * The invariants every trainer file keeps are in train_internal.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

static float *alloc_floats(size_t n) {
  size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
  float *p = aligned_alloc(64, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

/* --- set-up: every check that can fail on bad input happens here, before any step --- */

static int check_data(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  dpt_model *m = r->model;
  int64_t lps = m->labels_per_sample > 1 ? m->labels_per_sample : 1;
  if (r->tokens && (!m->wants_labels || lps != o->context)) {
    snprintf(err, errlen,
             "%s: a token dataset read in windows of --context %ld needs a sequence model with %ld "
             "labels per sample (such as gpt:tiny); model %s has %lld",
             o->data, o->context, o->context, o->model, (long long)lps);
    return DPT_EINVAL;
  }
  if (!r->tokens && o->context > 0) {
    snprintf(err, errlen,
             "--context %ld: %s is not a token dataset (dpt data import-text makes one)",
             o->context, o->data);
    return DPT_EINVAL;
  }
  if (!r->tokens && lps > 1) {
    snprintf(err, errlen,
             "model %s predicts %lld positions per sample: it needs a token dataset (dpt data "
             "import-text) and --context %lld",
             o->model, (long long)lps, (long long)lps);
    return DPT_EINVAL;
  }
  if (r->train.features != m->in_features) {
    snprintf(err, errlen,
             "%s: /train/x has %lld features per sample but model %s takes %lld inputs", o->data,
             (long long)r->train.features, o->model, (long long)m->in_features);
    return DPT_EINVAL;
  }
  if (m->wants_labels && !r->train.y_labels) {
    snprintf(err, errlen,
             "%s: /train/y holds float targets but loss '%s' needs integer class labels", o->data,
             o->loss);
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
  if (o->deterministic && o->micro_shards > dpt_reducer_exact_max_shards()) {
    snprintf(err, errlen,
             "--micro-shards %d: at most %d (the fixed-point sums must not "
             "overflow)",
             o->micro_shards, dpt_reducer_exact_max_shards());
    return DPT_EINVAL;
  }
  if (o->deterministic && o->accum != 1) {
    snprintf(err, errlen,
             "--accum %d: not used with --deterministic, where each of the "
             "--micro-shards is computed on its own; leave it at 1",
             o->accum);
    return DPT_EINVAL;
  }
  if (o->batch > r->train.n) {
    snprintf(err, errlen, "--batch %ld is larger than the %lld training samples in %s", o->batch,
             (long long)r->train.n, o->data);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

/* A split of a token dataset as samples: n windows of T tokens (each with T + 1 read). */
static void window_info(dpt_split_info *s, int64_t windows, int64_t t, int64_t v) {
  memset(s, 0, sizeof *s);
  s->n = windows;
  s->features = t;
  s->x_rank = 2, s->x_dims[0] = windows, s->x_dims[1] = t;
  s->sample.rank = 1, s->sample.dims[0] = t;
  s->y_labels = 1, s->y_width = 1, s->scale = 1;
  s->num_classes = v, s->label_min = 0, s->label_max = v - 1;
}

/* A token dataset: the training split gives (N - 1) / T windows an epoch (as many tokens as the
 * text, drawn at random positions), the test split its consecutive windows. A split too short
 * for --context is an error naming the file. */
static int open_tokens(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  char ioerr[DPT_ERR_LEN];
  int rc = dpt_io_tokens_open(o->data, &r->tokens, ioerr, sizeof ioerr);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return rc;
  }
  int64_t t = o->context, v = dpt_io_tokens_vocab(r->tokens, NULL, NULL);
  int64_t ntr = dpt_io_tokens_count(r->tokens, DPT_SPLIT_TRAIN);
  int64_t nte = dpt_io_tokens_count(r->tokens, DPT_SPLIT_TEST);
  if (t < 1) {
    snprintf(err, errlen, "%s is a token dataset: give --context T (tokens per window)", o->data);
    return DPT_EINVAL;
  }
  for (int s = 0; s < 2; s++) {
    int64_t n = s ? nte : ntr;
    if ((s == 0 || (n > 0 && o->eval_every > 0)) && n < t + 1) {
      snprintf(err, errlen,
               "%s: the %s split has %lld tokens, too few for --context %lld (a window needs "
               "T + 1 = %lld)",
               o->data, s ? "held-out" : "training", (long long)n, (long long)t,
               (long long)(t + 1));
      return DPT_EINVAL;
    }
  }
  window_info(&r->train, (ntr - 1) / t, t, v);
  r->has_test = o->eval_every > 0 && nte > 0;
  if (r->has_test) window_info(&r->test, (nte - 1) / t, t, v);
  r->lps = (size_t)t;
  return DPT_OK;
}

/* Windows in an evaluation chunk of a token dataset: a sequence model's activations are large
 * ([T, C] and [H, T, T] per sample), so chunks are small. */
#define TOKEN_EVAL_CHUNK 16
/* Samples in an evaluation chunk otherwise: at most 1024, and no more than keep the model's
 * activations (floats_per_sample, when it says) within EVAL_BYTES, but never fewer than a
 * training micro-batch (whose buffers exist anyway) or 16. A CNN's 10,000 test images in
 * chunks of 1024 took 330 MB of activations on top of training's 170 MB. */
#define EVAL_CHUNK 1024
#define EVAL_BYTES ((size_t)64 << 20)
static size_t eval_chunk_for(const dpt_model *m, size_t micro) {
  size_t chunk = EVAL_CHUNK;
  if (m->floats_per_sample) {
    size_t fit = EVAL_BYTES / (m->floats_per_sample * sizeof(float));
    if (fit < chunk) chunk = fit;
  }
  if (chunk < micro) chunk = micro;
  return chunk < 16 ? 16 : chunk;
}

static int setup(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  char ioerr[DPT_ERR_LEN];
  int rc = DPT_OK;
  r->lps = 1;
  r->eval_chunk = EVAL_CHUNK; /* (sized for the model below) */
  if (dpt_io_is_tokens(o->data)) {
    if ((rc = open_tokens(r, o, err, errlen))) return rc;
    r->eval_chunk = TOKEN_EVAL_CHUNK;
  } else {
    rc = dpt_io_dataset_open(o->data, (size_t)(o->cache_mb * 1048576.0), &r->data, ioerr,
                             sizeof ioerr);
    if (rc) {
      snprintf(err, errlen, "%s", ioerr);
      return rc;
    }
    dpt_io_dataset_info(r->data, DPT_SPLIT_TRAIN, &r->train);
    r->has_test = o->eval_every > 0 && dpt_io_dataset_info(r->data, DPT_SPLIT_TEST, &r->test) == 0;
  }
  if ((rc = check_data(r, o, err, errlen))) return rc;

  dpt_model *m = r->model;
  r->zero = o->zero < 0 ? (r->size > 1) : o->zero;
  r->own = dpt_comm_shard(m->nparams, r->rank, r->size);
  r->shard = r->zero ? r->own : (dpt_range){0, m->nparams};
  if ((rc = dpt_zero_alloc(r, o, err, errlen))) return rc; /* parameters and gradient */
  r->micro = o->deterministic ? (size_t)(o->batch / o->micro_shards)
                              : (size_t)(o->batch / r->size / o->accum);
  if (!r->tokens) r->eval_chunk = eval_chunk_for(m, r->micro);
  size_t eval_chunk = r->eval_chunk;
  /* deterministic mode reads a rank's micro-shards together (one pass of segments) */
  size_t share = o->deterministic ? (size_t)(o->batch / r->size) : r->micro;
  size_t rows = share > eval_chunk ? share : eval_chunk;
  r->perm = malloc((size_t)r->train.n * sizeof *r->perm);
  r->idx = malloc(rows * sizeof *r->idx);
  r->x = alloc_floats(rows * (size_t)m->in_features);
  r->y = alloc_floats(rows * (size_t)m->out_features);
  r->labels = malloc(rows * r->lps * sizeof *r->labels);
  if (m->nbuffer_floats) r->buffers_saved = alloc_floats(m->nbuffer_floats);
  if (!r->perm || !r->idx || !r->x || !r->y || !r->labels ||
      (m->nbuffer_floats && !r->buffers_saved)) {
    snprintf(err, errlen, "out of memory for %zu parameters and batch buffers", m->nparams);
    return DPT_ENOMEM;
  }
  /* (stage 3: dpt_zero_alloc initialised the shard) */
  if (r->zero != 3 && (rc = m->init(m, r->params, (uint64_t)o->seed, err, errlen))) return rc;

  char oerr[DPT_ERR_LEN];
  if ((rc = dpt_solver_create(&o->solver, r->shard.len, &r->solver, oerr, sizeof oerr))) {
    if (rc == DPT_ENOMEM) return dpt_zero_oom(r, o, "the optimizer state", err, errlen);
    snprintf(err, errlen, "%s", oerr);
    return DPT_EINVAL;
  }
  r->steps_per_epoch = (long)(r->train.n / o->batch);
  r->total_steps = r->steps_per_epoch * o->epochs;
  if (o->max_steps > 0 && o->max_steps < r->total_steps) r->total_steps = o->max_steps;
  long sched_steps = o->sched.interval == DPT_SCHED_EVERY_STEP ? r->total_steps : o->epochs;
  if (dpt_sched_create(&o->sched, o->solver.lr, dpt_solver_has_momentum(r->solver),
                       dpt_solver_momentum(r->solver), sched_steps, &r->sched, oerr, sizeof oerr)) {
    snprintf(err, errlen, "%s", oerr);
    return DPT_EINVAL;
  }
  r->pos.grad_scale = malloc((size_t)m->ntensors * sizeof *r->pos.grad_scale);
  if (!r->pos.grad_scale) {
    snprintf(err, errlen, "out of memory for %d tensors' scales", m->ntensors);
    return DPT_ENOMEM;
  }
  for (int t = 0; t < m->ntensors; t++) r->pos.grad_scale[t] = NAN;
  if (o->deterministic) { /* exact sums of micro-shards (comm/reduce_exact.c) */
    r->det = 1;
    r->slots = calloc((size_t)o->micro_shards + 3, sizeof *r->slots);
    if (!r->slots) {
      snprintf(err, errlen, "out of memory for the deterministic mode's %d micro-shards",
               o->micro_shards);
      return DPT_ENOMEM;
    }
  }
  /* the model's working buffers that do not depend on the batch (a net's: one layer's gradient,
   * the activations' tables), made by a pass over no samples; then the BLAS library's buffer.
   * Both would otherwise be allocated inside the first step, where a failure cannot stop every
   * rank with its line (OpenBLAS's does not fail at all: zero.c) */
  if (m->loss_grad_pass) {
    dpt_layer_pass none = {.train = 1, .nseg = 1};
    double ignored = 0;
    int64_t correct = 0;
    char merr[DPT_ERR_LEN];
    rc = m->loss_grad_pass(m, r->params, r->grads, 1.0f, r->x, r->labels, r->y, 0, &ignored,
                           &correct, &none, merr, sizeof merr);
    if (rc == DPT_ENOMEM) {
      char what[DPT_ERR_LEN + 64];
      snprintf(what, sizeof what, "the model's working buffers (%s)", merr);
      return dpt_zero_oom(r, o, what, err, errlen);
    }
    if (rc) return snprintf(err, errlen, "%s", merr), rc;
  }
  return dpt_zero_blas_reserve(r, o, err, errlen);
}

/* The gradient reducer: rank order, or exact sums in deterministic mode. Collective (it makes
 * a communicator), so called once every rank's set-up succeeded. */
static int make_reducer(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  dpt_model *m = r->model;
  dpt_reducer_params rp = dpt_reducer_defaults();
  rp.bucket_bytes = (size_t)(o->bucket_mb * 1048576.0);
  rp.overlap = o->overlap;
  /* stages 1 and 2 reduce-scatter: a rank steps only its shard, so all-gathering the
   * reduced gradient (as DDP under ZeroRedundancyOptimizer does) would be wasted traffic */
  rp.shard_only = r->zero >= 1;
  if (dpt_reducer_algorithm_parse(o->reduce, &rp.algorithm, err, errlen) ||
      dpt_reducer_compress_parse(o->compress, &rp.compress, &rp.compress_rank, err, errlen))
    return DPT_EINVAL;
  rp.compress_start = o->compress_start;
  size_t *ranges = NULL;
  if (r->det || rp.compress == DPT_COMPRESS_POWERSGD) { /* over the model's tensors */
    ranges = malloc(3 * ((size_t)m->ntensors + 1) * sizeof *ranges);
    if (!ranges) {
      snprintf(err, errlen, "out of memory for %d tensor ranges", m->ntensors);
      return DPT_ENOMEM;
    }
    for (int t = 0; t < m->ntensors; t++) {
      ranges[t] = m->tensors[t].offset;
      ranges[m->ntensors + t] = m->tensors[t].numel;
      ranges[2 * m->ntensors + t] = m->tensors[t].rank > 1 ? (size_t)m->tensors[t].dims[0] : 1;
    }
    rp.ntensors = m->ntensors; /* PowerSGD: matrices dims[0] x the rest, torch's view */
    rp.tensor_offset = ranges;
    rp.tensor_len = ranges + m->ntensors;
    rp.tensor_rows = ranges + 2 * m->ntensors;
  }
  if (r->det) { /* exact sums of micro-shards */
    rp.algorithm = DPT_REDUCE_EXACT;
    rp.micro_shards = o->micro_shards;
    rp.scales = r->pos.grad_scale;
  }
  /* stage 2 streamed: the reducer holds buckets, the run only its shard (zero.c) */
  rp.shard_buf = r->stream;
  size_t *starts = NULL; /* streamed: buckets cut at the layers' edges, so each is lent whole */
  if (r->stream && !r->det) {
    rp.algorithm = DPT_REDUCE_RANK_ORDER;
    if (m->nlayers && (starts = malloc((size_t)m->nlayers * sizeof *starts))) {
      for (int l = 0; l < m->nlayers; l++) starts[l] = m->layers[l].offset;
      rp.nspans = m->nlayers, rp.span_offset = starts;
    }
  }
  int rc = dpt_reducer_create(r->comm, r->stream ? r->gshard : r->grads, m->nparams, &rp,
                              &r->reducer, err, errlen);
  free(ranges);
  free(starts);
  if (rc == DPT_ENOMEM) return dpt_zero_oom(r, o, "the gradient reduction's buffers", err, errlen);
  if (!rc && rp.compress == DPT_COMPRESS_POWERSGD)
    dpt_log(DPT_LOG_INFO,
            "gradients compressed: PowerSGD rank %d after %ld plain steps, error feedback "
            "(not checkpointed: a resume starts it afresh)",
            rp.compress_rank, rp.compress_start);
  else if (!rc && rp.compress != DPT_COMPRESS_NONE)
    dpt_log(DPT_LOG_INFO, "gradients compressed: %s on the wire, fp32 sums", o->compress);
  return rc;
}

static void teardown(run *r) {
  dpt_report_close(r->report);
  dpt_reducer_free(r->reducer);
  free(r->slots);
  free(r->rows_work);
  free(r->buffers_saved);
  dpt_sched_free(r->sched);
  dpt_solver_free(r->solver);
  dpt_io_dataset_close(r->data);
  dpt_io_tokens_close(r->tokens);
  dpt_zero_free(r); /* the parameters and the gradient */
  free(r->perm);
  free(r->idx);
  free(r->x);
  free(r->y);
  free(r->labels);
  free(r->pos.grad_scale);
}
/* --- the loop --- */

/* The parameters as the checkpoint indexes them, by flat element: the whole buffer, or in
 * stage 3 the shard's, of which only [shard.offset, shard.offset + shard.len) is ever touched
 * (a rank writes and reads its own shard of the whole tensors). */
static float *flat_params(run *r) {
  return r->params ? r->params : r->pshard - r->shard.offset;
}

/* Writes a checkpoint of where the run stands (collective). */
static int save(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  r->pos.world_size = r->size;
  r->pos.zero = r->zero;
  double t = dpt_now();
  dpt_progress_wait(r->pos.step, "the checkpoint write");
  int rc = dpt_ckpt_save_run(o, r->model, r->comm, flat_params(r), r->solver, r->shard.offset,
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
  const char *got = dpt_stop_signal_name();
  if (info->stop == 1 && got)
    snprintf(why, sizeof why, "%s reached %d of %d ranks", got, info->stop_ranks, r->size);
  else if (info->stop == 1) /* it reached other ranks, not this one */
    snprintf(why, sizeof why, "a stop signal (one of %s) reached %d of %d ranks", o->stop_signals,
             info->stop_ranks, r->size);
  else
    snprintf(why, sizeof why, "another step and checkpoint would overrun --time-limit %s",
             o->time_limit);
  snprintf(err, errlen,
           "stopped after step %ld of %ld: %s; checkpoint %s/ckpt-%010ld.h5 "
           "written; the same command with --resume auto continues",
           r->pos.step, r->total_steps, why, o->ckpt_dir, r->pos.step);
  return DPT_ESTOPPED;
}

/* An evaluation (after "epoch N" or "step N"); out of memory (agreed: the same on every rank)
 * gives the stage's line. */
static int evaluate(run *r, const dpt_train_opts *o, const char *after, double *loss, double *acc,
                    char *err, size_t errlen) {
  int rc = dpt_train_evaluate(r, loss, acc, err, errlen);
  if (rc != DPT_ENOMEM) return rc;
  char what[DPT_ERR_LEN + 96];
  snprintf(what, sizeof what, "the evaluation after %s (%s)", after, err);
  return dpt_zero_oom(r, o, what, err, errlen);
}

static int loop(run *r, const dpt_train_opts *o, dpt_train_result *res, char *err, size_t errlen) {
  double t0 = dpt_now();
  long first = r->pos.step;
  res->test_loss = res->test_accuracy = NAN;
  for (int e = (int)r->pos.epoch; e < o->epochs && r->pos.step < r->total_steps; e++) {
    if (r->tokens)
      dpt_train_windows(r->perm, r->train.n, dpt_io_tokens_count(r->tokens, DPT_SPLIT_TRAIN),
                        (int64_t)r->lps, (uint64_t)o->seed, e, o->batch);
    else
      dpt_train_shuffle(r->perm, r->train.n, (uint64_t)o->seed, e);
    for (long s = r->pos.step_in_epoch; s < r->steps_per_epoch && r->pos.step < r->total_steps;
         s++) {
      dpt_step_info info = {0};
      if (r->fault.rank == r->rank && !r->fault.in_ckpt && !r->fault.nan &&
          r->fault.step == r->pos.step)
        dpt_fault_kill(NULL);
      double ts = dpt_now();
      int rc = dpt_train_step(r, o, s, &info, err, errlen);
      if (rc) return rc;
      double took = dpt_now() - ts;
      res->step_s += took;
      if (took > r->slowest_step) r->slowest_step = took;
      res->comm_wait_s += info.comm_wait;
      r->pos.step++;
      r->pos.step_in_epoch = s + 1;
      if (info.skipped)
        res->skipped++;
      else
        r->pos.epoch_loss += info.loss;
      info.step = r->pos.step;
      info.epoch = e;
      dpt_report_step(r->report, &info);
      if ((rc = dpt_train_timing_interval(r, o, &info, err, errlen))) return rc;
      int saved = r->saving && o->ckpt_every > 0 && r->pos.step % o->ckpt_every == 0;
      if (saved && (rc = save(r, o, err, errlen))) return rc;
      if (info.stop && r->pos.step < r->total_steps)
        return stop_early(r, o, &info, saved, res, err, errlen);
    }
    if (r->pos.step_in_epoch < r->steps_per_epoch) { /* stopped by --max-steps: the mean loss of
                                                        the epoch's steps so far */
      if (r->pos.step_in_epoch > 0)
        res->train_loss = r->pos.epoch_loss / (double)r->pos.step_in_epoch;
      if (r->has_test && r->pos.step > first) { /* the run's end is an evaluation's too */
        char after[64];
        snprintf(after, sizeof after, "step %ld", r->pos.step);
        int rc = evaluate(r, o, after, &res->test_loss, &res->test_accuracy, err, errlen);
        if (rc) return rc;
      }
      break;
    }
    dpt_epoch_info ei = {
        e, r->pos.step,      r->pos.epoch_loss / (double)r->steps_per_epoch, NAN, NAN,
        0, r->tokens != NULL};
    if (r->has_test && (e + 1) % o->eval_every == 0) {
      char after[64];
      snprintf(after, sizeof after, "epoch %d", e + 1);
      int rc = evaluate(r, o, after, &ei.test_loss, &ei.test_accuracy, err, errlen);
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
  if (r->saving &&
      !(o->ckpt_every > 0 && r->pos.step % o->ckpt_every == 0 && r->pos.step_in_epoch > 0)) {
    int rc = save(r, o, err, errlen);
    if (rc) return rc;
  }
  res->steps = r->pos.step;
  res->seconds = dpt_now() - t0;
  res->samples_per_s = (double)(r->pos.step - first) * (double)o->batch / res->seconds;
  res->state_bytes = dpt_solver_state_bytes(r->solver);
  return DPT_OK;
}

/* One line on rank 0: who runs, where, and what (the log prefix names the SLURM job). */
static void startup_line(const run *r, const dpt_train_opts *o) {
  dpt_log(DPT_LOG_INFO,
          "%d rank%s on %d node%s (%d per node), solver %s, scheduler %s, "
          "ZeRO stage %d, %ld steps, run directory %s",
          r->size, r->size > 1 ? "s" : "", r->topo.nodes, r->topo.nodes > 1 ? "s" : "",
          r->topo.max_per_node, dpt_optim_solver_name(o->solver.kind),
          dpt_optim_sched_name(o->sched.kind), r->zero, r->total_steps, o->run_dir);
}

/* --resume / --init: load before the first step. Every rank reads; all agree. */
static int restore(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  char path[1200] = "";
  int rc = DPT_OK;
  /* every rank reads all parameters, or in stage 3 its shard of them */
  size_t params_lo = r->zero == 3 ? r->shard.offset : 0;
  size_t params_len = r->zero == 3 ? r->shard.len : r->model->nparams;
  if (o->resume[0]) {
    rc = dpt_ckpt_resolve(o, path, sizeof path, err, errlen);
    if (!rc && path[0])
      rc = dpt_ckpt_load_run_range(path, o, r->model, flat_params(r), r->solver, r->shard.offset,
                                   r->sched, &r->pos, 0, params_lo, params_len, err, errlen);
    if (!rc && path[0] && r->pos.step > r->total_steps) {
      snprintf(err, errlen, "%s: is at step %ld, beyond this run's %ld steps", path, r->pos.step,
               r->total_steps);
      rc = DPT_EINVAL;
    }
    if (!rc && path[0]) dpt_log(DPT_LOG_INFO, "resuming from %s at step %ld", path, r->pos.step);
  }
  if (!rc)
    rc = dpt_ckpt_check_start(o, path, &r->pos, r->steps_per_epoch, r->size, r->zero, r->rank,
                              r->saving, err, errlen);
  /* --init starts a run that has nothing to resume (also with --resume auto finding none) */
  if (!rc && (!o->resume[0] || !path[0]) && o->init[0]) {
    rc = dpt_ckpt_load_run_range(o->init, o, r->model, flat_params(r), r->solver, r->shard.offset,
                                 r->sched, &r->pos, 1, params_lo, params_len, err, errlen);
  }
  return rc;
}

/* What every rank holds (zero.c's dpt_zero_memory) into res, the metrics' memory record, and with
 * --verbose one line per rank. Collective: an MPI failure is returned (the peers cannot be
 * trusted after it); out of memory for the rows only loses the report (on every rank alike:
 * one agreed flag first). */
static int memory_report(run *r, const dpt_train_opts *o, dpt_train_result *res, char *err,
                         size_t errlen) {
  enum { F = DPT_REPORT_MEM_FIELDS };
  dpt_zero_mem mem;
  dpt_zero_memory(r, o, &mem);
  res->param_bytes = (size_t)mem.param_bytes;
  res->grad_bytes = (size_t)mem.grad_bytes, res->buffer_bytes = (size_t)mem.buffer_bytes;
  res->peak_rss = mem.peak_rss_bytes;
  double *rows = calloc((size_t)r->size * F, sizeof *rows);
  double lost = rows ? 0 : 1;
  int rc = dpt_comm_max(r->comm, &lost, 1, err, errlen);
  if (rc || lost) {
    free(rows);
    return rc;
  }
  double *mine = rows + (size_t)r->rank * F; /* one contributor per row: the sum is exact */
  mine[0] = mem.param_bytes, mine[1] = mem.grad_bytes, mine[2] = mem.state_bytes;
  mine[3] = mem.buffer_bytes, mine[4] = mem.peak_rss_bytes;
  rc = dpt_comm_sum(r->comm, rows, r->size * F, err, errlen);
  if (!rc) {
    dpt_report_memory(r->report, r->size, r->zero, rows);
    for (int q = 0; o->verbose && q < r->size; q++) {
      const double *v = rows + (size_t)q * F;
      dpt_log(DPT_LOG_INFO,
              "rank %d memory (ZeRO stage %d%s): parameters %.2f MiB, gradients %.2f MiB, "
              "optimizer state %.2f MiB, buffers %.2f MiB; peak resident %.2f MiB",
              q, r->zero, r->zero >= 2 && !r->stream ? ", whole gradient" : "", v[0] / 1048576.0,
              v[1] / 1048576.0, v[2] / 1048576.0, v[3] / 1048576.0, v[4] / 1048576.0);
    }
  }
  free(rows);
  return rc;
}

/* The run on comm, the trainer's own duplicate (MPI errors come back as codes). */
static int run_on(const dpt_train_opts *o, dpt_model *m, MPI_Comm comm, dpt_train_result *res,
                  float *params_out, char *err, size_t errlen) {
  run r = {0};
  r.comm = comm;
  r.model = m;
  MPI_Comm_rank(comm, &r.rank);
  MPI_Comm_size(comm, &r.size);
  memset(res, 0, sizeof *res);
  int rc = dpt_train_validate(o, err, errlen);
  if (!rc) rc = dpt_model_check(m, err, errlen);
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
  if (!eff.ckpt_dir[0]) snprintf(eff.ckpt_dir, sizeof eff.ckpt_dir, "%.1000s/ckpt", eff.run_dir);
  o = &eff;
  unsigned signals = 0;
  if (!rc && (dpt_parse_duration(o->time_limit, &r.time_limit) ||
              dpt_parse_signals(o->stop_signals, &signals, err, errlen)))
    rc = DPT_EINVAL; /* (dpt_train_validate said so already) */
  if (!rc) rc = setup(&r, o, err, errlen);
  if (!rc) rc = restore(&r, o, err, errlen);
  /* the metrics file: continued by a resumed run, started afresh otherwise */
  if (!rc && r.rank == 0)
    rc = dpt_report_open(o, r.total_steps, r.pos.step, &r.report, err, errlen);
  /* set-up: agree, so one rank's bad input stops all, with that rank's message */
  int all = dpt_comm_agree_error(comm, rc, err, errlen);
  if (!all) all = dpt_comm_agree_error(comm, make_reducer(&r, o, err, errlen), err, errlen);
  if (all) {
    teardown(&r);
    return all;
  }
  /* what each rank holds: the memory side of ZeRO, in the log and the metrics file */
  double bytes[2] = {(double)dpt_solver_state_bytes(r.solver), 0};
  bytes[1] = bytes[0];
  /* then where the ranks run, for the start-up line */
  if ((rc = dpt_comm_max(comm, &bytes[0], 1, err, errlen)) ||
      (rc = dpt_comm_sum(comm, &bytes[1], 1, err, errlen)) ||
      (rc = dpt_comm_topology(comm, &r.topo, err, errlen))) {
    teardown(&r);
    return rc;
  }
  char label[256];
  if (o->label[0])
    snprintf(label, sizeof label, "%s", o->label);
  else if (o->sched.kind == DPT_SCHED_NONE)
    snprintf(label, sizeof label, "%s", dpt_optim_solver_name(o->solver.kind));
  else
    snprintf(label, sizeof label, "%s/%s", dpt_optim_solver_name(o->solver.kind),
             dpt_optim_sched_name(o->sched.kind));
  dpt_report_run(r.report, label, r.size, r.zero, m->nparams, bytes[0], bytes[1]);
  if (o->verbose)
    dpt_log(DPT_LOG_INFO,
            "%d ranks, ZeRO stage %d: optimizer state %.2f MiB per rank "
            "(largest), %.2f MiB over all ranks, %zu parameters",
            r.size, r.zero, bytes[0] / 1048576.0, bytes[1] / 1048576.0, m->nparams);
  if (r.rank == 0) startup_line(&r, o);
  stop_handlers h;
  dpt_stop_handlers_install(&h, signals);
  rc = loop(&r, o, res, err, errlen);
  if (!rc || rc == DPT_ESTOPPED) { /* every rank got the same rc */
    int mrc = memory_report(&r, o, res, err, errlen);
    if (mrc) rc = mrc;
  }
  rc = dpt_report_finish(r.report, comm, rc, err, errlen);
  dpt_stop_handlers_restore(&h);
  if ((!rc || rc == DPT_ESTOPPED) && params_out) { /* (every rank has the same rc) */
    if (r.zero != 3) {
      memcpy(params_out, r.params, m->nparams * sizeof(float));
    } else {
      int grc = dpt_zero_gather_all(&r, params_out, err, errlen);
      if (grc) rc = grc;
    }
  }
  teardown(&r);
  return rc;
}

int dpt_train_run_model(const dpt_train_opts *o, dpt_model *m, MPI_Comm comm, dpt_train_result *res,
                        float *params_out, char *err, size_t errlen) {
  memset(res, 0, sizeof *res);
  MPI_Comm own;
  int rc = dpt_comm_dup_returning(comm, &own, err, errlen);
  if (rc) return rc;
  rc = run_on(o, m, own, res, params_out, err, errlen);
  MPI_Comm_free(&own);
  return rc;
}

/* A token dataset read with --context T as a model sees it: samples [T] of token ids, T labels
 * in [0, V) each. 0 when o->data is not one (or cannot be read: set-up reports that). */
static int token_model_data(const dpt_train_opts *o, dpt_model_data *data) {
  char ignored[DPT_ERR_LEN];
  return o->context >= 1 && dpt_io_is_tokens(o->data) &&
         !dpt_model_data_read_tokens(o->data, o->context, data, ignored, sizeof ignored);
}

int dpt_train_run(const dpt_train_opts *o, MPI_Comm comm, dpt_train_result *res, char *err,
                  size_t errlen) {
  memset(res, 0, sizeof *res);
  MPI_Comm own;
  int rc = dpt_comm_dup_returning(comm, &own, err, errlen);
  if (rc) return rc;
  dpt_model m;
  dpt_model_data data; /* the sample shape, for kinds that need it (the data's own errors
                          come from set-up) */
  char ignored[DPT_ERR_LEN];
  int has_data = token_model_data(o, &data) ||
                 dpt_model_data_read(o->data, &data, ignored, sizeof ignored) == 0;
  rc = dpt_model_create(o->model, o->activation, o->loss, has_data ? &data : NULL, &m, err, errlen);
  int all = dpt_comm_agree_error(own, rc, err, errlen);
  if (all) {
    if (!rc) m.destroy(&m);
    MPI_Comm_free(&own);
    return all;
  }
  rc = run_on(o, &m, own, res, NULL, err, errlen);
  m.destroy(&m);
  MPI_Comm_free(&own);
  return rc;
}

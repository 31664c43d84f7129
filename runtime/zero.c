/* zero.c — the ZeRO side of a run: where the gradient lives for each stage, the hand-over of
 * each layer's gradient to the reducer in stage 2, the bytes a rank holds (the memory report),
 * and the out-of-memory message that names the stage and what it needed.
 *
 * Stage 2 ("streamed"): there is no whole gradient. The net adds each layer's gradient into
 * span_buf (the widest layer's size, dpt_layer_pass.grad_at), and the layer's ready call hands
 * it to the reducer (dpt_reducer_put), which copies it into bucket-sized buffers and
 * reduce-scatters each bucket as soon as it is complete; a rank keeps only gshard, the sum over
 * its own shard. The sums are the rank-order sums of stages 0 and 1 (comm/reduce_rank_order.c),
 * so every stage gives bitwise the same parameters. In deterministic mode the net hands each
 * micro-shard's layer gradient to the exact sums (seg_grad), which reduce-scatter each layer's
 * 64-bit sums as soon as this rank's micro-shards all added theirs (comm/reduce_exact.c): no
 * whole-model sum exists either. A model without per-layer passes (loss_grad only) and --accum > 1
 * (whose micro-batches accumulate into one whole gradient before a single reduction) keep stage 1's
 * whole gradient.
 *
 * Per-rank bytes in fp32 with Adam, for P parameters on W ranks: stage 0 16P, stage 1
 * 8P + 8P/W, stage 2 4P + 12P/W, plus working buffers (DeepSpeed's ZeRO paper, fp32).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* --- which layout --- */

/* n floats, 64-byte aligned (shards start on DPT_COMM_ALIGN boundaries), not cleared: every
 * use writes before it reads. NULL if out of memory. */
static float *floats(size_t n) {
  return aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) / 64 * 64);
}

/* Bytes of solver state per parameter for o's solver (vectors only): a one-element solver's. */
static size_t state_per_param(const dpt_train_opts *o) {
  dpt_solver *s = NULL;
  char ignored[DPT_ERR_LEN];
  if (dpt_solver_create(&o->solver, 1, &s, ignored, sizeof ignored)) return 0;
  size_t b = (dpt_solver_bytes_per_element(s) - 3 * sizeof(float)) / 2;
  dpt_solver_free(s);
  return b;
}

/* What this rank's state needs at r->zero: parameters, gradients, optimizer state, the
 * reduction's staging (a whole shard's W copies below stage 2). */
static double needed_bytes(const run *r, const dpt_train_opts *o) {
  double n = (double)r->model->nparams, f = sizeof(float);
  double sh = (double)r->own.len;
  double grads = r->stream ? sh * f : n * f;
  double state = (double)state_per_param(o) * (r->zero ? sh : n);
  double staging = r->stream ? 0 : (double)r->size * sh * f;
  return n * f + grads + state + staging;
}

int dpt_zero_oom(const run *r, const dpt_train_opts *o, const char *what, char *err,
                 size_t errlen) {
  double need = needed_bytes(r, o);
  snprintf(err, errlen,
           "out of memory for %s: ZeRO stage %d on %d rank%s needs %.0f bytes (%.1f MiB) per rank "
           "for %zu parameters (parameters, gradients, %s state, reduction buffers)%s",
           what, r->zero, r->size, r->size > 1 ? "s" : "", need, need / 1048576.0,
           r->model->nparams, dpt_optim_solver_name(o->solver.kind),
           r->zero < 2 && r->size > 1 ? "; a higher --zero stage needs less per rank" : "");
  return DPT_ENOMEM;
}

int dpt_zero_alloc(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  dpt_model *m = r->model;
  /* stage 2 streams the gradient where the model gives it layer by layer and the reduction
   * is rank-order's or the exact sums' */
  int rank_order = !strcmp(o->reduce, "auto") || !strcmp(o->reduce, "rank-order");
  int compressed = o->compress[0] && strcmp(o->compress, "none");
  r->stream = r->zero == 2 && m->loss_grad_pass && !m->tied &&
              (o->deterministic || (o->accum == 1 && rank_order && !compressed));
  if (r->zero == 2 && !r->stream)
    dpt_log(DPT_LOG_INFO, "ZeRO stage 2 keeps a whole gradient here (%s), as stage 1 does",
            !m->loss_grad_pass ? "the model gives its gradient whole, not layer by layer"
            : m->tied          ? "a tied tensor's gradient comes from two layers"
            : o->accum > 1     ? "--accum > 1 accumulates micro-batches into it"
            : compressed       ? "--compress reduces whole buckets"
                               : "--reduce node sums whole buffers");
  if (!r->stream) {
    r->grads = floats(m->nparams);
    if (!r->grads) return dpt_zero_oom(r, o, "the gradient", err, errlen);
    r->gshard = r->grads + r->shard.offset;
    r->gown = r->grads + r->own.offset;
    return DPT_OK;
  }
  r->gshard = floats(r->shard.len);
  r->gown = r->gshard; /* stage 2: own == shard */
  r->span_cap = m->nlayers ? 0 : m->nparams;
  for (int l = 0; l < m->nlayers; l++)
    if (m->layers[l].len > r->span_cap) r->span_cap = m->layers[l].len;
  r->span_buf = floats(r->span_cap); /* deterministic mode: zeros for a failed rank */
  if (!r->gshard || !r->span_buf) return dpt_zero_oom(r, o, "the gradient shard", err, errlen);
  return DPT_OK;
}

void dpt_zero_free(run *r) {
  if (r->stream) free(r->gshard);
  free(r->span_buf);
  free(r->grads);
  r->grads = r->gshard = r->gown = r->span_buf = NULL;
}

/* --- stage 2's hand-over (dpt_layer_pass.grad_at and ready; ctx is the run) --- */

float *dpt_zero_grad_at(void *ctx, size_t offset, size_t len) {
  run *r = ctx;
  (void)offset;
  if (len > r->span_cap) { /* a span wider than the model's layers said: grow */
    float *b = realloc(r->span_buf, len * sizeof *b);
    if (!b) { /* keep going on the old one's first part; the pass then fails */
      r->rows_rc = DPT_ENOMEM;
      snprintf(r->rows_err, sizeof r->rows_err, "out of memory for a %zu-element layer gradient",
               len);
      len = r->span_cap;
    } else {
      r->span_buf = b, r->span_cap = len;
    }
  }
  memset(r->span_buf, 0, len * sizeof(float));
  return r->span_buf;
}

/* (timing.c sees the hand-over as step.c's grad_ready's: a wait for a free bucket buffer in
 * dpt_reducer_put counts as time backward did not compute) */
void dpt_zero_ready(void *ctx, size_t offset, size_t len) {
  run *r = ctx;
  dpt_timing_ready(&r->timing, offset, len);
  dpt_reducer_put(r->reducer, offset, len < r->span_cap ? len : r->span_cap, r->span_buf);
  dpt_timing_ready_done(&r->timing);
}

void dpt_zero_exact_join(run *r, int per) {
  const dpt_model *m = r->model;
  for (int l = m->nlayers - 1; l >= 0; l--) { /* backward's order, as the others add them */
    size_t len = m->layers[l].len < r->span_cap ? m->layers[l].len : r->span_cap;
    memset(r->span_buf, 0, len * sizeof(float));
    for (int k = 0; k < per; k++)
      dpt_reducer_exact_add_range(r->reducer, m->layers[l].offset, len, r->span_buf);
  }
}

/* --- the memory report --- */

/* Peak resident memory of this process (VmHWM), bytes; 0 if unknown. */
static double peak_rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) kb = strtod(line + 6, NULL);
  fclose(f);
  return kb * 1024.0;
}

void dpt_zero_memory(const run *r, const dpt_train_opts *o, dpt_zero_mem *out) {
  const dpt_model *m = r->model;
  size_t rows = o->deterministic ? (size_t)(o->batch / r->size) : r->micro;
  if (rows < r->eval_chunk) rows = r->eval_chunk;
  out->param_bytes = (double)m->nparams * sizeof(float);
  out->grad_bytes = (double)(r->stream ? r->shard.len : m->nparams) * sizeof(float);
  out->state_bytes = (double)dpt_solver_state_bytes(r->solver);
  out->buffer_bytes = (double)dpt_reducer_bytes(r->reducer) +
                      (double)(r->span_buf ? r->span_cap : 0) * 4.0 +
                      (double)rows * (double)(m->in_features + m->out_features) * 4.0 +
                      (double)rows * (double)(r->lps * sizeof(int32_t) + sizeof(int64_t)) +
                      (double)r->train.n * sizeof(int64_t) + (double)m->nbuffer_floats * 4.0;
  out->peak_rss_bytes = peak_rss();
}

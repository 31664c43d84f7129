/* zero.c — the ZeRO side of a run: where the gradient lives for each stage, the hand-over of
 * each layer's gradient to the reducer in stage 2, the bytes a rank holds (the memory report),
 * the out-of-memory message that names the stage and what it needed, and the BLAS library's
 * working buffer, mapped at set-up where a shortage can still fail cleanly.
 *
 * Stage 2 ("streamed"): there is no whole gradient. The net adds each layer's gradient into
 * span_buf (the widest layer's size, dpt_layer_pass.grad_at), and the layer's ready call lends
 * it to the reducer (dpt_reducer_lend), which reduce-scatters each bucket as soon as it is
 * complete, sending the buckets that lie whole in the layer from span_buf itself and copying the
 * two it shares with its neighbours into bucket-sized buffers; backward meanwhile writes the
 * next layer's gradient into another span buffer (span_pool), and a buffer's loan ends
 * (dpt_reducer_take_back) before it is written again. A rank keeps only gshard, the sum over
 * its own shard. The sums are the rank-order sums of stages 0 and 1 (comm/reduce_rank_order.c),
 * so every stage gives bitwise the same parameters. In deterministic mode the net hands each
 * micro-shard's layer gradient to the exact sums (seg_grad), which reduce-scatter each layer's
 * 64-bit sums as soon as this rank's micro-shards all added theirs (comm/reduce_exact.c): no
 * whole-model sum exists either. A model without per-layer passes (loss_grad only) and --accum > 1
 * (whose micro-batches accumulate into one whole gradient before a single reduction) keep stage 1's
 * whole gradient.
 *
 * Stage 3 ("sharded parameters"): a rank holds only pshard, its shard of the parameters, and
 * two working buffers of the widest layer's size. The net asks for each layer's parameters
 * before its forward and before its backward (dpt_layer_pass.params_at); the layer's span is
 * all-gathered (MPI_Iallgatherv of each rank's intersection with it) into a working buffer,
 * and while the layer computes, the next layer's gather is already in flight in the other one
 * (--zero-prefetch). A pass's gathers follow one fixed order, forward spans 0..L-1 then backward
 * spans L-2..0 (the last layer's parameters are still in their buffer, and so are the one
 * before's), the same on every rank; a rank whose pass stops early runs the rest of that order
 * (dpt_zero_gather_end), so no peer waits. The values gathered are the shards' bytes, so each
 * layer sees bitwise the parameters of stages 0 to 2. Gradients stream as in stage 2.
 * Evaluation gathers the same way, forward only (eval.c); initialisation and the caller's copy
 * of the result hold the whole parameters for a moment; checkpoints are written and read as
 * each rank's shard of the whole tensors (W-independent).
 *
 * Per-rank bytes in fp32 with Adam, for P parameters on W ranks: stage 0 16P, stage 1
 * 8P + 8P/W, stage 2 4P + 12P/W, stage 3 16P/W, plus working buffers (DeepSpeed's ZeRO paper,
 * fp32).
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
/* The widest layer's parameters (the whole buffer for a model of one layer). */
static size_t widest_span(const dpt_model *m) {
  size_t w = m->nlayers ? 0 : m->nparams;
  for (int l = 0; l < m->nlayers; l++)
    if (m->layers[l].len > w) w = m->layers[l].len;
  return w;
}

/* OpenBLAS's working buffer: mapped for the calling thread at its first level-3 call (BUFFER_SIZE,
 * 32 << 22 bytes on x86_64 (common_x86_64.h), plus a page), kept for every later call (its own
 * worker threads, with OPENBLAS_NUM_THREADS > 1, map theirs as they start, when the library
 * loads). When the address space cannot hold it, blas_memory_alloc (driver/others/memory.c)
 * retries for ever without a word: a run whose state just fits would spin in its first forward
 * pass, its peers waiting in the layer's gather. dpt_zero_blas_reserve maps it at set-up. */
#define DPT_BLAS_BUFFER_BYTES (((size_t)128 << 20) + 4096)
/* Room probed beyond it: what the process's other threads (MPI's progress threads) may map
 * between the probe's release and OpenBLAS's own mapping. */
#define DPT_BLAS_PROBE_SLACK ((size_t)4 << 20)
/* The warm-up product's size: above OpenBLAS's small-matrix kernels (at most 100^3 multiply-adds,
 * kernel/x86_64/sgemm_small_kernel_permit_skylakex.c) and, with B transposed and beta 1, not its
 * direct kernel: the blocked path, which takes the buffer. */
#define DPT_BLAS_WARM_N 128

static double needed_bytes(const run *r, const dpt_train_opts *o) {
  double n = (double)r->model->nparams, f = sizeof(float);
  double sh = (double)r->own.len;
  int stream = r->stream || r->zero == 3;
  double params =
      r->zero == 3 ? (sh + 2.0 * (double)widest_span(r->model) + (double)r->gkept) * f : n * f;
  /* streamed: the shard and two layer-sized buffers backward writes into (zero.c's span pool) */
  double grads = stream ? (sh + 2.0 * (double)widest_span(r->model)) * f : n * f;
  double state = (double)state_per_param(o) * (r->zero ? sh : n);
  double staging = stream ? 0 : (double)r->size * sh * f;
  return params + grads + state + staging + (double)DPT_BLAS_BUFFER_BYTES;
}

int dpt_zero_oom(const run *r, const dpt_train_opts *o, const char *what, char *err,
                 size_t errlen) {
  double need = needed_bytes(r, o);
  snprintf(err, errlen,
           "out of memory for %s: ZeRO stage %d on %d rank%s needs %.0f bytes (%.1f MiB) per rank "
           "for %zu parameters (parameters, gradients, %s state, reduction buffers, the BLAS "
           "library's working buffer)%s",
           what, r->zero, r->size, r->size > 1 ? "s" : "", need, need / 1048576.0,
           r->model->nparams, dpt_optim_solver_name(o->solver.kind),
           r->zero < 3 && r->size > 1 ? "; a higher --zero stage needs less per rank" : "");
  return DPT_ENOMEM;
}

/* Stage 3's parameters: the shard, two working buffers of the widest layer, one gather's
 * counts. A model stage 3 cannot gather layer by layer is refused (DPT_EINVAL). */
static int alloc_sharded_params(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  dpt_model *m = r->model;
  if (!m->loss_grad_pass || m->nlayers < 1)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "--zero 3: model %s gives its gradient whole (no per-layer pass), so its "
                    "parameters cannot be gathered layer by layer; use --zero 2",
                    m->kind);
  if (m->tied)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "--zero 3: model %s ties a tensor across layers (a layer reads an earlier "
                    "layer's parameter), which stage 3 does not gather; use --zero 2",
                    m->kind);
  r->prefetch = o->zero_prefetch;
  r->gcap = widest_span(m);
  r->pshard = floats(r->shard.len);
  if (!r->pshard) return dpt_zero_oom(r, o, "the parameter shard", err, errlen);
  /* the model draws all parameters in one stream: a passing whole copy, of which the shard is
   * kept, drawn before the working buffers exist so that it adds least to the peak */
  float *whole = floats(m->nparams);
  if (!whole) return dpt_zero_oom(r, o, "the parameters' initialisation", err, errlen);
  int rc = m->init(m, whole, (uint64_t)o->seed, err, errlen);
  if (!rc) memcpy(r->pshard, whole + r->shard.offset, r->shard.len * sizeof(float));
  free(whole);
  if (rc) return rc;
  r->gbuf[0] = floats(r->gcap);
  r->gbuf[1] = floats(r->gcap);
  r->gcounts = malloc((size_t)r->size * sizeof *r->gcounts);
  r->gdispls = malloc((size_t)r->size * sizeof *r->gdispls);
  if (!r->gbuf[0] || !r->gbuf[1] || !r->gcounts || !r->gdispls)
    return dpt_zero_oom(r, o, "the parameter shard", err, errlen);
  if (r->gcap > INT_MAX || r->model->nparams > INT_MAX)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "--zero 3: model %s has %zu parameters, a layer of %zu: MPI's counts hold "
                    "at most %d",
                    m->kind, m->nparams, r->gcap, INT_MAX);
  return DPT_OK;
}

/* Stage 3's gather order, and the layers kept from forward for backward: from layer L-3 down
 * (L-1 and L-2 are still in the two buffers when backward starts) while their sum fits
 * --zero-keep-mb. The same on every rank (the option and the layers are). */
static int alloc_order(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  const dpt_model *m = r->model;
  int l = m->nlayers;
  r->gorder = malloc(2 * (size_t)l * sizeof *r->gorder);
  r->gback = malloc((size_t)l * sizeof *r->gback);
  r->gkeep = calloc((size_t)l, sizeof *r->gkeep);
  if (!r->gorder || !r->gback || !r->gkeep)
    return dpt_zero_oom(r, o, "the gather order", err, errlen);
  double budget = o->zero_keep_mb * 1048576.0 / sizeof(float);
  for (int s = l - 3; s >= 0 && (double)(r->gkept + m->layers[s].len) <= budget; s--) {
    if (!(r->gkeep[s] = floats(m->layers[s].len)))
      return dpt_zero_oom(r, o, "the layers kept for backward", err, errlen);
    r->gkept += m->layers[s].len;
  }
  int n = 0;
  for (int s = 0; s < l; s++) r->gorder[n++] = s, r->gback[s] = s;
  r->gback[l - 1] = l - 1;
  for (int s = l - 2; s >= 0; s--)
    if (!r->gkeep[s]) r->gback[s] = n, r->gorder[n++] = s;
  r->norder = n;
  return DPT_OK;
}

int dpt_zero_alloc(run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  dpt_model *m = r->model;
  r->gspan[0] = r->gspan[1] = -1;
  r->greq[0] = r->greq[1] = MPI_REQUEST_NULL;
  r->gcur = r->gpos = -1;
  if (r->zero == 3) {
    int rc = alloc_sharded_params(r, o, err, errlen);
    if (!rc) rc = alloc_order(r, o, err, errlen);
    if (rc) return rc;
  } else {
    r->params = floats(m->nparams);
    if (!r->params) return dpt_zero_oom(r, o, "the parameters", err, errlen);
    r->pshard = r->params + r->shard.offset;
  }
  /* stages 2 and 3 stream the gradient where the model gives it layer by layer and the
   * reduction is rank-order's or the exact sums' */
  int rank_order = !strcmp(o->reduce, "auto") || !strcmp(o->reduce, "rank-order");
  int compressed = o->compress[0] && strcmp(o->compress, "none");
  r->stream = r->zero >= 2 && m->loss_grad_pass && !m->tied &&
              (o->deterministic || (o->accum == 1 && rank_order && !compressed));
  if (r->zero >= 2 && !r->stream)
    dpt_log(DPT_LOG_INFO, "ZeRO stage %d keeps a whole gradient here (%s), as stage 1 does",
            r->zero,
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
  r->span_cap = widest_span(m);
  r->span_buf = floats(r->span_cap);      /* deterministic mode: zeros for a failed rank */
  if (!o->deterministic && r->span_buf) { /* lent: two to start with */
    r->span_pool[0] = r->span_buf, r->span_n = 1, r->span_cur = 0;
    if ((r->span_pool[1] = floats(r->span_cap))) r->span_n = 2;
  }
  if (!r->gshard || !r->span_buf || (!o->deterministic && r->span_n < 2))
    return dpt_zero_oom(r, o, "the gradient shard", err, errlen);
  return DPT_OK;
}

int dpt_zero_blas_reserve(const run *r, const dpt_train_opts *o, char *err, size_t errlen) {
  enum { N = DPT_BLAS_WARM_N };
  float *a = calloc(3 * (size_t)N * N, sizeof *a); /* a, b, c; zeros: c stays 0 */
  if (!a) return dpt_zero_oom(r, o, "the BLAS library's working buffer", err, errlen);
  size_t probe = DPT_BLAS_BUFFER_BYTES + DPT_BLAS_PROBE_SLACK;
  void *room = mmap(NULL, probe, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (room == MAP_FAILED) {
    free(a);
    return dpt_zero_oom(r, o, "the BLAS library's working buffer", err, errlen);
  }
  munmap(room, probe);
  /* now, while the room is known to be there, OpenBLAS maps its buffer (a thread's first call) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, N, 1.0f, a, N, a + N * N, N, 1.0f,
              a + 2 * N * N, N);
  free(a);
  return DPT_OK;
}

void dpt_zero_free(run *r) {
  for (int b = 0; r->gcounts && b < 2; b++) /* a gather a failure left in flight (stage 3's
                                                 requests exist once its counts do) */
    if (r->greq[b] != MPI_REQUEST_NULL) MPI_Wait(&r->greq[b], MPI_STATUS_IGNORE);
  if (r->stream) free(r->gshard);
  if (!r->span_n) free(r->span_buf);
  for (int i = 0; i < r->span_n; i++) free(r->span_pool[i]);
  r->span_n = 0;
  free(r->grads);
  if (r->zero == 3) free(r->pshard);
  free(r->params);
  free(r->gbuf[0]);
  free(r->gbuf[1]);
  free(r->gcounts);
  free(r->gdispls);
  for (int l = 0; r->gkeep && l < r->model->nlayers; l++) free(r->gkeep[l]);
  free(r->gkeep), free(r->gorder), free(r->gback);
  r->gkeep = NULL, r->gorder = r->gback = NULL, r->gkept = 0;
  r->grads = r->gshard = r->gown = r->span_buf = r->params = r->pshard = NULL;
  r->gbuf[0] = r->gbuf[1] = NULL;
  r->gcounts = r->gdispls = NULL;
}

/* --- stage 3's gathers (dpt_layer_pass.params_at; ctx is the run) --- */

/* A failed gather: kept in the run and returned after the pass (the net cannot stop). */
static void gather_failed(run *r, int mrc, const char *what) {
  if (!r->rows_rc) r->rows_rc = dpt_comm_mpi_error(mrc, what, r->rows_err, sizeof r->rows_err);
}

/* Starts the all-gather of layer span s into working buffer b: each rank sends the part of its
 * shard inside the span. At most one is in flight (the counts live in the run). */
static void gather_start(run *r, int b, int s) {
  const dpt_layer_span *sp = &r->model->layers[s];
  size_t lo = sp->offset, hi = lo + sp->len;
  for (int q = 0; q < r->size; q++) {
    dpt_range sh = dpt_comm_shard(r->model->nparams, q, r->size);
    size_t a = sh.offset > lo ? sh.offset : lo,
           e = sh.offset + sh.len < hi ? sh.offset + sh.len : hi;
    r->gcounts[q] = e > a ? (int)(e - a) : 0;
    r->gdispls[q] = e > a ? (int)(a - lo) : 0;
  }
  int me = r->rank;
  const float *send =
      r->pshard + (r->gcounts[me] ? lo + (size_t)r->gdispls[me] - r->shard.offset : 0);
  r->gspan[b] = s;
  r->gdst[b] = r->gkeep && r->gkeep[s] ? r->gkeep[s] : r->gbuf[b];
  int mrc = MPI_Iallgatherv(send, r->gcounts[me], MPI_FLOAT, r->gdst[b], r->gcounts, r->gdispls,
                            MPI_FLOAT, r->comm, &r->greq[b]);
  if (mrc != MPI_SUCCESS) {
    r->greq[b] = MPI_REQUEST_NULL, r->gspan[b] = -1;
    gather_failed(r, mrc, "MPI_Iallgatherv (a layer's parameters)");
  }
}

/* Lets a gather in flight move on (MPI progresses it only inside its calls): from the hooks
 * backward calls between layers. */
static void gather_poke(run *r) {
  for (int b = 0; b < 2; b++) {
    int done = 0, mrc = r->greq[b] == MPI_REQUEST_NULL
                            ? MPI_SUCCESS
                            : MPI_Test(&r->greq[b], &done, MPI_STATUS_IGNORE);
    if (mrc != MPI_SUCCESS) {
      r->greq[b] = MPI_REQUEST_NULL, r->gspan[b] = -1;
      gather_failed(r, mrc, "MPI_Test (a layer's parameter all-gather)");
    }
  }
}

/* Waits for buffer b's gather, if one is in flight: the time is the step's gather wait. */
static void gather_wait(run *r, int b) {
  if (r->greq[b] == MPI_REQUEST_NULL) return;
  dpt_timing_wait(&r->timing, DPT_WAIT_GATHER, r->pos.step + 1, "a layer's parameter all-gather");
  int mrc = MPI_Wait(&r->greq[b], MPI_STATUS_IGNORE);
  dpt_timing_done(&r->timing);
  if (mrc != MPI_SUCCESS) {
    r->greq[b] = MPI_REQUEST_NULL, r->gspan[b] = -1;
    gather_failed(r, mrc, "MPI_Wait (a layer's parameter all-gather)");
  }
}

/* The pass's gather order: forward spans 0..L-1 (positions 0..L-1), then in training backward
 * spans L-2..0 (the last span's backward is position L-1 again) but those kept from forward
 * (gorder, made by dpt_zero_keep). */
static int order_len(const run *r) {
  return r->gtrain ? r->norder : r->model->nlayers;
}
static int order_span(const run *r, int pos) {
  return r->gorder[pos];
}

/* Span s (at position pos of the order) in a working buffer, complete; then the next
 * position's gather started in the other buffer unless one already holds it. */
static float *serve(run *r, int s, int pos) {
  int b = r->gspan[0] == s ? 0 : r->gspan[1] == s ? 1 : -1;
  if (b < 0) { /* not prefetched: gather it now, into the buffer the net does not read */
    b = r->gcur == 0 ? 1 : 0;
    gather_wait(r, b); /* (a gather of another span in flight there: finish it first) */
    gather_start(r, b, s);
  }
  gather_wait(r, b);
  r->gcur = b, r->gpos = pos;
  float *at = r->gdst[b];
  if (r->prefetch && pos + 1 < order_len(r)) {
    int next = order_span(r, pos + 1);
    if (r->gspan[0] != next && r->gspan[1] != next) gather_wait(r, !b), gather_start(r, !b, next);
  }
  return at;
}

const float *dpt_zero_params_at(void *ctx, size_t offset, size_t len, int backward) {
  run *r = ctx;
  const dpt_model *m = r->model;
  int lo = 0, hi = m->nlayers - 1; /* the span that starts at offset */
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (m->layers[mid].offset <= offset)
      lo = mid;
    else
      hi = mid - 1;
  }
  (void)len; /* the span's (the net's layer ranges are the model's spans) */
  if (backward && r->gkeep && r->gkeep[lo] && lo < m->nlayers - 1) {
    gather_poke(r);
    return r->gkeep[lo]; /* gathered in forward, complete since */
  }
  return serve(r, lo, backward ? r->gback[lo] : lo);
}

void dpt_zero_gather_begin(run *r, int train) {
  if (r->zero != 3) return;
  r->gtrain = train;
  gather_wait(r, 0), gather_wait(r, 1);
  r->gspan[0] = r->gspan[1] = -1; /* the parameters may have changed since */
  r->gcur = r->gpos = -1;
}

void dpt_zero_gather_end(run *r) {
  if (r->zero != 3) return;
  for (int pos = r->gpos + 1; pos < order_len(r); pos++) serve(r, order_span(r, pos), pos);
  gather_wait(r, 0), gather_wait(r, 1);
}

int dpt_zero_gather_all(run *r, float *out, char *err, size_t errlen) {
  for (int q = 0; q < r->size; q++) {
    dpt_range sh = dpt_comm_shard(r->model->nparams, q, r->size);
    r->gcounts[q] = (int)sh.len, r->gdispls[q] = (int)sh.offset;
  }
  int mrc = MPI_Allgatherv(r->pshard, (int)r->shard.len, MPI_FLOAT, out, r->gcounts, r->gdispls,
                           MPI_FLOAT, r->comm);
  return mrc == MPI_SUCCESS
             ? DPT_OK
             : dpt_comm_mpi_error(mrc, "MPI_Allgatherv (the parameters)", err, errlen);
}

/* --- stage 2's hand-over (dpt_layer_pass.grad_at and ready; ctx is the run) --- */

/* Outside deterministic mode the span buffers are lent in turn: layer l's gradient is lent to
 * the reducer (its whole buckets are sent from it, not copied) while backward writes layer
 * l - 1's into the next buffer whose loan has ended. When every buffer is still read by an
 * exchange (a peer is behind), one more is made, up to DPT_SPAN_POOL; past that the oldest loan
 * is waited for. */
static float *next_span(run *r) {
  for (int i = 1; i < r->span_n; i++) {
    int b = (r->span_cur + i) % r->span_n;
    if (dpt_reducer_try_take_back(r->reducer, r->span_pool[b], r->span_cap))
      return r->span_pool[r->span_cur = b];
  }
  if (r->span_n < DPT_SPAN_POOL && (r->span_pool[r->span_n] = floats(r->span_cap)))
    return r->span_pool[r->span_cur = r->span_n++];
  int b = (r->span_cur + 1) % r->span_n;
  dpt_reducer_take_back(r->reducer, r->span_pool[b], r->span_cap);
  return r->span_pool[r->span_cur = b];
}

float *dpt_zero_grad_at(void *ctx, size_t offset, size_t len) {
  run *r = ctx;
  (void)offset;
  if (r->span_n) r->span_buf = next_span(r);
  if (len > r->span_cap) { /* a span wider than the model's layers said: grow */
    for (int i = 0; i < r->span_n; i++)
      dpt_reducer_take_back(r->reducer, r->span_pool[i], r->span_cap);
    int ok = 1;
    for (int i = 0; ok && i < (r->span_n ? r->span_n : 1); i++) {
      float **at = r->span_n ? &r->span_pool[i] : &r->span_buf;
      float *b = realloc(*at, len * sizeof *b);
      if (b) *at = b;
      ok = b != NULL;
    }
    if (r->span_n) r->span_buf = r->span_pool[r->span_cur];
    if (!ok) { /* keep going on the old size's first part; the pass then fails */
      r->rows_rc = DPT_ENOMEM;
      snprintf(r->rows_err, sizeof r->rows_err, "out of memory for a %zu-element layer gradient",
               len);
      len = r->span_cap;
    } else {
      r->span_cap = len;
    }
  }
  memset(r->span_buf, 0, len * sizeof(float));
  return r->span_buf;
}

/* (step.c gives the net this hook only outside deterministic mode, where span_buf is lent;
 * timing.c sees the hand-over as step.c's grad_ready's: a wait for a staging slot in
 * dpt_reducer_lend counts as time backward did not compute) */
void dpt_zero_ready(void *ctx, size_t offset, size_t len) {
  run *r = ctx;
  if (r->zero == 3) gather_poke(r);
  dpt_timing_ready(&r->timing, offset, len);
  dpt_reducer_lend(r->reducer, offset, len < r->span_cap ? len : r->span_cap, r->span_buf);
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
  /* stage 3: the shard and the two working buffers */
  out->param_bytes =
      r->zero == 3
          ? ((double)r->shard.len + 2.0 * (double)r->gcap + (double)r->gkept) * sizeof(float)
          : (double)m->nparams * sizeof(float);
  out->grad_bytes = (double)(r->stream ? r->shard.len : m->nparams) * sizeof(float);
  out->state_bytes = (double)dpt_solver_state_bytes(r->solver);
  out->buffer_bytes = (double)dpt_reducer_bytes(r->reducer) +
                      (double)(r->span_buf ? r->span_cap : 0) * (r->span_n ? r->span_n : 1) * 4.0 +
                      (double)rows * (double)(m->in_features + m->out_features) * 4.0 +
                      (double)rows * (double)(r->lps * sizeof(int32_t) + sizeof(int64_t)) +
                      (double)r->train.n * sizeof(int64_t) + (double)m->nbuffer_floats * 4.0;
  out->peak_rss_bytes = peak_rss();
}

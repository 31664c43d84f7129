/* layers.h — dpt's layer library: layers with forward and backward over a micro-batch, the
 * losses, and a net that stacks layers into a model's compute. The whole public surface of
 * runtime/layers/ (dpt_layers: below runtime, above base; pure C and cblas, no MPI).
 *
 * How to add a layer (Conv2d, pooling, a norm, attention, ...): touches two files.
 *   1. runtime/layers/<kind>.c: one `const dpt_layer_ops dpt_layer_<kind>` with setup (read
 *      options with dpt_layer_opt_long, check l->in, set l->out, declare parameters with
 *      dpt_layer_param in PyTorch's names and shapes), init (torch's initialisation), forward,
 *      param_grad (ADD parameter gradients) and backward (input gradients), and scratch/destroy
 *      if it needs working memory. linear.c is the model for a layer with parameters, act.c
 *      for one without. No allocation in forward or backward: buffers come from setup (fixed
 *      size) or from scratch(n) (per micro-batch, allocated once by the net).
 *   2. runtime/layers/kinds.c: one line in the kind table (and its declaration above it).
 *   The folder's .c files are globbed by its CMakeLists.txt; nothing else changes. A layer
 *   that is not in the table (a user's) goes in with dpt_net_add_ops.
 *
 * Invariants:
 * - A net's parameters are one flat fp32 buffer: layer by layer in the order they were added,
 *   each layer's tensors contiguous ("fc1.weight", "fc1.bias", "fc2.weight", ...), so a layer's
 *   parameters are one range [offset, offset + len) — what ZeRO-3 gathers and what a gradient
 *   bucket waits for (dpt_layer_span).
 * - Shapes are per sample (the batch dimension is never part of them); activations are
 *   row-major [n, numel(shape)].
 * - forward, param_grad and backward are deterministic: the same inputs (and batch size) give
 *   bitwise the same outputs, with one BLAS thread per rank.
 * - Nothing here prints, exits or allocates per step; errors are DPT_E* codes with a message
 *   naming the layer.
 */
#ifndef DPT_LAYERS_H
#define DPT_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "base.h" /* dpt_tensor, dpt_shape, DPT_MAX_RANK, the error space */

/* Called by a backward pass when grad[offset, offset + len) is final for this batch, so that
 * its reduction can start while backward goes on. */
typedef void (*dpt_grad_ready_fn)(void *ctx, size_t offset, size_t len);

/* A layer's parameters as one range of the flat buffer: tensors [first_tensor, first_tensor +
 * ntensors) of the model's table, elements [offset, offset + len). A model lists its layers
 * that have parameters in forward order; their ranges tile the buffer. */
typedef struct {
  const char *name; /* "fc1" */
  int first_tensor, ntensors;
  size_t offset, len;
} dpt_layer_span;

/* Uniform doubles in [0, 1) for initialisation: the model's random stream (runtime's dpt_rng). */
typedef struct {
  double (*uniform)(void *ctx);
  void *ctx;
} dpt_layer_rng;

/* What one pass is, the same for every layer of it.
 * - Dropout draws its mask from (seed, step, sample0 + i, the layer's index, element) with
 *   dpt_layer_hash_uniform, so a mask depends neither on W nor on the rank.
 * - The call's count samples are nseg segments of seg samples each (nseg 1, seg = count,
 *   unless the trainer's deterministic mode runs a rank's micro-shards together). The net
 *   calls each layer once per segment (so a product's shapes never depend on W), except the
 *   forward and backward of a `batch` kind (BatchNorm), called once over all nseg segments.
 * - batch_sum sums a batch layer's statistics over the global batch: v holds nseg rows of len
 *   values (row j: segment j's partial sums, j in this call's order); on return v[0, len) is
 *   the sum over every segment of every rank, added in global segment order in the trainer's
 *   deterministic mode (so bitwise the same for any W). NULL: this call is the whole batch (the
 *   rows are added in order). It never fails as seen by the layer: the trainer keeps a failed
 *   collective's error and returns it after the pass.
 * - seg_grad, when set (deterministic mode), receives each segment's parameter gradient of a
 *   layer alone: g[len] (unscaled by nothing else; from zero) for the range [offset, offset +
 *   len) of the flat buffer; grad is then left untouched. NULL: gradients are ADDED into grad.
 * - ready: see dpt_net_loss_grad (NULL: not called).
 * - grad_at, when set (and seg_grad is not): the gradient of a span [offset, offset + len) is
 *   ADDED into the buffer grad_at(ready_ctx, offset, len) returns (len floats, zeroed, the
 *   caller's: ZeRO-2's bucket-sized working buffer) instead of grad + offset; grad is then left
 *   untouched, and the span's ready call follows, once the buffer holds its final gradient. */
typedef struct {
  int train;       /* 1 in loss_grad (training), 0 in evaluate */
  uint64_t seed;   /* the run's seed */
  long step;       /* the global step (0-based) */
  int64_t sample0; /* index in the step's global batch of this call's first sample */
  int nseg;        /* segments (>= 1) */
  size_t seg;      /* samples per segment (0: count / nseg) */
  size_t at;       /* index of this call's first sample among all of the net's call's: j * seg
                      in segment j's call, 0 in a call over all of them; a layer keeps
                      per-sample state for backward in its scratch (sized for them all) from
                      sample `at` on (attention) */
  void (*batch_sum)(void *ctx, double *v, size_t len, int nseg);
  void *batch_ctx;
  void (*seg_grad)(void *ctx, int seg, size_t offset, size_t len, const float *g);
  /* with seg_grad: where a tied use's segment gradient goes (a range of an earlier layer's
   * span, which backward reaches after it), with seg_ctx; NULL: to seg_grad */
  void (*tie_grad)(void *ctx, int seg, size_t offset, size_t len, const float *g);
  void *seg_ctx;
  dpt_grad_ready_fn ready;
  void *ready_ctx;
  float *(*grad_at)(void *ready_ctx, size_t offset, size_t len);
  /* params_at, when set: a layer's parameters [offset, offset + len) are read from the buffer
   * params_at(params_ctx, offset, len, backward) returns (len floats, the caller's: ZeRO-3's
   * gathered copy) instead of params + offset, called once per layer with parameters in
   * forward (backward 0, first to last) and once in backward (backward 1, last to first); the
   * buffer must stay valid until the net's next params_at call. params may then be NULL. A
   * tied use (dpt_layer_tie) then reads the copy of the tensor the net took from its owner's
   * buffer in forward. */
  const float *(*params_at)(void *params_ctx, size_t offset, size_t len, int backward);
  void *params_ctx;
  double *seg_loss; /* when set: [nseg] each segment's loss sum (in sample order) */
} dpt_layer_pass;

/* A uniform float in [0, 1) (24 bits) from (seed, step, sample, layer, element): splitmix64
 * over the five, so any rank computes any sample's value. tests/runtime/gen_layer_ref.py and
 * the torch comparisons compute the same function. */
float dpt_layer_hash_uniform(uint64_t seed, long step, int64_t sample, int layer, uint64_t elem);
/* The same for a run of elements: u[j] = dpt_layer_hash_uniform(seed, step, sample, layer,
 * elem0 + j) for j in [0, m), bitwise, with the (seed, step, sample, layer) part hashed once
 * (a mask over a sample costs one mix per element instead of five calls). */
void dpt_layer_hash_run(uint64_t seed, long step, int64_t sample, int layer, uint64_t elem0,
                        size_t m, float *u);

typedef struct dpt_layer dpt_layer;
typedef struct dpt_net dpt_net;

/* --- a layer kind --- */
typedef struct {
  const char *kind;  /* "linear", "relu", ... */
  const char *help;  /* its options, for errors and listings: "out=N (output features)" */
  int elementwise;   /* out shape = in shape, and backward runs in place (dx == dy) */
  int batch;         /* forward and backward couple the samples (batch statistics): called once
                        over all of a call's segments, see dpt_layer_pass; param_grad still per
                        segment */
  int fuse_relu;     /* forward can apply ReLU to its output (when dpt_layer.relu_out is set):
                        the net then lets it do a following relu layer's forward (see net.c) */
  int fuse_relu_bwd; /* backward can do the ReLU backward of a relu layer right before it
                        (when dpt_layer.relu_in is set): the net then skips that relu's */
  /* Reads opts ("key=value,key=value"), checks l->in, sets l->out, declares the parameters
   * (dpt_layer_param) and sets up l->state. An error names the layer (l->name). */
  int (*setup)(dpt_layer *l, const char *opts, char *err, size_t errlen);
  /* Draws the layer's parameters. NULL: no parameters.
   * In init, forward, param_grad and backward, params (and grad) are the layer's own range,
   * l->len floats: tensor i starts at l->tensors[i].offset - l->offset (dpt_layer_at). The
   * net passes slices of one flat buffer, or ZeRO-3's gathered copy (dpt_layer_pass.params_at). */
  void (*init)(const dpt_layer *l, float *params, dpt_layer_rng *rng);
  /* Sets the layer's buffers (dpt_layer_buffer: running statistics) to their initial values;
   * called by dpt_net_init. NULL: no buffers. */
  void (*reset)(dpt_layer *l);
  /* Floats of scratch the layer needs for n samples (l->scratch when called). NULL: none. */
  size_t (*scratch)(const dpt_layer *l, size_t n);
  /* y[n, out] from x[n, in]. */
  void (*forward)(dpt_layer *l, const float *params, const float *x, float *y, size_t n,
                  const dpt_layer_pass *p);
  /* ADDS d(loss)/d(params) into grad (the layer's range, like params), given x, y, dy[n, out].
   * Called before backward with the same dy. NULL: no parameters. */
  void (*param_grad)(dpt_layer *l, const float *params, const float *x, const float *y,
                     const float *dy, float *grad, size_t n, const dpt_layer_pass *p);
  /* dx[n, in] from dy[n, out] (elementwise kinds: dx == dy, in place). Not called for the
   * first layer of a net (nothing needs its input gradient). */
  void (*backward)(dpt_layer *l, const float *params, const float *x, const float *y,
                   const float *dy, float *dx, size_t n, const dpt_layer_pass *p);
  void (*destroy)(dpt_layer *l); /* frees l->state; NULL: nothing to free */
} dpt_layer_ops;

/* --- a layer in a net --- */
struct dpt_layer {
  const dpt_layer_ops *ops;
  const char *name;           /* "fc1" (the net's copy); parameter names are "<name>.<param>" */
  dpt_shape in, out;          /* per sample */
  size_t in_numel, out_numel; /* their element counts */
  int first_tensor, ntensors; /* its parameters in the net's tensor table */
  size_t offset, len;         /* and in the flat buffer */
  const dpt_tensor *tensors;  /* its ntensors tensors (valid from the end of setup on) */
  int first_buffer, nbuffers; /* its buffers in the net's buffer table */
  int index;                  /* its position in the net (0, 1, ...): dropout's stream */
  int skip;                   /* dpt_layer_skip's source: a layer index, -1 the net's input,
                                 -2 none */
  const float *skip_x;        /* forward: the source's output for this call (skip layers) */
  float *skip_dx;             /* backward: ADD d(loss)/d(skip_x) here (skip layers) */
  int tie;                    /* dpt_layer_tie's tensor in the net's table; -1: none */
  const float *tied;          /* forward, param_grad, backward: that tensor's values */
  float *tied_grad;           /* param_grad: ADD its gradient here */
  float *scratch;             /* ops->scratch floats, set by the net before each pass */
  /* set by the net where it fuses a relu into a neighbour (net.c grow): */
  int relu_out;    /* forward writes ReLU of its output (ops->fuse_relu) */
  int fused;       /* a relu whose forward the layer before did (its output is that layer's) */
  int relu_in;     /* backward masks dx where its input is <= 0 (ops->fuse_relu_bwd): the
                      backward of the relu before it */
  int bwd_fused;   /* a relu whose backward the layer after does (skipped) */
  int skip_source; /* set by the net as a layer joins it: a later skip layer reads this output */
  void *state;     /* the layer's own: options, fixed-size buffers */
  dpt_net *net;    /* the net it belongs to */
};

/* Declares a parameter of layer l during setup: tensor "<l->name>.<name>" of shape dims[rank],
 * placed after the net's previous parameters. Returns its index in l->tensors (0, 1, ...). */
int dpt_layer_param(dpt_layer *l, const char *name, int rank, const int64_t *dims, char *err,
                    size_t errlen);

/* Declares a buffer of layer l during setup: state that is not trained but travels with the
 * parameters (BatchNorm's running_mean, running_var, num_batches_tracked), named
 * "<l->name>.<name>" as torch's state_dict names it, float32, in the net's buffer table and
 * checkpoints. Returns its index among l's buffers. */
int dpt_layer_buffer(dpt_layer *l, const char *name, int rank, const int64_t *dims, char *err,
                     size_t errlen);
/* Buffer i of layer l (valid during a pass and in reset). */
float *dpt_layer_buf(const dpt_layer *l, int i);

/* Makes layer l (in setup) a two-input layer: its second input is the output of the earlier
 * layer named from ("input": the net's input), which must have l's input shape; an error names
 * l, from and both shapes. The net then sets skip_x before forward and skip_dx before backward,
 * and adds skip_dx into the source's output gradient (the residual path). */
int dpt_layer_skip(dpt_layer *l, const char *from, char *err, size_t errlen);

/* Makes layer l (in setup) use the tensor "<from>.<name>" of the earlier layer `from` as one of
 * its parameters (weight tying: nanoGPT's lm_head.weight = transformer.wte.weight). The tensor is
 * held once, in its own layer's range (so the checkpoint and the optimizer see it once); the net
 * sets l->tied to its values before forward, param_grad and backward, and l->tied_grad to where
 * param_grad ADDS its gradient: the flat gradient, or in deterministic mode a buffer that goes
 * to seg_grad for the tensor's range after each segment (so the tensor's gradient is the sum of
 * both uses, in the reducer's exact sums). Its shape must be dims[rank]; errors name l, from and
 * both shapes. */
int dpt_layer_tie(dpt_layer *l, const char *from, const char *name, int rank, const int64_t *dims,
                  char *err, size_t errlen);

/* Where tensor i of layer l starts in the layer's params (and grad) slice. */
static inline size_t dpt_layer_at(const dpt_layer *l, int i) {
  return l->tensors[i].offset - l->offset;
}

/* Option `key` of "key=value,..." as a positive integer; def when absent (def < 0: required).
 * Errors name the layer, the key and what was expected. */
int dpt_layer_opt_long(const dpt_layer *l, const char *opts, const char *key, long def, long *out,
                       char *err, size_t errlen);

/* As dpt_layer_opt_long, for a count that may be 0 (padding=0): an integer in [0, INT_MAX]. */
int dpt_layer_opt_count(const dpt_layer *l, const char *opts, const char *key, long def, long *out,
                        char *err, size_t errlen);
/* Checks that every item of opts is key=value with a key of keys (NULL-terminated), each given
 * once: a misspelt or repeated option is an error naming the layer, the option and the layer's
 * help, not a silently used default. */
int dpt_layer_opt_known(const dpt_layer *l, const char *opts, const char *const *keys, char *err,
                        size_t errlen);
/* Option `key` as a double in [lo, hi] (def when absent); errors name the layer, the key and
 * the range. */
int dpt_layer_opt_double(const dpt_layer *l, const char *opts, const char *key, double def,
                         double lo, double hi, double *out, char *err, size_t errlen);
/* Tables whose tensor 0 is drawn N(0, std^2) (embedding, posembed): option std (1, torch's
 * nn.Embedding; nanoGPT's GPT draws 0.02) read into l->state by dpt_layer_opt_std; the init and
 * destroy functions of such a layer. */
int dpt_layer_opt_std(dpt_layer *l, const char *opts, char *err, size_t errlen);
void dpt_layer_init_normal(const dpt_layer *l, float *params, dpt_layer_rng *rng);
void dpt_layer_free_state(dpt_layer *l);
/* Option `key` as text: its start and *len, or NULL when absent. */
const char *dpt_layer_opt_text(const char *opts, const char *key, size_t *len);
/* Shape s as "[16, 28, 28]" into buf[len] (truncated to fit); returns buf. */
const char *dpt_layer_shape_str(const dpt_shape *s, char *buf, size_t len);
/* Checks that l->in is a per-sample [C, H, W] (the spatial layers' input); else an error naming
 * the layer and both shapes. */
int dpt_layer_chw(const dpt_layer *l, char *err, size_t errlen);

/* The layer kinds of kinds.c by name; NULL if unknown. dpt_layer_kinds lists them for help. */
const dpt_layer_ops *dpt_layer_find(const char *kind);
void dpt_layer_kinds(void (*fn)(void *ctx, const dpt_layer_ops *ops), void *ctx);

/* --- losses (loss.c) ---
 * fn ADDS the per-sample losses of logits z[n, k] to *loss_sum in sample order (in double) and,
 * for labels, the number of correct predictions (argmax) to *correct; when d != NULL it writes
 * scale * d(loss)/dz into d[n, k].
 * ce with positions P > 1 (a sequence model's [T, V] output, loss option per_position=1): each
 * sample has P labels, one per row of k / P logits, and its loss is the mean over its P rows, so
 * the batch mean is torch's F.cross_entropy over all B*P positions (nats per token); correct
 * counts rows. */
typedef struct {
  double label_smoothing; /* ce: torch's label_smoothing in [0, 1) */
  int64_t positions;      /* ce: labels per sample (0 or 1: one; T: per_position=1 on [T, V]) */
} dpt_loss_opts;
typedef struct {
  const char *name; /* "ce": softmax cross-entropy on labels; "mse": mean over the k outputs of
                       the squared error on float targets (torch's MSELoss per sample) */
  int labels;       /* 1: takes integer class labels in [0, k); 0: float targets y[n, k] */
  void (*fn)(const float *z, size_t n, int64_t k, const int32_t *labels, const float *y,
             const dpt_loss_opts *o, float scale, float *d, double *loss_sum, int64_t *correct);
} dpt_loss_ops;
const dpt_loss_ops *dpt_loss_find(const char *name); /* NULL if unknown */

/* --- a net: layers applied in sequence, then a loss ---
 * A residual path is a two-input layer (dpt_layer_skip: "add from=NAME"); attention is a layer
 * over [T, C] samples. */

/* A net taking samples of shape in; `what` names it in errors ("mlp"; copied). */
int dpt_net_create(const char *what, const dpt_shape *in, dpt_net **out, char *err, size_t errlen);
void dpt_net_free(dpt_net *n);

/* Appends a layer of a kind from the table (or, with _ops, the caller's kind, which must
 * outlive the net) named name (copied), reading the previous layer's output. */
int dpt_net_add(dpt_net *n, const char *kind, const char *name, const char *opts, char *err,
                size_t errlen);
int dpt_net_add_ops(dpt_net *n, const dpt_layer_ops *ops, const char *name, const char *opts,
                    char *err, size_t errlen);
/* The loss on the last layer's output (its element count is the number of logits/targets). */
int dpt_net_set_loss(dpt_net *n, const char *loss, char *err, size_t errlen);
/* The same with the loss's options ("label_smoothing=0.1" for ce; "" for none; ce's
 * "per_position=1" on a [T, V] output: T labels per sample, see dpt_loss_opts). */
int dpt_net_set_loss_opts(dpt_net *n, const char *loss, const char *opts, char *err, size_t errlen);
const dpt_loss_opts *dpt_net_loss_opts(const dpt_net *n);

/* What the net holds: its tensor table (ntensors entries, valid until the next add or free),
 * the flat buffer length, its layers, the spans of the layers with parameters, shapes. */
const dpt_tensor *dpt_net_tensors(const dpt_net *n, int *ntensors);
size_t dpt_net_nparams(const dpt_net *n);
/* Floats of activations, deltas and scratch a pass keeps per sample (its buffers' size over
 * the samples they hold, about). */
size_t dpt_net_floats_per_sample(const dpt_net *n);
int dpt_net_nlayers(const dpt_net *n);
/* Layers that use an earlier layer's tensor (dpt_layer_tie). Given dpt_layer_pass.grad_at, a
 * tied use's gradient is held by the net and added into the owner's span buffer before the
 * owner's own (so each span's gradient is whole at its ready call); with seg_grad it goes to
 * seg_grad for the tensor's range on its own, outside the owner's span. */
int dpt_net_ties(const dpt_net *n);
const dpt_layer *dpt_net_layer(const dpt_net *n, int i);
const dpt_layer_span *dpt_net_spans(const dpt_net *n, int *nspans);
const dpt_shape *dpt_net_in(const dpt_net *n);
const dpt_shape *dpt_net_out(const dpt_net *n);
const dpt_loss_ops *dpt_net_loss(const dpt_net *n);
/* Its buffers (dpt_layer_buffer): a table like the tensors', offsets into one float array of
 * nbuffer floats (NULL when there are none), which the layers update in training passes. */
const dpt_tensor *dpt_net_buffers(const dpt_net *n, int *nbuffers);
float *dpt_net_buffer_data(dpt_net *n, size_t *nfloats);

/* Draws every layer's parameters, layer by layer, from rng, and resets every buffer. */
void dpt_net_init(dpt_net *n, float *params, dpt_layer_rng *rng);

/* Forward and backward on count samples x[count, numel(in)] with labels[count] or
 * y[count, k]: ADDS scale * d(sum of per-sample losses)/d(params) into grad, returns the loss
 * sum and the number correct, and calls ready(ready_ctx, offset, len) for each span, last to first,
 * as soon as its gradient is final (also when count is 0). Activations are kept in buffers
 * grown to the largest batch seen, so steps of one size allocate nothing. */
int dpt_net_loss_grad(dpt_net *n, const float *params, float *grad, float scale, const float *x,
                      const int32_t *labels, const float *y, size_t count, double *loss_sum,
                      int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx, char *err,
                      size_t errlen);
/* The same with a pass (dpt_layer_pass: dropout's seed/step/sample0, segments, batch_sum,
 * seg_grad, ready); pass->train must be 1. dpt_net_loss_grad is this with seed 0, step 0,
 * sample0 0, one segment and ready. */
int dpt_net_loss_grad_pass(dpt_net *n, const float *params, float *grad, float scale,
                           const float *x, const int32_t *labels, const float *y, size_t count,
                           double *loss_sum, int64_t *correct, const dpt_layer_pass *pass,
                           char *err, size_t errlen);
/* Forward only (evaluation mode): the last layer's output out[count, numel(out)] for count
 * samples x[count, numel(in)] (logits, before the loss), in one chunk. */
int dpt_net_forward(dpt_net *n, const float *params, const float *x, size_t count, float *out,
                    char *err, size_t errlen);
/* Forward only, in chunks of at most DPT_NET_EVAL_CHUNK samples (or the buffers' size). */
#define DPT_NET_EVAL_CHUNK 1024
int dpt_net_evaluate(dpt_net *n, const float *params, const float *x, const int32_t *labels,
                     const float *y, size_t count, double *loss_sum, int64_t *correct, char *err,
                     size_t errlen);
/* The same with the pass's params_at (ZeRO-3: each layer's gathered parameters; its other
 * fields are not used): one forward, so one params_at call per layer with parameters, per
 * chunk of DPT_NET_EVAL_CHUNK samples. */
int dpt_net_evaluate_pass(dpt_net *n, const float *params, const float *x, const int32_t *labels,
                          const float *y, size_t count, double *loss_sum, int64_t *correct,
                          const dpt_layer_pass *pass, char *err, size_t errlen);

#endif /* DPT_LAYERS_H */

/* net.c — a net: layers in sequence and a loss, with their parameters as named tensors in one
 * flat buffer, and the passes over a micro-batch.
 *
 * Invariants:
 * - Tensors are appended as layers declare them, so each layer's are contiguous and layers
 *   follow in order; nparams is the end of the last one.
 * - Activations live in one block grown to the largest batch seen (never shrunk): layer i's
 *   output [cap, out_numel], two delta buffers [cap, widest], then each layer's scratch. A
 *   step of a size seen before allocates nothing.
 * - Backward walks layers last to first: param_grad, then the span's ready call, then the
 *   input gradient, so a bucket's reduction overlaps the rest of backward.
 * - A call's samples are nseg segments (dpt_layer_pass); every layer runs once per segment,
 *   with the same shapes whatever the number of segments, except a batch kind's forward and
 *   backward, which see them all. A skip source's output gradient is the sum of what the next
 *   layer passes back and what its skip layers added (skipacc, zeroed at each backward).
 * - A tied tensor (dpt_layer_tie) lives in its own layer's range only; a layer using it reads
 *   it through l->tied and adds its gradient through l->tied_grad before the owner's ready
 *   call (the owner comes earlier in the net, so later in backward). Given params_at, a use
 *   reads the copy (tie_vals) forward took from the owner's buffer; given grad_at, uses add
 *   into tie_acc, and the owner's span starts from it when backward reaches the owner: that
 *   span's buffer then holds, bitwise, what the whole gradient's range would (0 + the uses',
 *   then the owner's own), and the span stays whole in the owner's pass.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

struct dpt_net {
  char *what; /* the model's name, for errors */
  dpt_shape in;
  size_t in_numel;
  dpt_layer *layers;
  int nlayers, cap_layers;
  dpt_tensor *tensors; /* names are malloc'ed copies */
  int ntensors, cap_tensors;
  size_t nparams;
  dpt_layer_span *spans; /* layers with parameters */
  int nspans;
  const dpt_loss_ops *loss;
  dpt_loss_opts loss_opts;
  dpt_tensor *bufs; /* buffers (dpt_layer_buffer); names malloc'ed */
  int nbufs, cap_bufs;
  float *bufdata; /* nbufdata floats */
  size_t nbufdata;
  float *span_tmp; /* [widest span]: one segment's parameter gradient (seg_grad) */
  size_t span_max;
  float *tie_tmp; /* [largest tied tensor]: one segment's gradient of a tied use (seg_grad) */
  size_t tie_max;
  /* The tied tensors' own copies, for a pass that gives the net no whole buffers: tie_slot[t]
   * is where tensor t lies in them (SIZE_MAX: not tied); tie_vals holds its values, copied
   * from its owner's params_at buffer in forward; tie_acc gathers its tied uses' gradient
   * (grad_at), added into the owner's span when backward reaches it. */
  size_t *tie_slot, tie_total;
  float *tie_vals, *tie_acc;
  float **skipacc; /* [nlayers]: gradient into a skip source's output (NULL: not a source) */
  size_t widest;   /* largest per-sample activation (input included) */
  size_t cap_n;    /* samples the buffers hold */
  float *block;    /* all of them */
  float **outs;    /* [nlayers] into block */
  float **scratch; /* [nlayers] into block (NULL when the layer needs none) */
  float *d0, *d1;  /* deltas, ping-pong */
};

static char *copy_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* numel of a shape; 0 when it overflows size_t */
static size_t shape_numel(const dpt_shape *s) {
  size_t n = 1;
  for (int i = 0; i < s->rank; i++)
    if (s->dims[i] <= 0 || __builtin_mul_overflow(n, (size_t)s->dims[i], &n)) return 0;
  return n;
}

/* --- building --- */

int dpt_net_create(const char *what, const dpt_shape *in, dpt_net **out, char *err, size_t errlen) {
  *out = NULL;
  if (!in || in->rank < 0 || in->rank > DPT_MAX_RANK)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: input shape of rank %d (expected 0 to %d)", what,
                    in ? in->rank : -1, DPT_MAX_RANK);
  size_t numel = shape_numel(in);
  if (!numel)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: input shape has a dimension < 1 or too many "
                    "elements",
                    what);
  dpt_net *n = calloc(1, sizeof *n);
  if (n) n->what = copy_str(what ? what : "net");
  if (!n || !n->what) {
    free(n);
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", what);
  }
  n->in = *in;
  n->in_numel = n->widest = numel;
  *out = n;
  return DPT_OK;
}

/* Frees the tables grow() makes once per layout (not the block) and forgets them. */
static void free_tables(dpt_net *n) {
  free(n->outs), free(n->scratch), free(n->skipacc), free(n->span_tmp), free(n->tie_tmp);
  free(n->tie_slot), free(n->tie_vals), free(n->tie_acc);
  n->outs = n->scratch = n->skipacc = NULL, n->span_tmp = n->tie_tmp = NULL;
  n->tie_slot = NULL, n->tie_vals = n->tie_acc = NULL;
}

void dpt_net_free(dpt_net *n) {
  if (!n) return;
  for (int i = 0; i < n->nlayers; i++) {
    if (n->layers[i].ops->destroy) n->layers[i].ops->destroy(&n->layers[i]);
    free((char *)n->layers[i].name);
  }
  for (int t = 0; t < n->ntensors; t++) free((char *)n->tensors[t].name);
  for (int t = 0; t < n->nbufs; t++) free((char *)n->bufs[t].name);
  free(n->bufs);
  free(n->bufdata);
  free_tables(n);
  free(n->layers);
  free(n->tensors);
  free(n->spans);
  free(n->block);
  free(n->what);
  free(n);
}

/* A tensor of layer l ("<l->name>.<name>", shape dims[rank]) at offset: what parameters and
 * buffers share. `what` names the table in errors ("parameter", "buffer"). */
static int layer_tensor(const dpt_layer *l, const char *what, const char *name, int rank,
                        const int64_t *dims, size_t offset, dpt_tensor *t, char *err,
                        size_t errlen) {
  if (rank < 1 || rank > DPT_MAX_RANK)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: %s '%s' of rank %d (expected 1 to %d)", l->name,
                    what, name, rank, DPT_MAX_RANK);
  memset(t, 0, sizeof *t);
  t->rank = rank;
  size_t numel = 1;
  for (int i = 0; i < rank; i++) {
    t->dims[i] = dims[i];
    if (dims[i] <= 0 || __builtin_mul_overflow(numel, (size_t)dims[i], &numel))
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "%s: %s '%s' has a dimension < 1 or too many elements", l->name, what, name);
  }
  if (numel > SIZE_MAX / sizeof(float) - offset)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: too many %ss", l->name, what);
  size_t len = strlen(l->name) + strlen(name) + 2;
  char *full = malloc(len);
  if (!full) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  snprintf(full, len, "%s.%s", l->name, name);
  t->name = full;
  t->offset = offset;
  t->numel = numel;
  return DPT_OK;
}

/* Room for one more entry in a table of tensors (doubling). */
static int table_room(dpt_tensor **tab, int count, int *cap, const dpt_layer *l, char *err,
                      size_t errlen) {
  if (count < *cap) return DPT_OK;
  int c = *cap ? 2 * *cap : 16;
  dpt_tensor *p = realloc(*tab, (size_t)c * sizeof *p);
  if (!p) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  *tab = p, *cap = c;
  return DPT_OK;
}

int dpt_layer_param(dpt_layer *l, const char *name, int rank, const int64_t *dims, char *err,
                    size_t errlen) {
  dpt_net *n = l->net;
  dpt_tensor t;
  int rc = table_room(&n->tensors, n->ntensors, &n->cap_tensors, l, err, errlen);
  if (!rc) rc = layer_tensor(l, "parameter", name, rank, dims, n->nparams, &t, err, errlen);
  if (rc) return rc;
  if (l->ntensors == 0) l->first_tensor = n->ntensors, l->offset = n->nparams;
  n->tensors[n->ntensors++] = t;
  n->nparams += t.numel;
  l->len += t.numel;
  l->tensors = n->tensors + l->first_tensor;
  return l->ntensors++;
}

int dpt_layer_buffer(dpt_layer *l, const char *name, int rank, const int64_t *dims, char *err,
                     size_t errlen) {
  dpt_net *n = l->net;
  dpt_tensor t;
  int rc = table_room(&n->bufs, n->nbufs, &n->cap_bufs, l, err, errlen);
  if (!rc) rc = layer_tensor(l, "buffer", name, rank, dims, n->nbufdata, &t, err, errlen);
  if (rc) return rc;
  float *data = realloc(n->bufdata, (n->nbufdata + t.numel) * sizeof *data);
  if (!data) {
    free((char *)t.name);
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  }
  n->bufdata = data;
  memset(data + n->nbufdata, 0, t.numel * sizeof *data);
  if (l->nbuffers == 0) l->first_buffer = n->nbufs;
  n->bufs[n->nbufs++] = t;
  n->nbufdata += t.numel;
  return l->nbuffers++;
}

float *dpt_layer_buf(const dpt_layer *l, int i) {
  return l->net->bufdata + l->net->bufs[l->first_buffer + i].offset;
}

int dpt_layer_skip(dpt_layer *l, const char *from, char *err, size_t errlen) {
  dpt_net *n = l->net;
  const dpt_shape *s = NULL;
  int src = -2;
  if (from && !strcmp(from, "input")) {
    src = -1, s = &n->in;
  } else {
    for (int i = 0; from && i < n->nlayers; i++)
      if (!strcmp(n->layers[i].name, from)) src = i, s = &n->layers[i].out;
  }
  if (!s)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: from='%s' names no earlier layer (expected a layer above it, or "
                    "input)",
                    l->name, from ? from : "");
  int same = s->rank == l->in.rank;
  for (int i = 0; same && i < s->rank; i++) same = s->dims[i] == l->in.dims[i];
  if (!same) {
    char a[96], b[96];
    return dpt_errf(
        err, errlen, DPT_EINVAL,
        "%s: adds %s's output of shape %s to an input of shape %s (expected equal shapes)", l->name,
        from, dpt_layer_shape_str(s, a, sizeof a), dpt_layer_shape_str(&l->in, b, sizeof b));
  }
  l->skip = src;
  return DPT_OK;
}

int dpt_layer_tie(dpt_layer *l, const char *from, const char *name, int rank, const int64_t *dims,
                  char *err, size_t errlen) {
  dpt_net *n = l->net;
  const dpt_layer *src = NULL;
  for (int i = 0; from && i < n->nlayers; i++)
    if (!strcmp(n->layers[i].name, from)) src = &n->layers[i];
  if (!src)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: tie=%s names no earlier layer (expected a layer above it)", l->name,
                    from ? from : "");
  size_t plen = strlen(from);
  int t = -1;
  for (int k = src->first_tensor; k < src->first_tensor + src->ntensors; k++)
    if (!strncmp(n->tensors[k].name, from, plen) && n->tensors[k].name[plen] == '.' &&
        !strcmp(n->tensors[k].name + plen + 1, name))
      t = k;
  if (t < 0)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: tie=%s: layer %s has no parameter '%s'", l->name,
                    from, from, name);
  const dpt_tensor *w = &n->tensors[t];
  int same = w->rank == rank;
  for (int i = 0; same && i < rank; i++) same = w->dims[i] == dims[i];
  if (!same) {
    dpt_shape a = {w->rank, {0}}, b = {rank, {0}};
    for (int i = 0; i < w->rank; i++) a.dims[i] = w->dims[i];
    for (int i = 0; i < rank; i++) b.dims[i] = dims[i];
    char sa[96], sb[96];
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: tie=%s: %s has shape %s, this layer's %s is %s (expected equal)", l->name,
                    from, w->name, dpt_layer_shape_str(&a, sa, sizeof sa), name,
                    dpt_layer_shape_str(&b, sb, sizeof sb));
  }
  l->tie = t;
  if (w->numel > n->tie_max) n->tie_max = w->numel;
  return DPT_OK;
}

/* splitmix64's output function of x (one step from state x) */
static uint64_t mix(uint64_t x) {
  return dpt_splitmix64(&x);
}

/* the hash of (seed, step, sample, layer): the state every element's value is mixed from */
static uint64_t hash_prefix(uint64_t seed, long step, int64_t sample, int layer) {
  uint64_t h = mix(seed ^ 0x64707464726f70ULL); /* "dptdrop" */
  h = mix(h ^ (uint64_t)step);
  h = mix(h ^ (uint64_t)sample);
  return mix(h ^ (uint64_t)(unsigned)layer);
}

float dpt_layer_hash_uniform(uint64_t seed, long step, int64_t sample, int layer, uint64_t elem) {
  uint64_t h = mix(hash_prefix(seed, step, sample, layer) ^ elem);
  return (float)(h >> 40) * 0x1p-24f;
}

/* dpt_splitmix64's output from state x, inlined for the per-element loop (the same constants as
 * runtime/base/misc.c; test_layer_segments compares dpt_layer_hash_run with
 * dpt_layer_hash_uniform bitwise) */
static inline uint64_t mix_inline(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void dpt_layer_hash_run(uint64_t seed, long step, int64_t sample, int layer, uint64_t elem0,
                        size_t m, float *u) {
  uint64_t h = hash_prefix(seed, step, sample, layer);
  for (size_t j = 0; j < m; j++)
    u[j] = (float)(mix_inline(h ^ (elem0 + (uint64_t)j)) >> 40) * 0x1p-24f;
}

/* After the tensor table moved: every layer's view of it, and the spans' names. */
static void relink(dpt_net *n) {
  for (int i = 0; i < n->nlayers; i++)
    n->layers[i].tensors = n->layers[i].ntensors ? n->tensors + n->layers[i].first_tensor : NULL;
}

int dpt_net_add_ops(dpt_net *n, const dpt_layer_ops *ops, const char *name, const char *opts,
                    char *err, size_t errlen) {
  if (!ops || !name || !name[0])
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: a layer needs a kind and a name", n->what);
  for (int i = 0; i < n->nlayers; i++)
    if (!strcmp(n->layers[i].name, name))
      return dpt_errf(err, errlen, DPT_EINVAL, "%s: two layers are named '%s'", n->what, name);
  if (n->nlayers == n->cap_layers) {
    int cap = n->cap_layers ? 2 * n->cap_layers : 8;
    dpt_layer *p = realloc(n->layers, (size_t)cap * sizeof *p);
    if (!p) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", name);
    n->layers = p, n->cap_layers = cap;
    relink(n);
  }
  if (n->nspans == INT_MAX) return dpt_errf(err, errlen, DPT_EINVAL, "%s: too many layers", name);
  dpt_layer *l = &n->layers[n->nlayers];
  memset(l, 0, sizeof *l);
  l->ops = ops;
  l->net = n;
  l->name = copy_str(name);
  if (!l->name) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", name);
  l->in = n->nlayers ? n->layers[n->nlayers - 1].out : n->in;
  l->in_numel = n->nlayers ? n->layers[n->nlayers - 1].out_numel : n->in_numel;
  l->index = n->nlayers;
  l->skip = -2;
  l->tie = -1;
  l->first_buffer = n->nbufs;
  int t0 = n->ntensors, b0 = n->nbufs;
  size_t p0 = n->nparams, d0 = n->nbufdata;
  int rc = ops->setup(l, opts ? opts : "", err, errlen);
  if (!rc && ops->elementwise) l->out = l->in;
  if (!rc && !(l->out_numel = shape_numel(&l->out)))
    rc = dpt_errf(err, errlen, DPT_EINVAL,
                  "%s: output shape has a dimension < 1 or too many "
                  "elements",
                  name);
  dpt_layer_span *spans = NULL;
  if (!rc && l->ntensors) {
    spans = realloc(n->spans, (size_t)(n->nspans + 1) * sizeof *spans);
    if (!spans)
      rc = dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", name);
    else
      n->spans = spans;
  }
  if (rc) { /* as if never added */
    if (ops->destroy) ops->destroy(l);
    for (int t = t0; t < n->ntensors; t++) free((char *)n->tensors[t].name);
    for (int t = b0; t < n->nbufs; t++) free((char *)n->bufs[t].name);
    n->ntensors = t0, n->nparams = p0, n->nbufs = b0, n->nbufdata = d0;
    free((char *)l->name);
    return rc;
  }
  if (l->ntensors)
    n->spans[n->nspans++] =
        (dpt_layer_span){l->name, l->first_tensor, l->ntensors, l->offset, l->len};
  if (l->out_numel > n->widest) n->widest = l->out_numel;
  if (l->len > n->span_max) n->span_max = l->len;
  if (l->skip >= 0) n->layers[l->skip].skip_source = 1;
  n->nlayers++;
  relink(n);
  free(n->block); /* buffers are laid out again (for one more layer) at the next pass */
  n->block = NULL;
  free_tables(n);
  n->cap_n = 0;
  return DPT_OK;
}

int dpt_net_add(dpt_net *n, const char *kind, const char *name, const char *opts, char *err,
                size_t errlen) {
  const dpt_layer_ops *ops = kind ? dpt_layer_find(kind) : NULL;
  if (!ops)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: layer kind '%s' is unknown", name ? name : "?",
                    kind ? kind : "(null)");
  return dpt_net_add_ops(n, ops, name, opts, err, errlen);
}

int dpt_net_set_loss(dpt_net *n, const char *loss, char *err, size_t errlen) {
  return dpt_net_set_loss_opts(n, loss, "", err, errlen);
}

int dpt_net_set_loss_opts(dpt_net *n, const char *loss, const char *opts, char *err,
                          size_t errlen) {
  const dpt_loss_ops *l = loss ? dpt_loss_find(loss) : NULL;
  if (!l)
    return dpt_errf(err, errlen, DPT_EINVAL, "loss '%s' is unknown (expected ce or mse)",
                    loss ? loss : "(null)");
  /* the options are read as a layer's are, named after the loss */
  static const dpt_layer_ops loss_kind = {.kind = "loss",
                                          .help = "label_smoothing=F in [0, 1), per_position=0|1 "
                                                  "(ce)"};
  dpt_layer named = {.ops = &loss_kind, .name = "loss"};
  static const char *const ce_keys[] = {"label_smoothing", "per_position", NULL}, *const none[] = {
                                                                                      NULL};
  dpt_loss_opts o = {0};
  double per_position = 0;
  int rc = dpt_layer_opt_known(&named, opts, strcmp(l->name, "ce") ? none : ce_keys, err, errlen);
  if (!rc)
    rc = dpt_layer_opt_double(&named, opts, "label_smoothing", 0.0, 0.0, 0.999999,
                              &o.label_smoothing, err, errlen);
  if (!rc)
    rc = dpt_layer_opt_double(&named, opts, "per_position", 0, 0, 1, &per_position, err, errlen);
  if (rc) return rc;
  const dpt_shape *out = dpt_net_out(n);
  if (per_position == 1 && out->rank != 2) {
    char sh[64];
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "loss: per_position=1 needs a [T, V] output, the net's is %s",
                    dpt_layer_shape_str(out, sh, sizeof sh));
  }
  if (per_position == 1) o.positions = out->dims[0];
  n->loss = l;
  n->loss_opts = o;
  return DPT_OK;
}

const dpt_loss_opts *dpt_net_loss_opts(const dpt_net *n) {
  return &n->loss_opts;
}

const dpt_tensor *dpt_net_buffers(const dpt_net *n, int *nbuffers) {
  if (nbuffers) *nbuffers = n->nbufs;
  return n->bufs;
}

float *dpt_net_buffer_data(dpt_net *n, size_t *nfloats) {
  if (nfloats) *nfloats = n->nbufdata;
  return n->bufdata;
}

const dpt_tensor *dpt_net_tensors(const dpt_net *n, int *ntensors) {
  if (ntensors) *ntensors = n->ntensors;
  return n->tensors;
}
/* Floats per sample of the block grow() lays out, scratch aside: each output (twice for a skip
 * source: its gradient accumulator) and the two deltas. */
static size_t block_per_sample(const dpt_net *n) {
  size_t per = 2 * n->widest;
  for (int i = 0; i < n->nlayers; i++)
    per += n->layers[i].out_numel * (n->layers[i].skip_source ? 2 : 1);
  return per;
}

size_t dpt_net_floats_per_sample(const dpt_net *n) {
  size_t per = block_per_sample(n);
  for (int i = 0; i < n->nlayers; i++) /* scratch per sample: what 64 samples take, rounded up */
    if (n->layers[i].ops->scratch) per += (n->layers[i].ops->scratch(&n->layers[i], 64) + 63) / 64;
  return per;
}

size_t dpt_net_nparams(const dpt_net *n) {
  return n->nparams;
}
int dpt_net_ties(const dpt_net *n) {
  int k = 0;
  for (int i = 0; i < n->nlayers; i++) k += n->layers[i].tie >= 0;
  return k;
}

int dpt_net_nlayers(const dpt_net *n) {
  return n->nlayers;
}
const dpt_layer *dpt_net_layer(const dpt_net *n, int i) {
  return i >= 0 && i < n->nlayers ? &n->layers[i] : NULL;
}
const dpt_layer_span *dpt_net_spans(const dpt_net *n, int *nspans) {
  if (nspans) *nspans = n->nspans;
  return n->spans;
}
const dpt_shape *dpt_net_in(const dpt_net *n) {
  return &n->in;
}
const dpt_shape *dpt_net_out(const dpt_net *n) {
  return n->nlayers ? &n->layers[n->nlayers - 1].out : &n->in;
}
const dpt_loss_ops *dpt_net_loss(const dpt_net *n) {
  return n->loss;
}

void dpt_net_init(dpt_net *n, float *params, dpt_layer_rng *rng) {
  for (int i = 0; i < n->nlayers; i++) {
    if (n->layers[i].ops->init)
      n->layers[i].ops->init(&n->layers[i], params + n->layers[i].offset, rng);
    if (n->layers[i].ops->reset) n->layers[i].ops->reset(&n->layers[i]);
  }
}

/* --- buffers --- */

/* Makes the buffers hold count samples (laid out with stride cap_n). */
static int grow(dpt_net *n, size_t count, char *err, size_t errlen) {
  if (count <= n->cap_n && n->block) return DPT_OK;
  if (!n->outs && n->nlayers) {
    n->outs = calloc((size_t)n->nlayers, sizeof *n->outs);
    n->scratch = calloc((size_t)n->nlayers, sizeof *n->scratch);
    n->skipacc = calloc((size_t)n->nlayers, sizeof *n->skipacc);
    n->span_tmp = malloc((n->span_max ? n->span_max : 1) * sizeof *n->span_tmp);
    n->tie_tmp = malloc((n->tie_max ? n->tie_max : 1) * sizeof *n->tie_tmp);
    n->tie_slot = malloc(((size_t)n->ntensors + 1) * sizeof *n->tie_slot);
    n->tie_total = 0;
    for (int t = 0; n->tie_slot && t < n->ntensors; t++) n->tie_slot[t] = SIZE_MAX;
    for (int i = 0; n->tie_slot && i < n->nlayers; i++) {
      int t = n->layers[i].tie;
      if (t >= 0 && n->tie_slot[t] == SIZE_MAX)
        n->tie_slot[t] = n->tie_total, n->tie_total += n->tensors[t].numel;
    }
    n->tie_vals = malloc((n->tie_total ? n->tie_total : 1) * sizeof *n->tie_vals);
    n->tie_acc = malloc((n->tie_total ? n->tie_total : 1) * sizeof *n->tie_acc);
    if (!n->outs || !n->scratch || !n->skipacc || !n->span_tmp || !n->tie_tmp || !n->tie_slot ||
        !n->tie_vals || !n->tie_acc) {
      free_tables(n);
      return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", n->what);
    }
  }
  size_t per = block_per_sample(n), total, extra = 0;
  for (int i = 0; i < n->nlayers; i++)
    if (n->layers[i].ops->scratch) extra += n->layers[i].ops->scratch(&n->layers[i], count);
  if (count > SIZE_MAX / sizeof(float) / per ||
      __builtin_add_overflow(count * per, extra, &total) || total > SIZE_MAX / sizeof(float))
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: batch of %zu samples is too large", n->what,
                    count);
  float *s = total > SIZE_MAX / sizeof(float) ? NULL : realloc(n->block, total * sizeof(float));
  if (!s)
    return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory for a batch of %zu samples",
                    n->what, count);
  n->block = s, n->cap_n = count;
  for (int i = 0; i < n->nlayers; i++) {
    dpt_layer *l = &n->layers[i], *prev = i ? l - 1 : NULL;
    /* a relu after a layer that can apply it (batchnorm) and whose output nothing else reads:
     * done in that layer's forward pass over the data, in its output buffer (relu's backward
     * masks with z <= 0, the same for z and relu(z)) */
    l->fused = prev && !strcmp(l->ops->kind, "relu") && prev->ops->fuse_relu && !prev->skip_source;
    if (prev) prev->relu_out = l->fused;
    n->outs[i] = l->fused ? n->outs[i - 1] : s;
    if (!l->fused) s += count * l->out_numel;
    /* a relu before a layer whose backward can mask with its input (maxpool: dx is dy at the
     * window's maximum m, and relu's mask at that position is m <= 0), read by nothing else */
    dpt_layer *next = i + 1 < n->nlayers ? l + 1 : NULL;
    l->bwd_fused =
        next && !strcmp(l->ops->kind, "relu") && next->ops->fuse_relu_bwd && !l->skip_source;
    if (next) next->relu_in = l->bwd_fused;
  }
  for (int i = 0; i < n->nlayers; i++) {
    n->skipacc[i] = n->layers[i].skip_source ? s : NULL;
    if (n->layers[i].skip_source) s += count * n->layers[i].out_numel;
  }
  n->d0 = s, s += count * n->widest;
  n->d1 = s, s += count * n->widest;
  for (int i = 0; i < n->nlayers; i++) {
    size_t f = n->layers[i].ops->scratch ? n->layers[i].ops->scratch(&n->layers[i], count) : 0;
    n->scratch[i] = f ? s : NULL;
    s += f;
  }
  return DPT_OK;
}

/* --- passes --- */

/* Checks the batch's inputs and labels before anything is touched. */
static int check_batch(const dpt_net *n, const float *x, const int32_t *labels, const float *y,
                       size_t count, char *err, size_t errlen) {
  if (!n->loss) return dpt_errf(err, errlen, DPT_EINVAL, "%s: no loss is set", n->what);
  if (count == 0) return DPT_OK;
  if (count > INT_MAX)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: batch of %zu samples is too large (at most %d)",
                    n->what, count, INT_MAX);
  if (!x) return dpt_errf(err, errlen, DPT_EINVAL, "%s: inputs x are missing", n->what);
  if (!n->loss->labels)
    return y ? DPT_OK
             : dpt_errf(err, errlen, DPT_EINVAL, "%s: loss %s needs float targets y", n->what,
                        n->loss->name);
  if (!labels)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: loss %s needs labels", n->what, n->loss->name);
  size_t pos = n->loss_opts.positions > 1 ? (size_t)n->loss_opts.positions : 1;
  int64_t k = (int64_t)(shape_numel(dpt_net_out(n)) / pos);
  for (size_t i = 0; i < count * pos; i++)
    if (labels[i] < 0 || labels[i] >= k)
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "%s: label %ld of sample %zu in the batch is outside [0, %ld)", n->what,
                      (long)labels[i], i / pos, (long)k);
  return DPT_OK;
}

/* Segment j of a pass: one segment of seg samples starting at sample j * seg. */
static dpt_layer_pass segment(const dpt_layer_pass *p, int j, size_t seg) {
  dpt_layer_pass q = *p;
  q.sample0 = p->sample0 + (int64_t)j * (int64_t)seg;
  q.nseg = 1, q.seg = seg, q.at = p->at + (size_t)j * seg;
  return q;
}

/* The second input of layer l for segment j (skip layers), or NULL. */
static const float *skip_in(const dpt_net *n, const dpt_layer *l, const float *x, size_t at) {
  if (l->skip == -1) return x + at * n->in_numel;
  if (l->skip >= 0) return n->outs[l->skip] + at * n->layers[l->skip].out_numel;
  return NULL;
}

/* Layer l's parameters in this pass: the caller's copy (params_at: ZeRO-3's gathered span) or
 * its slice of params. A layer without parameters gets its (empty) slice, or NULL. */
static const float *layer_params(const dpt_layer *l, const float *params, const dpt_layer_pass *p,
                                 int backward) {
  if (l->len && p->params_at) return p->params_at(p->params_ctx, l->offset, l->len, backward);
  return params ? params + l->offset : NULL;
}

/* The values a tied use of layer l reads: its owner's range of params, or (params_at) the copy
 * forward took. */
static const float *tied_values(const dpt_net *n, const dpt_layer *l, const float *params,
                                const dpt_layer_pass *p) {
  if (l->tie < 0) return NULL;
  return p->params_at ? n->tie_vals + n->tie_slot[l->tie] : params + n->tensors[l->tie].offset;
}

/* Owner layer l's tied tensors between the net's tie buffers and its span slice `at` (its
 * params_at buffer, or its grad_at buffer): to_ties copies values out, else the uses'
 * gradient is added in. */
static void tie_exchange(dpt_net *n, const dpt_layer *l, float *at, const float *from,
                         int to_ties) {
  for (int k = l->first_tensor; n->tie_total && k < l->first_tensor + l->ntensors; k++) {
    if (n->tie_slot[k] == SIZE_MAX) continue;
    size_t off = n->tensors[k].offset - l->offset, len = n->tensors[k].numel;
    if (to_ties) {
      memcpy(n->tie_vals + n->tie_slot[k], from + off, len * sizeof *from);
    } else {
      const float *acc = n->tie_acc + n->tie_slot[k];
      for (size_t i = 0; i < len; i++) at[off + i] += acc[i];
    }
  }
}

/* Runs every layer on nseg segments of seg samples; returns the last output (x itself without
 * layers). */
static const float *forward(dpt_net *n, const float *params, const float *x, size_t seg,
                            const dpt_layer_pass *p) {
  const float *in = x;
  for (int i = 0; i < n->nlayers; i++) {
    dpt_layer *l = &n->layers[i];
    l->scratch = n->scratch[i];
    if (l->fused) { /* done by layer i - 1, in place */
      in = n->outs[i];
      continue;
    }
    l->tied = tied_values(n, l, params, p);
    const float *lp = layer_params(l, params, p, 0);
    if (p->params_at && l->len) tie_exchange(n, l, NULL, lp, 1);
    if (l->ops->batch) {
      l->skip_x = skip_in(n, l, x, 0);
      l->ops->forward(l, lp, in, n->outs[i], seg * (size_t)p->nseg, p);
    } else {
      for (int j = 0; j < p->nseg; j++) {
        size_t at = (size_t)j * seg;
        dpt_layer_pass q = segment(p, j, seg);
        l->skip_x = skip_in(n, l, x, at);
        l->ops->forward(l, lp, in + at * l->in_numel, n->outs[i] + at * l->out_numel, seg, &q);
      }
    }
    in = n->outs[i];
  }
  return in;
}

/* The gradient into a skip layer's second input for samples from `at` (NULL: the net's input,
 * whose gradient nothing needs). */
static float *skip_grad(const dpt_net *n, const dpt_layer *l, size_t at) {
  return l->skip >= 0 ? n->skipacc[l->skip] + at * n->layers[l->skip].out_numel : NULL;
}

/* Layer l's parameter gradient, segment by segment: into grad (the span's own, l->len), or
 * each segment's alone to p->seg_grad; a tied tensor's into whole (the whole gradient), into
 * tie_acc (grad_at: see tie_exchange) or to p->seg_grad. */
static void param_grads(dpt_net *n, dpt_layer *l, const float *lp, const float *in, const float *d,
                        float *grad, float *whole, size_t seg, const dpt_layer_pass *p) {
  for (int j = 0; j < p->nseg; j++) {
    size_t at = (size_t)j * seg;
    dpt_layer_pass q = segment(p, j, seg);
    float *g = grad;
    const dpt_tensor *t = l->tie >= 0 ? &n->tensors[l->tie] : NULL;
    if (p->seg_grad) memset(g = n->span_tmp, 0, l->len * sizeof *g);
    if (t)
      l->tied_grad = p->seg_grad  ? n->tie_tmp
                     : p->grad_at ? n->tie_acc + n->tie_slot[l->tie]
                                  : whole + t->offset;
    if (t && p->seg_grad) memset(n->tie_tmp, 0, t->numel * sizeof *n->tie_tmp);
    l->ops->param_grad(l, lp, in + at * l->in_numel, n->outs[l->index] + at * l->out_numel,
                       d + at * l->out_numel, g, seg, &q);
    if (p->seg_grad && l->len) p->seg_grad(p->seg_ctx, j, l->offset, l->len, g);
    if (p->seg_grad && t)
      (p->tie_grad ? p->tie_grad : p->seg_grad)(p->seg_ctx, j, t->offset, t->numel, n->tie_tmp);
  }
}

/* Walks layers last to first from the seed gradient in n->d0. */
static void backward(dpt_net *n, const float *params, float *grad, const float *x, size_t seg,
                     const dpt_layer_pass *p) {
  float *d = n->d0, *dn = n->d1;
  size_t count = seg * (size_t)p->nseg;
  for (int i = 0; i < n->nlayers; i++)
    if (n->skipacc[i]) memset(n->skipacc[i], 0, count * n->layers[i].out_numel * sizeof(float));
  int fold = p->grad_at && !p->seg_grad; /* tied uses add into tie_acc */
  if (fold) memset(n->tie_acc, 0, n->tie_total * sizeof *n->tie_acc);
  for (int i = n->nlayers - 1; i >= 0; i--) {
    dpt_layer *l = &n->layers[i];
    const float *in = i ? n->outs[i - 1] : x;
    l->scratch = n->scratch[i];
    l->tied = tied_values(n, l, params, p);
    const float *lp = layer_params(l, params, p, 1);
    if (n->skipacc[i]) { /* the residual path's share of this output's gradient */
      const float *a = n->skipacc[i];
      for (size_t k = 0; k < count * l->out_numel; k++) d[k] += a[k];
    }
    /* the span's gradient: grad's, the caller's buffer (grad_at), or none (seg_grad's own) */
    float *g = p->seg_grad            ? NULL
               : p->grad_at && l->len ? p->grad_at(p->ready_ctx, l->offset, l->len)
               : grad                 ? grad + l->offset
                                      : NULL;
    if (fold && g) tie_exchange(n, l, g, NULL, 0); /* its uses' share comes first */
    if (l->ops->param_grad) param_grads(n, l, lp, in, d, g, grad, seg, p);
    if (l->len && p->ready) p->ready(p->ready_ctx, l->offset, l->len);
    if (i == 0) break;
    if (l->bwd_fused) continue; /* done by layer i + 1, in place */
    float *dx = l->ops->elementwise ? d : dn;
    if (l->ops->batch) {
      l->skip_dx = skip_grad(n, l, 0);
      l->ops->backward(l, lp, in, n->outs[i], d, dx, count, p);
    } else {
      for (int j = 0; j < p->nseg; j++) {
        size_t at = (size_t)j * seg;
        dpt_layer_pass q = segment(p, j, seg);
        l->skip_dx = skip_grad(n, l, at);
        l->ops->backward(l, lp, in + at * l->in_numel, n->outs[i] + at * l->out_numel,
                         d + at * l->out_numel, dx + at * l->in_numel, seg, &q);
      }
    }
    if (dx != d) {
      float *t = d;
      d = dn, dn = t;
    }
  }
}

int dpt_net_loss_grad_pass(dpt_net *n, const float *params, float *grad, float scale,
                           const float *x, const int32_t *labels, const float *y, size_t count,
                           double *loss_sum, int64_t *correct, const dpt_layer_pass *pass,
                           char *err, size_t errlen) {
  double loss = 0.0;
  int64_t ok = 0;
  int rc = check_batch(n, x, labels, y, count, err, errlen);
  if (rc) return rc;
  dpt_layer_pass p = *pass;
  p.train = 1, p.at = 0;
  if (p.nseg < 1) p.nseg = 1;
  size_t seg = p.seg ? p.seg : count / (size_t)p.nseg;
  if (seg * (size_t)p.nseg != count || (count && !seg))
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: %zu samples are not %d segments of %zu (the pass's segments)", n->what,
                    count, p.nseg, p.seg);
  p.seg = seg;
  rc = grow(n, count ? count : 1, err, errlen);
  if (rc) return rc;
  if (count > 0) {
    const float *z = forward(n, params, x, seg, &p);
    int64_t k = (int64_t)shape_numel(dpt_net_out(n));
    size_t pos = n->loss_opts.positions > 1 ? (size_t)n->loss_opts.positions : 1;
    if (p.seg_loss) { /* each segment's sum on its own, then their total in order */
      for (int j = 0; j < p.nseg; j++) {
        size_t at = (size_t)j * seg;
        p.seg_loss[j] = 0;
        n->loss->fn(z + at * (size_t)k, seg, k, labels ? labels + at * pos : NULL,
                    y ? y + at * (size_t)k : NULL, &n->loss_opts, scale, n->d0 + at * (size_t)k,
                    &p.seg_loss[j], &ok);
        loss += p.seg_loss[j];
      }
    } else {
      n->loss->fn(z, count, k, labels, y, &n->loss_opts, scale, n->d0, &loss, &ok);
    }
    backward(n, params, grad, x, seg, &p);
  } else {
    for (int s = n->nspans - 1; p.ready && s >= 0; s--) {
      if (p.grad_at && !p.seg_grad) p.grad_at(p.ready_ctx, n->spans[s].offset, n->spans[s].len);
      p.ready(p.ready_ctx, n->spans[s].offset, n->spans[s].len);
    }
  }
  if (loss_sum) *loss_sum = loss;
  if (correct) *correct = ok;
  return DPT_OK;
}

int dpt_net_loss_grad(dpt_net *n, const float *params, float *grad, float scale, const float *x,
                      const int32_t *labels, const float *y, size_t count, double *loss_sum,
                      int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx, char *err,
                      size_t errlen) {
  dpt_layer_pass p = {.train = 1, .nseg = 1, .ready = ready, .ready_ctx = ready_ctx};
  return dpt_net_loss_grad_pass(n, params, grad, scale, x, labels, y, count, loss_sum, correct, &p,
                                err, errlen);
}

int dpt_net_forward(dpt_net *n, const float *params, const float *x, size_t count, float *out,
                    char *err, size_t errlen) {
  if (count == 0) return DPT_OK;
  if (!x || !out) return dpt_errf(err, errlen, DPT_EINVAL, "%s: forward needs x and out", n->what);
  int rc = grow(n, count, err, errlen);
  if (rc) return rc;
  dpt_layer_pass p = {.train = 0, .nseg = 1, .seg = count};
  const float *z = forward(n, params, x, count, &p);
  memcpy(out, z, count * shape_numel(dpt_net_out(n)) * sizeof *out);
  return DPT_OK;
}

int dpt_net_evaluate(dpt_net *n, const float *params, const float *x, const int32_t *labels,
                     const float *y, size_t count, double *loss_sum, int64_t *correct, char *err,
                     size_t errlen) {
  dpt_layer_pass p = {.train = 0, .nseg = 1};
  return dpt_net_evaluate_pass(n, params, x, labels, y, count, loss_sum, correct, &p, err, errlen);
}

int dpt_net_evaluate_pass(dpt_net *n, const float *params, const float *x, const int32_t *labels,
                          const float *y, size_t count, double *loss_sum, int64_t *correct,
                          const dpt_layer_pass *pass, char *err, size_t errlen) {
  double loss = 0.0;
  int64_t ok = 0;
  int rc = check_batch(n, x, labels, y, count, err, errlen);
  size_t chunk = count < DPT_NET_EVAL_CHUNK ? count : DPT_NET_EVAL_CHUNK;
  if (chunk < n->cap_n) chunk = n->cap_n;
  if (!rc && count > 0) rc = grow(n, chunk, err, errlen);
  if (rc) return rc;
  size_t in = n->in_numel, k = shape_numel(dpt_net_out(n));
  dpt_layer_pass p = {
      .train = 0, .nseg = 1, .params_at = pass->params_at, .params_ctx = pass->params_ctx};
  for (size_t s = 0; s < count; s += chunk) {
    size_t len = count - s < chunk ? count - s : chunk;
    p.seg = len;
    const float *z = forward(n, params, x + s * in, len, &p);
    size_t pos = n->loss_opts.positions > 1 ? (size_t)n->loss_opts.positions : 1;
    n->loss->fn(z, len, (int64_t)k, labels ? labels + s * pos : NULL, y ? y + s * k : NULL,
                &n->loss_opts, 1.0f, NULL, &loss, &ok);
  }
  if (loss_sum) *loss_sum = loss;
  if (correct) *correct = ok;
  return DPT_OK;
}

/* --- options: "key=value,key=value" --- */

int dpt_layer_opt_long(const dpt_layer *l, const char *opts, const char *key, long def, long *out,
                       char *err, size_t errlen) {
  size_t klen = strlen(key);
  for (const char *p = opts ? opts : ""; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > klen && !strncmp(p, key, klen) && p[klen] == '=') {
      long v = 0;
      int good = len > klen + 1;
      for (size_t i = klen + 1; good && i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
          good = 0;
        else if (v <= INT_MAX)
          v = v * 10 + (p[i] - '0');
      }
      if (!good || v <= 0 || v > INT_MAX)
        return dpt_errf(err, errlen, DPT_EINVAL,
                        "%s: option %s='%.*s' (expected an integer in "
                        "[1, %d])",
                        l->name, key, (int)(len - klen - 1), p + klen + 1, INT_MAX);
      *out = v;
      return DPT_OK;
    }
    p = end ? end + 1 : p + len;
  }
  if (def < 0)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: option '%s' is missing (expected %s)", l->name,
                    key, l->ops->help ? l->ops->help : "its options");
  *out = def;
  return DPT_OK;
}

/* model_mlp.c — the built-in MLP ("mlp:IN-H1-...-OUT"): Linear layers fc1, fc2, ... with an
 * activation between them, softmax cross-entropy or MSE on top, forward and backward with
 * cblas_sgemm.
 *
 * Invariants:
 * - Tensors are fc1.weight [out, in], fc1.bias [out], fc2.weight, ... in that order in the flat
 *   buffer, so a layer's weight and bias are one contiguous range.
 * - init draws weights then bias of fc1, then fc2, ... from dpt_rng(seed, 0), each uniform in
 *   [-1/sqrt(in), 1/sqrt(in)] as torch.nn.Linear: the same seed gives the same parameters.
 * - loss_grad ADDS scale * d(loss_sum)/d(params) into grad, touching each element exactly once
 *   per call, and reports each layer (last to first) to ready once its range is final.
 * - Arithmetic is fp32, per-sample losses are summed in double, in sample order; bias gradients
 *   are summed in double in row order, so results do not depend on chunking or threads.
 * - Scratch (pre-activations, activations, deltas) lives in ctx, grown to the largest batch.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define MLP_MAX_LAYERS (DPT_MAX_TENSORS / 2)
#define MLP_EVAL_CHUNK 1024
#define MLP_SPEC_HINT "expected e.g. mlp:784-256-10"

enum { ACT_RELU, ACT_TANH, ACT_GELU, ACT_SIGMOID };
enum { LOSS_CE, LOSS_MSE };

typedef struct {
  int nlayers;
  int64_t sizes[MLP_MAX_LAYERS + 1]; /* sizes[0] = in, sizes[nlayers] = out */
  int64_t maxw;                      /* widest of sizes[] */
  int act, loss;
  size_t cap_n;                      /* samples the scratch holds */
  float *scratch;
  float *z[MLP_MAX_LAYERS];          /* pre-activations [cap_n, out_l] */
  float *h[MLP_MAX_LAYERS];          /* activations [cap_n, out_l] (unused for the last) */
  float *d0, *d1;                    /* deltas [cap_n, maxw], ping-pong */
  double *bacc;                      /* [maxw] bias-gradient sums */
} mlp_ctx;

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* ---- parsing ---- */

/* Parses one layer size of len chars at s: digits only, positive, at most INT_MAX. */
static int parse_size(const char *spec, const char *s, size_t len, int64_t *out, char *err,
                      size_t errlen) {
  int64_t v = 0;
  int ok = len > 0;
  for (size_t i = 0; ok && i < len; i++) {
    if (s[i] < '0' || s[i] > '9') ok = 0;
    else if (v <= INT_MAX) v = v * 10 + (s[i] - '0'); /* stops growing once too large */
  }
  if (!ok || v <= 0)
    return fail(err, errlen, DPT_EINVAL,
                "model '%s': layer size '%.*s' is not a positive integer (" MLP_SPEC_HINT ")",
                spec, (int)len, s);
  if (v > INT_MAX)
    return fail(err, errlen, DPT_EINVAL, "model '%s': layer size '%.*s' is too large (at most %d)",
                spec, (int)len, s, INT_MAX);
  *out = v;
  return DPT_OK;
}

static int parse_kind(const char *spec, char *err, size_t errlen) {
  if (!spec)
    return fail(err, errlen, DPT_EINVAL, "model spec is missing (" MLP_SPEC_HINT ")");
  if (strncmp(spec, "mlp:", 4) == 0) return DPT_OK;
  const char *colon = strchr(spec, ':');
  int klen = colon ? (int)(colon - spec) : (int)strlen(spec);
  return fail(err, errlen, DPT_EINVAL,
              "model '%s': unknown kind '%.*s' (expected mlp:IN-H1-...-OUT, e.g. mlp:784-256-10)",
              spec, klen, spec);
}

/* Fills c->sizes, c->nlayers and c->maxw from "mlp:IN-...-OUT". */
static int parse_spec(const char *spec, mlp_ctx *c, char *err, size_t errlen) {
  int rc = parse_kind(spec, err, errlen);
  if (rc) return rc;
  const char *p = spec + 4;
  int count = 0;
  for (;;) {
    const char *dash = strchr(p, '-');
    size_t len = dash ? (size_t)(dash - p) : strlen(p);
    if (count > MLP_MAX_LAYERS)
      return fail(err, errlen, DPT_EINVAL, "model '%s': too many layers (at most %d)", spec,
                  MLP_MAX_LAYERS);
    rc = parse_size(spec, p, len, &c->sizes[count], err, errlen);
    if (rc) return rc;
    if (c->sizes[count] > c->maxw) c->maxw = c->sizes[count];
    count++;
    if (!dash) break;
    p = dash + 1;
  }
  if (count < 2)
    return fail(err, errlen, DPT_EINVAL,
                "model '%s': needs an input and an output size, at least one layer (" MLP_SPEC_HINT
                ")",
                spec);
  c->nlayers = count - 1;
  return DPT_OK;
}

static int parse_activation(const char *a, int *act, char *err, size_t errlen) {
  static const char *names[] = {"relu", "tanh", "gelu", "sigmoid"};
  for (int i = 0; a && i < 4; i++) {
    if (strcmp(a, names[i]) == 0) {
      *act = i;
      return DPT_OK;
    }
  }
  return fail(err, errlen, DPT_EINVAL,
              "activation '%s' is unknown (expected relu, tanh, gelu or sigmoid)",
              a ? a : "(null)");
}

static int parse_loss(const char *l, int *loss, char *err, size_t errlen) {
  if (l && (strcmp(l, "ce") == 0 || strcmp(l, "mse") == 0)) {
    *loss = strcmp(l, "ce") == 0 ? LOSS_CE : LOSS_MSE;
    return DPT_OK;
  }
  return fail(err, errlen, DPT_EINVAL, "loss '%s' is unknown (expected ce or mse)",
              l ? l : "(null)");
}

/* Names and places the tensors; fails when nparams would overflow. */
static int fill_tensors(dpt_model *m, const mlp_ctx *c, const char *spec, char *err,
                        size_t errlen) {
  const size_t limit = SIZE_MAX / sizeof(float);
  size_t off = 0;
  for (int l = 0; l < c->nlayers; l++) {
    size_t in = (size_t)c->sizes[l], out = (size_t)c->sizes[l + 1];
    if (out > (limit - off) / (in + 1))
      return fail(err, errlen, DPT_EINVAL, "model '%s': too many parameters", spec);
    dpt_tensor *w = &m->tensors[2 * l], *b = &m->tensors[2 * l + 1];
    snprintf(w->name, sizeof w->name, "fc%d.weight", l + 1);
    w->rank = 2, w->dims[0] = (int64_t)out, w->dims[1] = (int64_t)in;
    w->offset = off, w->numel = out * in;
    off += w->numel;
    snprintf(b->name, sizeof b->name, "fc%d.bias", l + 1);
    b->rank = 1, b->dims[0] = (int64_t)out, b->dims[1] = 0;
    b->offset = off, b->numel = out;
    off += out;
  }
  m->ntensors = 2 * c->nlayers;
  m->nparams = off;
  return DPT_OK;
}

/* ---- scratch ---- */

/* Makes the scratch hold n samples; pointers are laid out with stride cap_n. */
static int grow(mlp_ctx *c, size_t n, char *err, size_t errlen) {
  if (n <= c->cap_n) return DPT_OK;
  size_t per = 2 * (size_t)c->maxw;
  for (int l = 0; l < c->nlayers; l++) per += 2 * (size_t)c->sizes[l + 1];
  if (n > SIZE_MAX / sizeof(float) / per)
    return fail(err, errlen, DPT_ENOMEM, "mlp: batch of %zu samples is too large", n);
  float *s = realloc(c->scratch, n * per * sizeof(float));
  if (!s)
    return fail(err, errlen, DPT_ENOMEM, "mlp: out of memory for a batch of %zu samples", n);
  c->scratch = s, c->cap_n = n;
  for (int l = 0; l < c->nlayers; l++) {
    c->z[l] = s, s += n * (size_t)c->sizes[l + 1];
    c->h[l] = s, s += n * (size_t)c->sizes[l + 1];
  }
  c->d0 = s, c->d1 = s + n * (size_t)c->maxw;
  return DPT_OK;
}

/* ---- activations ---- */

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

/* One loop per activation, so that ReLU (the common case) vectorises without a branch: the
 * same values as the scalar formula, element by element. */
static void act_forward(int act, const float *restrict z, float *restrict h, size_t len) {
  switch (act) {
    case ACT_RELU:
      for (size_t i = 0; i < len; i++) h[i] = z[i] > 0.0f ? z[i] : 0.0f;
      break;
    case ACT_TANH:
      for (size_t i = 0; i < len; i++) h[i] = tanhf(z[i]);
      break;
    case ACT_GELU:
      for (size_t i = 0; i < len; i++) h[i] = 0.5f * z[i] * (1.0f + erff(z[i] * INV_SQRT2));
      break;
    default:
      for (size_t i = 0; i < len; i++) h[i] = 1.0f / (1.0f + expf(-z[i]));
      break;
  }
}

/* d[i] *= act'(z[i]), using the stored activation h where that is cheaper. */
static void act_backward(int act, const float *restrict z, const float *restrict h,
                         float *restrict d, size_t len) {
  switch (act) {
    case ACT_RELU:
      for (size_t i = 0; i < len; i++) d[i] *= z[i] > 0.0f ? 1.0f : 0.0f;
      break;
    case ACT_TANH:
      for (size_t i = 0; i < len; i++) d[i] *= 1.0f - h[i] * h[i];
      break;
    case ACT_GELU:
      for (size_t i = 0; i < len; i++) {
        float v = z[i];
        d[i] *= 0.5f * (1.0f + erff(v * INV_SQRT2)) + v * INV_SQRT2PI * expf(-0.5f * v * v);
      }
      break;
    default:
      for (size_t i = 0; i < len; i++) d[i] *= h[i] * (1.0f - h[i]);
      break;
  }
}

/* ---- forward, loss, backward ---- */

static void forward(const dpt_model *m, mlp_ctx *c, const float *params, const float *x,
                    size_t n) {
  const float *in = x;
  for (int l = 0; l < c->nlayers; l++) {
    const dpt_tensor *w = &m->tensors[2 * l], *b = &m->tensors[2 * l + 1];
    int out = (int)w->dims[0], k = (int)w->dims[1];
    float *z = c->z[l];
    for (size_t i = 0; i < n; i++)
      memcpy(z + i * (size_t)out, params + b->offset, (size_t)out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, k, 1.0f, in, k,
                params + w->offset, k, 1.0f, z, out);
    if (l + 1 < c->nlayers) {
      act_forward(c->act, z, c->h[l], n * (size_t)out);
      in = c->h[l];
    }
  }
}

/* Softmax cross-entropy of one sample; writes scale * dloss/dz into d when d != NULL. */
static double ce_sample(const float *z, int64_t k, int32_t label, float scale, float *d,
                        int *correct) {
  int64_t arg = 0;
  for (int64_t j = 1; j < k; j++)
    if (z[j] > z[arg]) arg = j;
  double mx = z[arg], sum = 0.0;
  for (int64_t j = 0; j < k; j++) sum += exp((double)z[j] - mx);
  double lse = mx + log(sum);
  for (int64_t j = 0; d && j < k; j++)
    d[j] = (float)((double)scale * (exp((double)z[j] - lse) - (j == label ? 1.0 : 0.0)));
  *correct = arg == label;
  return lse - (double)z[label];
}

/* Mean over outputs of the squared error of one sample; gradient into d when d != NULL. */
static double mse_sample(const float *z, int64_t k, const float *y, float scale, float *d) {
  double sum = 0.0;
  for (int64_t j = 0; j < k; j++) {
    double e = (double)z[j] - (double)y[j];
    sum += e * e;
    if (d) d[j] = (float)((double)scale * 2.0 * e / (double)k);
  }
  return sum / (double)k;
}

/* Loss (and, when d != NULL, the scaled seed gradient) of n samples whose logits are in z. */
static void head(const mlp_ctx *c, const float *z, const int32_t *labels, const float *y,
                 size_t n, float scale, float *d, double *loss_sum, int64_t *correct) {
  int64_t k = c->sizes[c->nlayers];
  for (size_t i = 0; i < n; i++) {
    float *di = d ? d + i * (size_t)k : NULL;
    if (c->loss == LOSS_CE) {
      int ok;
      *loss_sum += ce_sample(z + i * (size_t)k, k, labels[i], scale, di, &ok);
      *correct += ok;
    } else {
      *loss_sum += mse_sample(z + i * (size_t)k, k, y + i * (size_t)k, scale, di);
    }
  }
}

/* gb[j] += sum over rows of d[:, j], summed in double in row order. */
static void bias_grad(mlp_ctx *c, const float *d, size_t n, int out, float *gb) {
  double *acc = c->bacc;
  for (int j = 0; j < out; j++) acc[j] = 0.0;
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j < out; j++) acc[j] += d[i * (size_t)out + (size_t)j];
  for (int j = 0; j < out; j++) gb[j] += (float)acc[j];
}

/* Walks layers last to first from the seed gradient in c->d0. */
static void backward(const dpt_model *m, mlp_ctx *c, const float *params, float *grad,
                     const float *x, size_t n, dpt_grad_ready_fn ready, void *ready_ctx) {
  float *d = c->d0, *dn = c->d1;
  for (int l = c->nlayers - 1; l >= 0; l--) {
    const dpt_tensor *w = &m->tensors[2 * l], *b = &m->tensors[2 * l + 1];
    int out = (int)w->dims[0], k = (int)w->dims[1];
    const float *in = l ? c->h[l - 1] : x;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, k, (int)n, 1.0f, d, out, in, k,
                1.0f, grad + w->offset, k);
    bias_grad(c, d, n, out, grad + b->offset);
    if (ready) ready(ready_ctx, w->offset, w->numel + b->numel);
    if (l == 0) break;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, k, out, 1.0f, d, out,
                params + w->offset, k, 0.0f, dn, k);
    act_backward(c->act, c->z[l - 1], c->h[l - 1], dn, n * (size_t)k);
    float *t = d;
    d = dn, dn = t;
  }
}

/* Checks the batch's inputs and labels before anything is touched. */
static int check_batch(const dpt_model *m, const float *x, const int32_t *labels,
                       const float *y, size_t n, char *err, size_t errlen) {
  if (n == 0) return DPT_OK;
  if (n > INT_MAX)
    return fail(err, errlen, DPT_EINVAL, "mlp: batch of %zu samples is too large (at most %d)",
                n, INT_MAX);
  if (!x) return fail(err, errlen, DPT_EINVAL, "mlp: inputs x are missing");
  if (!m->wants_labels)
    return y ? DPT_OK : fail(err, errlen, DPT_EINVAL, "mlp: loss mse needs float targets y");
  if (!labels) return fail(err, errlen, DPT_EINVAL, "mlp: loss ce needs labels");
  for (size_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= m->out_features)
      return fail(err, errlen, DPT_EINVAL,
                  "mlp: label %ld of sample %zu in the batch is outside [0, %ld)",
                  (long)labels[i], i, (long)m->out_features);
  return DPT_OK;
}

/* ---- the dpt_model functions ---- */

static int mlp_init(dpt_model *m, float *params, uint64_t seed, char *err, size_t errlen) {
  if (!params) return fail(err, errlen, DPT_EINVAL, "mlp: init needs a parameter buffer");
  dpt_rng r;
  dpt_rng_seed(&r, seed, 0);
  for (int t = 0; t < m->ntensors; t++) {
    const dpt_tensor *w = &m->tensors[t - t % 2]; /* fan-in of the layer */
    const dpt_tensor *cur = &m->tensors[t];
    double bound = 1.0 / sqrt((double)w->dims[1]);
    for (size_t i = 0; i < cur->numel; i++)
      params[cur->offset + i] = (float)((2.0 * dpt_rng_uniform(&r) - 1.0) * bound);
  }
  return DPT_OK;
}

static int mlp_loss_grad(dpt_model *m, const float *params, float *grad, float scale,
                         const float *x, const int32_t *labels, const float *y, size_t n,
                         double *loss_sum, int64_t *correct, dpt_grad_ready_fn ready,
                         void *ready_ctx, char *err, size_t errlen) {
  mlp_ctx *c = m->ctx;
  double loss = 0.0;
  int64_t ok = 0;
  int rc = check_batch(m, x, labels, y, n, err, errlen);
  if (!rc) rc = grow(c, n ? n : 1, err, errlen);
  if (rc) return rc;
  if (n > 0) {
    forward(m, c, params, x, n);
    head(c, c->z[c->nlayers - 1], labels, y, n, scale, c->d0, &loss, &ok);
    backward(m, c, params, grad, x, n, ready, ready_ctx);
  } else {
    for (int l = c->nlayers - 1; ready && l >= 0; l--)
      ready(ready_ctx, m->tensors[2 * l].offset,
            m->tensors[2 * l].numel + m->tensors[2 * l + 1].numel);
  }
  if (loss_sum) *loss_sum = loss;
  if (correct) *correct = ok;
  return DPT_OK;
}

static int mlp_evaluate(dpt_model *m, const float *params, const float *x,
                        const int32_t *labels, const float *y, size_t n, double *loss_sum,
                        int64_t *correct, char *err, size_t errlen) {
  mlp_ctx *c = m->ctx;
  double loss = 0.0;
  int64_t ok = 0;
  int rc = check_batch(m, x, labels, y, n, err, errlen);
  size_t chunk = n < MLP_EVAL_CHUNK ? n : MLP_EVAL_CHUNK;
  if (chunk < c->cap_n) chunk = c->cap_n;
  if (!rc && n > 0) rc = grow(c, chunk, err, errlen);
  if (rc) return rc;
  size_t in = (size_t)m->in_features, out = (size_t)m->out_features;
  for (size_t s = 0; s < n; s += chunk) {
    size_t len = n - s < chunk ? n - s : chunk;
    forward(m, c, params, x + s * in, len);
    head(c, c->z[c->nlayers - 1], labels ? labels + s : NULL, y ? y + s * out : NULL, len,
         1.0f, NULL, &loss, &ok);
  }
  if (loss_sum) *loss_sum = loss;
  if (correct) *correct = ok;
  return DPT_OK;
}

static void mlp_destroy(dpt_model *m) {
  mlp_ctx *c = m ? m->ctx : NULL;
  if (!c) return;
  free(c->scratch);
  free(c->bacc);
  free(c);
  m->ctx = NULL;
}

int dpt_mlp_create(const char *spec, const char *activation, const char *loss, dpt_model *m,
                   char *err, size_t errlen) {
  if (!m) return fail(err, errlen, DPT_EINVAL, "mlp: no model to fill");
  memset(m, 0, sizeof *m);
  mlp_ctx tmp = {0};
  int rc = parse_spec(spec, &tmp, err, errlen);
  if (!rc) rc = parse_activation(activation, &tmp.act, err, errlen);
  if (!rc) rc = parse_loss(loss, &tmp.loss, err, errlen);
  if (!rc) rc = fill_tensors(m, &tmp, spec, err, errlen);
  if (rc) {
    memset(m, 0, sizeof *m);
    return rc;
  }
  mlp_ctx *c = malloc(sizeof *c);
  double *bacc = malloc((size_t)tmp.maxw * sizeof(double));
  if (!c || !bacc) {
    free(c), free(bacc);
    memset(m, 0, sizeof *m);
    return fail(err, errlen, DPT_ENOMEM, "model '%s': out of memory", spec);
  }
  *c = tmp;
  c->bacc = bacc;
  m->kind = "mlp";
  m->in_features = c->sizes[0];
  m->out_features = c->sizes[c->nlayers];
  m->wants_labels = c->loss == LOSS_CE;
  m->ctx = c;
  m->init = mlp_init;
  m->loss_grad = mlp_loss_grad;
  m->evaluate = mlp_evaluate;
  m->destroy = mlp_destroy;
  return DPT_OK;
}

/* model_file.c — models described in a file (`--model file:PATH`, a PATH ending in .ini) and
 * the presets compiled in (`--model cnn:NAME`): the description model_file_read.c reads (an
 * optional [model] section, then one section per layer, in order, whose name is the layer's
 * name, `kind = ...` its kind and the other keys its options, layers.h's "key=value,...")
 * built into a net, checked against the dataset, and wrapped as a dpt_model. README "Models"
 * describes the format for users.
 *
 * Invariants:
 * - Every error names the file (or preset) and the line, and the layer when there is one:
 *   "x.ini:12: conv2: expects 32 input channels, gets 16". Nothing is built or kept on error.
 * - The net's input is [model] input when given (its element count must be the sample's),
 *   else the dataset's sample shape, except that a 2-D sample [H, W] feeds a first layer that
 *   takes [C, H, W] (conv2d, pooling, batchnorm2d) as one channel, [1, H, W].
 * - With a dataset, the last layer's output count must be its number of classes (ce) or of
 *   targets (mse).
 * - The model's kind (m->kind, stored in checkpoints and compared when one is loaded) is
 *   "net:" and a 64-bit digest of the architecture: the input shape, each layer's name, kind,
 *   output shape and second input, and the loss. A checkpoint of another architecture is
 *   refused with one line, one of the same architecture (a preset copied into a file, or a
 *   changed dropout rate) loads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "model_file_internal.h"

/* --- building --- */

/* Kinds whose input is [C, H, W]: a 2-D sample [H, W] feeds them as [1, H, W]. */
static int spatial(const char *kind) {
  static const char *const k[] = {"conv2d",          "maxpool2d",   "avgpool2d",
                                  "globalavgpool2d", "batchnorm2d", NULL};
  for (int i = 0; k[i]; i++)
    if (!strcmp(k[i], kind)) return 1;
  return 0;
}

static int64_t numel(const dpt_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

const char *dpt_mfile_opt_get(const dpt_mfile_layer *l, const char *key) {
  for (int i = 0; i < l->nopts; i++)
    if (!strcmp(l->opts[i].key, key)) return l->opts[i].value;
  return NULL;
}

/* The line an error of layer l is about: the option it names, else the section header. */
static int blame_line(const dpt_mfile_layer *l, const char *msg) {
  for (int i = 0; i < l->nopts; i++) {
    char a[80], b[80];
    snprintf(a, sizeof a, "option '%s", l->opts[i].key);
    snprintf(b, sizeof b, "option %s=", l->opts[i].key);
    const char *p = strstr(msg, a);
    size_t k = strlen(a);
    if ((p && (p[k] == '=' || p[k] == '\'')) || strstr(msg, b)) return l->opts[i].line;
  }
  /* "padding=2 is ...", "(got 'slope=2')": the option as written, before any "(expected" */
  const char *stop = strstr(msg, "(expected");
  size_t upto = stop ? (size_t)(stop - msg) : strlen(msg);
  for (int i = 0; i < l->nopts; i++) {
    char kv[200];
    snprintf(kv, sizeof kv, "%s=%s", l->opts[i].key, l->opts[i].value);
    const char *p = strstr(msg, kv);
    if (p && (size_t)(p - msg) < upto) return l->opts[i].line;
  }
  /* messages about a value that do not say "option": the channel check (in=), a residual's
   * source (from=) */
  const char *key = strstr(msg, "input channels")                  ? "in"
                    : strstr(msg, "from=") || strstr(msg, "adds ") ? "from"
                                                                   : NULL;
  for (int i = 0; key && i < l->nopts; i++)
    if (!strcmp(l->opts[i].key, key)) return l->opts[i].line;
  return l->line;
}

/* 1 when help names key as an option ("key=" at the start or after a blank, ',' or '('). Every
 * kind's help lists its options (layers.h), so an option it does not name is a mistake even
 * where the layer itself ignores unknown options. */
static int help_names(const char *help, const char *key) {
  size_t k = strlen(key);
  for (const char *p = help && k ? strstr(help, key) : NULL; p; p = strstr(p + 1, key))
    if ((p == help || strchr(" ,(", p[-1])) && p[k] == '=') return 1;
  return 0;
}

static int choose_input(dpt_mfile_built *b, const dpt_model_data *data, dpt_shape *in, char *err,
                        size_t errlen) {
  dpt_mfile *d = &b->desc;
  char s1[96], s2[96];
  if (d->input_line) {
    *in = d->input;
    if (data && numel(in) != data->features)
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "%s:%d: input = %s holds %lld values, but the dataset's samples are %s "
                      "(%lld values)",
                      d->where, d->input_line, dpt_layer_shape_str(in, s1, sizeof s1),
                      (long long)numel(in), dpt_layer_shape_str(&data->sample, s2, sizeof s2),
                      (long long)data->features);
    b->input_from = "[model] input";
    return DPT_OK;
  }
  if (!data) /* DPT_ENOENT: the caller may report the dataset's own error instead */
    return dpt_errf(err, errlen, DPT_ENOENT,
                    "%s: the input shape comes from the dataset, which was not given or could "
                    "not be read (or set input = CxHxW in [model])",
                    d->where);
  *in = data->sample;
  b->input_from = "the dataset's sample";
  if (in->rank == 0) { /* a dataset of scalars: one feature */
    in->rank = 1, in->dims[0] = 1;
  }
  if (in->rank == 2 && spatial(d->layers[0].kind)) {
    in->rank = 3, in->dims[2] = in->dims[1], in->dims[1] = in->dims[0], in->dims[0] = 1;
    b->input_from = "the dataset's [H, W] sample as one channel";
  }
  return DPT_OK;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ULL;
  return h;
}
static uint64_t fnv_shape(uint64_t h, const dpt_shape *s) {
  h = fnv(h, &s->rank, sizeof s->rank);
  for (int i = 0; i < s->rank; i++) h = fnv(h, &s->dims[i], sizeof s->dims[i]);
  return h;
}

/* The architecture's identity (see the invariants). */
static void identity(dpt_mfile_built *b) {
  uint64_t h = 0xcbf29ce484222325ULL;
  h = fnv_shape(h, dpt_net_in(b->net));
  for (int i = 0; i < dpt_net_nlayers(b->net); i++) {
    const dpt_layer *l = dpt_net_layer(b->net, i);
    h = fnv(h, l->name, strlen(l->name) + 1);
    h = fnv(h, l->ops->kind, strlen(l->ops->kind) + 1);
    h = fnv_shape(h, &l->out);
    h = fnv(h, &l->skip, sizeof l->skip);
  }
  h = fnv(h, b->loss, strlen(b->loss) + 1);
  snprintf(b->identity, sizeof b->identity, "net:%016llx", (unsigned long long)h);
}

static int check_output(dpt_mfile_built *b, const dpt_model_data *data, char *err, size_t errlen) {
  dpt_mfile *d = &b->desc;
  int ce = !strcmp(b->loss, "ce");
  int line = d->loss_line ? d->loss_line : d->model_line;
  char from[600];
  if (d->loss_line)
    snprintf(from, sizeof from, "%s:%d: loss = %s", d->where, line, b->loss);
  else
    snprintf(from, sizeof from, "%s: --loss %s", d->where, b->loss);
  if (ce && !data->labels)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s needs class labels, but the dataset holds float targets (expected "
                    "loss = mse)",
                    from);
  if (!ce && data->labels)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s needs float targets, but the dataset holds class labels (expected "
                    "loss = ce)",
                    from);
  const dpt_layer *last = dpt_net_layer(b->net, dpt_net_nlayers(b->net) - 1);
  const dpt_mfile_layer *l = &d->layers[d->nlayers - 1];
  int64_t want = ce ? data->classes : data->targets, got = (int64_t)last->out_numel;
  if (ce && dpt_net_loss_opts(b->net)->positions > 1) /* per_position: [T, V], V classes */
    got = last->out.dims[last->out.rank - 1];
  if (got != want) {
    char s[96];
    const char *o = dpt_mfile_opt_get(l, "out");
    int oline = l->line;
    for (int i = 0; i < l->nopts; i++)
      if (!strcmp(l->opts[i].key, "out")) oline = l->opts[i].line;
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s:%d: %s: gives %lld outputs (%s%s%s), but the dataset has %lld %s "
                    "(expected the last layer to give %lld)",
                    d->where, o ? oline : l->line, l->name, (long long)got,
                    dpt_layer_shape_str(&last->out, s, sizeof s), o ? ", out = " : "", o ? o : "",
                    (long long)want, ce ? "classes" : "targets per sample", (long long)want);
  }
  return DPT_OK;
}

static int build_net(dpt_mfile_built *b, const char *loss, const dpt_model_data *data, char *err,
                     size_t errlen) {
  dpt_mfile *d = &b->desc;
  dpt_shape in;
  int rc = choose_input(b, data, &in, err, errlen);
  if (rc) return rc;
  char lerr[DPT_ERR_LEN];
  if ((rc = dpt_net_create(d->where, &in, &b->net, lerr, sizeof lerr)))
    return dpt_errf(err, errlen, rc, "%s:%d: %s", d->where,
                    d->input_line ? d->input_line : d->layers[0].line, lerr);
  for (int i = 0; i < d->nlayers; i++) {
    dpt_mfile_layer *l = &d->layers[i];
    size_t need = 1;
    for (int k = 0; k < l->nopts; k++)
      need += strlen(l->opts[k].key) + strlen(l->opts[k].value) + 2;
    char *opts = malloc(need);
    if (!opts) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", d->where);
    size_t at = 0;
    opts[0] = 0;
    for (int k = 0; k < l->nopts; k++)
      at += (size_t)snprintf(opts + at, need - at, "%s%s=%s", k ? "," : "", l->opts[k].key,
                             l->opts[k].value);
    rc = dpt_net_add(b->net, l->kind, l->name, opts, lerr, sizeof lerr);
    free(opts);
    const dpt_layer_ops *ops = dpt_layer_find(l->kind);
    for (int k = 0; !rc && k < l->nopts; k++)
      if (!help_names(ops->help, l->opts[k].key))
        return dpt_errf(err, errlen, DPT_EINVAL,
                        "%s:%d: %s: option '%s=%s' is not one of %s's (expected %s)", d->where,
                        l->opts[k].line, l->name, l->opts[k].key, l->opts[k].value, l->kind,
                        ops->help ? ops->help : "no options");
    if (rc) {
      const dpt_layer *prev = i ? dpt_net_layer(b->net, i - 1) : NULL;
      const dpt_shape *got = prev ? &prev->out : dpt_net_in(b->net);
      const char *hint = "";
      if (spatial(l->kind) && got->rank != 3)
        hint = i ? "" : "; input = CxHxW in [model] reshapes the sample";
      return dpt_errf(err, errlen, rc, "%s:%d: %s%s", d->where, blame_line(l, lerr), lerr, hint);
    }
  }
  b->loss = d->loss ? d->loss : loss ? loss : "ce";
  char lopts[160] = "";
  if (d->smoothing) snprintf(lopts, sizeof lopts, "label_smoothing=%.60s", d->smoothing);
  if (d->per_position)
    snprintf(lopts + strlen(lopts), sizeof lopts - strlen(lopts), "%sper_position=%.60s",
             lopts[0] ? "," : "", d->per_position);
  if ((rc = dpt_net_set_loss_opts(b->net, b->loss, lopts, lerr, sizeof lerr))) {
    int line = d->smoothing && strstr(lerr, "label_smoothing")   ? d->smoothing_line
               : d->per_position && strstr(lerr, "per_position") ? d->per_position_line
                                                                 : d->loss_line;
    if (line) return dpt_errf(err, errlen, rc, "%s:%d: %s", d->where, line, lerr);
    return dpt_errf(err, errlen, rc, "%s: --loss: %s", d->where, lerr);
  }
  if (data && (rc = check_output(b, data, err, errlen))) return rc;
  identity(b);
  return DPT_OK;
}

int dpt_mfile_build(const char *spec, const char *activation, const char *loss,
                    const dpt_model_data *data, dpt_mfile_built *b, char *err, size_t errlen) {
  memset(b, 0, sizeof *b);
  int mlp = spec && !strncmp(spec, "mlp:", 4);
  int rc = dpt_mfile_read(spec, activation, loss, &b->desc, err, errlen);
  if (data) b->sample = data->sample;
  if (!rc) rc = build_net(b, loss, data, err, errlen);
  if (!rc && mlp) { /* model_mlp.c's kind and input */
    snprintf(b->identity, sizeof b->identity, "mlp");
    b->input_from = "the spec's IN";
  }
  if (rc) dpt_mfile_built_free(b);
  return rc;
}

void dpt_mfile_built_free(dpt_mfile_built *b) {
  dpt_mfile_free(&b->desc);
  dpt_net_free(b->net);
  memset(b, 0, sizeof *b);
}

/* --- the model: the net's, under its own kind string --- */

/* dpt_model_from_net keeps a static kind; a file model's identity is computed, so the model is
 * a thin wrapper that owns the string and forwards to the net's model. */
typedef struct {
  dpt_model inner;
  char kind[32];
} wrapped;

static int w_init(dpt_model *m, float *params, uint64_t seed, char *err, size_t errlen) {
  wrapped *w = m->ctx;
  return w->inner.init(&w->inner, params, seed, err, errlen);
}
static int w_loss_grad(dpt_model *m, const float *params, float *grad, float scale, const float *x,
                       const int32_t *labels, const float *y, size_t n, double *loss_sum,
                       int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx, char *err,
                       size_t errlen) {
  wrapped *w = m->ctx;
  return w->inner.loss_grad(&w->inner, params, grad, scale, x, labels, y, n, loss_sum, correct,
                            ready, ready_ctx, err, errlen);
}
static int w_loss_grad_pass(dpt_model *m, const float *params, float *grad, float scale,
                            const float *x, const int32_t *labels, const float *y, size_t n,
                            double *loss_sum, int64_t *correct, const dpt_layer_pass *pass,
                            char *err, size_t errlen) {
  wrapped *w = m->ctx;
  return w->inner.loss_grad_pass(&w->inner, params, grad, scale, x, labels, y, n, loss_sum, correct,
                                 pass, err, errlen);
}
static int w_evaluate(dpt_model *m, const float *params, const float *x, const int32_t *labels,
                      const float *y, size_t n, double *loss_sum, int64_t *correct, char *err,
                      size_t errlen) {
  wrapped *w = m->ctx;
  return w->inner.evaluate(&w->inner, params, x, labels, y, n, loss_sum, correct, err, errlen);
}
static int w_evaluate_pass(dpt_model *m, const float *params, const float *x, const int32_t *labels,
                           const float *y, size_t n, double *loss_sum, int64_t *correct,
                           const dpt_layer_pass *pass, char *err, size_t errlen) {
  wrapped *w = m->ctx;
  return w->inner.evaluate_pass(&w->inner, params, x, labels, y, n, loss_sum, correct, pass, err,
                                errlen);
}
dpt_model *dpt_model_file_inner(dpt_model *m) {
  return m && m->init == w_init ? &((wrapped *)m->ctx)->inner : NULL;
}

static void w_destroy(dpt_model *m) {
  if (!m || !m->ctx) return;
  wrapped *w = m->ctx;
  w->inner.destroy(&w->inner);
  free(w);
  memset(m, 0, sizeof *m);
}

static int file_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  dpt_mfile_built b;
  int rc = dpt_mfile_build(a->spec, a->activation, a->loss, a->data, &b, err, errlen);
  if (rc) return rc;
  wrapped *w = calloc(1, sizeof *w);
  if (!w) {
    dpt_mfile_built_free(&b);
    return dpt_errf(err, errlen, DPT_ENOMEM, "model '%s': out of memory", a->spec);
  }
  snprintf(w->kind, sizeof w->kind, "%s", b.identity);
  dpt_net *net = b.net;
  b.net = NULL; /* the model owns it from here on */
  dpt_mfile_built_free(&b);
  if ((rc = dpt_model_from_net(&w->inner, w->kind, net, err, errlen))) {
    free(w);
    return rc;
  }
  *m = w->inner;
  m->ctx = w;
  m->init = w_init;
  m->loss_grad = w_loss_grad;
  m->loss_grad_pass = w->inner.loss_grad_pass ? w_loss_grad_pass : NULL;
  m->evaluate = w_evaluate;
  m->evaluate_pass = w->inner.evaluate_pass ? w_evaluate_pass : NULL;
  m->destroy = w_destroy;
  return DPT_OK;
}

/* The registry's entries (model.c): "file:PATH" (and a bare PATH.ini) and the presets'
 * families ("cnn:NAME"). */
int dpt_model_file_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);
int dpt_model_file_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  return file_create(a, m, err, errlen);
}

/* model_net.c — a dpt_model over a net of the layer library (layers.h): the wiring every
 * net-built model kind shares (the MLP, model files).
 *
 * Invariants:
 * - The model's tables (tensors, spans, buffers) are the net's own, valid until destroy.
 * - init draws every layer's parameters from dpt_rng(seed, 0) in layer order and resets the
 *   buffers, so the same seed gives the same model on every rank.
 */
#include <string.h>

#include "internal.h"

static double rng_uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

static int net_init(dpt_model *m, float *params, uint64_t seed, char *err, size_t errlen) {
  if (!params)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: init needs a parameter buffer", m->kind);
  dpt_rng r;
  dpt_rng_seed(&r, seed, 0);
  dpt_layer_rng src = {rng_uniform, &r};
  dpt_net_init(m->ctx, params, &src);
  return DPT_OK;
}

static int net_loss_grad(dpt_model *m, const float *params, float *grad, float scale,
                         const float *x, const int32_t *labels, const float *y, size_t n,
                         double *loss_sum, int64_t *correct, dpt_grad_ready_fn ready,
                         void *ready_ctx, char *err, size_t errlen) {
  return dpt_net_loss_grad(m->ctx, params, grad, scale, x, labels, y, n, loss_sum, correct, ready,
                           ready_ctx, err, errlen);
}

static int net_loss_grad_pass(dpt_model *m, const float *params, float *grad, float scale,
                              const float *x, const int32_t *labels, const float *y, size_t n,
                              double *loss_sum, int64_t *correct, const dpt_layer_pass *pass,
                              char *err, size_t errlen) {
  return dpt_net_loss_grad_pass(m->ctx, params, grad, scale, x, labels, y, n, loss_sum, correct,
                                pass, err, errlen);
}

static int net_evaluate(dpt_model *m, const float *params, const float *x, const int32_t *labels,
                        const float *y, size_t n, double *loss_sum, int64_t *correct, char *err,
                        size_t errlen) {
  return dpt_net_evaluate(m->ctx, params, x, labels, y, n, loss_sum, correct, err, errlen);
}

static int net_evaluate_pass(dpt_model *m, const float *params, const float *x,
                             const int32_t *labels, const float *y, size_t n, double *loss_sum,
                             int64_t *correct, const dpt_layer_pass *pass, char *err,
                             size_t errlen) {
  return dpt_net_evaluate_pass(m->ctx, params, x, labels, y, n, loss_sum, correct, pass, err,
                               errlen);
}

static void net_destroy(dpt_model *m) {
  if (!m) return;
  dpt_net_free(m->ctx);
  m->ctx = NULL;
  m->tensors = m->buffers = NULL, m->layers = NULL, m->buffer_data = NULL;
  m->ntensors = m->nlayers = m->nbuffers = 0;
}

int dpt_model_from_net(dpt_model *m, const char *kind, dpt_net *n, char *err, size_t errlen) {
  if (!m || !n) {
    dpt_net_free(n);
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: no model or net", kind ? kind : "model");
  }
  if (!dpt_net_loss(n)) {
    dpt_net_free(n);
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: the net has no loss", kind);
  }
  int64_t out = 1;
  const dpt_shape *o = dpt_net_out(n);
  for (int i = 0; i < o->rank; i++) out *= o->dims[i];
  m->kind = kind;
  m->tensors = dpt_net_tensors(n, &m->ntensors);
  m->nparams = dpt_net_nparams(n);
  m->layers = dpt_net_spans(n, &m->nlayers);
  m->buffers = dpt_net_buffers(n, &m->nbuffers);
  m->buffer_data = dpt_net_buffer_data(n, &m->nbuffer_floats);
  m->floats_per_sample = dpt_net_floats_per_sample(n);
  m->input = *dpt_net_in(n);
  m->in_features = 1;
  for (int i = 0; i < m->input.rank; i++) m->in_features *= m->input.dims[i];
  int64_t pos = dpt_net_loss_opts(n)->positions;
  m->labels_per_sample = pos > 1 ? pos : 1;
  m->out_features = out / m->labels_per_sample; /* a sequence model: one position's classes */
  m->wants_labels = dpt_net_loss(n)->labels;
  m->ctx = n;
  m->init = net_init;
  m->loss_grad = net_loss_grad;
  m->loss_grad_pass = net_loss_grad_pass;
  m->tied = 0; /* net.c handles its ties (dpt_net_ties) within the passes */
  m->evaluate = net_evaluate;
  m->evaluate_pass = net_evaluate_pass;
  m->destroy = net_destroy;
  return DPT_OK;
}

dpt_net *dpt_model_net(dpt_model *m) {
  if (m && m->init == net_init) return m->ctx;
  dpt_model *inner = dpt_model_file_inner(m); /* a model file's net, under its identity */
  return inner ? dpt_model_net(inner) : NULL;
}

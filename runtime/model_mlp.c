/* model_mlp.c — the built-in MLP ("mlp:IN-H1-...-OUT"): Linear layers fc1, fc2, ... with an
 * activation between them and softmax cross-entropy or MSE on top, stacked from the layer
 * library (layers.h) into a dpt_net. This file only parses the spec and wires the net to the
 * dpt_model functions; the arithmetic is the layers'.
 *
 * Invariants:
 * - Tensors are fc1.weight [out, in], fc1.bias [out], fc2.weight, ... in that order in the flat
 *   buffer, so a layer's weight and bias are one contiguous range (one dpt_layer_span).
 * - init draws weights then bias of fc1, then fc2, ... from dpt_rng(seed, 0), each uniform in
 *   [-1/sqrt(in), 1/sqrt(in)] as torch.nn.Linear: the same seed gives the same parameters.
 * - loss_grad ADDS scale * d(loss_sum)/d(params) into grad, touching each element exactly once
 *   per call, and reports each layer (last to first) to ready once its range is final.
 * - Arithmetic is fp32, per-sample losses are summed in double, in sample order; bias gradients
 *   are summed in double in row order, so results do not depend on chunking or threads.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define MLP_SPEC_HINT "expected e.g. mlp:784-256-10"

/* --- parsing --- */

/* Parses one layer size of len chars at s: digits only, positive, at most INT_MAX. */
static int parse_size(const char *spec, const char *s, size_t len, int64_t *out, char *err,
                      size_t errlen) {
  int64_t v = 0;
  int ok = len > 0;
  for (size_t i = 0; ok && i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      ok = 0;
    else if (v <= INT_MAX)
      v = v * 10 + (s[i] - '0'); /* stops growing once too large */
  }
  if (!ok || v <= 0)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "model '%s': layer size '%.*s' is not a positive integer (" MLP_SPEC_HINT ")",
                    spec, (int)len, s);
  if (v > INT_MAX)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "model '%s': layer size '%.*s' is too large (at most %d)", spec, (int)len, s,
                    INT_MAX);
  *out = v;
  return DPT_OK;
}

static int parse_kind(const char *spec, char *err, size_t errlen) {
  if (!spec) return dpt_errf(err, errlen, DPT_EINVAL, "model spec is missing (" MLP_SPEC_HINT ")");
  if (strncmp(spec, "mlp:", 4) == 0) return DPT_OK;
  const char *colon = strchr(spec, ':');
  int klen = colon ? (int)(colon - spec) : (int)strlen(spec);
  return dpt_errf(
      err, errlen, DPT_EINVAL,
      "model '%s': unknown kind '%.*s' (expected mlp:IN-H1-...-OUT, e.g. mlp:784-256-10)", spec,
      klen, spec);
}

/* The sizes of "mlp:IN-...-OUT" into *sizes (malloc'ed, *count of them: IN, H1, ..., OUT). */
static int parse_spec(const char *spec, int64_t **sizes, int *count, char *err, size_t errlen) {
  *sizes = NULL;
  *count = 0;
  int rc = parse_kind(spec, err, errlen);
  if (rc) return rc;
  const char *p = spec + 4;
  int n = 1;
  for (const char *q = p; *q; q++) n += *q == '-';
  int64_t *s = malloc((size_t)n * sizeof *s);
  if (!s) return dpt_errf(err, errlen, DPT_ENOMEM, "model '%s': out of memory", spec);
  for (int i = 0; i < n; i++) {
    const char *dash = strchr(p, '-');
    size_t len = dash ? (size_t)(dash - p) : strlen(p);
    if ((rc = parse_size(spec, p, len, &s[i], err, errlen))) {
      free(s);
      return rc;
    }
    p = dash ? dash + 1 : p + len;
  }
  if (n < 2) {
    free(s);
    return dpt_errf(
        err, errlen, DPT_EINVAL,
        "model '%s': needs an input and an output size, at least one layer (" MLP_SPEC_HINT ")",
        spec);
  }
  *sizes = s;
  *count = n;
  return DPT_OK;
}

static int check_activation(const char *a, char *err, size_t errlen) {
  static const char *names[] = {"relu", "tanh", "gelu", "sigmoid"};
  for (int i = 0; a && i < 4; i++)
    if (strcmp(a, names[i]) == 0) return DPT_OK;
  return dpt_errf(err, errlen, DPT_EINVAL,
                  "activation '%s' is unknown (expected relu, tanh, gelu or sigmoid)",
                  a ? a : "(null)");
}

static int check_loss(const char *l, char *err, size_t errlen) {
  if (l && (strcmp(l, "ce") == 0 || strcmp(l, "mse") == 0)) return DPT_OK;
  return dpt_errf(err, errlen, DPT_EINVAL, "loss '%s' is unknown (expected ce or mse)",
                  l ? l : "(null)");
}

/* fc1, act1, fc2, act2, ..., fcL into a net taking [IN]. */
static int build(const char *spec, const int64_t *sizes, int count, const char *activation,
                 const char *loss, dpt_net **out, char *err, size_t errlen) {
  dpt_shape in = {1, {sizes[0]}};
  dpt_net *n;
  int rc = dpt_net_create("mlp", &in, &n, err, errlen);
  char name[32], opts[32], lerr[DPT_ERR_LEN];
  for (int l = 0; !rc && l + 1 < count; l++) {
    snprintf(name, sizeof name, "fc%d", l + 1);
    snprintf(opts, sizeof opts, "out=%lld", (long long)sizes[l + 1]);
    rc = dpt_net_add(n, "linear", name, opts, lerr, sizeof lerr);
    if (!rc && l + 2 < count) {
      snprintf(name, sizeof name, "act%d", l + 1);
      rc = dpt_net_add(n, activation, name, "", lerr, sizeof lerr);
    }
    if (rc) dpt_errf(err, errlen, rc, "model '%s': %s", spec, lerr);
  }
  if (!rc) rc = dpt_net_set_loss(n, loss, err, errlen);
  if (rc) {
    if (n) dpt_net_free(n);
    return rc;
  }
  *out = n;
  return DPT_OK;
}

int dpt_mlp_create(const char *spec, const char *activation, const char *loss, dpt_model *m,
                   char *err, size_t errlen) {
  if (!m) return dpt_errf(err, errlen, DPT_EINVAL, "mlp: no model to fill");
  memset(m, 0, sizeof *m);
  int64_t *sizes;
  int count;
  dpt_net *n = NULL;
  int rc = parse_spec(spec, &sizes, &count, err, errlen);
  if (!rc) rc = check_activation(activation, err, errlen);
  if (!rc) rc = check_loss(loss, err, errlen);
  if (!rc) rc = build(spec, sizes, count, activation, loss, &n, err, errlen);
  free(sizes);
  if (rc) return rc;
  return dpt_model_from_net(m, "mlp", n, err, errlen);
}

/* The registry's entry (model.c): the MLP flattens whatever sample shape the data has, so it
 * needs nothing from a->data (training checks that IN is the data's feature count). */
int dpt_mlp_register_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);
int dpt_mlp_register_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  return dpt_mlp_create(a->spec, a->activation, a->loss, m, err, errlen);
}

/* model.c — what every dpt_model shares, built-in or the user's: the registry of model kinds
 * that `--model KIND:SPEC` dispatches through, the check of a model's tables, and the lookup
 * of a tensor by name.
 *
 * Invariants:
 * - The registry is the built-in table below followed by the kinds registered at run time; a
 *   kind is in it at most once. It is the only process-wide state here (set up before
 *   training, read during it).
 * - Tensors are looked up by their state_dict name; nothing here owns a model's memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "runtime.h"

int dpt_mlp_register_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);
int dpt_gpt_register_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);
int dpt_model_file_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);

typedef struct {
  const char *kind;
  dpt_model_create_fn create;
} kind_entry;

/* The kinds dpt ships: a new one is one line here (and its file). */
static const kind_entry builtin[] = {
    {"mlp", dpt_mlp_register_create},
    {"gpt", dpt_gpt_register_create}, /* model_gpt.c */
    {"file", dpt_model_file_create},  /* model_file.c: file:PATH */
    {"cnn", dpt_model_file_create},   /* model_file.c: the presets runtime/models/cnn-*.ini */
};
#define NBUILTIN ((int)(sizeof builtin / sizeof builtin[0]))

static kind_entry *user; /* registered at run time; kinds are malloc'ed copies */
static int nuser;

#define SPEC_HINT "e.g. mlp:784-256-10, cnn:tiny, file:model.ini"

static const kind_entry *find_kind(const char *kind, size_t len) {
  for (int i = 0; i < NBUILTIN + nuser; i++) {
    const kind_entry *e = i < NBUILTIN ? &builtin[i] : &user[i - NBUILTIN];
    if (strlen(e->kind) == len && !strncmp(e->kind, kind, len)) return e;
  }
  return NULL;
}

/* "mlp, linreg" into buf: the known kinds, for errors. */
static void list_kinds(char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < NBUILTIN + nuser && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "",
                           i < NBUILTIN ? builtin[i].kind : user[i - NBUILTIN].kind);
}

int dpt_model_register(const char *kind, dpt_model_create_fn create, char *err, size_t errlen) {
  int ok = kind && kind[0] && create;
  for (const char *p = kind; ok && *p; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
         *p == '_' || *p == '-';
  if (!ok) {
    snprintf(err, errlen,
             "model kind '%s': expected a name of letters, digits, '_' or '-' and "
             "a create function",
             kind ? kind : "(null)");
    return DPT_EINVAL;
  }
  if (find_kind(kind, strlen(kind))) {
    snprintf(err, errlen, "model kind '%s' is already registered", kind);
    return DPT_EINVAL;
  }
  kind_entry *p = realloc(user, (size_t)(nuser + 1) * sizeof *p);
  char *copy = p ? malloc(strlen(kind) + 1) : NULL;
  if (p) user = p;
  if (!copy) {
    snprintf(err, errlen, "model kind '%s': out of memory", kind);
    return DPT_ENOMEM;
  }
  strcpy(copy, kind);
  user[nuser++] = (kind_entry){copy, create};
  return DPT_OK;
}

int dpt_model_create(const char *spec, const char *activation, const char *loss,
                     const dpt_model_data *data, dpt_model *m, char *err, size_t errlen) {
  if (!m) {
    snprintf(err, errlen, "model '%s': no model to fill", spec ? spec : "(null)");
    return DPT_EINVAL;
  }
  memset(m, 0, sizeof *m);
  char known[256];
  list_kinds(known, sizeof known);
  if (!spec) {
    snprintf(err, errlen, "model spec is missing (expected KIND:..., kinds %s; " SPEC_HINT ")",
             known);
    return DPT_EINVAL;
  }
  const char *colon = strchr(spec, ':');
  size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
  const kind_entry *e = find_kind(spec, klen);
  size_t slen = strlen(spec);
  if (!e && slen > 4 && !strcmp(spec + slen - 4, ".ini")) /* a bare model file's path */
    e = find_kind("file", 4), colon = NULL;
  if (!e) {
    snprintf(err, errlen, "model '%s': unknown kind '%.*s' (expected one of %s; " SPEC_HINT ")",
             spec, (int)klen, spec, known);
    return DPT_EINVAL;
  }
  dpt_model_args a = {spec, colon ? colon + 1 : "", activation, loss, data};
  int rc = e->create(&a, m, err, errlen);
  if (rc) memset(m, 0, sizeof *m);
  return rc;
}

int dpt_model_data_read(const char *path, dpt_model_data *data, char *err, size_t errlen) {
  dpt_dataset *ds = NULL;
  int rc = dpt_io_dataset_open(path, 0, &ds, err, errlen);
  if (rc) return rc;
  dpt_split_info in;
  rc = dpt_io_dataset_info(ds, DPT_SPLIT_TRAIN, &in);
  dpt_io_dataset_close(ds);
  if (rc) {
    snprintf(err, errlen, "%s: no training split", path);
    return rc;
  }
  memset(data, 0, sizeof *data);
  data->sample = in.sample;
  data->features = in.features;
  data->labels = in.y_labels;
  data->classes = in.y_labels ? in.num_classes : 0;
  data->targets = in.y_width;
  return DPT_OK;
}

int dpt_model_data_read_tokens(const char *path, int64_t context, dpt_model_data *data, char *err,
                               size_t errlen) {
  if (context < 1)
    return dpt_errf(err, errlen, DPT_EINVAL, "--context %lld: expected a positive window length",
                    (long long)context);
  dpt_tokens *t = NULL;
  int rc = dpt_io_tokens_open(path, &t, err, errlen);
  if (rc) return rc;
  memset(data, 0, sizeof *data);
  data->sample.rank = 1, data->sample.dims[0] = context;
  data->features = context;
  data->labels = 1;
  data->classes = dpt_io_tokens_vocab(t, NULL, NULL);
  data->targets = 1;
  dpt_io_tokens_close(t);
  return DPT_OK;
}

const dpt_tensor *dpt_model_tensor(const dpt_model *m, const char *name) {
  if (!m || !name || !m->tensors) return NULL;
  for (int i = 0; i < m->ntensors; i++)
    if (m->tensors[i].name && strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

int dpt_model_check(const dpt_model *m, char *err, size_t errlen) {
  const char *kind = m && m->kind ? m->kind : "(unnamed)";
  if (!m || !m->init || !m->loss_grad || !m->evaluate) {
    snprintf(err, errlen, "model '%s': init, loss_grad and evaluate must be set", kind);
    return DPT_EINVAL;
  }
  if (m->ntensors < 1 || !m->tensors) {
    snprintf(err, errlen, "model '%s': no tensors (expected a table of at least one)", kind);
    return DPT_EINVAL;
  }
  size_t at = 0;
  for (int i = 0; i < m->ntensors; i++) {
    const dpt_tensor *t = &m->tensors[i];
    const char *name = t->name && t->name[0] ? t->name : "(unnamed)";
    size_t n = 1;
    int ok = t->name && t->name[0] && t->rank >= 1 && t->rank <= DPT_MAX_RANK;
    for (int k = 0; ok && k < t->rank; k++)
      ok = t->dims[k] > 0 && !__builtin_mul_overflow(n, (size_t)t->dims[k], &n);
    if (!ok || n != t->numel) {
      snprintf(err, errlen,
               "model '%s': tensor %d '%s' has rank %d and %zu elements (expected "
               "a name, rank 1 to %d, positive dims whose product is its numel)",
               kind, i, name, t->rank, t->numel, DPT_MAX_RANK);
      return DPT_EINVAL;
    }
    if (t->offset != at) {
      snprintf(err, errlen,
               "model '%s': tensor '%s' starts at %zu (expected %zu: tensors tile "
               "the flat buffer in order)",
               kind, name, t->offset, at);
      return DPT_EINVAL;
    }
    at += t->numel;
    for (int j = 0; j < i; j++)
      if (!strcmp(m->tensors[j].name, t->name)) {
        snprintf(err, errlen, "model '%s': two tensors are named '%s'", kind, name);
        return DPT_EINVAL;
      }
  }
  if (at != m->nparams) {
    snprintf(err, errlen, "model '%s': the tensors cover %zu elements but nparams is %zu", kind, at,
             m->nparams);
    return DPT_EINVAL;
  }
  int64_t in = 1;
  for (int k = 0; k < m->input.rank && k < DPT_MAX_RANK; k++)
    if (__builtin_mul_overflow(in, m->input.dims[k], &in)) in = -1;
  if (m->input.rank < 0 || m->input.rank > DPT_MAX_RANK ||
      (m->input.rank > 0 && in != m->in_features) || m->in_features < 1) {
    snprintf(err, errlen,
             "model '%s': input shape of rank %d does not hold its %lld input "
             "features (expected the sample shape, or rank 0 for a flat input)",
             kind, m->input.rank, (long long)m->in_features);
    return DPT_EINVAL;
  }
  if (m->nlayers < 0 || (m->nlayers > 0 && !m->layers)) {
    snprintf(err, errlen, "model '%s': nlayers is %d without a layer table", kind, m->nlayers);
    return DPT_EINVAL;
  }
  int next = 0;
  for (int l = 0; l < m->nlayers; l++) {
    const dpt_layer_span *s = &m->layers[l];
    size_t len = 0;
    int ok =
        s->first_tensor == next && s->ntensors >= 1 && s->ntensors <= m->ntensors - s->first_tensor;
    for (int t = 0; ok && t < s->ntensors; t++) len += m->tensors[s->first_tensor + t].numel;
    if (!ok || s->offset != m->tensors[s->first_tensor].offset || s->len != len) {
      snprintf(err, errlen,
               "model '%s': layer %d '%s' is tensors [%d, +%d) at %zu, %zu "
               "elements (expected layers to tile the tensors in order, starting at tensor %d)",
               kind, l, s->name ? s->name : "(unnamed)", s->first_tensor, s->ntensors, s->offset,
               s->len, next);
      return DPT_EINVAL;
    }
    next += s->ntensors;
  }
  if (m->nlayers > 0 && next != m->ntensors) {
    snprintf(err, errlen, "model '%s': the layers cover %d of %d tensors", kind, next, m->ntensors);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

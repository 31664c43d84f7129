/* model_file_read.c — reading a model description (model_file_internal.h's dpt_mfile): the
 * text of a file (`file:PATH`, a PATH ending in .ini), of a preset compiled in (`cnn:NAME`,
 * runtime/models/FAMILY-NAME.ini via embed.cmake), or the text an MLP spec stands for, parsed
 * with inih into sections in order, each option with its line. model_file.c builds the net.
 *
 * Invariants:
 * - Every error names the file (or preset) and the line: "x.ini:12: conv2: ...". The reader
 *   counts lines and sees every "[name]" header itself (inih reports no section without keys).
 * - A layer's name can be a torch attribute (model_show.c's module holds it under that name).
 * - Nothing is kept on error: dpt_mfile_free frees a partly read description.
 */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_file_internal.h"

/* A model file larger than this is refused (a description is a few hundred bytes a layer). */
#define MFILE_MAX_BYTES (1 << 20)

/* --- names --- */

/* Names a layer may not take: torch must be able to hold it as an attribute (the printed
 * module), so no Python keyword and nothing torch.nn.Module already defines (1.13); "input"
 * is add's name for the net's input, "model" the model's own section. */
/* clang-format off */
static const char *const k_reserved[] = {
    /* Python keywords */
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
    "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if",
    "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try",
    "while", "with", "yield",
    /* names of the printed module's forward, dpt's own, and torch.nn.Module's attributes */
    "input", "model", "self", "x", "torch", "nn", "F", "T_destination", "add_module", "apply",
    "bfloat16", "buffers", "children", "cpu", "cuda", "double", "dump_patches", "eval",
    "extra_repr", "float", "forward", "get_buffer", "get_extra_state", "get_parameter",
    "get_submodule", "half", "ipu", "load_state_dict", "modules", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_load_state_dict_post_hook", "register_module",
    "register_parameter", "requires_grad_", "set_extra_state", "share_memory", "state_dict", "to",
    "to_empty", "train", "training", "type", "xpu", "zero_grad", NULL,
};
/* clang-format on */

#define NAME_MAX_LEN 48 /* inih keeps section names of up to 49 characters (MAX_SECTION 50) */

/* 0 when name can be a layer's name; else a message into why. */
static int check_name(const char *name, char *why, size_t len) {
  size_t n = strlen(name);
  int ok = n > 0 && n <= NAME_MAX_LEN && !(name[0] >= '0' && name[0] <= '9') && name[0] != '_';
  for (size_t i = 0; ok && i < n; i++)
    ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
         (name[i] >= '0' && name[i] <= '9') || name[i] == '_';
  if (!ok) {
    snprintf(why, len,
             "layer name '%s' is not a name (expected letters, digits and '_', not starting "
             "with a digit or '_', at most %d characters)",
             name, NAME_MAX_LEN);
    return -1;
  }
  for (int i = 0; k_reserved[i]; i++)
    if (!strcmp(k_reserved[i], name)) {
      snprintf(why, len,
               "layer name '%s' is reserved (a Python keyword, a torch.nn.Module attribute, "
               "'input' or 'model'): choose another",
               name);
      return -1;
    }
  return 0;
}

/* "linear, relu, ..." into buf: the layer kinds, for errors. */
typedef struct {
  char *buf;
  size_t len, at;
} kind_list;
static void add_kind(void *ctx, const dpt_layer_ops *ops) {
  kind_list *k = ctx;
  if (k->at < k->len)
    k->at += (size_t)snprintf(k->buf + k->at, k->len - k->at, "%s%s", k->at ? ", " : "", ops->kind);
}
static const char *known_kinds(char *buf, size_t len) {
  kind_list k = {buf, len, 0};
  buf[0] = 0;
  dpt_layer_kinds(add_kind, &k);
  return buf;
}

/* --- reading: inih over the text, lines counted by our reader --- */

typedef struct {
  dpt_mfile *d;
  const char *text;
  size_t len, at;
  int line;     /* lines handed to inih so far */
  int cur;      /* the section inih is in: a layer index, -1 [model], -2 none yet */
  int bad_line; /* the first problem's line (0: none), its message in err */
  char err[DPT_ERR_LEN];
} reader;

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static int fail_at(reader *r, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(reader *r, int line, const char *fmt, ...) {
  if (!r->bad_line) {
    r->bad_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
  }
  return 0; /* inih: an error on this line */
}

/* A "[name]" header at line: registers the section (inih does not report sections without
 * keys, so the reader does). */
static void on_header(reader *r, const char *start, size_t len) {
  dpt_mfile *d = r->d;
  char name[128];
  if (len >= sizeof name) {
    fail_at(r, r->line, "section name '%.40s...' is too long (at most %d characters)", start,
            NAME_MAX_LEN);
    return;
  }
  memcpy(name, start, len);
  name[len] = 0;
  if (!strcmp(name, "model")) {
    if (d->model_line) {
      fail_at(r, r->line, "[model] is given twice (first at line %d)", d->model_line);
      return;
    }
    d->model_line = r->line;
    r->cur = -1;
    return;
  }
  char why[256];
  if (check_name(name, why, sizeof why)) {
    fail_at(r, r->line, "%s", why);
    return;
  }
  for (int i = 0; i < d->nlayers; i++)
    if (!strcmp(d->layers[i].name, name)) {
      fail_at(r, r->line, "layer '%s' is defined twice (first at line %d)", name,
              d->layers[i].line);
      return;
    }
  if (d->nlayers == d->cap) {
    int cap = d->cap ? 2 * d->cap : 16;
    dpt_mfile_layer *p = realloc(d->layers, (size_t)cap * sizeof *p);
    if (!p) {
      fail_at(r, r->line, "out of memory");
      return;
    }
    d->layers = p, d->cap = cap;
  }
  dpt_mfile_layer *l = &d->layers[d->nlayers];
  memset(l, 0, sizeof *l);
  if (!(l->name = dup_str(name))) {
    fail_at(r, r->line, "out of memory");
    return;
  }
  l->line = r->line;
  r->cur = d->nlayers++;
}

static char *read_line(char *str, int num, void *stream) {
  reader *r = stream;
  if (r->bad_line || r->at >= r->len) return NULL;
  const char *p = r->text + r->at;
  size_t rest = r->len - r->at;
  const char *nl = memchr(p, '\n', rest);
  size_t n = nl ? (size_t)(nl - p) + 1 : rest;
  r->line++;
  if (memchr(p, '\0', n)) {
    fail_at(r, r->line, "the line holds a NUL byte (expected text)");
    return NULL;
  }
  if (n + 1 > (size_t)num) {
    fail_at(r, r->line, "the line is longer than %d characters", num - 2);
    return NULL;
  }
  memcpy(str, p, n);
  str[n] = 0;
  r->at += n;
  const char *s = str;
  if (r->line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) s += 3; /* a UTF-8 BOM, as inih skips it */
  s += strspn(s, " \t\r");
  if (*s == '[') { /* as inih reads a header: the name ends at the first ']' */
    const char *end = strchr(s + 1, ']');
    if (end) on_header(r, s + 1, (size_t)(end - s - 1));
  }
  return r->bad_line ? NULL : str;
}

static int set_once(reader *r, char **slot, int *slot_line, const char *key, const char *value) {
  if (*slot)
    return fail_at(r, r->line, "[model] %s is set twice (first at line %d)", key, *slot_line);
  if (!(*slot = dup_str(value))) return fail_at(r, r->line, "out of memory");
  *slot_line = r->line;
  return 1;
}

/* "1x28x28" (or "1,28,28") into s. */
static int parse_shape(const char *text, dpt_shape *s) {
  memset(s, 0, sizeof *s);
  const char *p = text;
  while (*p) {
    if (s->rank == DPT_MAX_RANK) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v < 1 || v > (1LL << 40) || !(*p >= '0' && *p <= '9')) return -1;
    s->dims[s->rank++] = v;
    p = end;
    if (*p == 'x' || *p == 'X' || *p == ',') {
      p++;
      if (!*p) return -1;
    } else if (*p) {
      return -1;
    }
  }
  return s->rank ? 0 : -1;
}

static int on_model_key(reader *r, const char *key, const char *value) {
  dpt_mfile *d = r->d;
  if (!strcmp(key, "loss")) return set_once(r, &d->loss, &d->loss_line, key, value);
  if (!strcmp(key, "label_smoothing"))
    return set_once(r, &d->smoothing, &d->smoothing_line, key, value);
  if (!strcmp(key, "per_position"))
    return set_once(r, &d->per_position, &d->per_position_line, key, value);
  if (!strcmp(key, "description")) {
    int line = 0;
    return set_once(r, &d->description, &line, key, value);
  }
  if (!strcmp(key, "input")) {
    if (d->input_line)
      return fail_at(r, r->line, "[model] input is set twice (first at line %d)", d->input_line);
    if (parse_shape(value, &d->input))
      return fail_at(r, r->line,
                     "[model] input = '%s' is not a shape (expected sizes joined by 'x', at "
                     "most %d of them, e.g. 1x28x28)",
                     value, DPT_MAX_RANK);
    d->input_line = r->line;
    return 1;
  }
  return fail_at(r, r->line,
                 "[model] has no key '%s' (expected loss, label_smoothing, per_position, "
                 "input or description)",
                 key);
}

static int on_key(void *user, const char *section, const char *key, const char *value) {
  reader *r = user;
  (void)section; /* the reader saw the header: r->cur */
  if (r->bad_line) return 0;
  if (!key[0]) return fail_at(r, r->line, "'= %s' has no key (expected key = value)", value);
  if (r->cur == -2)
    return fail_at(r, r->line,
                   "'%s' is outside a section (expected [model] or a layer's [name] first)", key);
  if (r->cur == -1) return on_model_key(r, key, value);
  dpt_mfile_layer *l = &r->d->layers[r->cur];
  if (!value[0]) return fail_at(r, r->line, "%s: '%s' has no value", l->name, key);
  if (!strcmp(key, "kind")) {
    if (l->kind)
      return fail_at(r, r->line, "%s: kind is set twice (first at line %d)", l->name, l->kind_line);
    if (!(l->kind = dup_str(value))) return fail_at(r, r->line, "out of memory");
    l->kind_line = r->line;
    return 1;
  }
  if (strpbrk(value, ",=") || strpbrk(key, ",="))
    return fail_at(r, r->line, "%s: %s = '%s' holds a ',' or '=' (expected one value per key)",
                   l->name, key, value);
  for (int i = 0; i < l->nopts; i++)
    if (!strcmp(l->opts[i].key, key))
      return fail_at(r, r->line, "%s: option '%s' is set twice (first at line %d)", l->name, key,
                     l->opts[i].line);
  if (l->nopts == l->cap) {
    int cap = l->cap ? 2 * l->cap : 8;
    dpt_mfile_opt *p = realloc(l->opts, (size_t)cap * sizeof *p);
    if (!p) return fail_at(r, r->line, "out of memory");
    l->opts = p, l->cap = cap;
  }
  dpt_mfile_opt *o = &l->opts[l->nopts];
  o->key = dup_str(key), o->value = dup_str(value), o->line = r->line;
  if (!o->key || !o->value) {
    free(o->key), free(o->value);
    return fail_at(r, r->line, "out of memory");
  }
  l->nopts++;
  return 1;
}

void dpt_mfile_free(dpt_mfile *d) {
  for (int i = 0; i < d->nlayers; i++) {
    dpt_mfile_layer *l = &d->layers[i];
    for (int k = 0; k < l->nopts; k++) free(l->opts[k].key), free(l->opts[k].value);
    free(l->opts), free(l->name), free(l->kind);
  }
  free(d->layers), free(d->loss), free(d->smoothing), free(d->description);
  free(d->per_position);
  memset(d, 0, sizeof *d);
}

/* Parses text (len bytes) into d; d->where is set. Errors are "WHERE:LINE: ...". */
static int parse_text(dpt_mfile *d, const char *text, size_t len, char *err, size_t errlen) {
  reader r = {.d = d, .text = text, .len = len, .cur = -2};
  int rc = ini_parse_stream(read_line, &r, on_key, &r);
  if (!r.bad_line && rc > 0)
    fail_at(&r, rc, "malformed line (expected [name], key = value, or a comment after ; or #)");
  if (!r.bad_line && rc < 0) fail_at(&r, 1, "out of memory while reading");
  if (r.bad_line)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s:%d: %s", d->where, r.bad_line, r.err);
  if (!d->nlayers) {
    size_t blank = strspn(text, " \t\r\n");
    if (blank == len)
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "%s: the file is empty (expected an optional [model] section, then a "
                      "[name] section per layer with kind = ...)",
                      d->where);
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s: no layers (expected a [name] section per layer, with kind = ...)",
                    d->where);
  }
  char kinds[512];
  for (int i = 0; i < d->nlayers; i++) {
    dpt_mfile_layer *l = &d->layers[i];
    if (!l->kind)
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "%s:%d: %s: kind is missing (expected kind = one of %s)", d->where, l->line,
                      l->name, known_kinds(kinds, sizeof kinds));
    if (!dpt_layer_find(l->kind))
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "%s:%d: %s: kind '%s' is unknown (expected one of %s)", d->where,
                      l->kind_line, l->name, l->kind, known_kinds(kinds, sizeof kinds));
  }
  return DPT_OK;
}

/* --- where the text comes from --- */

static const dpt_model_preset *find_preset(const char *family, size_t flen, const char *name) {
  for (int i = 0; i < dpt_model_npresets_builtin; i++) {
    const dpt_model_preset *p = &dpt_model_presets_builtin[i];
    if (strlen(p->family) == flen && !strncmp(p->family, family, flen) && !strcmp(p->name, name))
      return p;
  }
  return NULL;
}

static int is_family(const char *family, size_t flen) {
  for (int i = 0; i < dpt_model_npresets_builtin; i++)
    if (strlen(dpt_model_presets_builtin[i].family) == flen &&
        !strncmp(dpt_model_presets_builtin[i].family, family, flen))
      return 1;
  return 0;
}

static int read_file(const char *path, char **text, size_t *len, char *err, size_t errlen) {
  char why[DPT_ERR_LEN];
  if (dpt_check_regular(path, "model file", why, sizeof why))
    return dpt_errf(err, errlen, DPT_EINVAL, "%s", why);
  FILE *f = fopen(path, "rb");
  if (!f)
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: cannot open the model file: %s", path,
                    strerror(errno));
  char *buf = malloc(MFILE_MAX_BYTES + 1);
  size_t n = buf ? fread(buf, 1, MFILE_MAX_BYTES + 1, f) : 0;
  int bad = !buf || ferror(f);
  int e = errno;
  fclose(f);
  if (bad) {
    free(buf);
    return dpt_errf(err, errlen, buf ? DPT_EIO : DPT_ENOMEM, "%s: cannot read the model file: %s",
                    path, buf ? strerror(e) : "out of memory");
  }
  if (n > MFILE_MAX_BYTES) {
    free(buf);
    return dpt_errf(err, errlen, DPT_EINVAL, "%s: the model file is larger than %d bytes", path,
                    MFILE_MAX_BYTES);
  }
  buf[n] = 0;
  *text = buf;
  *len = n;
  return DPT_OK;
}

/* The text spec names into *text (malloc'ed) and d->where. */
static int load(const char *spec, dpt_mfile *d, char **text, size_t *len, char *err,
                size_t errlen) {
  const char *colon = strchr(spec, ':');
  size_t slen = strlen(spec);
  const char *path = NULL;
  if (!strncmp(spec, "file:", 5))
    path = spec + 5;
  else if (colon && is_family(spec, (size_t)(colon - spec))) {
    const dpt_model_preset *p = find_preset(spec, (size_t)(colon - spec), colon + 1);
    if (!p) {
      char names[256] = "";
      size_t at = 0;
      for (int i = 0; i < dpt_model_npresets_builtin && at < sizeof names; i++)
        if (!strncmp(dpt_model_presets_builtin[i].family, spec, (size_t)(colon - spec)) &&
            strlen(dpt_model_presets_builtin[i].family) == (size_t)(colon - spec))
          at += (size_t)snprintf(names + at, sizeof names - at, "%s%.*s:%s", at ? ", " : "",
                                 (int)(colon - spec), spec, dpt_model_presets_builtin[i].name);
      return dpt_errf(err, errlen, DPT_EINVAL,
                      "model '%s': no such preset (expected one of %s, or file:PATH)", spec, names);
    }
    snprintf(d->where, sizeof d->where, "%s", spec);
    *len = strlen(p->text);
    if (!(*text = dup_str(p->text)))
      return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", spec);
    return DPT_OK;
  } else if (slen > 4 && !strcmp(spec + slen - 4, ".ini")) {
    path = spec;
  }
  if (!path)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "model '%s': not a model file or preset (expected file:PATH, a PATH ending "
                    "in .ini, or a preset such as cnn:tiny)",
                    spec);
  if (!path[0])
    return dpt_errf(err, errlen, DPT_EINVAL, "model '%s': the path is empty (expected file:PATH)",
                    spec);
  snprintf(d->where, sizeof d->where, "%s", path);
  return read_file(path, text, len, err, errlen);
}

/* The file mlp:IN-H1-...-OUT would be: input = IN, fc1, act1, ..., fcL (model_mlp.c's names),
 * so that show and torch describe the MLP too. Its spec is checked by dpt_mlp_create. */
static int mlp_text(const char *spec, const char *activation, const char *loss, char **text,
                    size_t *len, char *err, size_t errlen) {
  dpt_model m;
  int rc =
      dpt_mlp_create(spec, activation ? activation : "relu", loss ? loss : "ce", &m, err, errlen);
  if (rc) return rc;
  m.destroy(&m);
  size_t cap = 64 + 64 * strlen(spec);
  char *t = malloc(cap);
  if (!t) return dpt_errf(err, errlen, DPT_ENOMEM, "model '%s': out of memory", spec);
  const char *p = spec + 4;
  size_t at = (size_t)snprintf(t, cap, "[model]\ninput = %.*s\n", (int)strcspn(p, "-"), p);
  p += strcspn(p, "-");
  for (int l = 1; *p == '-'; l++) {
    p++;
    size_t n = strcspn(p, "-");
    if (l > 1)
      at += (size_t)snprintf(t + at, cap - at, "[act%d]\nkind = %s\n", l - 1,
                             activation ? activation : "relu");
    at += (size_t)snprintf(t + at, cap - at, "[fc%d]\nkind = linear\nout = %.*s\n", l, (int)n, p);
    p += n;
  }
  *text = t;
  *len = at;
  return DPT_OK;
}

int dpt_mfile_read(const char *spec, const char *activation, const char *loss, dpt_mfile *d,
                   char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  if (!spec) return dpt_errf(err, errlen, DPT_EINVAL, "model spec is missing");
  char *text = NULL;
  size_t len = 0;
  int rc;
  if (!strncmp(spec, "mlp:", 4)) {
    snprintf(d->where, sizeof d->where, "%s", spec);
    rc = mlp_text(spec, activation, loss, &text, &len, err, errlen);
  } else {
    rc = load(spec, d, &text, &len, err, errlen);
  }
  if (!rc) rc = parse_text(d, text, len, err, errlen);
  free(text);
  if (rc) dpt_mfile_free(d);
  return rc;
}

void dpt_model_presets(void (*fn)(void *ctx, const char *spec, const char *text), void *ctx) {
  for (int i = 0; i < dpt_model_npresets_builtin; i++) {
    char spec[128];
    snprintf(spec, sizeof spec, "%s:%s", dpt_model_presets_builtin[i].family,
             dpt_model_presets_builtin[i].name);
    fn(ctx, spec, dpt_model_presets_builtin[i].text);
  }
}

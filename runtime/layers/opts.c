/* opts.c — helpers the spatial layers share: options that may be 0 (padding=0), rejecting
 * option keys a layer does not know (a typo like "strde=2" is an error, not a default), and
 * shapes in error messages ("[16, 28, 28]").
 *
 * Invariants:
 * - Options are "key=value,key=value"; the first occurrence of a key wins, as in
 *   dpt_layer_opt_long (net.c).
 * - Errors name the layer, the option and what was expected.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

/* The value of `key` in opts: its start and length, or NULL when absent. */
static const char *find_value(const char *opts, const char *key, size_t *vlen) {
  size_t klen = strlen(key);
  for (const char *p = opts ? opts : ""; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > klen && !strncmp(p, key, klen) && p[klen] == '=') {
      *vlen = len - klen - 1;
      return p + klen + 1;
    }
    p = end ? end + 1 : p + len;
  }
  return NULL;
}

const char *dpt_layer_opt_text(const char *opts, const char *key, size_t *len) {
  return find_value(opts, key, len);
}

int dpt_layer_opt_double(const dpt_layer *l, const char *opts, const char *key, double def,
                         double lo, double hi, double *out, char *err, size_t errlen) {
  size_t vlen = 0;
  const char *v = find_value(opts, key, &vlen);
  if (!v) {
    *out = def;
    return DPT_OK;
  }
  char text[64];
  double d = 0;
  int good = vlen > 0 && vlen < sizeof text;
  if (good) {
    memcpy(text, v, vlen);
    text[vlen] = 0;
    good = !dpt_parse_double(text, &d) && d >= lo && d <= hi;
  }
  if (!good) {
    snprintf(err, errlen, "%s: option %s='%.*s' (expected a number in [%g, %g])", l->name, key,
             (int)vlen, v, lo, hi);
    return DPT_EINVAL;
  }
  *out = d;
  return DPT_OK;
}

int dpt_layer_opt_count(const dpt_layer *l, const char *opts, const char *key, long def, long *out,
                        char *err, size_t errlen) {
  size_t vlen = 0;
  const char *v = find_value(opts, key, &vlen);
  if (!v) {
    *out = def;
    return DPT_OK;
  }
  long n = 0;
  int good = vlen > 0;
  for (size_t i = 0; good && i < vlen; i++) {
    if (v[i] < '0' || v[i] > '9')
      good = 0;
    else if (n <= INT_MAX)
      n = n * 10 + (v[i] - '0');
  }
  if (!good || n > INT_MAX) {
    snprintf(err, errlen, "%s: option %s='%.*s' (expected an integer in [0, %d])", l->name, key,
             (int)vlen, v, INT_MAX);
    return DPT_EINVAL;
  }
  *out = n;
  return DPT_OK;
}

int dpt_layer_opt_known(const dpt_layer *l, const char *opts, const char *const *keys, char *err,
                        size_t errlen) {
  const char *help = l->ops->help ? l->ops->help : "its options";
  for (const char *p = opts ? opts : ""; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', len);
    if (!eq) {
      snprintf(err, errlen, "%s: option '%.*s' is not key=value (expected %s)", l->name, (int)len,
               p, help);
      return DPT_EINVAL;
    }
    size_t klen = (size_t)(eq - p);
    int known = 0;
    for (int i = 0; keys[i] && !known; i++)
      known = strlen(keys[i]) == klen && !strncmp(keys[i], p, klen);
    if (!known) {
      snprintf(err, errlen, "%s: option '%.*s' is not one of %s's (expected %s)", l->name, (int)len,
               p, l->ops->kind, help);
      return DPT_EINVAL;
    }
    for (const char *q = end; q; q = strchr(q + 1, ',')) /* a later "key=" repeats it */
      if (!strncmp(q + 1, p, klen + 1)) {
        snprintf(err, errlen, "%s: option '%.*s' is given twice", l->name, (int)klen, p);
        return DPT_EINVAL;
      }
    p = end ? end + 1 : p + len;
  }
  return DPT_OK;
}

const char *dpt_layer_shape_str(const dpt_shape *s, char *buf, size_t len) {
  size_t at = 0;
  int w = snprintf(buf, len, "[");
  for (int i = 0; w >= 0 && i < s->rank; i++) {
    at += (size_t)w;
    w = snprintf(buf + (at < len ? at : len), at < len ? len - at : 0, "%s%lld", i ? ", " : "",
                 (long long)s->dims[i]);
  }
  if (w >= 0) at += (size_t)w;
  if (at < len) snprintf(buf + at, len - at, "]");
  return buf;
}

int dpt_layer_chw(const dpt_layer *l, char *err, size_t errlen) {
  if (l->in.rank == 3) return DPT_OK;
  char got[96];
  snprintf(err, errlen, "%s: %s expects a sample of shape [C, H, W], gets %s", l->name,
           l->ops->kind, dpt_layer_shape_str(&l->in, got, sizeof got));
  return DPT_EINVAL;
}

int dpt_layer_opt_std(dpt_layer *l, const char *opts, char *err, size_t errlen) {
  double sd;
  int rc = dpt_layer_opt_double(l, opts, "std", 1.0, 0.0, 1e6, &sd, err, errlen);
  if (rc) return rc;
  double *p = malloc(sizeof *p);
  if (!p) return dpt_errf(err, errlen, DPT_ENOMEM, "%s: out of memory", l->name);
  *p = sd;
  l->state = p;
  return DPT_OK;
}

/* Box-Muller's cosine branch, one pair of uniforms per value */
void dpt_layer_init_normal(const dpt_layer *l, float *params, dpt_layer_rng *rng) {
  const double two_pi = 6.283185307179586;
  float *w = params + dpt_layer_at(l, 0);
  double sd = l->state ? *(const double *)l->state : 1.0;
  for (size_t i = 0; i < l->tensors[0].numel; i++) {
    double u1 = rng->uniform(rng->ctx), u2 = rng->uniform(rng->ctx);
    w[i] = (float)(sd * (sqrt(-2.0 * log(1.0 - u1)) * cos(two_pi * u2)));
  }
}

void dpt_layer_free_state(dpt_layer *l) {
  free(l->state);
  l->state = NULL;
}

/* options.c — the dpt command's options as one ordered list: the command line and --config
 * INI files (via inih), applied to dpt_train_opts through runtime's one setter. Kept apart
 * from main() so that tests and fuzzers can drive it. */
#include "launch.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_RUN = DPT_EXIT_RUN, EXIT_USAGE = DPT_EXIT_USAGE };

/* --- option collection ---
 * Options come from the config file first, then the command line (which wins). The solver and
 * scheduler kinds are applied before any hyperparameter, whatever their position. */
static int kv_add(kv_list *l, const char *key, const char *value, const char *origin, int line) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 32;
    kv *p = realloc(l->items, (size_t)cap * sizeof *p);
    if (!p)
      return -1;
    l->items = p;
    l->cap = cap;
  }
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return -1;
  }
  for (char *c = k; *c; c++)
    if (*c == '-')
      *c = '_';
  l->items[l->n++] = (kv){k, v, origin, line};
  return 0;
}

void dpt_launch_kv_free(kv_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->items[i].key);
    free(l->items[i].value);
  }
  free(l->items);
}

typedef struct {
  kv_list *list;
  const char *path;
} ini_ctx;

/* Sections: [train] (or none) for training options, [solver] for the solver and its
 * hyperparameters ("name = adam"), [sched] for the scheduler ("name = cosine"). */
static int on_ini(void *user, const char *section, const char *name, const char *value) {
  ini_ctx *c = user;
  char key[256];
  if (!strcmp(section, "solver") && !strcmp(name, "name"))
    snprintf(key, sizeof key, "solver");
  else if (!strcmp(section, "sched") && !strcmp(name, "name"))
    snprintf(key, sizeof key, "sched");
  else if (!strcmp(section, "sched"))
    snprintf(key, sizeof key, "sched_%s", name);
  else if (!section[0] || !strcmp(section, "train") || !strcmp(section, "solver"))
    snprintf(key, sizeof key, "%s", name);
  else
    return 0; /* unknown section: reported by the caller through the line number */
  return kv_add(c->list, key, value, c->path, 0) == 0;
}

static int is_flag_value(const char *s) { return s && strncmp(s, "--", 2) != 0; }

/* Parses argv[first..] into the list; --config FILE is read in place. Returns 0, or EXIT_USAGE
 * with a message. */
int dpt_launch_collect(int argc, char **argv, int first, kv_list *l, char *err, size_t errlen) {
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || !a[2]) {
      snprintf(err, errlen, "unexpected argument '%s' (options are --name value)", a);
      return EXIT_USAGE;
    }
    char name[256];
    const char *value;
    const char *eq = strchr(a + 2, '=');
    if (eq) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
      value = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a + 2);
      value = is_flag_value(i + 1 < argc ? argv[i + 1] : NULL) ? argv[++i] : "1";
    }
    if (!strcmp(name, "config")) {
      ini_ctx c = {l, value};
      int rc = ini_parse(value, on_ini, &c);
      if (rc < 0) {
        snprintf(err, errlen, "--config: cannot open '%s'", value);
        return EXIT_USAGE;
      }
      if (rc > 0) {
        snprintf(err, errlen, "--config: '%s' line %d is not 'name = value' in a known section "
                 "([train], [solver], [sched])", value, rc);
        return EXIT_USAGE;
      }
      continue;
    }
    if (kv_add(l, name, value, "command line", 0)) {
      snprintf(err, errlen, "out of memory");
      return EXIT_RUN;
    }
  }
  return 0;
}

int dpt_launch_apply(dpt_train_opts *o, const kv_list *l, char *err, size_t errlen) {
  /* Kinds first (they reset hyperparameters to that kind's defaults), then the rest. */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < l->n; i++) {
      const kv *e = &l->items[i];
      int is_kind = !strcmp(e->key, "solver") || !strcmp(e->key, "sched");
      if (is_kind != (pass == 0))
        continue;
      char m[DPT_ERR_LEN];
      if (dpt_train_set(o, e->key, e->value, m, sizeof m)) {
        if (strcmp(e->origin, "command line"))
          snprintf(err, errlen, "%s: %.400s", e->origin, m);
        else
          snprintf(err, errlen, "%s", m);
        return EXIT_USAGE;
      }
    }
  return 0;
}

/* A range error names the parameter ("lr = -3 ..."); if the value came from a config file,
 * say which file and line, so the user knows where to look. */
void dpt_launch_blame(const kv_list *l, char *err, size_t errlen) {
  for (int i = l->n - 1; i >= 0; i--) {
    const kv *e = &l->items[i];
    char pat1[300], pat2[300];
    const char *key = strncmp(e->key, "sched_", 6) ? e->key : e->key + 6;
    snprintf(pat1, sizeof pat1, " %s = ", key);
    snprintf(pat2, sizeof pat2, " %s[", key);
    if (!strstr(err, pat1) && !strstr(err, pat2))
      continue;
    if (strcmp(e->origin, "command line")) {
      char m[DPT_ERR_LEN];
      snprintf(m, sizeof m, "%s", err);
      snprintf(err, errlen, "%s: %.400s", e->origin, m);
    }
    return;
  }
}


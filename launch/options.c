/* options.c — the dpt command's options as one ordered list: the command line and --config
 * INI files (via inih), applied to dpt_train_opts through runtime's one setter. Kept apart
 * from main() so that tests and fuzzers can drive it. */
#include "launch.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_RUN = DPT_EXIT_RUN, EXIT_USAGE = DPT_EXIT_USAGE };

/* --- option collection ---
 * Options come from the config file first, then the command line (which wins). The solver and
 * scheduler kinds are applied before any hyperparameter, whatever their position. */
static int kv_add(kv_list *l, const char *key, const char *value, const char *origin, int line,
                  int bare, const char *section) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 32;
    kv *p = realloc(l->items, (size_t)cap * sizeof *p);
    if (!p) return -1;
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
    if (*c == '-') *c = '_';
  kv *e = &l->items[l->n++];
  *e = (kv){k, v, origin, line, bare, ""};
  snprintf(e->section, sizeof e->section, "%s", section);
  return 0;
}

void dpt_launch_kv_free(kv_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->items[i].key);
    free(l->items[i].value);
  }
  free(l->items);
  free(l->args);
}

typedef struct {
  kv_list *list;
  const char *path;
  FILE *f;
  int line;         /* of the text inih is handling (the reader counts them) */
  int section_line; /* of the last "[section]" header */
  int first;        /* the list's first item from this file */
  int bad_line;     /* where the first problem is, with its message in err */
  char err[DPT_ERR_LEN];
} ini_ctx;

/* inih's reader, counting lines so that every value knows where it came from. */
static char *ini_read_line(char *str, int num, void *stream) {
  ini_ctx *c = stream;
  char *s = fgets(str, num, c->f);
  if (s) c->line++;
  if (s && s[strspn(s, " \t")] == '[') c->section_line = c->line;
  return s;
}

static int ini_fail(ini_ctx *c, int line, const char *fmt, const char *a, const char *b) {
  if (!c->bad_line) {
    c->bad_line = line;
    snprintf(c->err, sizeof c->err, fmt, a, b);
  }
  return 0;
}

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
    return ini_fail(c, c->section_line,
                    "unknown section [%s] (expected [train], [solver] or [sched])%s", section, "");
  for (char *p = key; *p; p++)
    if (*p == '-') *p = '_';
  for (int i = c->first; i < c->list->n; i++)
    if (!strcmp(c->list->items[i].key, key)) {
      char at[32];
      snprintf(at, sizeof at, "%d", c->list->items[i].line);
      return ini_fail(c, c->line, "'%s' is set twice in this file (first at line %s)", name, at);
    }
  return kv_add(c->list, key, value, c->path, c->line, 0, section[0] ? section : "train") == 0;
}

/* Reads one --config file into l. 0, or EXIT_USAGE with a message naming the file and line. */
static int read_config(const char *path, kv_list *l, char *err, size_t errlen) {
  char why[DPT_ERR_LEN];
  if (dpt_check_regular(path, "--config", why, sizeof why)) {
    snprintf(err, errlen, "%s", why);
    return EXIT_USAGE;
  }
  ini_ctx c = {.list = l, .path = path, .first = l->n};
  if (!(c.f = fopen(path, "r"))) {
    snprintf(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
    return EXIT_USAGE;
  }
  int rc = ini_parse_stream(ini_read_line, &c, on_ini, &c);
  fclose(c.f);
  if (c.bad_line) {
    snprintf(err, errlen, "%s:%d: %s", path, c.bad_line, c.err);
    return EXIT_USAGE;
  }
  if (rc > 0) {
    snprintf(err, errlen, "%s:%d: not 'name = value' or '[section]'", path, rc);
    return EXIT_USAGE;
  }
  if (rc < 0) {
    snprintf(err, errlen, "--config: cannot read '%s'", path);
    return EXIT_RUN;
  }
  return 0;
}

static int is_flag_value(const char *s) {
  return s && strncmp(s, "--", 2) != 0;
}

/* Parses argv[first..] into the list; --config FILE is read in place. Returns 0, or EXIT_USAGE
 * with a message. */
int dpt_launch_collect(int argc, char **argv, int first, kv_list *l, char *err, size_t errlen) {
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || !a[2]) {
      if (l->take_args) {
        const char **p = realloc(l->args, (size_t)(l->nargs + 1) * sizeof *p);
        if (!p) return snprintf(err, errlen, "out of memory"), EXIT_RUN;
        l->args = p;
        l->args[l->nargs++] = a;
        continue;
      }
      snprintf(err, errlen, "unexpected argument '%s' (options are --name value)", a);
      return EXIT_USAGE;
    }
    char name[256];
    const char *value;
    int bare = 0;
    const char *eq = strchr(a + 2, '=');
    if (eq) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
      value = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a + 2);
      bare = !is_flag_value(i + 1 < argc ? argv[i + 1] : NULL);
      value = bare ? "" : argv[++i];
    }
    if (!strcmp(name, "config")) {
      if (bare) {
        snprintf(err, errlen, "--config: needs a value (--config FILE)");
        return EXIT_USAGE;
      }
      int rc = read_config(value, l, err, errlen);
      if (rc) return rc;
      continue;
    }
    if (kv_add(l, name, value, "command line", 0, bare, "")) {
      snprintf(err, errlen, "out of memory");
      return EXIT_RUN;
    }
  }
  return 0;
}

/* "FILE:LINE: [SECTION] " for a value from a config file, "" for the command line. */
static void origin_of(const kv *e, char *buf, size_t len) {
  if (strcmp(e->origin, "command line"))
    snprintf(buf, len, "%s:%d: [%s] ", e->origin, e->line, e->section);
  else
    buf[0] = 0;
}

int dpt_launch_apply(dpt_train_opts *o, const kv_list *l, char *err, size_t errlen) {
  /* Kinds first (they reset hyperparameters to that kind's defaults), then the rest. */
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < l->n; i++) {
      const kv *e = &l->items[i];
      int is_kind = !strcmp(e->key, "solver") || !strcmp(e->key, "sched");
      if (is_kind != (pass == 0)) continue;
      char m[DPT_ERR_LEN];
      if (dpt_train_set(o, e->key, e->bare ? NULL : e->value, m, sizeof m)) {
        char at[300];
        origin_of(e, at, sizeof at);
        snprintf(err, errlen, "%s%.400s", at, m);
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
    if (!strstr(err, pat1) && !strstr(err, pat2)) continue;
    char at[300], m[DPT_ERR_LEN];
    origin_of(e, at, sizeof at);
    snprintf(m, sizeof m, "%s", err);
    snprintf(err, errlen, "%s%.400s", at, m);
    return;
  }
}

/* --- the effective configuration, as a config file --- */

static void print_ini_line(void *ctx, const char *name, const char *value, const char *help) {
  FILE *f = ctx;
  fprintf(f, "# %s\n%s = %s\n", help, name, value);
}

void dpt_launch_print_config(const dpt_train_opts *o, FILE *f) {
  fprintf(f, "# dpt %s: the effective options (dpt train --config FILE reads this back)\n",
          DPT_VERSION);
  fprintf(f, "[train]\n");
  dpt_train_describe(o, print_ini_line, f);
  fprintf(f, "\n[solver]\nname = %s\n", dpt_optim_solver_name(o->solver.kind));
  dpt_optim_solver_describe(&o->solver, print_ini_line, f);
  fprintf(f, "\n[sched]\nname = %s\n", dpt_optim_sched_name(o->sched.kind));
  dpt_optim_sched_describe(&o->sched, print_ini_line, f);
}

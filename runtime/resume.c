/* resume.c — starting a run in a run directory: what --resume names (auto, latest, a file),
 * whether a fresh start may write beside checkpoints that are already there, and what differs
 * between the checkpoint a run resumes from and its command line.
 *
 * Invariants:
 * - Committed checkpoints are never silently left behind: --resume auto over an empty,
 *   unreadable or missing `latest` while ckpt-*.h5 exist is an error naming them, and a fresh
 *   start in such a directory refuses, unless --fresh (which keeps them: pruning removes only
 *   the new run's own checkpoints, by run identity).
 * - A resumed run's configuration is the command line's; what differs from the checkpoint is
 *   listed, and a difference that changes the results needs --allow-config-change.
 * - Messages never carry the raw bytes of `latest` (a CR, a control character): they are
 *   escaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"

/* --- what --resume names --- */

/* in as printable text: control characters and bytes >= 0x7f as \r, \n, \t or \xNN. */
static void escape(const char *in, char *out, size_t len) {
  size_t k = 0;
  for (; *in && k + 5 < len; in++) {
    unsigned char c = (unsigned char)*in;
    if (c == '\r')
      k += (size_t)snprintf(out + k, len - k, "\\r");
    else if (c == '\n')
      k += (size_t)snprintf(out + k, len - k, "\\n");
    else if (c == '\t')
      k += (size_t)snprintf(out + k, len - k, "\\t");
    else if (c < 0x20 || c >= 0x7f)
      k += (size_t)snprintf(out + k, len - k, "\\x%02x", c);
    else
      out[k++] = (char)c;
  }
  out[k] = 0;
}

/* "ckpt-A.h5, ckpt-B.h5 (N in all)" for the n checkpoints of dir, the newest first; and the
 * newest's name in newest (if not NULL). Returns n. */
static int describe_ckpts(const char *dir, char *out, size_t len, char *newest, size_t nlen) {
  static char *names[4096];
  int n = dpt_ckpt_list(dir, names, 4096, 0);
  out[0] = 0;
  for (int i = n - 1; i >= 0 && i >= n - 3; i--)
    snprintf(out + strlen(out), len - strlen(out), "%s%s", i < n - 1 ? ", " : "", names[i]);
  if (n > 3) snprintf(out + strlen(out), len - strlen(out), ", ... (%d in all)", n);
  if (newest && n) snprintf(newest, nlen, "%s", names[n - 1]);
  for (int i = 0; i < n; i++) free(names[i]);
  return n;
}

/* Reads <dir>/latest into name (trailing whitespace, CR and LF removed). 0: read (name may be
 * ""), ENOENT: absent, else the errno (EINVAL: not a regular file). */
static int read_latest(const char *latest, char *name, size_t len) {
  name[0] = 0;
  struct stat st;
  if (stat(latest, &st)) return errno;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  int fd = open(latest, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = read(fd, name, len - 1);
  int e = n < 0 ? errno : 0;
  close(fd);
  if (e) return e;
  name[n] = 0;
  name[strnlen(name, (size_t)n)] = 0; /* a NUL byte ends it */
  size_t k = strlen(name);
  while (k &&
         (name[k - 1] == '\n' || name[k - 1] == '\r' || name[k - 1] == ' ' || name[k - 1] == '\t'))
    name[--k] = 0;
  return 0;
}

int dpt_ckpt_resolve(const dpt_train_opts *o, char *path, size_t len, char *err, size_t errlen) {
  path[0] = 0;
  int is_auto = !strcmp(o->resume, "auto");
  if (!is_auto && strcmp(o->resume, "latest")) {
    snprintf(path, len, "%s", o->resume);
    return DPT_OK;
  }
  char latest[1100], name[256], shown[200], list[300], newest[64] = "";
  snprintf(latest, sizeof latest, "%s/latest", o->ckpt_dir);
  int e = read_latest(latest, name, sizeof name);
  int n = describe_ckpts(o->ckpt_dir, list, sizeof list, newest, sizeof newest);
  escape(name, shown, sizeof shown);
  if (!e && name[0]) {
    int clean = 1;
    for (const char *c = name; *c; c++) clean &= *c > 0x20 && *c < 0x7f && *c != '/';
    if (!clean) {
      snprintf(err, errlen,
               "--resume %s: '%s' holds '%s', not a checkpoint's file name "
               "(ckpt-STEP.h5)",
               o->resume, latest, shown);
      return DPT_EINVAL;
    }
    snprintf(path, len, "%s/%s", o->ckpt_dir, name);
    return DPT_OK;
  }
  /* nothing usable in latest */
  char what[1300];
  if (e == ENOENT)
    snprintf(what, sizeof what, "there is no '%s'", latest);
  else if (e == EINVAL)
    snprintf(what, sizeof what, "'%s' is not a regular file", latest);
  else if (e)
    snprintf(what, sizeof what, "cannot read '%s': %s", latest, strerror(e));
  else
    snprintf(what, sizeof what, "'%s' is empty", latest);
  if (n == 0 && (e == 0 || e == ENOENT)) {
    if (is_auto) return DPT_OK; /* nothing yet: start afresh */
    snprintf(err, errlen, "--resume latest: no checkpoint in '%s' (%s)", o->ckpt_dir, what);
    return DPT_EINVAL;
  }
  if (is_auto && o->fresh) {
    dpt_log(DPT_LOG_WARN,
            "--resume auto: %s; --fresh: starting a new run beside %d "
            "checkpoint%s (kept, but for those of a step it writes)",
            what, n, n == 1 ? "" : "s");
    return DPT_OK;
  }
  if (n == 0)
    snprintf(err, errlen, "--resume %s: %s", o->resume, what);
  else
    snprintf(err, errlen,
             "--resume %s: %s, but '%s' holds %s: pass --resume %s/%s to resume "
             "from the newest, or --fresh to start a new run beside them",
             o->resume, what, o->ckpt_dir, list, o->ckpt_dir, newest);
  return DPT_EINVAL;
}

/* --- the configuration a checkpoint records --- */

typedef struct {
  const char *name;
  int kind; /* 1: a change changes the results; 2: it does not */
} config_item;

/* The training options a checkpoint records (see dpt_ckpt_config_kind). Where the run stops
 * (--epochs, --max-steps) is not here: continuing a run further is what resuming is for. */
static const config_item k_config[] = {
    {"activation", 1},   {"loss", 1},           {"batch", 1},         {"accum", 1},
    {"clip_norm", 1},    {"seed", 1},           {"deterministic", 1}, {"micro_shards", 1},
    {"on_nonfinite", 1}, {"bucket_mb", 2},      {"overlap", 2},       {"eval_every", 2},
    {"compress", 1},     {"compress_start", 1},
};

int dpt_ckpt_config_kind(const char *name) {
  for (size_t i = 0; i < sizeof k_config / sizeof k_config[0]; i++)
    if (!strcmp(k_config[i].name, name)) return k_config[i].kind;
  return 0;
}

/* The checkpoint's texts (read once), and the differences found, as "--flag VALUE
 * (checkpoint: VALUE)" lists. */
#define MAX_SAVED 160
typedef struct {
  const char *path;
  char saved[MAX_SAVED][2][128];
  int nsaved;
  char defaults[MAX_SAVED][2][128]; /* the options' defaults: what a checkpoint written before
                                       an option existed trained with */
  int ndefaults;
  char changes[400]; /* differences that change the results */
  char notes[400];   /* differences that do not */
  int nchanges, nnotes;
} diff_list;

static void on_saved(void *ctx, const char *name, const char *value) {
  diff_list *d = ctx;
  if (d->nsaved == MAX_SAVED) return;
  snprintf(d->saved[d->nsaved][0], sizeof d->saved[0][0], "%s", name);
  snprintf(d->saved[d->nsaved][1], sizeof d->saved[0][1], "%s", value);
  d->nsaved++;
}

static void add_diff(diff_list *d, int kind, const char *flag, const char *now, const char *saved) {
  char *buf = kind == 1 ? d->changes : d->notes;
  size_t cap = kind == 1 ? sizeof d->changes : sizeof d->notes, k = strlen(buf);
  int *n = kind == 1 ? &d->nchanges : &d->nnotes;
  if (k + 4 >= cap) return;
  char item[200];
  snprintf(item, sizeof item, "%s%s %s (checkpoint: %s)", *n ? ", " : "", flag, now, saved);
  if (k + strlen(item) + 4 >= cap) snprintf(item, sizeof item, ", ...");
  snprintf(buf + k, cap - k, "%s", item);
  (*n)++;
}

/* Compares text entry `key` of the checkpoint with this run's value; an entry the checkpoint
 * lacks is `absent`'s value. */
static void compare_or(diff_list *d, int kind, const char *key, const char *flag, const char *now,
                       const char *absent) {
  const char *saved = absent;
  for (int i = 0; i < d->nsaved; i++)
    if (!strcmp(d->saved[i][0], key)) saved = d->saved[i][1];
  if (strcmp(saved, now)) add_diff(d, kind, flag, now, saved);
}

static void compare(diff_list *d, int kind, const char *key, const char *flag, const char *now) {
  compare_or(d, kind, key, flag, now, "none");
}

static void on_default(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  diff_list *d = ctx;
  if (d->ndefaults == MAX_SAVED) return;
  snprintf(d->defaults[d->ndefaults][0], sizeof d->defaults[0][0], "%s", name);
  snprintf(d->defaults[d->ndefaults][1], sizeof d->defaults[0][1], "%s", value);
  d->ndefaults++;
}

static void dashes(char *flag) {
  for (char *c = flag; *c; c++)
    if (*c == '_') *c = '-';
}

static void on_hparam(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  char key[96], flag[96];
  snprintf(key, sizeof key, "cfg_hp.%s", name);
  snprintf(flag, sizeof flag, "--%s", name);
  dashes(flag);
  compare(ctx, 1, key, flag, value);
}

static void on_sched_hparam(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  char key[96], flag[96];
  snprintf(key, sizeof key, "sched_hp.%s", name);
  snprintf(flag, sizeof flag, "--sched-%s", name);
  dashes(flag);
  compare(ctx, 1, key, flag, value);
}

static void on_option(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  int kind = dpt_ckpt_config_kind(name);
  if (!kind) return;
  char key[96], flag[96];
  snprintf(key, sizeof key, "cfg.%s", name);
  snprintf(flag, sizeof flag, "--%s", name);
  dashes(flag);
  diff_list *d = ctx;
  const char *absent = "none"; /* a checkpoint from before the option: its default */
  for (int i = 0; i < d->ndefaults; i++)
    if (!strcmp(d->defaults[i][0], name)) absent = d->defaults[i][1];
  compare_or(d, kind, key, flag, value, absent);
}

/* The differences between the checkpoint's texts in d and this run (o, W, ZeRO stage). */
static int compare_all(const dpt_train_opts *o, const char *path, const dpt_train_pos *pos,
                       int world_size, int zero, diff_list *d, char *err, size_t errlen) {
  char now[32], saved[32];
  compare(d, 1, "sched", "--sched", dpt_optim_sched_name(o->sched.kind));
  if (o->sched.kind != DPT_SCHED_NONE) /* the hyperparameters of this run's scheduler */
    dpt_optim_sched_describe(&o->sched, on_sched_hparam, d);
  dpt_optim_solver_describe(&o->solver, on_hparam, d);
  dpt_train_opts def;
  dpt_train_defaults(&def);
  dpt_train_describe(&def, on_default, d);
  dpt_train_describe(o, on_option, d);
  if (pos->world_size != world_size) {
    snprintf(now, sizeof now, "%d", world_size);
    snprintf(saved, sizeof saved, "%d", pos->world_size);
    add_diff(d, 2, "ranks", now, saved);
  }
  if (pos->zero != zero) {
    snprintf(now, sizeof now, "%d", zero);
    snprintf(saved, sizeof saved, "%d", pos->zero);
    add_diff(d, 2, "ZeRO stage", now, saved);
  }
  if (d->nchanges && !o->allow_config_change) {
    snprintf(err, errlen,
             "%s: this run differs from the checkpoint in what it computes: %s; "
             "resume with the checkpoint's values, or pass --allow-config-change to continue "
             "with these",
             path, d->changes);
    return DPT_EINVAL;
  }
  if (d->nchanges)
    dpt_log(DPT_LOG_WARN,
            "resuming %s with a changed configuration (--allow-config-change): "
            "%s; the solver's and scheduler's state (steps, moments, current lr) are the "
            "checkpoint's",
            path, d->changes);
  if (d->nnotes)
    dpt_log(DPT_LOG_INFO, "resuming %s: %s; this does not change the results%s", path, d->notes,
            o->deterministic ? "" : " beyond summation order");
  return DPT_OK;
}

/* Rank 0: what differs between the checkpoint at path and this run (o, W, ZeRO stage). */
static int check_config(const dpt_train_opts *o, const char *path, const dpt_train_pos *pos,
                        int world_size, int zero, char *err, size_t errlen) {
  diff_list *dl = calloc(1, sizeof *dl);
  if (!dl) {
    snprintf(err, errlen, "out of memory comparing the configuration of %s", path);
    return DPT_ENOMEM;
  }
  int rc = dpt_ckpt_texts(path, on_saved, dl, err, errlen);
  if (!rc) rc = compare_all(o, path, pos, world_size, zero, dl, err, errlen);
  free(dl);
  return rc;
}

/* --- the start of a run --- */

int dpt_ckpt_check_start(const dpt_train_opts *o, const char *path, dpt_train_pos *pos,
                         long steps_per_epoch, int world_size, int zero, int rank, int saving,
                         char *err, size_t errlen) {
  int rc = DPT_OK;
  if (path[0]) { /* resuming: the position must lie inside this run */
    if (pos->step_in_epoch > steps_per_epoch) {
      snprintf(err, errlen,
               "%s: is %ld steps into epoch %ld, but this run's epochs have %ld "
               "steps (the dataset or --batch differs)",
               path, pos->step_in_epoch, pos->epoch, steps_per_epoch);
      rc = DPT_EINVAL;
    } else if (pos->epoch > o->epochs) {
      snprintf(err, errlen, "%s: is at epoch %ld, beyond this run's --epochs %d", path, pos->epoch,
               o->epochs);
      rc = DPT_EINVAL;
    } else if (rank == 0) {
      rc = check_config(o, path, pos, world_size, zero, err, errlen);
    }
  } else if (rank == 0 && saving) { /* a fresh start: whose checkpoints are there? */
    char list[300];
    int n = describe_ckpts(o->ckpt_dir, list, sizeof list, NULL, 0);
    if (n && !o->fresh) {
      snprintf(err, errlen,
               "'%s' holds checkpoints of another run (%s): pass --resume auto "
               "to continue it, or --fresh to start a new run beside them (kept, but for those of "
               "a step it writes)",
               o->ckpt_dir, list);
      rc = DPT_EINVAL;
    } else if (n) {
      dpt_log(DPT_LOG_INFO,
              "--fresh: a new run beside %d checkpoint%s of another run in '%s' "
              "(kept, but for those of a step it writes: pruning removes only this run's)",
              n, n == 1 ? "" : "s", o->ckpt_dir);
    }
  }
  pos->steps_per_epoch = steps_per_epoch;
  return rc;
}

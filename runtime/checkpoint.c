/* checkpoint.c — what a training run saves and restores: the model's parameters, the solver's
 * state (this rank's shard), the scheduler's state, and the position in the data, mapped onto
 * io's W-independent checkpoint layout; plus the run directory's bookkeeping ("latest" pointer,
 * keeping the K newest).
 *
 * Invariants: every rank writes the range dpt_comm_shard gives it, whatever the ZeRO stage, so
 * the file does not depend on W or the stage; on load each rank reads the range its solver owns.
 * "latest" only ever names a complete checkpoint (it is replaced by rename after the file is).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "internal.h"
#include "io.h"

#define MAX_FIXED_SCALARS 112 /* solver, scheduler and train.* scalars (the budget before the
                                 tensor count was open); plus one per tensor */
#define MAX_TEXTS 40

/* Everything but the big arrays, gathered into name/value lists. The tensors are the model's
 * own table; scalars (one per tensor in deterministic mode) are sized by the model. */
typedef struct {
  const char *vec_names[8];
  float *vecs[8];
  int max_scalars, dropped;
  const char **scalar_names; /* [max_scalars], each malloc'ed (tensor names have any length) */
  double *scalars;
  dpt_ckpt_text texts[MAX_TEXTS];
  char text_store[MAX_TEXTS][2][96];
  int ntext;
  dpt_ckpt_view v;
} layout;

static void add_scalar(layout *l, const char *prefix, const char *name, double value) {
  size_t len = strlen(prefix) + strlen(name) + 2;
  char *full = l->v.nscalar < l->max_scalars ? malloc(len) : NULL;
  if (!full) {
    l->dropped = 1; /* build fails */
    return;
  }
  snprintf(full, len, "%s.%s", prefix, name);
  int i = l->v.nscalar++;
  l->scalar_names[i] = full;
  l->scalars[i] = value;
}

/* Frees what build allocated (safe on a layout build failed to allocate). */
static void layout_free(layout *l) {
  for (int i = 0; l->scalar_names && i < l->v.nscalar; i++) free((char *)l->scalar_names[i]);
  free(l->scalar_names);
  free(l->scalars);
  l->scalar_names = NULL, l->scalars = NULL;
}

static void add_text(layout *l, const char *name, const char *value) {
  if (l->ntext >= MAX_TEXTS) return;
  int i = l->ntext++;
  snprintf(l->text_store[i][0], sizeof l->text_store[i][0], "%s", name);
  snprintf(l->text_store[i][1], sizeof l->text_store[i][1], "%s", value);
  l->texts[i] = (dpt_ckpt_text){l->text_store[i][0], l->text_store[i][1]};
}

static void add_hparam(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  char key[96];
  snprintf(key, sizeof key, "hp.%s", name);
  add_text(ctx, key, value);
}

/* The layout for this run: tensors, the solver's vectors over [lo, lo+len), every scalar.
 * DPT_ENOMEM if its lists cannot be allocated (then layout_free is still safe). */
static int build(layout *l, const dpt_train_opts *o, const dpt_model *m, float *params,
                 dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                 const dpt_train_pos *pos, size_t lo, size_t len, int with_scales) {
  memset(l, 0, sizeof *l);
  l->max_scalars = MAX_FIXED_SCALARS + m->ntensors;
  l->scalar_names = calloc((size_t)l->max_scalars, sizeof *l->scalar_names);
  l->scalars = calloc((size_t)l->max_scalars, sizeof *l->scalars);
  if (!l->scalar_names || !l->scalars) return DPT_ENOMEM;
  dpt_ckpt_view *v = &l->v;
  v->ntensors = m->ntensors;
  v->tensors = m->tensors;
  v->nparams = m->nparams;
  v->lo = lo;
  v->len = len;
  v->params = params;
  for (int i = 0; i < dpt_solver_state_count(solver); i++) {
    dpt_state_info info;
    void *p = dpt_solver_state(solver, i, &info);
    if (info.type == DPT_STATE_VECTOR) {
      l->vec_names[v->nvec] = info.name;
      /* the vector as if it started at flat element lo; a parameters-only layout (lo = 0 on a
       * shard that starts later) never reads it, and must not point outside it */
      l->vecs[v->nvec++] = lo >= solver_lo ? (float *)p + (lo - solver_lo) : NULL;
    } else {
      add_scalar(l, "solver", info.name, *(double *)p);
    }
  }
  for (int i = 0; i < dpt_sched_state_count(sched); i++) {
    const char *name;
    double *p = dpt_sched_state(sched, i, &name);
    add_scalar(l, "sched", name, *p);
  }
  add_scalar(l, "train", "step", (double)pos->step);
  add_scalar(l, "train", "epoch", (double)pos->epoch);
  add_scalar(l, "train", "step_in_epoch", (double)pos->step_in_epoch);
  add_scalar(l, "train", "epoch_loss", pos->epoch_loss);
  add_scalar(l, "train", "seed", (double)o->seed);
  add_scalar(l, "train", "world_size", (double)pos->world_size);
  add_scalar(l, "train", "zero", (double)pos->zero);
  if (with_scales) /* deterministic mode's fixed-point exponents (NAN when not used) */
    for (int t = 0; t < m->ntensors; t++) {
      size_t n = strlen(m->tensors[t].name) + 12;
      char *name = malloc(n);
      if (!name) return DPT_ENOMEM;
      snprintf(name, n, "grad_scale.%s", m->tensors[t].name);
      add_scalar(l, "train", name, pos->grad_scale[t]);
      free(name);
    }
  v->vec_names = l->vec_names;
  v->vecs = l->vecs;
  v->scalar_names = l->scalar_names;
  v->scalars = l->scalars;
  add_text(l, "model", m->kind);
  add_text(l, "solver", dpt_optim_solver_name(o->solver.kind));
  add_text(l, "sched", dpt_optim_sched_name(o->sched.kind));
  dpt_optim_solver_describe(dpt_solver_hparams(solver), add_hparam, l);
  v->texts = l->texts;
  v->ntext = l->ntext;
  return l->dropped ? DPT_ENOMEM : DPT_OK;
}

/* --- the run directory --- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *end) {
  size_t n = strlen(s), k = strlen(end);
  return n >= k && !strcmp(s + n - k, end);
}

/* Removes all but the `keep` newest ckpt-*.h5 (names sort by step; keep <= 0: all stay), and
 * every ckpt-*.h5.tmp: once a checkpoint is committed, those are what crashed writes left
 * (a run directory has one writer). */
static void prune(const char *dir, int keep) {
  DIR *d = opendir(dir);
  if (!d) return;
  char *names[4096];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 4096) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "ckpt-", 5)) continue;
    if (ends_with(e->d_name, ".h5.tmp")) {
      char path[2100];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    } else if (keep > 0 && len > 8 && ends_with(e->d_name, ".h5")) {
      names[n++] = strdup(e->d_name);
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int i = 0; i < n; i++) {
    if (i < n - keep && names[i]) {
      char path[2100];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]);
      unlink(path);
    }
    free(names[i]);
  }
}

int dpt_ckpt_save_run(const dpt_train_opts *o, const dpt_model *m, MPI_Comm comm,
                      float *params, dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                      const dpt_train_pos *pos, const dpt_fault *fault, char *err,
                      size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int rc = rank == 0 ? dpt_mkdirs(o->ckpt_dir, "--ckpt-dir", err, errlen) : 0;
  if (dpt_comm_bcast_int(comm, &rc, 0, err, errlen)) return DPT_EMPI;
  if (rc) return rc;
  dpt_range own = dpt_comm_shard(m->nparams, rank, size);
  layout *l = malloc(sizeof *l);
  if (!l) return DPT_ENOMEM; /* (every rank has the same small allocation) */
  if (build(l, o, m, params, solver, solver_lo, sched, pos, own.offset, own.len, 1)) {
    layout_free(l);
    free(l);
    return DPT_ENOMEM; /* (every rank has the same small allocations) */
  }
  if (fault && fault->in_ckpt && fault->rank == rank && fault->step == pos->step)
    l->v.written = dpt_fault_kill;
  char name[64], path[1200];
  snprintf(name, sizeof name, "ckpt-%010ld.h5", pos->step);
  snprintf(path, sizeof path, "%s/%s", o->ckpt_dir, name);
  char ioerr[DPT_ERR_LEN];
  rc = dpt_ckpt_write(path, comm, &l->v, ioerr, sizeof ioerr);
  layout_free(l);
  free(l);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return DPT_EIO;
  }
  if (rank == 0) { /* the pointer to the latest, replaced atomically */
    char tmp[1300], latest[1300];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", o->ckpt_dir);
    snprintf(latest, sizeof latest, "%s/latest", o->ckpt_dir);
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%s\n", name) > 0;
    if (f) ok = (fflush(f) == 0) & (fsync(fileno(f)) == 0) & (fclose(f) == 0) & ok;
    if (!ok || rename(tmp, latest)) {
      unlink(tmp);
      snprintf(err, errlen, "cannot update '%s': %s", latest, strerror(errno));
      rc = DPT_EIO;
    } else {
      prune(o->ckpt_dir, o->keep);
    }
  }
  if (dpt_comm_bcast_int(comm, &rc, 0, err, errlen)) return DPT_EMPI;
  if (rc && rank) snprintf(err, errlen, "cannot update the latest checkpoint (see rank 0)");
  return rc;
}

int dpt_ckpt_resolve(const dpt_train_opts *o, char *path, size_t len, char *err,
                     size_t errlen) {
  path[0] = 0;
  if (strcmp(o->resume, "auto") && strcmp(o->resume, "latest")) {
    snprintf(path, len, "%s", o->resume);
    return DPT_OK;
  }
  char latest[1100];
  snprintf(latest, sizeof latest, "%s/latest", o->ckpt_dir);
  FILE *f = fopen(latest, "r");
  char name[256] = "";
  if (f) {
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
  }
  name[strcspn(name, "\n")] = 0;
  if (!name[0]) {
    if (!strcmp(o->resume, "auto")) return DPT_OK; /* nothing yet: start afresh */
    snprintf(err, errlen, "--resume latest: no checkpoint in '%s' (no '%s')", o->ckpt_dir,
             latest);
    return DPT_EINVAL;
  }
  snprintf(path, len, "%s/%s", o->ckpt_dir, name);
  return DPT_OK;
}

/* A counter stored as a double (step, epoch, seed, ...): a whole number in [0, 2^63). */
static int as_count(double v, long *out) {
  if (!(v >= 0 && v < 9223372036854775808.0) || v != (double)(long)v) return -1;
  *out = (long)v;
  return 0;
}

int dpt_ckpt_load_run(const char *path, const dpt_train_opts *o, const dpt_model *m,
                      float *params, dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                      dpt_train_pos *pos, int params_only, char *err, size_t errlen) {
  layout *l = calloc(1, sizeof *l); /* (zeroed: layout_free is safe before any build) */
  if (!l) return DPT_ENOMEM;
  char ioerr[DPT_ERR_LEN];
  int rc = 0;
  if (!params_only) { /* the solver's range: its state, and the scalars */
    rc = build(l, o, m, params, solver, solver_lo, sched, pos, solver_lo,
               dpt_solver_len(solver), o->deterministic);
    if (rc) snprintf(ioerr, sizeof ioerr, "%s: out of memory for the checkpoint's lists", path);
    else rc = dpt_ckpt_read(path, &l->v, 0, ioerr, sizeof ioerr);
    for (int i = 0; !rc && i < l->v.nscalar; i++) {
      const char *name = l->scalar_names[i];
      double v = l->scalars[i];
      long count;
      if (!strncmp(name, "solver.", 7)) {
        dpt_state_info info;
        *(double *)dpt_solver_state(solver, dpt_solver_state_find(solver, name + 7), &info) = v;
      } else if (!strncmp(name, "sched.", 6)) {
        *dpt_sched_state(sched, dpt_sched_state_find(sched, name + 6), NULL) = v;
      } else if (!strcmp(name, "train.epoch_loss")) {
        pos->epoch_loss = v;
      } else if (!strncmp(name, "train.grad_scale.", 17)) {
        for (int t = 0; t < m->ntensors; t++)
          if (!strcmp(name + 17, m->tensors[t].name)) pos->grad_scale[t] = v;
      } else if (as_count(v, &count)) { /* every other train.* scalar is a counter */
        snprintf(ioerr, sizeof ioerr, "%s: attribute '%s' is %g (expected a whole number >= 0)",
                 path, name, v);
        rc = DPT_EINVAL;
      } else if (!strcmp(name, "train.step")) {
        pos->step = count;
      } else if (!strcmp(name, "train.epoch")) {
        pos->epoch = count;
      } else if (!strcmp(name, "train.step_in_epoch")) {
        pos->step_in_epoch = count;
      } else if (!strcmp(name, "train.seed") && count != o->seed) {
        snprintf(ioerr, sizeof ioerr, "%s: was saved with --seed %ld but this run uses %ld "
                 "(the data order would differ)", path, count, o->seed);
        rc = DPT_EINVAL;
      }
    }
  }
  layout_free(l);
  if (!rc) { /* every rank needs all parameters */
    rc = build(l, o, m, params, solver, solver_lo, sched, pos, 0, m->nparams, 0);
    if (rc) snprintf(ioerr, sizeof ioerr, "%s: out of memory for the checkpoint's lists", path);
    else rc = dpt_ckpt_read(path, &l->v, 1, ioerr, sizeof ioerr);
  }
  layout_free(l);
  free(l);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return rc;
  }
  return DPT_OK;
}

/* checkpoint.c — what a training run saves and restores: the model's parameters, the solver's
 * state (this rank's shard), the scheduler's state, and the position in the data, mapped onto
 * io's W-independent checkpoint layout; plus the run directory's bookkeeping ("latest" pointer,
 * keeping the K newest).
 *
 * Invariants: every rank writes the range dpt_comm_shard gives it, whatever the ZeRO stage, so
 * the file does not depend on W or the stage; on load each rank reads the range its solver owns.
 * "latest" only ever names a complete checkpoint (it is replaced by rename after the file is).
 * Every checkpoint carries its run's identity (train.run_id, drawn at the first checkpoint of a
 * fresh start, kept by every resume): pruning removes only checkpoints of the run being
 * written, and a fresh start in a directory that holds checkpoints refuses (see resume.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"
#include "internal.h"
#include "io.h"

#define MAX_FIXED_SCALARS                                                                          \
  112                 /* solver, scheduler and train.* scalars (the budget before the              \
                         tensor count was open); plus one per tensor */
#define MAX_TEXTS 128 /* kinds, hyperparameters live and configured, the run's configuration */

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

/* The solver's hyperparameters as configured (hp.* are the live ones: a scheduler moves lr). */
static void add_config_hparam(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  char key[96];
  snprintf(key, sizeof key, "cfg_hp.%s", name);
  add_text(ctx, key, value);
}

static void add_sched_hparam(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  char key[96];
  snprintf(key, sizeof key, "sched_hp.%s", name);
  add_text(ctx, key, value);
}

/* The options that say what a run computes (resume.c compares them with a resumed run's). */
static void add_config(void *ctx, const char *name, const char *value, const char *help) {
  (void)help;
  if (!dpt_ckpt_config_kind(name)) return;
  char key[96];
  snprintf(key, sizeof key, "cfg.%s", name);
  add_text(ctx, key, value);
}

/* The layout for this run: tensors, the solver's vectors over [lo, lo+len), every scalar.
 * DPT_ENOMEM if its lists cannot be allocated (then layout_free is still safe). */
static int build(layout *l, const dpt_train_opts *o, const dpt_model *m, float *params,
                 dpt_solver *solver, size_t solver_lo, dpt_sched *sched, const dpt_train_pos *pos,
                 size_t lo, size_t len, int with_scales) {
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
  v->nbuffers = m->nbuffers;
  v->buffers = m->buffers;
  v->buffer_data = m->buffer_data;
  v->nbuffer_floats = m->nbuffer_floats;
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
  add_scalar(l, "train", "steps_per_epoch", (double)pos->steps_per_epoch);
  add_text(l, "model", m->kind);
  add_text(l, "solver", dpt_optim_solver_name(o->solver.kind));
  add_text(l, "sched", dpt_optim_sched_name(o->sched.kind));
  add_text(l, "train.run_id", pos->run_id);
  /* what `dpt sample` needs to rebuild the model (not compared on resume): the spec, and for a
   * token dataset its window and the dataset (the vocabulary), as an absolute path if it fits */
  char spec[sizeof l->text_store[0][1]], where[sizeof l->text_store[0][1]];
  if (snprintf(spec, sizeof spec, "%s", o->model) < (int)sizeof spec)
    add_text(l, "run.model", spec);
  if (o->context > 0) {
    char ctx[32], cwd[4096];
    snprintf(ctx, sizeof ctx, "%ld", o->context);
    add_text(l, "run.context", ctx);
    int n = o->data[0] != '/' && getcwd(cwd, sizeof cwd)
                ? snprintf(where, sizeof where, "%s/%s", cwd, o->data)
                : snprintf(where, sizeof where, "%s", o->data);
    if (n < (int)sizeof where) add_text(l, "run.data", where);
  }
  dpt_optim_solver_describe(dpt_solver_hparams(solver), add_hparam, l);
  dpt_optim_solver_describe(&o->solver, add_config_hparam, l);
  dpt_optim_sched_describe(&o->sched, add_sched_hparam, l);
  dpt_train_describe(o, add_config, l);
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

/* Lists the ckpt-*.h5 of dir, sorted (by step: the names are zero-padded), into names[0, max)
 * (malloc'ed, the caller frees them); returns how many. With remove_tmp, also removes every
 * ckpt-*.h5.tmp (and .tmp.room, io's space held back for a write's metadata): once a checkpoint is
 * committed, those are what crashed writes left (a run directory has one writer). */
int dpt_ckpt_list(const char *dir, char **names, int max, int remove_tmp) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "ckpt-", 5)) continue;
    if ((ends_with(e->d_name, ".h5.tmp") || ends_with(e->d_name, ".h5.tmp.room")) && remove_tmp) {
      char path[2100];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    } else if (len > 8 && ends_with(e->d_name, ".h5") && n < max) {
      if ((names[n] = strdup(e->d_name))) n++;
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  return n;
}

/* Removes all but the `keep` newest checkpoints of run `run_id` (keep <= 0: all stay), never
 * `current` (the one latest names), nor any file of another run or that is not a checkpoint. */
static void prune(const char *dir, int keep, const char *run_id, const char *current) {
  static char *names[4096];
  int n = dpt_ckpt_list(dir, names, 4096, 1);
  int mine = 0;
  for (int i = n - 1; i >= 0; i--) { /* newest first */
    char path[2100], id[96] = "";
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    int is_current = !strcmp(names[i], current);
    int own = keep > 0 &&
              (is_current || (dpt_ckpt_text_get(path, "train.run_id", id, sizeof id) == DPT_OK &&
                              !strcmp(id, run_id)));
    if (own && ++mine > keep && !is_current) unlink(path);
    free(names[i]);
  }
}

/* A fresh random run identity: 16 hex digits. */
static void new_run_id(char *out, size_t len) {
  uint64_t v = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, &v, sizeof v) != (ssize_t)sizeof v)
    v = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 20 ^
        (uint64_t)(uintptr_t)out;
  if (fd >= 0) close(fd);
  snprintf(out, len, "%016llx", (unsigned long long)v);
}

/* Writes "<name>\n" to <dir>/latest atomically. Refuses to write through anything but a
 * regular file (O_NONBLOCK: a FIFO without a reader fails instead of blocking). */
static int write_latest(const char *dir, const char *name, char *err, size_t errlen) {
  char tmp[1300], latest[1300];
  snprintf(tmp, sizeof tmp, "%s/latest.tmp", dir);
  snprintf(latest, sizeof latest, "%s/latest", dir);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0666);
  int e = fd < 0 ? errno : 0;
  struct stat st;
  if (!e && (fstat(fd, &st) || !S_ISREG(st.st_mode))) e = EINVAL;
  char line[300];
  int n = snprintf(line, sizeof line, "%s\n", name);
  if (!e && write(fd, line, (size_t)n) != n) e = errno ? errno : EIO;
  if (!e && fsync(fd)) e = errno;
  if (fd >= 0 && close(fd) && !e) e = errno;
  if (!e && rename(tmp, latest)) e = errno;
  if (e) {
    if (fd >= 0) unlink(tmp);
    snprintf(err, errlen, "cannot update '%s': %s", latest,
             e == EINVAL ? "latest.tmp is not a regular file" : strerror(e));
    return DPT_EIO;
  }
  return DPT_OK;
}

int dpt_ckpt_save_run(const dpt_train_opts *o, const dpt_model *m, MPI_Comm comm, float *params,
                      dpt_solver *solver, size_t solver_lo, dpt_sched *sched, dpt_train_pos *pos,
                      const dpt_fault *fault, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int rc = rank == 0 ? dpt_mkdirs(o->ckpt_dir, "--ckpt-dir", err, errlen) : 0;
  if (!rc && !pos->run_id[0] && rank == 0) new_run_id(pos->run_id, sizeof pos->run_id);
  if (dpt_comm_bcast_int(comm, &rc, 0, err, errlen)) return DPT_EMPI;
  if (rc) return rc;
  /* the run's identity: drawn by rank 0 at a fresh run's first checkpoint */
  int mrc = MPI_Bcast(pos->run_id, (int)sizeof pos->run_id, MPI_CHAR, 0, comm);
  if (mrc != MPI_SUCCESS)
    return dpt_comm_mpi_error(mrc, "MPI_Bcast (the run identity)", err, errlen);
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
    rc = write_latest(o->ckpt_dir, name, err, errlen);
    if (!rc) prune(o->ckpt_dir, o->keep, pos->run_id, name);
  }
  if (dpt_comm_bcast_int(comm, &rc, 0, err, errlen)) return DPT_EMPI;
  if (rc && rank) snprintf(err, errlen, "cannot update the latest checkpoint (see rank 0)");
  return rc;
}

/* A counter stored as a double (step, epoch, seed, ...): a whole number in [0, 2^63). */
static int as_count(double v, long *out) {
  if (!(v >= 0 && v < 9223372036854775808.0) || v != (double)(long)v) return -1;
  *out = (long)v;
  return 0;
}

/* v as text that reads back as v: "%g" when that is exact, else all 17 digits. */
static const char *exact(double v, char *buf, size_t len) {
  snprintf(buf, len, "%g", v);
  if (strtod(buf, NULL) != v && !isnan(v)) snprintf(buf, len, "%.17g", v);
  return buf;
}

/* The position's counters against each other and their ranges (the metadata checksum catches
 * a changed value; this catches a file written wrong, and says which value is off). */
static int check_counters(const char *path, const dpt_train_pos *p, double solver_step,
                          double last_epoch, char *err, size_t errlen) {
  const char *what = NULL;
  char detail[160] = "";
  if (p->steps_per_epoch < 1) {
    what = "train.steps_per_epoch";
    snprintf(detail, sizeof detail, "%ld (expected at least 1)", p->steps_per_epoch);
  } else if (p->step_in_epoch > p->steps_per_epoch || p->step_in_epoch > p->step) {
    what = "train.step_in_epoch";
    snprintf(detail, sizeof detail,
             "%ld (expected at most train.steps_per_epoch %ld and "
             "train.step %ld)",
             p->step_in_epoch, p->steps_per_epoch, p->step);
  } else if (p->epoch > p->step) {
    what = "train.epoch";
    snprintf(detail, sizeof detail,
             "%ld (expected at most train.step %ld: every epoch has a "
             "step)",
             p->epoch, p->step);
  } else if (p->world_size < 1 || p->world_size > DPT_CKPT_MAX_RANKS) {
    what = "train.world_size";
    snprintf(detail, sizeof detail, "%d (expected 1 to %d)", p->world_size, DPT_CKPT_MAX_RANKS);
  } else if (p->zero < 0 || p->zero > 3) {
    what = "train.zero";
    snprintf(detail, sizeof detail, "%d (expected a ZeRO stage: 0 to 3)", p->zero);
  } else if (!isfinite(p->epoch_loss)) {
    what = "train.epoch_loss";
    snprintf(detail, sizeof detail, "%g (expected a finite sum of losses)", p->epoch_loss);
  } else if (!isnan(solver_step) && (solver_step < 0 || solver_step != floor(solver_step) ||
                                     solver_step > (double)p->step)) {
    what = "solver.step";
    char b[40];
    snprintf(detail, sizeof detail, "%s (expected a whole number from 0 to train.step %ld)",
             exact(solver_step, b, sizeof b), p->step);
  } else if (!isnan(last_epoch) && (last_epoch < -1 || last_epoch != floor(last_epoch) ||
                                    last_epoch > (double)p->step + 1)) {
    what = "sched.last_epoch";
    char b[40];
    snprintf(detail, sizeof detail, "%s (expected a whole number from -1 to train.step + 1)",
             exact(last_epoch, b, sizeof b));
  }
  if (!what) return DPT_OK;
  snprintf(err, errlen, "%s: attribute '%s' is %s", path, what, detail);
  return DPT_EINVAL;
}

int dpt_ckpt_load_run(const char *path, const dpt_train_opts *o, const dpt_model *m, float *params,
                      dpt_solver *solver, size_t solver_lo, dpt_sched *sched, dpt_train_pos *pos,
                      int params_only, char *err, size_t errlen) {
  return dpt_ckpt_load_run_range(path, o, m, params, solver, solver_lo, sched, pos, params_only, 0,
                                 m->nparams, err, errlen);
}

int dpt_ckpt_load_run_range(const char *path, const dpt_train_opts *o, const dpt_model *m,
                            float *params, dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                            dpt_train_pos *pos, int params_only, size_t params_lo,
                            size_t params_len, char *err, size_t errlen) {
  layout *l = calloc(1, sizeof *l); /* (zeroed: layout_free is safe before any build) */
  if (!l) return DPT_ENOMEM;
  char ioerr[DPT_ERR_LEN];
  int rc = 0;
  if (!params_only) { /* the solver's range: its state, and the scalars */
    rc = build(l, o, m, params, solver, solver_lo, sched, pos, solver_lo, dpt_solver_len(solver),
               o->deterministic);
    if (rc)
      snprintf(ioerr, sizeof ioerr, "%s: out of memory for the checkpoint's lists", path);
    else
      rc = dpt_ckpt_read(path, &l->v, 0, ioerr, sizeof ioerr);
    double solver_step = NAN, last_epoch = NAN;
    for (int i = 0; !rc && i < l->v.nscalar; i++) {
      const char *name = l->scalar_names[i];
      double v = l->scalars[i];
      long count;
      if (!strcmp(name, "solver.step")) solver_step = v;
      if (!strcmp(name, "sched.last_epoch")) last_epoch = v;
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
        char b[40];
        snprintf(ioerr, sizeof ioerr, "%s: attribute '%s' is %s (expected a whole number >= 0)",
                 path, name, exact(v, b, sizeof b));
        rc = DPT_EINVAL;
      } else if (!strcmp(name, "train.step")) {
        pos->step = count;
      } else if (!strcmp(name, "train.epoch")) {
        pos->epoch = count;
      } else if (!strcmp(name, "train.step_in_epoch")) {
        pos->step_in_epoch = count;
      } else if (!strcmp(name, "train.steps_per_epoch")) {
        pos->steps_per_epoch = count;
      } else if (!strcmp(name, "train.world_size")) {
        pos->world_size = count > DPT_CKPT_MAX_RANKS ? -1 : (int)count;
      } else if (!strcmp(name, "train.zero")) {
        pos->zero = count > 3 ? -1 : (int)count;
      } /* train.seed: compared with the run's by dpt_ckpt_check_resume */
    }
    if (!rc) rc = check_counters(path, pos, solver_step, last_epoch, ioerr, sizeof ioerr);
    if (!rc && (dpt_ckpt_text_get(path, "train.run_id", pos->run_id, sizeof pos->run_id) ||
                !pos->run_id[0])) {
      snprintf(ioerr, sizeof ioerr, "%s: attribute 'train.run_id' is missing", path);
      rc = DPT_EINVAL;
    }
  }
  layout_free(l);
  if (!rc) rc = dpt_ckpt_verify_meta(path, ioerr, sizeof ioerr);
  if (!rc) { /* every rank needs all parameters (ZeRO-3: its shard of them) */
    rc = build(l, o, m, params, solver, solver_lo, sched, pos, params_lo, params_len, 0);
    if (rc)
      snprintf(ioerr, sizeof ioerr, "%s: out of memory for the checkpoint's lists", path);
    else
      rc = dpt_ckpt_read(path, &l->v, 1, ioerr, sizeof ioerr);
  }
  layout_free(l);
  free(l);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return rc;
  }
  return DPT_OK;
}

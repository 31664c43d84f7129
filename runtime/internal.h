/* internal.h — declarations shared by runtime's own files; not part of the public surface. */
#ifndef DPT_RUNTIME_INTERNAL_H
#define DPT_RUNTIME_INTERNAL_H

#include "runtime.h"
#include "timing.h"

#include <stdio.h>

/* The net of a model made by dpt_model_from_net (its ctx), or of the one a model file wraps; NULL
 * for any other model. */
dpt_net *dpt_model_net(dpt_model *m);
/* The net model a model file's model wraps (model_file.c), or NULL when m is not one. */
dpt_model *dpt_model_file_inner(dpt_model *m);

/* Monotonic wall clock in seconds. */
double dpt_now(void);

/* The trainer is about to block in collective `what` (a string literal) at step `step`; and
 * it is back (see dpt_progress in runtime.h). */
void dpt_progress_wait(long step, const char *what);
void dpt_progress_done(void);

/* The SLURM job this process belongs to ("1234", or "1234_7" for an array task), or "". */
void dpt_job_id(char *buf, size_t len);

/* --- reporting (rank 0 only; every function accepts NULL and then does nothing) --- */
typedef struct dpt_report dpt_report;

typedef struct {
  long step;   /* optimizer steps done, 1-based after the first */
  int epoch;   /* 0-based */
  double loss; /* mean training loss over the global batch */
  double lr;
  double grad_norm; /* global L2 norm before clipping (NAN when not computed) */
  double samples_per_s;
  double comm_wait;       /* seconds this step waited for communication */
  int stop;               /* the ranks agreed to stop after this step: 1 a signal, 2 time limit */
  int skipped;            /* the update was skipped (non-finite values, --on-nonfinite skip) */
  int stop_ranks;         /* how many ranks asked to */
  dpt_step_timing timing; /* where this rank's step time went (timing.h) */
} dpt_step_info;

typedef struct {
  int epoch;
  long step;
  double train_loss, test_loss, test_accuracy, lr;
  int per_token; /* a token dataset: losses are nats per token, also written in bits */
} dpt_epoch_info;

/* Opens the metrics file: new (its first record the effective configuration), or, for a run
 * resumed at start_step > 0, continued: records of later steps and a torn last line are
 * dropped first (the file rewritten atomically) and time goes on from the last record kept. */
int dpt_report_open(const dpt_train_opts *o, long total_steps, long start_step, dpt_report **out,
                    char *err, size_t errlen);
void dpt_report_step(dpt_report *r, const dpt_step_info *s);
void dpt_report_epoch(dpt_report *r, const dpt_epoch_info *e);
void dpt_report_close(dpt_report *r);
/* After the loop, on every rank with the loop's status (collective): if writing the metrics
 * file failed, DPT_EIO with the message naming it and the OS error (unless rc is already
 * another error); else rc. */
int dpt_report_finish(dpt_report *r, MPI_Comm comm, int rc, char *err, size_t errlen);
/* One "memory" record, after the loop: for each of the ranks, rows[rank * DPT_REPORT_MEM_FIELDS
 * ...] = parameter, gradient, optimizer-state and working-buffer bytes it holds, and its peak
 * resident memory (VmHWM), bytes. */
#define DPT_REPORT_MEM_FIELDS 5
void dpt_report_memory(dpt_report *r, int ranks, int zero, const double *rows);
/* One "run" record: the run's label (legends of plots), ranks, ZeRO stage, parameters,
 * optimizer-state bytes per rank (largest) and over all ranks. */
void dpt_report_run(dpt_report *r, const char *label, int ranks, int zero, size_t nparams,
                    double state_max, double state_total);

/* One "timing" record: every rank's figures of a log interval, the slowest rank, the largest
 * of each (timing.c gathers them). */
void dpt_report_timing(dpt_report *r, const dpt_timing_table *t);

/* --- checkpoints of a run (checkpoint.c) --- */

/* Where training stands: saved with the checkpoint, restored on resume. */
typedef struct {
  long step;            /* optimizer steps done */
  long epoch;           /* epoch in progress */
  long step_in_epoch;   /* steps done within that epoch */
  double epoch_loss;    /* sum of step losses so far in that epoch */
  int world_size, zero; /* at save time (informational) */
  long steps_per_epoch; /* of the run that saved it (checks step_in_epoch) */
  char run_id[40];      /* the run's identity: "" until its first checkpoint draws one */
  double *grad_scale;   /* [model's ntensors], deterministic mode: fixed-point exponent per
                           tensor (NAN: not known yet); see comm/reduce_exact.c. The trainer's
                           storage. */
} dpt_train_pos;

/* Test-only fault injection (fault.c): which rank dies, at which step, and whether inside the
 * checkpoint write of that step. rank < 0: none. */
typedef struct {
  int rank;
  long step;
  int in_ckpt;
  int nan; /* instead of dying: a NaN in this rank's input at that step */
} dpt_fault;

/* Reads DPT_FAULT (see fault.c); an unreadable value is an error naming it. */
int dpt_fault_from_env(dpt_fault *f, char *err, size_t errlen);
/* Kills the calling process with SIGKILL (the argument is unused: it fits io's hook). */
void dpt_fault_kill(void *unused);

/* Saves to <ckpt_dir>/ckpt-<step>.h5 and points <ckpt_dir>/latest at it; keeps the --keep
 * newest of this run (pos->run_id, drawn by rank 0 at a fresh run's first save), never another
 * run's, and removes temporary files a crashed write left. The solver owns
 * [solver_lo, solver_lo + len) of the flat buffer. Collective. fault may be NULL. */
int dpt_ckpt_save_run(const dpt_train_opts *o, const dpt_model *m, MPI_Comm comm, float *params,
                      dpt_solver *solver, size_t solver_lo, dpt_sched *sched, dpt_train_pos *pos,
                      const dpt_fault *fault, char *err, size_t errlen);

/* The most ranks a checkpoint's train.world_size may name. */
#define DPT_CKPT_MAX_RANKS (1 << 24)

/* The ckpt-*.h5 files of dir, sorted by step, into names[0, max) (malloc'ed; the caller frees
 * them); returns how many. remove_tmp: also remove ckpt-*.h5.tmp (left by crashed writes). */
int dpt_ckpt_list(const char *dir, char **names, int max, int remove_tmp);

/* --- starting a run in a run directory (resume.c) --- */

/* The checkpoint --resume names ("auto"/"latest": what <ckpt_dir>/latest names; else a path).
 * An empty path with status 0 means "auto" found nothing to resume: start afresh. An empty,
 * unreadable or malformed latest, or none while ckpt-*.h5 files are there, is an error (never
 * a fresh start over committed checkpoints), unless --fresh. */
int dpt_ckpt_resolve(const dpt_train_opts *o, char *path, size_t len, char *err, size_t errlen);

/* How training option `name` (dpt_train_describe's names) is recorded in a checkpoint:
 * 0 not at all, 1 as "cfg.<name>" and a change on resume changes the results (refused without
 * --allow-config-change), 2 as "cfg.<name>" and a change does not (listed). */
int dpt_ckpt_config_kind(const char *name);

/* Before the first step, on every rank (not collective; rank 0 alone looks at the directory
 * and logs). path: the checkpoint resumed from ("" for a fresh start). Resuming: checks the
 * position against this run (steps_per_epoch, --epochs) and compares the checkpoint's
 * configuration with o (see dpt_ckpt_config_kind); a fresh start that writes checkpoints
 * (saving) into a directory holding some refuses unless --fresh. Sets pos->steps_per_epoch. */
int dpt_ckpt_check_start(const dpt_train_opts *o, const char *path, dpt_train_pos *pos,
                         long steps_per_epoch, int world_size, int zero, int rank, int saving,
                         char *err, size_t errlen);

/* Loads parameters (all of them), and unless params_only the solver's state over its range,
 * the scheduler's state and the position. Not collective; validates model and solver. */
int dpt_ckpt_load_run(const char *path, const dpt_train_opts *o, const dpt_model *m, float *params,
                      dpt_solver *solver, size_t solver_lo, dpt_sched *sched, dpt_train_pos *pos,
                      int params_only, char *err, size_t errlen);
/* The same reading only parameters [params_lo, params_lo + params_len) of the flat buffer
 * (ZeRO-3: a rank's shard; params is indexed by flat element, only that range is touched). */
int dpt_ckpt_load_run_range(const char *path, const dpt_train_opts *o, const dpt_model *m,
                            float *params, dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                            dpt_train_pos *pos, int params_only, size_t params_lo,
                            size_t params_len, char *err, size_t errlen);

#endif

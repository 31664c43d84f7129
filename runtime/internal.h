/* internal.h — declarations shared by runtime's own files; not part of the public surface. */
#ifndef DPT_RUNTIME_INTERNAL_H
#define DPT_RUNTIME_INTERNAL_H

#include "runtime.h"

#include <stdio.h>

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
  long step;          /* optimizer steps done, 1-based after the first */
  int epoch;          /* 0-based */
  double loss;        /* mean training loss over the global batch */
  double lr;
  double grad_norm;   /* global L2 norm before clipping (NAN when not computed) */
  double samples_per_s;
  double comm_wait;   /* seconds this step waited for communication */
  int stop;           /* the ranks agreed to stop after this step: 1 a signal, 2 time limit */
  int skipped;        /* the update was skipped (non-finite values, --on-nonfinite skip) */
  int stop_ranks;     /* how many ranks asked to */
} dpt_step_info;

typedef struct {
  int epoch;
  long step;
  double train_loss, test_loss, test_accuracy, lr;
} dpt_epoch_info;

/* Opens the metrics file: new (its first record the effective configuration), or, for a run
 * resumed at start_step > 0, continued: records of later steps and a torn last line are
 * dropped first (the file rewritten atomically) and time goes on from the last record kept. */
int dpt_report_open(const dpt_train_opts *o, long total_steps, long start_step,
                    dpt_report **out, char *err, size_t errlen);
void dpt_report_step(dpt_report *r, const dpt_step_info *s);
void dpt_report_epoch(dpt_report *r, const dpt_epoch_info *e);
void dpt_report_close(dpt_report *r);
/* One "run" record: the run's label (legends of plots), ranks, ZeRO stage, parameters, optimizer-state bytes per rank (largest)
 * and over all ranks. */
void dpt_report_run(dpt_report *r, const char *label, int ranks, int zero, size_t nparams,
                    double state_max, double state_total);

/* --- checkpoints of a run (checkpoint.c) --- */

/* Where training stands: saved with the checkpoint, restored on resume. */
typedef struct {
  long step;          /* optimizer steps done */
  long epoch;         /* epoch in progress */
  long step_in_epoch; /* steps done within that epoch */
  double epoch_loss;  /* sum of step losses so far in that epoch */
  int world_size, zero; /* at save time (informational) */
  double *grad_scale; /* [model's ntensors], deterministic mode: fixed-point exponent per
                         tensor (NAN: not known yet); see comm/reduce_exact.c. The trainer's
                         storage. */
} dpt_train_pos;

/* Test-only fault injection (fault.c): which rank dies, at which step, and whether inside the
 * checkpoint write of that step. rank < 0: none. */
typedef struct {
  int rank;
  long step;
  int in_ckpt;
  int nan;      /* instead of dying: a NaN in this rank's input at that step */
} dpt_fault;

/* Reads DPT_FAULT (see fault.c); an unreadable value is an error naming it. */
int dpt_fault_from_env(dpt_fault *f, char *err, size_t errlen);
/* Kills the calling process with SIGKILL (the argument is unused: it fits io's hook). */
void dpt_fault_kill(void *unused);

/* Saves to <ckpt_dir>/ckpt-<step>.h5 and points <ckpt_dir>/latest at it; keeps the --keep
 * newest, and removes temporary files a crashed write left. The solver owns
 * [solver_lo, solver_lo + len) of the flat buffer. Collective. fault may be NULL. */
int dpt_ckpt_save_run(const dpt_train_opts *o, const dpt_model *m, MPI_Comm comm,
                      float *params, dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                      const dpt_train_pos *pos, const dpt_fault *fault, char *err,
                      size_t errlen);

/* The checkpoint --resume names ("auto"/"latest": <ckpt_dir>/latest; else a path). An empty
 * path with status 0 means "auto" found none: start afresh. */
int dpt_ckpt_resolve(const dpt_train_opts *o, char *path, size_t len, char *err,
                     size_t errlen);

/* Loads parameters (all of them), and unless params_only the solver's state over its range,
 * the scheduler's state and the position. Not collective; validates model and solver. */
int dpt_ckpt_load_run(const char *path, const dpt_train_opts *o, const dpt_model *m,
                      float *params, dpt_solver *solver, size_t solver_lo, dpt_sched *sched,
                      dpt_train_pos *pos, int params_only, char *err, size_t errlen);

#endif

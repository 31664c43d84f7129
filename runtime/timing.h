/* timing.h — where a training step's time goes (timing.c): the step, the compute (everything
 * but waiting for communication), the wait in each kind of collective, and how much of the
 * gradient reduction overlapped backward. Private to runtime/.
 *
 * The trainer fills one dpt_timing per run at a few points of a step (the brackets around each
 * blocking collective, the first gradient range handed to the reducer, the end of backward);
 * no MPI here. Per-rank values are gathered at log intervals (dpt_train_timing_interval,
 * train_internal.h), never per step. */
#ifndef DPT_RUNTIME_TIMING_H
#define DPT_RUNTIME_TIMING_H

/* The kinds of blocking collectives a step waits in. */
enum {
  DPT_WAIT_GRAD,   /* the gradient reduction (bucketed or exact) */
  DPT_WAIT_GATHER, /* the ZeRO parameter all-gather */
  DPT_WAIT_SMALL,  /* the step's loss/norm/flag reductions, the exact mode's maxima */
  DPT_WAIT_STATS,  /* the batch-statistics sums inside forward (BatchNorm) */
  DPT_WAIT_KINDS
};

/* One step's figures, seconds (the metrics file's step record). */
typedef struct {
  double step;                 /* the whole step (dpt_train_step) */
  double compute;              /* step minus every wait: data, forward, backward, update */
  double wait[DPT_WAIT_KINDS]; /* blocked in each kind of collective */
  double wait_total;           /* their sum */
  /* the gradient reduction's window: from the start of its first bucket to the end of its
   * wait; hidden_s is the part of it in which backward computed (before backward ended, not
   * inside the reducer's calls). hidden = hidden_s / window, NAN when there was no window */
  double window, hidden_s, hidden;
} dpt_step_timing;

/* The trainer's clock marks for the current step, and the sums since the last interval. */
typedef struct {
  double t_step; /* when the step began */
  double t_wait; /* when the current wait began (0: none) */
  int wait_kind; /* its kind */
  int overlap;   /* buckets start during backward (not in deterministic mode, --overlap 1) */
  /* the reducer's first bucket is its last, [first_lo, n): it starts when all of it is ready
   * (comm/reducer.c), so the window opens when first_done reaches first_len */
  size_t first_lo, first_len, first_done;
  double t_ready;   /* when the first bucket could start (0: not yet) */
  double t_call;    /* when the current ready call began, once the window is open (0: none) */
  double in_ready;  /* time in the reducer's ready calls since the window opened: MPI's work
                       that backward waited for, not hidden behind it */
  double t_bwd_end; /* backward's end, the gradient wait's start */
  dpt_step_timing cur;
  /* since the last dpt_train_timing_interval: sums over its steps */
  long steps;
  double sum_step, sum_compute, sum_wait[DPT_WAIT_KINDS], sum_window, sum_hidden;
  long first_step; /* the first step of the interval (1-based) */
} dpt_timing;

/* Values per rank of an interval record, in this order (per step means; hidden a fraction). */
enum {
  DPT_TIMING_STEP,
  DPT_TIMING_COMPUTE,
  DPT_TIMING_WAIT0, /* DPT_WAIT_KINDS of them */
  DPT_TIMING_WAIT_TOTAL = DPT_TIMING_WAIT0 + DPT_WAIT_KINDS,
  DPT_TIMING_HIDDEN,
  DPT_TIMING_VALUES
};

/* An interval's figures of every rank (rank 0 holds them after the gather). */
typedef struct {
  long first_step, step, steps; /* the interval: steps first_step..step, `steps` of them */
  int ranks;
  int slowest;          /* the rank with the largest compute time (the one the others wait for) */
  const double *values; /* [ranks][DPT_TIMING_VALUES], per step means; hidden NAN: no window */
  double *max;          /* [DPT_TIMING_VALUES]: the largest over ranks */
  double hidden_min;    /* the smallest hidden fraction over ranks (NAN: none had a window) */
} dpt_timing_table;

/* A step begins (overlap: see dpt_timing.overlap) for a gradient of n floats reduced in
 * buckets of `bucket` floats. */
void dpt_timing_step_begin(dpt_timing *t, int overlap, size_t n, size_t bucket);
/* A blocking collective of `kind` begins at step `step` (also published for the watchdog,
 * dpt_progress_wait: `what` is a string literal); and ends. */
void dpt_timing_wait(dpt_timing *t, int kind, long step, const char *what);
void dpt_timing_done(dpt_timing *t);
/* Gradient range [offset, offset + len) became final: called before it is handed to the
 * reducer (which may start a bucket), and dpt_timing_ready_done after; backward ended. */
void dpt_timing_ready(dpt_timing *t, size_t offset, size_t len);
void dpt_timing_ready_done(dpt_timing *t);
void dpt_timing_backward_done(dpt_timing *t);
/* The step ended: its figures into *out, and into the interval's sums. */
void dpt_timing_step_end(dpt_timing *t, long step, dpt_step_timing *out);
/* The interval's per-step means into v[DPT_TIMING_VALUES]; the sums start again. */
void dpt_timing_take(dpt_timing *t, double *v);

#endif

/* internal.h — declarations shared by runtime's own files; not part of the public surface. */
#ifndef DPT_RUNTIME_INTERNAL_H
#define DPT_RUNTIME_INTERNAL_H

#include "runtime.h"

/* Monotonic wall clock in seconds. */
double dpt_now(void);

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
} dpt_step_info;

typedef struct {
  int epoch;
  long step;
  double train_loss, test_loss, test_accuracy, lr;
} dpt_epoch_info;

int dpt_report_open(const dpt_train_opts *o, long total_steps, dpt_report **out, char *err,
                    size_t errlen);
void dpt_report_step(dpt_report *r, const dpt_step_info *s);
void dpt_report_epoch(dpt_report *r, const dpt_epoch_info *e);
void dpt_report_close(dpt_report *r);
/* One "run" record: ranks, ZeRO stage, parameters, optimizer-state bytes per rank (largest)
 * and over all ranks. */
void dpt_report_run(dpt_report *r, int ranks, int zero, size_t nparams, double state_max,
                    double state_total);

#endif

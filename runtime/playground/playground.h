/* playground.h — dpt's playground: solvers side by side on real training runs (dpt compare),
 * on analytic test functions (dpt compare --problem), and plots of metrics files (dpt plot).
 * The whole public surface of runtime/playground/ (library dpt_playground).
 *
 * Invariants:
 * - A tool on top of the trainer, not part of it: it trains only through runtime.h's public
 *   surface (dpt_train_run), and nothing in training calls it.
 * - Every file it writes (tables, trajectories, SVG charts) appears whole or not at all.
 * - Errors travel up as negative DPT_E* codes (base.h) with a message naming the input at
 *   fault; nothing here exits or aborts.
 */
#ifndef DPT_PLAYGROUND_H
#define DPT_PLAYGROUND_H

#include <mpi.h>
#include <stdio.h>

#include "optim.h"
#include "runtime.h"

/* --- plots of metrics files (plot.c, drawn by svg.c) --- */

/* Reads dpt metrics files (JSONL, format below) and writes into outdir (created if missing):
 * loss_step.svg (training loss vs step, log y), loss_time.svg (vs wall time), accuracy_step.svg
 * and accuracy_time.svg (test accuracy per epoch), lr_step.svg (learning rate vs step; log y
 * when the rates span a decade or more, down to 1/1000 of the smallest run's peak rate).
 * labels[i] names files[i] in the legends; labels (or any labels[i]) may be NULL: then the "run"
 * record's "label" field, else the file's name without directory and extension. When two files
 * would get the same name from their file names (runs/a/metrics.jsonl, runs/b/metrics.jsonl),
 * the parent directory is kept in both ("a/metrics", "b/metrics"); a name still given twice
 * gets " #2", " #3", ... A run whose last loss is not finite or ten times its first is named
 * "... (diverged)", and the loss axis spans it only up to its first loss, so its blow-up leaves
 * through the top instead of squashing the others. Errors name the file and line.
 *
 * Format: one JSON object per line; records {"type":"run", "label":...}, {"type":"step",
 * "step", "loss", "lr", "time"} and {"type":"epoch", "step", "test_accuracy", "time"} are read,
 * other types and fields are ignored; null values are gaps. A run resumed from a checkpoint
 * appends to its file: a step record whose step (or time) goes back supersedes the records of
 * that step and later ones (the last record per step is drawn), and a clock that restarted
 * continues from the last record kept. Nothing is written if any file fails to parse. */
int dpt_plot_metrics(const char *const *files, const char *const *labels, int nfiles,
                     const char *outdir, char *err, size_t errlen);

/* --- the solver playground (compare.c): runs side by side --- */

/* Trains every runs[i] (each a complete set of options; its label names it) on comm split into
 * groups of group_ranks ranks (0: as many as the runs leave, at least 1; a divisor of W), run i
 * on group i mod G, each in <outdir>/<label>; then rank 0 writes <outdir>/summary.md (final and
 * best test accuracy and loss, final training loss, time, steps, the first step with training
 * loss <= target_loss), prints the same table on out (if not NULL) and draws the plots of
 * dpt_plot_metrics into outdir. A run that fails is marked failed in the table; the others go
 * on. Collective over comm. */
int dpt_compare_run(const dpt_train_opts *runs, int nruns, int group_ranks, double target_loss,
                    const char *outdir, MPI_Comm comm, FILE *out, char *err, size_t errlen);

/* --- the solver playground: analytic problems (problem.c) --- */

/* One solver (and schedule) to run on an analytic problem. */
typedef struct {
  char name[64];            /* legend label, e.g. "adam" or "sgd momentum=0.9" */
  dpt_solver_params solver; /* kind and hyperparameters, lr included */
  dpt_sched_params sched; /* learning-rate schedule; stepped once per step whatever its interval */
} dpt_problem_run;

/* Runs each entry of runs on the analytic problem `problem` for `steps` steps from x0 (dim
 * values; NULL: the problem's own start) and writes into outdir (created if missing):
 * trajectories.jsonl, summary.md, trajectory.svg, loss_step.svg; the summary table also goes to
 * out when not NULL. See runtime/playground/problem.c. */
int dpt_problem_compare(const char *problem, const dpt_problem_run *runs, int nruns, long steps,
                        const double *x0, int dim, const char *outdir, FILE *out, char *err,
                        size_t errlen);

/* Calls fn for every problem with its name and a one-line description (for `dpt compare --help`).
 */
void dpt_problem_list(void (*fn)(void *ctx, const char *name, const char *desc), void *ctx);

#endif /* DPT_PLAYGROUND_H */

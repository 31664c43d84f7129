/* runtime.h — dpt's runtime: the model interface, the trainer loop that ties optim, comm and io
 * together, its options, and the logger. The whole public surface of runtime/.
 *
 * Invariants:
 * - The global batch B is the user's; each of W ranks computes B/W of it. Epoch e uses one
 *   permutation of the training set drawn from (seed, e), and global step s covers the same
 *   samples whatever W is, so W ranks train what 1 rank trains, up to reduction order.
 * - One list of options (dpt_train_opts), one set of defaults, one validator, filled by the
 *   command line and the config file alike.
 * - Errors travel up as negative DPT_E* codes with a message; nothing here exits or aborts.
 */
#ifndef DPT_RUNTIME_H
#define DPT_RUNTIME_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h" /* the error space: DPT_E* codes, dpt_strerror, DPT_ERR_LEN */
#include "optim.h"

/* --- process set-up (env.c) ---
 * Call first in main, before MPI_Init: one OpenBLAS thread per rank, its AVX-512 kernels where
 * the CPU has them, and Open MPI's shared-memory copies instead of CMA on a virtual machine;
 * variables the user set are kept, DPT_NO_ENV_TUNING=1 keeps all but the thread count. May
 * re-execute the process (argv) once so that OpenBLAS sees the variables. */
void dpt_env_setup(char **argv);

/* --- random numbers ---
 * xoshiro256** seeded through splitmix64 from (seed, stream): the same numbers on every rank and
 * platform, so initialisation and data order do not depend on the rank count. */
typedef struct {
  uint64_t s[4];
} dpt_rng;
void dpt_rng_seed(dpt_rng *r, uint64_t seed, uint64_t stream);
uint64_t dpt_rng_next(dpt_rng *r);
double dpt_rng_uniform(dpt_rng *r);          /* [0, 1), 53 bits */
double dpt_rng_normal(dpt_rng *r);           /* standard normal (Box-Muller) */
uint64_t dpt_rng_below(dpt_rng *r, uint64_t n); /* uniform in [0, n), unbiased */

/* --- models ---
 * A model is a set of named tensors living in one flat fp32 buffer (PyTorch layout and names:
 * "fc1.weight" [out, in], "fc1.bias" [out]) and functions that compute the loss and its
 * gradient for a batch. dpt trains any model that fills this struct; the MLP below is one,
 * tests/runtime/test_user_model.c holds another written as a user would. */
#define DPT_MAX_TENSORS 64

typedef struct {
  char name[48];   /* state_dict name, e.g. "fc2.weight" */
  int rank;        /* 1 or 2 */
  int64_t dims[2]; /* [out, in] for a weight, [out] for a bias */
  size_t offset;   /* first element in the flat buffer */
  size_t numel;
} dpt_tensor;

/* Called by a model's backward when grad[offset, offset + len) is final for this batch, so that
 * its reduction can start while backward goes on. Ranges may come in any order; together they
 * cover the whole buffer exactly once per loss_grad call. */
typedef void (*dpt_grad_ready_fn)(void *ctx, size_t offset, size_t len);

typedef struct dpt_model {
  const char *kind;      /* "mlp", or the user's name */
  int ntensors;
  dpt_tensor tensors[DPT_MAX_TENSORS];
  size_t nparams;        /* length of the flat buffer */
  int64_t in_features;   /* floats per input sample */
  int64_t out_features;  /* classes (labels) or targets per sample */
  int wants_labels;      /* 1: y are class labels in [0, out_features); 0: float targets */
  void *ctx;             /* the model's own data */
  /* Fills params[nparams] with the initialisation drawn from seed (identical on every rank). */
  int (*init)(struct dpt_model *m, float *params, uint64_t seed, char *err, size_t errlen);
  /* Forward and backward on n samples x[n * in_features] with labels[n] or y[n * out_features]:
   * ADDS scale * d(sum of per-sample losses)/d(params) into grad[nparams] (so micro-batches
   * accumulate), and returns the sum of per-sample losses and, for labels, the number of correct
   * predictions. Calls ready(ready_ctx, ...) as parts of grad become final, if ready != NULL. */
  int (*loss_grad)(struct dpt_model *m, const float *params, float *grad, float scale,
                   const float *x, const int32_t *labels, const float *y, size_t n,
                   double *loss_sum, int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx,
                   char *err, size_t errlen);
  /* Forward only: the sum of per-sample losses and the number correct. */
  int (*evaluate)(struct dpt_model *m, const float *params, const float *x,
                  const int32_t *labels, const float *y, size_t n, double *loss_sum,
                  int64_t *correct, char *err, size_t errlen);
  void (*destroy)(struct dpt_model *m); /* frees ctx (not the struct's storage) */
} dpt_model;

/* Finds a tensor by name; NULL if absent. */
const dpt_tensor *dpt_model_tensor(const dpt_model *m, const char *name);

/* The built-in MLP. spec is "mlp:IN-H1-...-OUT" (at least one layer); activation relu, tanh,
 * gelu (exact, erf) or sigmoid between layers; loss "ce" (softmax cross-entropy on labels) or
 * "mse" (mean over outputs of squared error on float targets, as torch's MSELoss per sample).
 * Linear layers are named fc1, fc2, ... and initialised as torch.nn.Linear (Kaiming-uniform
 * weights, uniform biases, bound 1/sqrt(in)). Forward and backward use cblas_sgemm. Fills *m. */
int dpt_mlp_create(const char *spec, const char *activation, const char *loss, dpt_model *m,
                   char *err, size_t errlen);

/* --- logger --- */
enum { DPT_LOG_ERROR = 0, DPT_LOG_WARN = 1, DPT_LOG_INFO = 2, DPT_LOG_DEBUG = 3 };
/* Rank 0 logs at `level` and below; every rank when all_ranks. Errors always print. */
void dpt_log_init(int rank, int level, int all_ranks);
int dpt_log_enabled(int level);
void dpt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- progress, for a watchdog ---
 * The trainer publishes what it is doing: the step, and the blocking collective it waits in
 * (NULL while it computes) since when (dpt_now's clock, seconds). Safe to read from another
 * thread at any time; a torn read can only mix two consecutive states. */
typedef struct {
  long step;
  const char *waiting_in;
  double since;
} dpt_progress;
void dpt_progress_get(dpt_progress *p);
double dpt_clock(void); /* the clock of dpt_progress.since */

/* --- training options --- */
typedef struct {
  char data[1024];      /* HDF5 dataset (see README "Dataset format") */
  char model[256];      /* model spec, e.g. "mlp:784-256-128-10" */
  char activation[16];  /* relu | tanh | gelu | sigmoid */
  char loss[16];        /* ce | mse */
  dpt_solver_params solver;
  dpt_sched_params sched;
  int epochs;           /* passes over the training set */
  long max_steps;       /* stop after this many optimizer steps (0: no limit) */
  long batch;           /* global batch B, split evenly over the W ranks */
  int accum;            /* micro-batches accumulated per optimizer step */
  double clip_norm;     /* clip gradients to this global L2 norm (0: off) */
  long seed;            /* initialisation and data order */
  int zero;             /* ZeRO stage 0, 1 or 2; -1: 1 when W > 1, else 0 */
  double bucket_mb;     /* gradient bucket size in MiB */
  int overlap;          /* start each bucket's reduction as soon as backward produced it */
  double cache_mb;      /* cache a dataset split in memory when it fits this budget */
  int eval_every;       /* evaluate on the test split every this many epochs (0: never) */
  char run_dir[1024];   /* metrics and checkpoints go here */
  char ckpt_dir[1024];  /* checkpoints: "" = <run_dir>/ckpt */
  long ckpt_every;      /* checkpoint every this many steps (0: only at the end) */
  int ckpt_epochs;      /* and at the end of every this many epochs (0: not by epoch) */
  int ckpt;             /* write checkpoints at all */
  int keep;             /* keep the newest K checkpoints (0: all) */
  char resume[1024];    /* "", "auto" (latest if any), "latest" (must exist) or a file */
  char init[1024];      /* start from this checkpoint's parameters only */
  int fresh;            /* start a new run even where checkpoints of another run are */
  int allow_config_change; /* resume even if the configuration changes the results */
  char metrics[1024];   /* JSONL metrics file; "" = <run_dir>/metrics.jsonl */
  char label[64];       /* the run's name in metrics and plots; "" = SOLVER/SCHED */
  long log_every;       /* plain-log interval in steps (non-terminal output) */
  int deterministic;    /* bitwise the same results for any W and ZeRO stage (see det.c) */
  int micro_shards;     /* deterministic mode: G fixed micro-shards per global batch */
  char on_nonfinite[8]; /* "abort" (default) or "skip": what a NaN/Inf gradient or loss does */
  double watchdog;      /* seconds a blocking collective may take before the dpt command ends
                           the job (0: off); read by launch, which runs the watchdog */
  char stop_signals[64]; /* "USR1,TERM": stop at an agreed step with a checkpoint; "none" */
  char time_limit[32];  /* "" or seconds or SLURM's [D-]HH:MM:SS: stop with a checkpoint in time */
  double stop_margin;   /* seconds kept in hand before --time-limit */
  char progress[8];     /* auto | bar | plain | none */
  int verbose;          /* more detail: memory, timings, per-rank lines */
} dpt_train_opts;

/* Fills o with the defaults (the README's demo is these defaults with a data path). */
void dpt_train_defaults(dpt_train_opts *o);

/* Sets one option by name from text: a training option ("batch", "epochs", ...), "solver" or
 * "sched" (which reset that part's hyperparameters to the new kind's defaults, so set them
 * first), "sched_<name>" for a scheduler hyperparameter, or any hyperparameter of the current
 * solver ("lr", "betas", ...). An unknown name or a malformed value is an error naming both. */
int dpt_train_set(dpt_train_opts *o, const char *key, const char *value, char *err,
                  size_t errlen);

/* A duration: seconds ("90", "1.5"), or SLURM's time format ("MM:SS", "HH:MM:SS",
 * "D-HH[:MM[:SS]]"), as `squeue -o %L` prints the time left. "" and "UNLIMITED" give 0 (none).
 * -1 if the text is none of these. */
int dpt_parse_duration(const char *text, double *seconds);

/* Signal names "USR1,USR2,TERM,INT,HUP" (with or without "SIG"; "none" for none) as a bit mask
 * of signal numbers. -1 and a message naming the bad name otherwise. */
int dpt_parse_signals(const char *text, unsigned *mask, char *err, size_t errlen);

/* Checks every option and the solver's and scheduler's hyperparameters. */
int dpt_train_validate(const dpt_train_opts *o, char *err, size_t errlen);

/* Calls fn for every training option with its current value and help, for `dpt train --help`
 * and for recording a run's configuration. */
void dpt_train_describe(const dpt_train_opts *o, dpt_optim_param_fn fn, void *ctx);

/* What a finished run reports. */
typedef struct {
  long steps;              /* optimizer steps taken */
  int epochs;              /* epochs completed */
  double train_loss;       /* mean training loss of the last epoch */
  double test_loss;        /* last evaluation (NAN when none) */
  double test_accuracy;    /* last evaluation (NAN when none or regression) */
  double seconds;          /* wall time of the training loop */
  double samples_per_s;    /* global samples per second over the run */
  size_t state_bytes;      /* optimizer state bytes held by this rank */
  double comm_wait_s;      /* time this rank waited for gradient reduction, whole run */
  double step_s;           /* time in optimizer steps (compute + reduction + update) */
  int stopped;             /* DPT_ESTOPPED was returned: 1 by a signal, 2 by --time-limit */
  long skipped;            /* steps skipped for non-finite values (--on-nonfinite skip) */
} dpt_train_result;

/* Trains a model as the options say. Collective over comm: every rank must call it with the
 * same options. On error every rank returns the same negative code (peers agree before
 * returning), and rank 0's message names the input at fault. */
int dpt_train_run(const dpt_train_opts *o, MPI_Comm comm, dpt_train_result *res, char *err,
                  size_t errlen);

/* --- dataset tools (for `dpt data`; not collective: call on one rank) --- */

/* Imports MNIST-format idx files into a dpt dataset. dir holds the four standard files
 * (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte, each optionally .gz); the test pair is optional. */
int dpt_data_import_idx(const char *dir, const char *out, char *err, size_t errlen);

/* Writes a generated classification dataset (see io.h dpt_io_synth). */
int dpt_data_synth(const char *out, long n_train, long n_test, long features, long classes,
                   long seed, char *err, size_t errlen);

/* Summary of a checkpoint for `dpt ckpt inspect`: fn(ctx, name, value) for every attribute
 * and dataset (with its checksum verified). Non-zero if the file is unreadable or corrupted. */
int dpt_ckpt_inspect(const char *path, void (*fn)(void *ctx, const char *name,
                                                  const char *value),
                     void *ctx, char *err, size_t errlen);

/* Like dpt_train_run, with a model the caller built (it stays the caller's: not destroyed).
 * If params_out is not NULL it receives the final parameters (m->nparams floats) on every rank.
 * Collective over comm. */
int dpt_train_run_model(const dpt_train_opts *o, dpt_model *m, MPI_Comm comm,
                        dpt_train_result *res, float *params_out, char *err, size_t errlen);

/* --- plots of metrics files (plot.c, drawn by svg.c) --- */

/* Reads dpt metrics files (JSONL, format below) and writes into outdir (created if missing):
 * loss_step.svg (training loss vs step, log y), loss_time.svg (vs wall time), accuracy_step.svg
 * and accuracy_time.svg (test accuracy per epoch), lr_step.svg (learning rate vs step).
 * labels[i] names files[i] in the legends; labels may be NULL: then the "run" record's "label"
 * field, else the file's name without directory and extension. Errors name the file and line.
 *
 * Format: one JSON object per line; records {"type":"run", "label":...}, {"type":"step",
 * "step", "loss", "lr", "time"} and {"type":"epoch", "step", "test_accuracy", "time"} are read,
 * other types and fields are ignored; null values are gaps. When two files would get the same
 * name from their file names (runs/a/metrics.jsonl, runs/b/metrics.jsonl), the parent directory
 * is kept in both ("a/metrics", "b/metrics"). Nothing is written if any file fails to parse. */
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
  char name[64];              /* legend label, e.g. "adam" or "sgd momentum=0.9" */
  dpt_solver_params solver;   /* kind and hyperparameters, lr included */
  dpt_sched_params sched;     /* learning-rate schedule; stepped once per step whatever its interval */
} dpt_problem_run;

/* Runs each entry of runs on the analytic problem `problem` for `steps` steps from x0 (dim
 * values; NULL: the problem's own start) and writes into outdir (created if missing):
 * trajectories.jsonl, summary.md, trajectory.svg, loss_step.svg; the summary table also goes to
 * out when not NULL. See runtime/problem.c. */
int dpt_problem_compare(const char *problem, const dpt_problem_run *runs, int nruns, long steps,
                        const double *x0, int dim, const char *outdir, FILE *out, char *err,
                        size_t errlen);

/* Calls fn for every problem with its name and a one-line description (for `dpt compare --help`). */
void dpt_problem_list(void (*fn)(void *ctx, const char *name, const char *desc), void *ctx);

#endif /* DPT_RUNTIME_H */

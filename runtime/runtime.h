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

#include "optim.h"

/* Model interface (tensors in one flat buffer, the MLP, the RNG): staged in model.h. */
#include "model.h"

/* --- status codes --- */
#define DPT_ERR_LEN 512
enum {
  DPT_OK = 0,
  DPT_EINVAL = -1,    /* bad input: a flag, a config value, a file, a shape */
  DPT_EIO = -2,       /* a file could not be read or written */
  DPT_EMPI = -3,      /* an MPI call failed; peers may not be trusted */
  DPT_ENOMEM = -4,    /* allocation failed */
  DPT_ENONFINITE = -5 /* NaN or Inf reached the loss or the gradients */
};

/* --- logger --- */
enum { DPT_LOG_ERROR = 0, DPT_LOG_WARN = 1, DPT_LOG_INFO = 2, DPT_LOG_DEBUG = 3 };
/* Rank 0 logs at `level` and below; every rank when all_ranks. Errors always print. */
void dpt_log_init(int rank, int level, int all_ranks);
int dpt_log_enabled(int level);
void dpt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
  double cache_mb;      /* cache a dataset split in memory when it fits this budget */
  int eval_every;       /* evaluate on the test split every this many epochs (0: never) */
  char run_dir[1024];   /* metrics and checkpoints go here */
  char metrics[1024];   /* JSONL metrics file; "" = <run_dir>/metrics.jsonl */
  long log_every;       /* plain-log interval in steps (non-terminal output) */
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
} dpt_train_result;

/* Trains a model as the options say. Collective over comm: every rank must call it with the
 * same options. On error every rank returns the same negative code (peers agree before
 * returning), and rank 0's message names the input at fault. */
int dpt_train_run(const dpt_train_opts *o, MPI_Comm comm, dpt_train_result *res, char *err,
                  size_t errlen);

#endif /* DPT_RUNTIME_H */

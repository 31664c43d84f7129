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

#include "base.h"   /* the error space (DPT_E*, dpt_strerror, DPT_ERR_LEN), dpt_tensor, dpt_shape */
#include "layers.h" /* the layer library the MLP is built from; dpt_grad_ready_fn, dpt_layer_span */
#include "optim.h"

/* --- process set-up (env.c) ---
 * Call first in main, before MPI_Init: one OpenBLAS thread per rank, its AVX-512 kernels where
 * the CPU has them, and Open MPI's shared-memory copies instead of CMA where the kernel refuses
 * this process process_vm_readv; variables the user set are kept, DPT_NO_ENV_TUNING=1 keeps
 * all but the thread count and that guard. May
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
double dpt_rng_uniform(dpt_rng *r);             /* [0, 1), 53 bits */
double dpt_rng_normal(dpt_rng *r);              /* standard normal (Box-Muller) */
uint64_t dpt_rng_below(dpt_rng *r, uint64_t n); /* uniform in [0, n), unbiased */

/* --- models ---
 * A model is a table of named tensors (base.h's dpt_tensor: any rank up to DPT_MAX_RANK, names
 * of any length, PyTorch layout and names: "fc1.weight" [out, in], "fc1.bias" [out]) living in
 * one flat fp32 buffer, in buffer order and tiling it, and functions that compute the loss and
 * its gradient for a batch. dpt trains any model that fills this struct; the MLP below is one
 * (built from the layer library, layers.h), tests/runtime/test_mpi_user_model.c holds another
 * written as a user would.
 *
 * How to add a model kind (`--model KIND:SPEC`), two files:
 *   1. runtime/model_<kind>.c: a dpt_model_create_fn that parses a->args, reads the dataset's
 *      sample shape from a->data, and fills the dpt_model, usually by stacking layers into a
 *      dpt_net (layers.h) and pointing tensors/layers at the net's tables (model_mlp.c does);
 *      errors name a->spec.
 *   2. runtime/model.c: one line in the built-in kind table (and the function's declaration).
 *   A program's own kind needs neither: dpt_model_register("KIND", create) before
 *   dpt_train_run (tests/runtime/test_mpi_user_model.c registers "linreg"). m->kind is stored
 *   in checkpoints and must match when one is loaded. */

typedef struct dpt_model {
  const char *kind; /* "mlp", or the user's name; stored in checkpoints and checked */
  int ntensors;
  const dpt_tensor *tensors; /* [ntensors], the model's own storage (names too), valid until
                                destroy; in flat-buffer order, each starting where the previous
                                ends, the last ending at nparams */
  size_t nparams;            /* length of the flat buffer */
  dpt_shape input;           /* the sample shape it takes (dims after N); an MLP's is [in];
                                rank 0: not given, the input is in_features flat values */
  int64_t in_features;       /* floats per input sample: the product of input's dims */
  int64_t out_features;      /* classes (labels) or targets per sample */
  int wants_labels;          /* 1: y are class labels in [0, out_features); 0: float targets */
  int64_t labels_per_sample; /* labels: how many each sample has (0 or 1: one; T for a sequence
                                model, whose out_features is then the classes of one position
                                and whose per-sample loss is the mean over its T positions) */
  /* Layer boundaries, for ZeRO-3's gathers and bucket readiness: the layers that have parameters,
   * in forward order, each a range of tensors and of the flat buffer; together they tile it.
   * nlayers 0: the model is one layer. The model's own storage, like tensors. */
  int nlayers;
  const dpt_layer_span *layers;
  /* 1: a layer adds to the gradient of an earlier layer's tensor (weight tying) outside that
   * layer's span, so a span's gradient is final only at its own ready call and not alone in its
   * layer's pass: ZeRO-2 then keeps a whole gradient, as stage 1 does, and ZeRO-3 refuses the
   * model. A model whose passes handle each tied use themselves when given params_at and
   * grad_at, or seg_grad with tie_grad, sets 0: the layer library's nets do (a use reads the
   * values its owner's span had in forward; its gradient is added into the owner's span buffer
   * before the owner's own, or goes to tie_grad). */
  int tied;
  /* Buffers: state that is not trained but is part of the model (BatchNorm's running
   * statistics), named as torch's state_dict names them, offsets into buffer_data
   * (nbuffer_floats floats, the model's storage). The same on every rank; training passes update
   * them, checkpoints carry them, init resets them. nbuffers 0: none. */
  int nbuffers;
  const dpt_tensor *buffers;
  float *buffer_data;
  size_t nbuffer_floats;
  /* Optional: floats of working buffers (activations) a pass keeps per sample, so the trainer
   * can size evaluation chunks; 0: not known. */
  size_t floats_per_sample;
  void *ctx; /* the model's own data */
  /* Fills params[nparams] with the initialisation drawn from seed (identical on every rank). */
  int (*init)(struct dpt_model *m, float *params, uint64_t seed, char *err, size_t errlen);
  /* Forward and backward on n samples x[n * in_features] with labels[n] or y[n * out_features]:
   * ADDS scale * d(sum of per-sample losses)/d(params) into grad[nparams] (so micro-batches
   * accumulate), and returns the sum of per-sample losses and, for labels, the number of correct
   * predictions. Calls ready(ready_ctx, offset, len) as parts of grad become final, if ready !=
   * NULL: ranges in any order that together cover the buffer exactly once per call (a model
   * with layers: once per layer, last to first). */
  int (*loss_grad)(struct dpt_model *m, const float *params, float *grad, float scale,
                   const float *x, const int32_t *labels, const float *y, size_t n,
                   double *loss_sum, int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx,
                   char *err, size_t errlen);
  /* Optional: loss_grad with the pass (layers.h's dpt_layer_pass: dropout's seed, step and
   * sample index, segments, the batch-statistics sum, per-segment gradients, ready). Models
   * with batch statistics or dropout set it; the trainer then calls it instead of loss_grad.
   * ZeRO-2 needs it to keep no whole gradient: the pass's grad_at gives each layer's gradient
   * a buffer of the trainer's (grad is then NULL); with loss_grad alone stage 2 keeps a whole
   * gradient, as stage 1 does. ZeRO-3 needs it too (and layers, and no tie): the pass's
   * params_at gives each layer its gathered parameters (params is then NULL); a model without
   * it is refused in stage 3. */
  int (*loss_grad_pass)(struct dpt_model *m, const float *params, float *grad, float scale,
                        const float *x, const int32_t *labels, const float *y, size_t n,
                        double *loss_sum, int64_t *correct, const dpt_layer_pass *pass, char *err,
                        size_t errlen);
  /* Forward only: the sum of per-sample losses and the number correct. */
  int (*evaluate)(struct dpt_model *m, const float *params, const float *x, const int32_t *labels,
                  const float *y, size_t n, double *loss_sum, int64_t *correct, char *err,
                  size_t errlen);
  /* Optional: evaluate with the pass's params_at (ZeRO-3 evaluates through it, each layer's
   * parameters gathered; params is then NULL). Without it stage 3 gathers the whole parameters
   * for an evaluation. */
  int (*evaluate_pass)(struct dpt_model *m, const float *params, const float *x,
                       const int32_t *labels, const float *y, size_t n, double *loss_sum,
                       int64_t *correct, const dpt_layer_pass *pass, char *err, size_t errlen);
  void (*destroy)(struct dpt_model *m); /* frees ctx and the tables (not the struct's storage) */
} dpt_model;

/* Finds a tensor by name; NULL if absent. */
const dpt_tensor *dpt_model_tensor(const dpt_model *m, const char *name);

/* Checks that m is well formed: every tensor of rank 1..DPT_MAX_RANK with positive dims whose
 * product is its numel, named (uniquely), the tensors tiling [0, nparams) in order; input's
 * dims (if given) multiplying to in_features; the layer spans, if any, tiling the tensors in
 * order; init, loss_grad and evaluate set. An error names
 * the model kind and the tensor or layer at fault. dpt_train_run_model calls it. */
int dpt_model_check(const dpt_model *m, char *err, size_t errlen);

/* What a model kind learns of the data before it is built: the training split's shape. */
typedef struct {
  dpt_shape sample; /* one sample's shape: x's dims after N ([28, 28] for x [N, 28, 28]) */
  int64_t features; /* product of sample's dims: what a model that flattens takes */
  int labels;       /* 1: y holds integer class labels; 0: float targets */
  int64_t classes;  /* labels: the number of classes (num_classes, else max label + 1) */
  int64_t targets;  /* float targets per sample (1 for labels) */
} dpt_model_data;

/* What a create function receives. */
typedef struct {
  const char *spec;           /* the whole --model text, "mlp:784-256-10": name it in errors */
  const char *args;           /* what follows "KIND:" ("" when there is no colon) */
  const char *activation;     /* --activation: relu | tanh | gelu | sigmoid */
  const char *loss;           /* --loss: ce | mse */
  const dpt_model_data *data; /* NULL when no dataset was read (a tool building a model on its
                                 own, or a data file that cannot be opened: training's set-up
                                 reports that); a kind that needs it says so */
} dpt_model_args;

/* Fills *m (memset by the caller to 0) or returns a negative DPT_E* code and a message that
 * names a->spec; on failure m holds nothing to free. */
typedef int (*dpt_model_create_fn)(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);

/* Adds kind (copied; letters, digits, '_' and '-') to the registry, so that `--model KIND:...`
 * and dpt_model_create dispatch to create. A kind already registered (built-in or not) is
 * DPT_EINVAL. Not thread-safe: register at start-up, before training. */
int dpt_model_register(const char *kind, dpt_model_create_fn create, char *err, size_t errlen);

/* Builds the model spec names ("KIND:ARGS") through the registry. data may be NULL (see
 * dpt_model_args). An unknown kind is DPT_EINVAL with the known kinds listed. */
int dpt_model_create(const char *spec, const char *activation, const char *loss,
                     const dpt_model_data *data, dpt_model *m, char *err, size_t errlen);

/* The shape of the training split of the dataset at path, for dpt_model_create; DPT_OK, or the
 * dataset's error (not collective: reads the file's metadata only). */
int dpt_model_data_read(const char *path, dpt_model_data *data, char *err, size_t errlen);
/* The same for a token dataset (dpt data import-text) read in windows of context tokens, as
 * training reads it: samples [context] of token ids, context labels each, the vocabulary's
 * size as classes. */
int dpt_model_data_read_tokens(const char *path, int64_t context, dpt_model_data *data, char *err,
                               size_t errlen);

/* The built-in MLP (registered as "mlp"). spec is "mlp:IN-H1-...-OUT" (at least one layer);
 * activation relu, tanh, gelu (exact, erf) or sigmoid between layers; loss "ce" (softmax
 * cross-entropy on labels) or "mse" (mean over outputs of squared error on float targets, as
 * torch's MSELoss per sample). Linear layers are named fc1, fc2, ... and initialised as
 * torch.nn.Linear (Kaiming-uniform weights, uniform biases, bound 1/sqrt(in)). Forward and
 * backward use cblas_sgemm. The input is flattened: a [28, 28] sample is mlp:784-... Fills *m. */
int dpt_mlp_create(const char *spec, const char *activation, const char *loss, dpt_model *m,
                   char *err, size_t errlen);

/* Fills *m (memset to 0 by the caller) from a net built with the layer library: tensors,
 * layer spans, buffers, input/output shapes, and init/loss_grad/loss_grad_pass/evaluate/destroy
 * that run the net. kind is stored in m->kind (static storage). m owns n from then on (also on
 * failure). init draws from dpt_rng(seed, 0), layer by layer. */
int dpt_model_from_net(dpt_model *m, const char *kind, dpt_net *n, char *err, size_t errlen);

/* --- models described in a file (model_file.c, model_show.c; README "Models") ---
 * `--model file:PATH` (or a PATH ending in .ini) builds a net of the layer library from an INI
 * description: an optional [model] section (loss, label_smoothing, input = CxHxW,
 * description), then one [name] section per layer, in order, with kind = KIND and the layer's
 * options. `--model cnn:NAME` is a preset compiled in (runtime/models/cnn-NAME.ini). Shapes
 * come from a->data's sample shape (or [model] input) and are checked; errors name the file,
 * the line and the layer. m->kind is "net:" and a digest of the architecture, so a checkpoint
 * of another architecture is refused when it is loaded. */

/* The layers of spec (a model file, a preset, or mlp:IN-...-OUT) with their output shapes and
 * parameter counts, as text (`dpt model show`): *text is malloc'ed, the caller frees it.
 * activation and loss are --activation (the MLP's) and --loss (used when the file gives none);
 * data may be NULL when the file gives [model] input. */
int dpt_model_show(const char *spec, const char *activation, const char *loss,
                   const dpt_model_data *data, char **text, char *err, size_t errlen);
/* The PyTorch 1.13 module of spec, as Python source (`dpt model torch`): its state_dict has
 * the model's tensor and buffer names and shapes, with a loader for dpt checkpoints. */
int dpt_model_torch(const char *spec, const char *activation, const char *loss,
                    const dpt_model_data *data, char **text, char *err, size_t errlen);
/* Calls fn for every preset: its spec ("cnn:tiny") and its text (the .ini file). */
void dpt_model_presets(void (*fn)(void *ctx, const char *spec, const char *text), void *ctx);

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
/* The stop signal that arrived (its number; 0: none; a launcher ending the job sends TERM
 * too), and its name (NULL if none); safe from any thread. */
int dpt_stop_signal_pending(void);
const char *dpt_stop_signal_name(void);

/* --- training options --- */
typedef struct {
  char data[1024];     /* HDF5 dataset (see README "Dataset format") */
  char model[256];     /* model spec, e.g. "mlp:784-256-128-10" */
  char activation[16]; /* relu | tanh | gelu | sigmoid */
  char loss[16];       /* ce | mse */
  dpt_solver_params solver;
  dpt_sched_params sched;
  int epochs;              /* passes over the training set */
  long max_steps;          /* stop after this many optimizer steps (0: no limit) */
  long batch;              /* global batch B, split evenly over the W ranks */
  int accum;               /* micro-batches accumulated per optimizer step */
  double clip_norm;        /* clip gradients to this global L2 norm (0: off) */
  long seed;               /* initialisation and data order */
  int zero;                /* ZeRO stage 0 to 3 (3: parameters sharded too, gathered layer by
                              layer; README "ZeRO stages"); -1: 1 when W > 1, else 0 */
  int zero_prefetch;       /* stage 3: start the next layer's gather while this one computes */
  double zero_keep_mb;     /* stage 3: MiB of forward's gathered layers kept for backward */
  double bucket_mb;        /* gradient bucket size in MiB */
  int overlap;             /* start each bucket's reduction as soon as backward produced it */
  char reduce[16];         /* auto | rank-order | node: the reducer's algorithm (comm.h) */
  char compress[24];       /* none | bf16 | fp16 | powersgd[:R]: lossy gradient compression */
  long compress_start;     /* PowerSGD: steps summed uncompressed first */
  double cache_mb;         /* cache a dataset split in memory when it fits this budget */
  long context;            /* token datasets: window length T (0: not a token dataset) */
  int eval_every;          /* evaluate on the test split every this many epochs (0: never) */
  char run_dir[1024];      /* metrics and checkpoints go here */
  char ckpt_dir[1024];     /* checkpoints: "" = <run_dir>/ckpt */
  long ckpt_every;         /* checkpoint every this many steps (0: only at the end) */
  int ckpt_epochs;         /* and at the end of every this many epochs (0: not by epoch) */
  int ckpt;                /* write checkpoints at all */
  int keep;                /* keep the newest K checkpoints (0: all) */
  char resume[1024];       /* "", "auto" (latest if any), "latest" (must exist) or a file */
  char init[1024];         /* start from this checkpoint's parameters only */
  int fresh;               /* start a new run even where checkpoints of another run are */
  int allow_config_change; /* resume even if the configuration changes the results */
  char metrics[1024];      /* JSONL metrics file; "" = <run_dir>/metrics.jsonl */
  char label[64];          /* the run's name in metrics and plots; "" = SOLVER/SCHED */
  long log_every;          /* plain-log interval in steps (non-terminal output) */
  int deterministic; /* bitwise the same results for any W and ZeRO stage (see comm/reduce_exact.c)
                      */
  int micro_shards;  /* deterministic mode: G fixed micro-shards per global batch */
  char on_nonfinite[8];  /* "abort" (default) or "skip": what a NaN/Inf gradient or loss does */
  double watchdog;       /* seconds a blocking collective may take before the dpt command ends
                            the job (0: off; DPT_WATCHDOG_AUTO, the default: from the slowest
                            step seen); read by launch, which runs the watchdog */
  char stop_signals[64]; /* "USR1,TERM,INT": stop at an agreed step with a checkpoint; "none" */
  char time_limit[32];   /* "" or seconds or SLURM's [D-]HH:MM:SS: stop with a checkpoint in time */
  double stop_margin;    /* seconds kept in hand before --time-limit */
  char progress[8];      /* auto | bar | plain | none */
  int verbose;           /* more detail: memory, timings, per-rank lines */
} dpt_train_opts;

#define DPT_WATCHDOG_AUTO (-1.0) /* --watchdog auto */

/* Fills o with the defaults (the README's demo is these defaults with a data path). */
void dpt_train_defaults(dpt_train_opts *o);

/* Sets one option by name from text: a training option ("batch", "epochs", ...), "solver" or
 * "sched" (which reset that part's hyperparameters to the new kind's defaults, so set them
 * first), "sched_<name>" for a scheduler hyperparameter, or any hyperparameter of the current
 * solver ("lr", "betas", ...). An unknown name or a malformed value is an error naming both.
 * Numbers and booleans are read by base.h's one parser (booleans: 1/0, true/false, yes/no,
 * on/off). value NULL means the flag stood alone: true for a boolean, an error for the rest. */
int dpt_train_set(dpt_train_opts *o, const char *key, const char *value, char *err, size_t errlen);

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
  long steps;           /* optimizer steps taken */
  int epochs;           /* epochs completed */
  double train_loss;    /* mean training loss of the last epoch */
  double test_loss;     /* last evaluation (NAN when none) */
  double test_accuracy; /* last evaluation (NAN when none or regression) */
  double seconds;       /* wall time of the training loop */
  double samples_per_s; /* global samples per second over the run */
  size_t param_bytes;   /* parameter bytes held by this rank (ZeRO-3: its shard and the two
                           layer working buffers) */
  size_t state_bytes;   /* optimizer state bytes held by this rank */
  size_t grad_bytes;    /* gradient bytes held by this rank (ZeRO-2: only its shard) */
  size_t buffer_bytes;  /* working buffers held by this rank (reduction, layer gradient, batch) */
  double peak_rss;      /* bytes: this process's peak resident memory (VmHWM; 0 if unknown) */
  double comm_wait_s;   /* time this rank waited in the step's collectives, whole run */
  double step_s;        /* time in optimizer steps (compute + reduction + update) */
  int stopped;          /* DPT_ESTOPPED was returned: 1 by a signal, 2 by --time-limit */
  long skipped;         /* steps skipped for non-finite values (--on-nonfinite skip) */
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

/* Imports UTF-8 text files (concatenated) into a token dataset (io.h dpt_io_import_text):
 * vocab "char" or "byte", the last val_fraction of the tokens held out as the test split. A bad
 * input (missing or empty file, invalid UTF-8, bad option) is DPT_EINVAL naming it. Fills
 * counts[4] (may be NULL) with what was written: tokens, training tokens, test tokens, V. */
int dpt_data_import_text(const char *const *files, int nfiles, const char *out, double val_fraction,
                         const char *vocab, int64_t *counts, char *err, size_t errlen);

/* --- sampling from a language model (`dpt sample`; not collective) --- */
typedef struct {
  const char *ckpt;   /* a checkpoint of a run on a token dataset (--context) */
  const char *data;   /* the token dataset (its vocabulary); NULL: the one the checkpoint names */
  const char *prompt; /* UTF-8 text the generation continues ("": from token 0) */
  long tokens;        /* tokens to generate */
  double temperature; /* logits are divided by it (> 0) */
  long top_k;         /* sample among the k most likely tokens (0: all) */
  long seed;          /* the same seed gives the same text */
} dpt_sample_opts;
void dpt_sample_defaults(dpt_sample_opts *o);
/* Rebuilds the checkpoint's model, then generates o->tokens tokens after the prompt, each drawn
 * from the softmax of the last position's logits / temperature over the top_k: *text (malloc'ed,
 * the caller frees) is the prompt and what follows. Errors name the checkpoint, the dataset or
 * the prompt character at fault (DPT_EINVAL). */
int dpt_sample(const dpt_sample_opts *o, char **text, char *err, size_t errlen);

/* Summary of a checkpoint for `dpt ckpt inspect`: fn(ctx, name, value) for every attribute
 * and dataset (with its checksum verified). Non-zero if the file is unreadable or corrupted. */
int dpt_ckpt_inspect(const char *path, void (*fn)(void *ctx, const char *name, const char *value),
                     void *ctx, char *err, size_t errlen);

/* Like dpt_train_run, with a model the caller built (it stays the caller's: not destroyed).
 * If params_out is not NULL it receives the final parameters (m->nparams floats) on every rank.
 * Collective over comm. */
int dpt_train_run_model(const dpt_train_opts *o, dpt_model *m, MPI_Comm comm, dpt_train_result *res,
                        float *params_out, char *err, size_t errlen);

#endif /* DPT_RUNTIME_H */

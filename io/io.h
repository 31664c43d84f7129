/* io.h — dpt's HDF5 datasets (and, later, checkpoints): the whole public surface of io/.
 *
 * Dataset format (documented in README.md): one HDF5 file with
 *   /train/x  [N, ...]  uint8 or float32 samples (any trailing shape; flattened to features)
 *   /train/y  [N] integer class labels (any integer type), or [N] / [N, k] float32 targets
 *   /test/x, /test/y    optional, same layout
 * Attributes on /train/x (and /test/x), all optional:
 *   scale (double, default 1), offset (double, default 0): a sample is used as x*scale+offset
 * Attribute on the file root, optional:
 *   num_classes (int): number of classes for integer labels (default: max label + 1)
 *
 * Invariants:
 * - No MPI collectives: every rank opens the file on its own, read-only, and reads only the
 *   samples it is asked for (HDF5 hyperslab selections), unless the split fits the cache budget,
 *   in which case it is read once and served from memory, kept in its stored type (uint8 stays
 *   uint8, 1 byte a value) and converted to float (x*scale+offset) as each batch is read.
 * - Errors come back as negative DPT_E* codes (base.h) with a message naming the file, the dataset
 *   and what was expected. Nothing is printed.
 * - Files are written atomically: to "<path>.tmp.<pid>", then renamed over <path>, so a failed
 *   import never leaves a partial file where a good one was.
 */
#ifndef DPT_IO_H
#define DPT_IO_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h" /* the error space (DPT_E*, DPT_ERR_LEN) */

typedef enum { DPT_SPLIT_TRAIN, DPT_SPLIT_TEST } dpt_split;

/* Shape and type of one split, as read from the file. */
typedef struct {
  int64_t n;            /* samples */
  int64_t features;     /* product of x's dims after the first (the flattened sample) */
  int x_rank;           /* rank of x, including N */
  int64_t x_dims[8];    /* x's dims */
  dpt_shape sample;     /* the sample's shape: x's dims after N ([28, 28] for [N, 28, 28]) */
  int x_u8;             /* 1: x stored as uint8, 0: float32 */
  int y_labels;         /* 1: y holds integer class labels, 0: float targets */
  int64_t y_width;      /* values per sample in y (1 for labels) */
  double scale, offset; /* x is used as x*scale + offset */
  int64_t num_classes;  /* labels: the root attribute, else max label + 1; targets: 0 */
  int64_t label_min, label_max; /* labels only: range found in the file */
} dpt_split_info;

typedef struct dpt_dataset dpt_dataset;

/* Opens path read-only and checks its layout: /train/x and /train/y present, same N, supported
 * types; /test likewise if present. A split whose x, at its stored size (1 byte a value for
 * uint8, 4 for float32), fits in cache_bytes is read whole into memory now (one copy per
 * process) and converted to float as batches are read; others are read per batch. Not
 * collective. */
int dpt_io_dataset_open(const char *path, size_t cache_bytes, dpt_dataset **out, char *err,
                        size_t errlen);
void dpt_io_dataset_close(dpt_dataset *ds);

/* Fills *info for a split; DPT_ENOENT if the file has no such split. */
int dpt_io_dataset_info(const dpt_dataset *ds, dpt_split split, dpt_split_info *info);

/* 1 if that split is served from memory. */
int dpt_io_dataset_cached(const dpt_dataset *ds, dpt_split split);

/* Reads samples idx[0..count) (any order, repeats allowed, each < n) of a split:
 * x[count * features] as float (x*scale+offset applied), and either labels[count] (int32, for
 * label datasets; y may be NULL) or y[count * y_width] (targets; labels may be NULL).
 * Out-of-range indices are DPT_EINVAL, and so is a NaN or Inf in a float32 x (the message
 * names the split, the sample and the feature). Not collective. */
int dpt_io_dataset_read(dpt_dataset *ds, dpt_split split, const int64_t *idx, size_t count,
                        float *x, int32_t *labels, float *y, char *err, size_t errlen);

/* Converts MNIST-format idx files (gzipped or not, detected by content) into a dataset file:
 * train_x/train_y are required, test_x/test_y may be NULL. x is stored as uint8 [N, rows, cols]
 * with scale/offset attributes that standardise it (mean 0, std 1 over the training set), y as
 * uint8 labels, num_classes = max label + 1. Written atomically to out. */
int dpt_io_import_idx(const char *train_x, const char *train_y, const char *test_x,
                      const char *test_y, const char *out, char *err, size_t errlen);

/* Writes a generated classification dataset (float32 x [n, features], int32 labels): classes
 * are Gaussian clusters around random centres, drawn from seed, so it is learnable. Atomic. */
int dpt_io_synth(const char *out, int64_t n_train, int64_t n_test, int64_t features,
                 int64_t classes, uint64_t seed, char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------ */
/* --- checkpoints ---                                                                          */
/* ------------------------------------------------------------------------------------------ */
/* One HDF5 file per checkpoint, whose layout depends on neither W nor the ZeRO stage:
 *   /model/<tensor>              float32, the tensor's shape, any rank 1..DPT_MAX_RANK
 *                                (PyTorch layout and names)
 *   /optim/<state>/<tensor>      float32, per-element optimizer state, the tensor's shape
 *   /buffers/<name>              float32: the model's buffers (BatchNorm running statistics,
 *                                torch's state_dict names), present when the model has any
 *   root attributes              format_version, dpt_version, text entries ("solver", "sched",
 *                                "model", hyperparameters "hp.<name>"), scalar entries
 *                                ("train.step", "solver.step", "sched.lr", ...), and
 *                                meta_checksum: a digest of all the others (see ckpt.c)
 *   /checksum/<group>/<name>     uint64 [blocks, 2]: per block of 65536 elements, the sum of
 *                                the floats' 32-bit words and the sum of (index+1)*word, mod 2^64
 * Datasets are contiguous; readers verify every checksum block they read. Writing is collective
 * (MPI-IO): each rank writes the range of the flat buffer it owns into the global datasets. */

typedef struct {
  const char *name, *value;
} dpt_ckpt_text;

/* What a checkpoint holds, and where this rank's part of it lives in memory. */
typedef struct {
  int ntensors;
  const dpt_tensor *tensors; /* base.h: any rank 1..DPT_MAX_RANK, names of any length */
  size_t nparams;
  size_t lo, len; /* this rank's range [lo, lo+len) of the flat buffer */
  float *params;  /* the flat buffer (nparams); only [lo, lo+len) is written or read */
  int nvec;       /* per-element state vectors, each float[len] covering [lo, lo+len) */
  const char *const *vec_names;
  float *const *vecs;
  int nbuffers; /* the model's buffers: the same on every rank, rank 0 writes them all and */
  const dpt_tensor *buffers; /* every rank reads them all (also with params_only); offsets */
  float *buffer_data;        /* into buffer_data, nbuffer_floats of them */
  size_t nbuffer_floats;
  int nscalar; /* doubles, the same on every rank */
  const char *const *scalar_names;
  double *scalars;
  int ntext; /* text entries; "solver" and "model" are checked on read */
  const dpt_ckpt_text *texts;
  void (*written)(void *); /* optional: called on this rank once its data is written, before */
  void *written_ctx;       /* the file is closed (tests use it to crash mid-write) */
} dpt_ckpt_view;

/* Writes the checkpoint to path atomically: into "<path>.tmp", fsync, rename. Collective over
 * comm; the ranges of the ranks must tile [0, nparams). Rank 0 first claims the space the file
 * needs (a full disk or no inodes left fails here, with the OS's error, before HDF5 opens it;
 * a "<path>.tmp" that is not a regular file is refused). On failure every rank returns the
 * same code, the temporary file is removed and any file at path is untouched. */
int dpt_ckpt_write(const char *path, MPI_Comm comm, const dpt_ckpt_view *v, char *err,
                   size_t errlen);

/* Reads path into v: checks that every tensor exists with its shape, that the "solver" and
 * "model" texts match v's, reads params[lo, lo+len) and, unless params_only, every state vector
 * and scalar named in v. Not collective (each rank reads its range). Errors name the file, the
 * dataset and what was expected; a checksum mismatch is reported as corruption. */
int dpt_ckpt_read(const char *path, const dpt_ckpt_view *v, int params_only, char *err,
                  size_t errlen);

/* Verifies the root attribute meta_checksum: a digest over every other root attribute (name
 * and value), so that a changed position, state or configuration value is caught. Not
 * collective. DPT_EINVAL with a message naming path if it is missing or does not match. */
int dpt_ckpt_verify_meta(const char *path, char *err, size_t errlen);

/* Walks a checkpoint for a summary: calls fn(ctx, name, value) for every root attribute
 * (texts and scalars, in file order; meta_checksum's value ends in "ok" or "FAILED") and for
 * every dataset ("/model/fc1.weight" -> "[256, 784] checksum ok" or "... checksum FAILED"; any
 * rank: "[8, 3, 5, 5] ..."), reading each in full to verify its block checksums. Returns
 * DPT_EINVAL if the file cannot be read, is not a regular file, or a checksum (metadata or
 * data) fails. */
typedef void (*dpt_ckpt_item_fn)(void *ctx, const char *name, const char *value);
int dpt_ckpt_describe(const char *path, dpt_ckpt_item_fn fn, void *ctx, char *err, size_t errlen);

/* Calls fn(ctx, name, value) for every root attribute of a checkpoint that holds one text
 * (values beyond 255 bytes cut), in name order. DPT_EINVAL if the file cannot be opened. */
int dpt_ckpt_texts(const char *path, dpt_ckpt_item_fn fn, void *ctx, char *err, size_t errlen);

/* Text entry `name` of a checkpoint, for `dpt ckpt inspect`-like summaries. */
int dpt_ckpt_text_get(const char *path, const char *name, char *out, size_t outlen);

#endif /* DPT_IO_H */

/* base.h — what every dpt module shares: the one error space, the tensor description, one
 * parser for numbers and booleans, atomic file writes, and small helpers. The whole public surface
 * of runtime/base/, the sub-library below optim, io, comm and runtime (it lives in runtime/ because
 * the top level is fixed; it depends on nothing but libc).
 *
 * Invariants:
 * - Every dpt function that can fail returns 0 (DPT_OK) or one of the negative codes below,
 *   and fills the caller's message buffer (DPT_ERR_LEN bytes is always enough) with what went
 *   wrong and which input caused it. The codes are one space across modules: a code passes up
 *   through every layer unchanged, with no mapping at the boundaries.
 * - Nothing here prints, exits or aborts.
 */
#ifndef DPT_BASE_H
#define DPT_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A message buffer of this size holds any dpt error message. */
#define DPT_ERR_LEN 512

/* --- the error space ---
 * X(NAME, value, description): one table for the enum, dpt_strerror and dpt_err_name, so a
 * new code is one line here. Values are stable (they may be stored or compared by users). */
#define DPT_ERRNO_MAP(X)                                                                           \
  X(EINVAL, -1, "invalid input (a flag, a config value, a file, a shape)")                         \
  X(EIO, -2, "a file could not be read or written")                                                \
  X(EMPI, -3, "an MPI call failed; peers may not be trusted")                                      \
  X(ENOMEM, -4, "out of memory")                                                                   \
  X(ENONFINITE, -5, "a NaN or Inf reached the loss or the gradients")                              \
  X(ESTOPPED, -6, "stopped on request with a checkpoint written")                                  \
  X(ENOENT, -7, "an optional part is absent")                                                      \
  X(ESTATE, -8, "optimizer or scheduler state of an unknown name or the wrong shape")

enum {
  DPT_OK = 0,
#define DPT_ERRNO_ENUM(name, value, desc) DPT_##name = (value),
  DPT_ERRNO_MAP(DPT_ERRNO_ENUM)
#undef DPT_ERRNO_ENUM
};

/* Writes the message (printf format) into err[errlen] (if err is not NULL) and returns code:
 * `return dpt_errf(err, errlen, DPT_EINVAL, "layer %s: ...", name);`. */
int dpt_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A one-line description of code rc ("success" for 0, "unknown error" for a value not in the
 * table). The string is static. */
const char *dpt_strerror(int rc);

/* The code's name without the prefix ("EINVAL"), or "OK", or "unknown". Static. */
const char *dpt_err_name(int rc);

/* --- parsing: one vocabulary for every option (parse.c) ---
 * Used by the solvers', the schedulers' and the trainer's options alike, from the command line
 * and from config files, so a value means the same wherever it is given. Blanks around the
 * text are ignored; anything else left over makes the text malformed. Each returns 0, or
 * DPT_EINVAL without touching *out. */

/* 1, true, yes, on / 0, false, no, off (any case). */
int dpt_parse_bool(const char *text, int *out);
/* A finite number as strtod reads it ("3", "-1.5e-3", "0x1p-4"); inf and nan are rejected, and
 * so is a value that overflows a double. */
int dpt_parse_double(const char *text, double *out);
/* A whole number: decimal digits with an optional sign, or a number in another form that is
 * whole and exactly representable ("1e6"); within long's range. */
int dpt_parse_long(const char *text, long *out);

/* Writes v in the shortest form dpt_parse_double reads back to exactly v ("0.001", "1e-08",
 * "0.30000000000000004"), for listings and configuration records that must round-trip. */
void dpt_format_double(char *buf, size_t len, double v);

/* --- files (file.c) --- */

/* mkdir -p path; on failure the message names `what` (the option or file the path came from)
 * and the OS error. */
int dpt_mkdirs(const char *path, const char *what, char *err, size_t errlen);
/* mkdir -p of the directory part of path (nothing when it has none). */
int dpt_mkdirs_parent(const char *path, const char *what, char *err, size_t errlen);

/* The commit of a file written in full to tmp by any means (stdio, HDF5): fsync tmp, rename it
 * over path, fsync the directory, so after a crash path is either the old file or the whole new
 * one. On failure tmp is removed, path is untouched, and the message names path and the OS
 * error (ENOSPC as "No space left on device"). */
int dpt_file_commit(const char *tmp, const char *path, char *err, size_t errlen);

/* Refuses (DPT_EINVAL, naming `what` and path) a path that exists and is not a regular file
 * (a FIFO would block an open for ever, a directory cannot be read as a file). A path that
 * does not exist is fine (0): the caller's open reports it. */
int dpt_check_regular(const char *path, const char *what, char *err, size_t errlen);

/* A text file written atomically: dpt_afile_open creates "<path>.tmp"; the caller writes to
 * a.f; dpt_afile_commit flushes and commits it (dpt_file_commit), or on any write error removes
 * the temporary file and reports path with the OS error; dpt_afile_abort removes it unasked.
 * Paths are copied (no length limit beyond memory). */
typedef struct {
  FILE *f;
  char *path, *tmp;
} dpt_afile;
int dpt_afile_open(dpt_afile *a, const char *path, char *err, size_t errlen);
int dpt_afile_commit(dpt_afile *a, char *err, size_t errlen);
void dpt_afile_abort(dpt_afile *a);

/* --- small helpers (misc.c) --- */

/* splitmix64 (Steele, Lea, Flood 2014): advances *state and returns the next value. The seed
 * expander of every generator in dpt, so streams are the same on every platform. */
uint64_t dpt_splitmix64(uint64_t *state);

/* Writes s as the body of a JSON string: quotes, backslashes and control characters escaped
 * (bytes >= 0x80 are passed through, so UTF-8 stays UTF-8). */
void dpt_json_escape(FILE *f, const char *s);

/* --- tensors ---
 * The one description of a tensor, shared by models (runtime, layers) and checkpoints (io):
 * a named, row-major view of a flat fp32 buffer. Plain data; whoever fills it owns the name.
 * A model has any number of them (its table is the model's own array), names have any length,
 * and ranks go up to DPT_MAX_RANK (a conv weight [out, in, kh, kw] is rank 4). */
#define DPT_MAX_RANK 8

typedef struct {
  const char *name;           /* state_dict name, e.g. "fc2.weight"; owned by the tensor's owner */
  int rank;                   /* 1 .. DPT_MAX_RANK (dims[rank..] are unused, keep them 0) */
  int64_t dims[DPT_MAX_RANK]; /* PyTorch's shape: [out, in] for a Linear weight, [out] a bias */
  size_t offset;              /* first element in the flat buffer */
  size_t numel;               /* product of dims */
} dpt_tensor;

/* A shape without a name: a dataset's sample ([28, 28] for [N, 28, 28] images, dims after N),
 * a layer's input or output per sample. rank 0 is a single value. */
typedef struct {
  int rank; /* 0 .. DPT_MAX_RANK */
  int64_t dims[DPT_MAX_RANK];
} dpt_shape;

#endif /* DPT_BASE_H */

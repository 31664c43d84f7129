/* base.h — what every dpt module shares: the one error space and the tensor description. The whole public surface of
 * runtime/base/, the sub-library below optim, io, comm and runtime (it lives in runtime/
 * because the top level is fixed; it depends on nothing but libc).
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

/* A message buffer of this size holds any dpt error message. */
#define DPT_ERR_LEN 512

/* --- the error space ---
 * X(NAME, value, description): one table for the enum, dpt_strerror and dpt_err_name, so a
 * new code is one line here. Values are stable (they may be stored or compared by users). */
#define DPT_ERRNO_MAP(X)                                                                       \
  X(EINVAL, -1, "invalid input (a flag, a config value, a file, a shape)")                     \
  X(EIO, -2, "a file could not be read or written")                                            \
  X(EMPI, -3, "an MPI call failed; peers may not be trusted")                                  \
  X(ENOMEM, -4, "out of memory")                                                               \
  X(ENONFINITE, -5, "a NaN or Inf reached the loss or the gradients")                          \
  X(ESTOPPED, -6, "stopped on request with a checkpoint written")                              \
  X(ENOENT, -7, "an optional part is absent")                                                  \
  X(ESTATE, -8, "optimizer or scheduler state of an unknown name or the wrong shape")

enum {
  DPT_OK = 0,
#define DPT_ERRNO_ENUM(name, value, desc) DPT_##name = (value),
  DPT_ERRNO_MAP(DPT_ERRNO_ENUM)
#undef DPT_ERRNO_ENUM
};

/* A one-line description of code rc ("success" for 0, "unknown error" for a value not in the
 * table). The string is static. */
const char *dpt_strerror(int rc);

/* The code's name without the prefix ("EINVAL"), or "OK", or "unknown". Static. */
const char *dpt_err_name(int rc);

/* --- tensors ---
 * The one description of a tensor, shared by models (runtime, layers) and checkpoints (io):
 * a named, row-major view of a flat fp32 buffer. Plain data; whoever fills it owns the name.
 * A model has any number of them (its table is the model's own array), names have any length,
 * and ranks go up to DPT_MAX_RANK (a conv weight [out, in, kh, kw] is rank 4). */
#define DPT_MAX_RANK 8

typedef struct {
  const char *name;            /* state_dict name, e.g. "fc2.weight"; owned by the tensor's owner */
  int rank;                    /* 1 .. DPT_MAX_RANK (dims[rank..] are unused, keep them 0) */
  int64_t dims[DPT_MAX_RANK];  /* PyTorch's shape: [out, in] for a Linear weight, [out] a bias */
  size_t offset;               /* first element in the flat buffer */
  size_t numel;                /* product of dims */
} dpt_tensor;

/* A shape without a name: a dataset's sample ([28, 28] for [N, 28, 28] images, dims after N),
 * a layer's input or output per sample. rank 0 is a single value. */
typedef struct {
  int rank;                    /* 0 .. DPT_MAX_RANK */
  int64_t dims[DPT_MAX_RANK];
} dpt_shape;

#endif /* DPT_BASE_H */

/* io_internal.h — helpers shared by the io/ sources only (not part of the public io.h):
 * error formatting, silencing HDF5's automatic error stack printing, and the atomic dataset
 * writer used by dpt_io_import_idx and dpt_io_synth.
 *
 * Invariants:
 * - Every function here that can fail returns a negative DPT_E* code (base.h) and fills err.
 * - A writer writes "<out>.tmp.<pid>" only; <out> is touched solely by the final rename() in
 *   dpt_io__writer_commit. dpt_io__writer_abort closes and removes the tmp file.
 * - HDF5 handles start as H5I_INVALID_HID and are closed in reverse order of opening.
 */
#ifndef DPT_IO_INTERNAL_H
#define DPT_IO_INTERNAL_H

#include <hdf5.h>

#include "io.h"

#if defined(__GNUC__)
#define DPT_IO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DPT_IO_PRINTF(a, b)
#endif

/* snprintf into err (when err != NULL and errlen > 0); returns code. */
int dpt_io__errf(char *err, size_t errlen, int code, const char *fmt, ...) DPT_IO_PRINTF(4, 5);

/* 0 if path is a regular file; else a message naming it as `what` ("dataset", "checkpoint")
 * and what it is instead (a FIFO, a directory, ...), or why it cannot be looked at. Called
 * before anything opens path, so that a FIFO is refused instead of blocking the open. */
int dpt_io__regular(const char *path, const char *what, char *err, size_t errlen);

/* Why a write into file's directory failed, as the OS puts it, when its file system is full
 * (no blocks or no inodes left): strerror(ENOSPC); else "". HDF5 does not pass errno on. */
const char *dpt_io__full(const char *file);

/* Saved state of HDF5's automatic error printing for the current thread. */
typedef struct {
  H5E_auto2_t func;
  void *data;
} dpt_io__quiet;

void dpt_io__quiet_begin(dpt_io__quiet *q);     /* turns automatic printing off */
void dpt_io__quiet_end(const dpt_io__quiet *q); /* restores what begin saved */

/* Atomic writer of a dataset file. */
typedef struct {
  hid_t file;
  const char *out;
  char *tmp; /* "<out>.tmp.<pid>", malloc'ed */
} dpt_io__writer;

/* Creates the parent directory of out if missing, then the tmp file. */
int dpt_io__writer_open(dpt_io__writer *w, const char *out, char *err, size_t errlen);

/* One split ("train" or "test"): group /<split> with x (rank xrank, dims xdims, type xtype,
 * attributes scale/offset as double) and y [xdims[0]] of type ytype. Types are native memory
 * types (H5T_NATIVE_UINT8, H5T_NATIVE_FLOAT, H5T_NATIVE_INT32), used for the file too. */
typedef struct {
  const char *name;
  hid_t xtype;
  int xrank;
  const hsize_t *xdims;
  const void *x;
  hid_t ytype;
  const void *y;
  double scale, offset;
} dpt_io__split_data;

int dpt_io__write_split(dpt_io__writer *w, const dpt_io__split_data *s, char *err, size_t errlen);

/* Writes the root attribute num_classes, closes the tmp file and renames it over out. On
 * failure the tmp file is removed and out is left as it was. */
int dpt_io__writer_commit(dpt_io__writer *w, int64_t num_classes, char *err, size_t errlen);

/* Closes and removes the tmp file (safe after a failed open or commit, and twice). */
void dpt_io__writer_abort(dpt_io__writer *w);

#endif /* DPT_IO_INTERNAL_H */

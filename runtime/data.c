/* data.c — dataset tools behind `dpt data`: find the idx files of an MNIST-style directory and
 * import them, or generate a synthetic dataset. Thin: the formats live in io/. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "runtime.h"

/* dir/name or dir/name.gz, whichever exists; "" if neither. */
static void find(const char *dir, const char *name, char *path, size_t len) {
  snprintf(path, len, "%s/%s", dir, name);
  if (access(path, R_OK) == 0) return;
  snprintf(path, len, "%s/%s.gz", dir, name);
  if (access(path, R_OK) == 0) return;
  path[0] = 0;
}

int dpt_data_import_idx(const char *dir, const char *out, char *err, size_t errlen) {
  char tx[1100], ty[1100], vx[1100], vy[1100];
  find(dir, "train-images-idx3-ubyte", tx, sizeof tx);
  find(dir, "train-labels-idx1-ubyte", ty, sizeof ty);
  find(dir, "t10k-images-idx3-ubyte", vx, sizeof vx);
  find(dir, "t10k-labels-idx1-ubyte", vy, sizeof vy);
  if (!tx[0] || !ty[0]) {
    snprintf(err, errlen,
             "--dir %s: no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] there",
             dir);
    return DPT_EINVAL;
  }
  int has_test = vx[0] && vy[0];
  char ioerr[DPT_ERR_LEN];
  int rc = dpt_io_import_idx(tx, ty, has_test ? vx : NULL, has_test ? vy : NULL, out, ioerr,
                             sizeof ioerr);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return rc;
  }
  return DPT_OK;
}

int dpt_ckpt_inspect(const char *path, void (*fn)(void *ctx, const char *name, const char *value),
                     void *ctx, char *err, size_t errlen) {
  char ioerr[DPT_ERR_LEN];
  int rc = dpt_ckpt_describe(path, fn, ctx, ioerr, sizeof ioerr);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return DPT_EINVAL;
  }
  return DPT_OK;
}

int dpt_data_synth(const char *out, long n_train, long n_test, long features, long classes,
                   long seed, char *err, size_t errlen) {
  if (n_train < 1 || n_test < 0 || features < 1 || classes < 2) {
    snprintf(err, errlen,
             "synth: --train %ld --test %ld --features %ld --classes %ld (expected train >= 1, "
             "test >= 0, features >= 1, classes >= 2)",
             n_train, n_test, features, classes);
    return DPT_EINVAL;
  }
  char ioerr[DPT_ERR_LEN];
  int rc =
      dpt_io_synth(out, n_train, n_test, features, classes, (uint64_t)seed, ioerr, sizeof ioerr);
  if (rc) {
    snprintf(err, errlen, "%s", ioerr);
    return rc;
  }
  return DPT_OK;
}

int dpt_data_import_text(const char *const *files, int nfiles, const char *out, double val_fraction,
                         const char *vocab, int64_t *counts, char *err, size_t errlen) {
  char ioerr[DPT_ERR_LEN];
  dpt_text_summary sum = {0};
  int rc = dpt_io_import_text(files, nfiles, out, val_fraction, vocab, &sum, ioerr, sizeof ioerr);
  if (rc) snprintf(err, errlen, "%s", ioerr);
  if (!rc && counts)
    counts[0] = sum.tokens, counts[1] = sum.train, counts[2] = sum.test, counts[3] = sum.vocab;
  return rc;
}

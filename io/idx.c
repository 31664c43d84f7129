/* idx.c — dpt_io_import_idx: converts MNIST-format idx files (images magic 0x00000803 with dims
 * [N, rows, cols], labels magic 0x00000801 with dims [N], all uint8, big-endian header) into a
 * dpt dataset file.
 *
 * Invariants:
 * - Files may be gzipped or plain (detected by the gzip magic 1f 8b); both are read through
 *   zlib's gzread. A file must hold exactly the bytes its header announces.
 * - scale/offset on every x standardise the TRAINING pixels (mean 0, std 1, computed in double
 *   from a 256-bin histogram, so exactly); the test split uses the same values.
 * - num_classes = max training label + 1; a test label outside that range is an error, so the
 *   written file always opens.
 * - The output is written atomically (io_internal.h writer): on failure <out> is untouched.
 */
#include "io_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
  int64_t n, rows, cols; /* rows = cols = 1 for labels */
  uint8_t *data;         /* [n * rows * cols] */
} idx_array;

/* 1 if the file starts with the gzip magic, 0 if not, -1 if it cannot be opened. */
static int is_gzip(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char m[2] = {0, 0};
  size_t got = fread(m, 1, 2, f);
  fclose(f);
  return got == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

/* Reads exactly len bytes; returns bytes read (< len at end of data) or -1 on a zlib error. */
static int64_t read_full(gzFile g, void *buf, uint64_t len) {
  uint64_t done = 0;
  while (done < len) {
    uint64_t want = len - done > (1u << 30) ? (1u << 30) : len - done;
    int k = gzread(g, (char *)buf + done, (unsigned)want);
    if (k < 0) return -1;
    if (k == 0) break;
    done += (uint64_t)k;
  }
  return (int64_t)done;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Parses the header: magic, then the dims; fills a->n/rows/cols. */
static int read_header(gzFile g, const char *path, const char *what, int images, idx_array *a,
                       char *err, size_t errlen) {
  unsigned char h[16];
  int ndims = images ? 3 : 1;
  size_t hlen = 4 + 4 * (size_t)ndims;
  if (read_full(g, h, hlen) != (int64_t)hlen)
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "'%s': truncated idx header (expected %s, %zu header bytes)", path, what,
                        hlen);
  uint32_t magic = be32(h), want = images ? 0x00000803u : 0x00000801u;
  if (magic != want)
    return dpt_io__errf(err, errlen, DPT_EINVAL, "'%s': idx magic 0x%08x (expected 0x%08x for %s)",
                        path, magic, want, what);
  a->n = be32(h + 4);
  a->rows = images ? be32(h + 8) : 1;
  a->cols = images ? be32(h + 12) : 1;
  if (a->n == 0 || a->rows == 0 || a->cols == 0 || a->rows > (1 << 24) || a->cols > (1 << 24) ||
      a->rows * a->cols > (1 << 24))
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "'%s': idx dims %lld x %lld x %lld (expected non-empty %s)", path,
                        (long long)a->n, (long long)a->rows, (long long)a->cols, what);
  return DPT_OK;
}

/* Reads the payload, which must be exactly n*rows*cols bytes. */
static int read_payload(gzFile g, const char *path, int gz, idx_array *a, char *err,
                        size_t errlen) {
  uint64_t len = (uint64_t)a->n * (uint64_t)a->rows * (uint64_t)a->cols;
  if (len > SIZE_MAX || !(a->data = malloc((size_t)len)))
    return dpt_io__errf(err, errlen, DPT_ENOMEM, "'%s': out of memory for %llu bytes", path,
                        (unsigned long long)len);
  int64_t got = read_full(g, a->data, len);
  int zerr = 0;
  if (got < 0) {
    const char *msg = gzerror(g, &zerr);
    return dpt_io__errf(err, errlen, DPT_EINVAL, "'%s': %s data is corrupt: %s", path,
                        gz ? "gzip" : "idx", msg ? msg : "read error");
  }
  if ((uint64_t)got < len)
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "'%s': truncated: header announces %llu data bytes but the file has %lld",
                        path, (unsigned long long)len, (long long)got);
  unsigned char extra;
  if (read_full(g, &extra, 1) != 0)
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "'%s': more data than the header announces (%llu bytes)", path,
                        (unsigned long long)len);
  return DPT_OK;
}

/* Reads one idx file (images: [N, rows, cols]; else labels [N]). */
static int read_idx(const char *path, int images, idx_array *a, char *err, size_t errlen) {
  const char *what = images ? "uint8 images [N, rows, cols]" : "uint8 labels [N]";
  a->data = NULL;
  int gz = is_gzip(path);
  if (gz < 0)
    return dpt_io__errf(err, errlen, DPT_EIO, "cannot open '%s': %s", path, strerror(errno));
  gzFile g = gzopen(path, "rb");
  if (!g) return dpt_io__errf(err, errlen, DPT_EIO, "cannot open '%s'", path);
  int rc = read_header(g, path, what, images, a, err, errlen);
  if (rc == DPT_OK) rc = read_payload(g, path, gz, a, err, errlen);
  gzclose(g);
  if (rc != DPT_OK) {
    free(a->data);
    a->data = NULL;
  }
  return rc;
}

typedef struct {
  idx_array x, y;
  int present;
} idx_split;

static int read_split(const char *xp, const char *yp, idx_split *s, char *err, size_t errlen) {
  int rc = read_idx(xp, 1, &s->x, err, errlen);
  if (rc == DPT_OK) rc = read_idx(yp, 0, &s->y, err, errlen);
  if (rc == DPT_OK && s->x.n != s->y.n)
    rc = dpt_io__errf(err, errlen, DPT_EINVAL, "'%s' has %lld labels but '%s' has %lld images", yp,
                      (long long)s->y.n, xp, (long long)s->x.n);
  s->present = rc == DPT_OK;
  return rc;
}

/* scale/offset such that x*scale+offset has mean 0 and std 1 over the training pixels. */
static void standardise(const idx_array *x, double *scale, double *offset) {
  uint64_t hist[256] = {0};
  size_t len = (size_t)(x->n * x->rows * x->cols);
  for (size_t i = 0; i < len; i++) hist[x->data[i]]++;
  double mean = 0, var = 0;
  for (int v = 0; v < 256; v++) mean += (double)hist[v] * v;
  mean /= (double)len;
  for (int v = 0; v < 256; v++) var += (double)hist[v] * (v - mean) * (v - mean);
  double sd = sqrt(var / (double)len);
  *scale = sd > 0 ? 1.0 / sd : 1.0;
  *offset = -mean * *scale;
}

static uint8_t max_label(const idx_array *y) {
  uint8_t m = 0;
  for (int64_t i = 0; i < y->n; i++)
    if (y->data[i] > m) m = y->data[i];
  return m;
}

static int check_test_labels(const idx_split *test, const char *path, int64_t num_classes,
                             char *err, size_t errlen) {
  for (int64_t i = 0; i < test->y.n; i++)
    if (test->y.data[i] >= num_classes)
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "'%s': label %d at sample %lld is >= %lld (max training label + 1)", path,
                          test->y.data[i], (long long)i, (long long)num_classes);
  return DPT_OK;
}

static int write_one(dpt_io__writer *w, const char *name, const idx_split *s, double scale,
                     double offset, char *err, size_t errlen) {
  hsize_t dims[3] = {(hsize_t)s->x.n, (hsize_t)s->x.rows, (hsize_t)s->x.cols};
  dpt_io__split_data d = {
      name, H5T_NATIVE_UINT8, 3, dims, s->x.data, H5T_NATIVE_UINT8, s->y.data, scale, offset};
  return dpt_io__write_split(w, &d, err, errlen);
}

static int write_dataset(const char *out, const idx_split *train, const idx_split *test, char *err,
                         size_t errlen) {
  double scale, offset;
  standardise(&train->x, &scale, &offset);
  int64_t num_classes = (int64_t)max_label(&train->y) + 1;
  dpt_io__writer w;
  int rc = dpt_io__writer_open(&w, out, err, errlen);
  if (rc == DPT_OK) rc = write_one(&w, "train", train, scale, offset, err, errlen);
  if (rc == DPT_OK && test->present) rc = write_one(&w, "test", test, scale, offset, err, errlen);
  if (rc == DPT_OK) rc = dpt_io__writer_commit(&w, num_classes, err, errlen);
  if (rc != DPT_OK) dpt_io__writer_abort(&w);
  return rc;
}

int dpt_io_import_idx(const char *train_x, const char *train_y, const char *test_x,
                      const char *test_y, const char *out, char *err, size_t errlen) {
  if (!train_x || !train_y || !out || !*out || (!test_x) != (!test_y))
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "dpt_io_import_idx: train_x, train_y and out are required; test_x and "
                        "test_y go together");
  idx_split train = {{0, 0, 0, NULL}, {0, 0, 0, NULL}, 0}, test = train;
  int rc = read_split(train_x, train_y, &train, err, errlen);
  if (rc == DPT_OK && test_x) rc = read_split(test_x, test_y, &test, err, errlen);
  if (rc == DPT_OK && test.present)
    rc = check_test_labels(&test, test_y, (int64_t)max_label(&train.y) + 1, err, errlen);
  if (rc == DPT_OK) {
    dpt_io__quiet q;
    dpt_io__quiet_begin(&q);
    rc = write_dataset(out, &train, &test, err, errlen);
    dpt_io__quiet_end(&q);
  }
  free(test.y.data);
  free(test.x.data);
  free(train.y.data);
  free(train.x.data);
  return rc;
}

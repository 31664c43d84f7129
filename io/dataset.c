/* dataset.c — opening, describing and reading dpt's HDF5 datasets (format: see io.h and
 * README 'Dataset format'), plus the small helpers shared by the writers (io_internal.h).
 *
 * Invariants:
 * - Every rank opens the file on its own, read-only; no MPI collectives are used.
 * - Labels (or float targets) of every present split are always held in memory. x is held in
 *   memory iff its stored size, n*features*(1 for uint8, 4 for float32), fits cache_bytes;
 *   otherwise the file and /<split>/x stay open and reads select hyperslabs.
 * - The cache keeps the stored element size: uint8 stays uint8 (a quarter of the floats) and is
 *   converted row by row when a batch is read; float32 is converted once when cached (same
 *   size) and copied when read.
 * - Every path converts a stored value v with to_float(v, scale, offset) =
 *   (float)(v*scale+offset) computed in double (no FMA contraction: -ffp-contract=off), so
 *   cached and uncached reads are bitwise identical.
 * - HDF5's automatic error printing is off during every public call and restored afterwards;
 *   nothing is printed, errors come back as DPT_E* codes (base.h) with a message.
 */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ---- shared helpers (io_internal.h) ------------------------------------------------------- */

int dpt_io__errf(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

int dpt_io__regular(const char *path, const char *what, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st))
    return dpt_io__errf(err, errlen, DPT_EIO, "cannot open %s '%s': %s", what, path,
                        strerror(errno));
  if (S_ISREG(st.st_mode)) return DPT_OK;
  const char *kind = S_ISFIFO(st.st_mode)   ? "a FIFO"
                     : S_ISDIR(st.st_mode)  ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  return dpt_io__errf(err, errlen, DPT_EINVAL, "%s '%s' is %s (expected a regular file)", what,
                      path, kind);
}

const char *dpt_io__full(const char *file) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  struct statvfs vfs;
  if (statvfs(slash ? (dir[0] ? dir : "/") : ".", &vfs)) return "";
  return vfs.f_bavail == 0 || vfs.f_favail == 0 ? strerror(ENOSPC) : "";
}

void dpt_io__quiet_begin(dpt_io__quiet *q) {
  q->func = NULL;
  q->data = NULL;
  if (H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) < 0) q->func = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void dpt_io__quiet_end(const dpt_io__quiet *q) {
  H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* ---- dataset state ------------------------------------------------------------------------ */

typedef struct {
  int64_t idx;
  size_t pos;
} read_req;

typedef struct {
  int present;
  dpt_split_info info;
  hid_t x;         /* open iff present and not cached */
  hid_t xspace;    /* file dataspace of x, reused for hyperslab selections */
  void *xcache;    /* [n * features] when cached: uint8 as stored, or float32 converted */
  int32_t *labels; /* [n] when info.y_labels */
  float *targets;  /* [n * y_width] otherwise */
  void *buf;       /* scratch for uncached reads, in the stored type */
  size_t buf_cap;
  read_req *req;
  size_t req_cap;
  size_t *slot; /* slot[pos]: row of the scratch buffer holding request pos */
  size_t slot_cap;
} split_state;

struct dpt_dataset {
  char *path;
  hid_t file;
  int has_num_classes;
  int64_t num_classes; /* root attribute, when has_num_classes */
  split_state split[2];
};

static const char *split_name(int s) {
  return s == DPT_SPLIT_TRAIN ? "train" : "test";
}
static const char *split_word(int s) {
  return s == DPT_SPLIT_TRAIN ? "training" : "test";
}

/* Formats "<path>: <message>" into err; returns code. */
static int ds_err(const dpt_dataset *ds, char *err, size_t errlen, int code, const char *fmt, ...)
    DPT_IO_PRINTF(5, 6);
static int ds_err(const dpt_dataset *ds, char *err, size_t errlen, int code, const char *fmt, ...) {
  if (!err || errlen == 0) return code;
  int k = snprintf(err, errlen, "%s: ", ds->path);
  if (k < 0 || (size_t)k >= errlen) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
  va_end(ap);
  return code;
}

static float to_float(double v, double scale, double offset) {
  return (float)(v * scale + offset);
}

/* One flat loop per stored type (the type switch stays outside): gcc -O3 vectorises both. Runs
 * on every batch read (batch x features values), so it must stay branch-free per element. */
static void convert_u8(const uint8_t *restrict src, size_t count, double scale, double offset,
                       float *restrict dst) {
  for (size_t i = 0; i < count; i++) dst[i] = to_float(src[i], scale, offset);
}

/* src may equal dst (in-place conversion of the float cache); then restrict is not claimed. */
static void convert_f32(const float *src, size_t count, double scale, double offset, float *dst) {
  for (size_t i = 0; i < count; i++) dst[i] = to_float(src[i], scale, offset);
}

static void convert_row(const void *src, int u8, size_t count, double scale, double offset,
                        float *dst) {
  if (u8)
    convert_u8(src, count, scale, offset, dst);
  else
    convert_f32(src, count, scale, offset, dst);
}

/* Grows *p to hold need bytes (at least 1). */
static int grow(void **p, size_t *cap, size_t need) {
  if (need == 0) need = 1;
  if (*cap >= need) return 0;
  void *q = realloc(*p, need);
  if (!q) return -1;
  *p = q;
  *cap = need;
  return 0;
}

static void type_name(hid_t t, char *buf, size_t len) {
  H5T_class_t c = H5Tget_class(t);
  size_t bits = H5Tget_size(t) * 8;
  if (c == H5T_INTEGER)
    snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
  else if (c == H5T_FLOAT)
    snprintf(buf, len, "float%zu", bits);
  else if (c == H5T_STRING)
    snprintf(buf, len, "string");
  else if (c == H5T_COMPOUND)
    snprintf(buf, len, "compound");
  else if (c == H5T_ENUM)
    snprintf(buf, len, "enum");
  else if (c == H5T_ARRAY)
    snprintf(buf, len, "array");
  else
    snprintf(buf, len, "class %d", (int)c);
}

/* ---- attributes ---------------------------------------------------------------------------- */

/* Reads a numeric scalar (or 1-element) attribute as memtype into v; *found = 0 if absent. */
static int read_scalar_attr(const dpt_dataset *ds, hid_t obj, const char *where, const char *name,
                            hid_t memtype, void *v, int *found, char *err, size_t errlen) {
  *found = 0;
  htri_t ex = H5Aexists(obj, name);
  if (ex < 0)
    return ds_err(ds, err, errlen, DPT_EIO, "%s: cannot query attribute '%s'", where, name);
  if (ex == 0) return DPT_OK;
  int rc = DPT_OK;
  hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID, sp = H5I_INVALID_HID;
  if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 ||
      (sp = H5Aget_space(a)) < 0) {
    rc = ds_err(ds, err, errlen, DPT_EIO, "%s: cannot open attribute '%s'", where, name);
  } else {
    H5T_class_t c = H5Tget_class(t);
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || H5Sget_simple_extent_npoints(sp) != 1)
      rc = ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s: attribute '%s' is not a single number (see README 'Dataset format')", where,
                  name);
    else if (H5Aread(a, memtype, v) < 0)
      rc = ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read attribute '%s'", where, name);
    else
      *found = 1;
  }
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return rc;
}

static int read_num_classes(dpt_dataset *ds, char *err, size_t errlen) {
  int rc = read_scalar_attr(ds, ds->file, "root", "num_classes", H5T_NATIVE_INT64, &ds->num_classes,
                            &ds->has_num_classes, err, errlen);
  if (rc == DPT_OK && ds->has_num_classes && ds->num_classes <= 0)
    rc = ds_err(ds, err, errlen, DPT_EINVAL,
                "root attribute num_classes is %lld (expected a positive number of classes)",
                (long long)ds->num_classes);
  return rc;
}

/* ---- opening one split ------------------------------------------------------------------- */

/* Checks that <obj> (e.g. "/train/x") exists; 1 yes, 0 no, <0 error. */
static int object_exists(hid_t file, const char *group, const char *obj) {
  htri_t g = H5Lexists(file, group, H5P_DEFAULT);
  if (g <= 0) return g < 0 ? -1 : 0;
  htri_t o = H5Lexists(file, obj, H5P_DEFAULT);
  return o < 0 ? 0 : (int)o; /* failure here means /<split> is not a group: treat as absent */
}

/* Reads the shape of dataset d into rank/dims (at most 8 dims). */
static int get_shape(const dpt_dataset *ds, hid_t d, const char *where, int *rank, hsize_t *dims,
                     char *err, size_t errlen) {
  hid_t sp = H5Dget_space(d);
  if (sp < 0) return ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read its dataspace", where);
  int r = H5Sget_simple_extent_ndims(sp);
  int rc = DPT_OK;
  if (r < 1 || r > 8)
    rc = ds_err(ds, err, errlen, DPT_EINVAL, "%s has rank %d (expected 1 to 8 dims, N first)",
                where, r);
  else if (H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
    rc = ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read its dims", where);
  *rank = r;
  H5Sclose(sp);
  return rc;
}

/* Opens /<split>/x, checks type uint8/float32, fills x_* fields, scale/offset. */
static int open_x(dpt_dataset *ds, int s, char *err, size_t errlen) {
  split_state *st = &ds->split[s];
  dpt_split_info *in = &st->info;
  char where[32], tn[32];
  snprintf(where, sizeof where, "/%s/x", split_name(s));
  if ((st->x = H5Dopen2(ds->file, where, H5P_DEFAULT)) < 0)
    return ds_err(ds, err, errlen, DPT_EINVAL, "%s is not a readable dataset", where);
  hid_t t = H5Dget_type(st->x);
  if (t < 0) return ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read its type", where);
  H5T_class_t c = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  int u8 = c == H5T_INTEGER && sz == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
  int f32 = c == H5T_FLOAT && sz == 4;
  type_name(t, tn, sizeof tn);
  H5Tclose(t);
  if (!u8 && !f32)
    return ds_err(ds, err, errlen, DPT_EINVAL, "%s has type %s (expected uint8 or float32)", where,
                  tn);
  in->x_u8 = u8;
  hsize_t dims[8];
  int rc = get_shape(ds, st->x, where, &in->x_rank, dims, err, errlen);
  if (rc < 0) return rc;
  in->n = (int64_t)dims[0];
  in->features = 1;
  in->sample.rank = in->x_rank - 1; /* the sample's shape: dims after N (at most 7 < 8) */
  for (int i = 0; i < in->x_rank; i++) {
    in->x_dims[i] = (int64_t)dims[i];
    if (i > 0) in->sample.dims[i - 1] = (int64_t)dims[i];
    /* HDF5 accepts dims whose product wraps around 2^64 (chunks never written) */
    if (dims[i] > INT64_MAX ||
        (i > 0 && __builtin_mul_overflow(in->features, (int64_t)dims[i], &in->features)))
      return ds_err(ds, err, errlen, DPT_EINVAL,
                    "%s has dims too large to address (a sample or the split exceeds 2^63 "
                    "values)",
                    where);
  }
  uint64_t values;
  if (__builtin_mul_overflow((uint64_t)in->n, (uint64_t)in->features, &values) ||
      values > (uint64_t)INT64_MAX)
    return ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s has %lld samples of %lld values: too many to address", where,
                  (long long)in->n, (long long)in->features);
  if (in->features <= 0)
    return ds_err(ds, err, errlen, DPT_EINVAL, "%s has 0 features per sample", where);
  if ((st->xspace = H5Dget_space(st->x)) < 0)
    return ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read its dataspace", where);
  int found;
  in->scale = 1.0;
  in->offset = 0.0;
  rc = read_scalar_attr(ds, st->x, where, "scale", H5T_NATIVE_DOUBLE, &in->scale, &found, err,
                        errlen);
  if (rc == DPT_OK)
    rc = read_scalar_attr(ds, st->x, where, "offset", H5T_NATIVE_DOUBLE, &in->offset, &found, err,
                          errlen);
  if (rc == DPT_OK && (!isfinite(in->scale) || !isfinite(in->offset)))
    rc = ds_err(ds, err, errlen, DPT_EINVAL,
                "%s: attribute '%s' is %g (expected a finite "
                "number)",
                where, isfinite(in->scale) ? "offset" : "scale",
                isfinite(in->scale) ? in->offset : in->scale);
  return rc;
}

/* Checks labels >= 0 and < num_classes (when given), stores them as int32. */
static int check_labels(dpt_dataset *ds, int s, const int64_t *v, char *err, size_t errlen) {
  split_state *st = &ds->split[s];
  dpt_split_info *in = &st->info;
  const char *nm = split_name(s);
  int64_t lo = 0, hi = -1;
  for (int64_t i = 0; i < in->n; i++) {
    if (v[i] < 0)
      return ds_err(ds, err, errlen, DPT_EINVAL,
                    "/%s/y: label %lld at sample %lld is negative (expected class labels >= 0)", nm,
                    (long long)v[i], (long long)i);
    if (ds->has_num_classes && v[i] >= ds->num_classes)
      return ds_err(ds, err, errlen, DPT_EINVAL,
                    "/%s/y: label %lld at sample %lld is >= num_classes %lld (root attribute)", nm,
                    (long long)v[i], (long long)i, (long long)ds->num_classes);
    if (v[i] > INT32_MAX)
      return ds_err(ds, err, errlen, DPT_EINVAL,
                    "/%s/y: label %lld at sample %lld does not fit in int32", nm, (long long)v[i],
                    (long long)i);
    if (i == 0 || v[i] < lo) lo = v[i];
    if (v[i] > hi) hi = v[i];
    st->labels[i] = (int32_t)v[i];
  }
  in->label_min = in->n > 0 ? lo : 0;
  in->label_max = in->n > 0 ? hi : 0;
  in->num_classes = ds->has_num_classes ? ds->num_classes : hi + 1;
  return DPT_OK;
}

/* Reads integer labels of /<split>/y (open as d) through int64. */
static int read_labels(dpt_dataset *ds, int s, hid_t d, const char *where, char *err,
                       size_t errlen) {
  split_state *st = &ds->split[s];
  size_t n = (size_t)st->info.n;
  int64_t *v = malloc((n ? n : 1) * sizeof *v);
  st->labels = malloc((n ? n : 1) * sizeof *st->labels);
  int rc = DPT_OK;
  if (!v || !st->labels)
    rc = ds_err(ds, err, errlen, DPT_ENOMEM, "%s: out of memory for %zu labels", where, n);
  else if (n > 0 && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
    rc = ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read the labels", where);
  else
    rc = check_labels(ds, s, v, err, errlen);
  free(v);
  return rc;
}

static int read_targets(dpt_dataset *ds, int s, hid_t d, const char *where, char *err,
                        size_t errlen) {
  split_state *st = &ds->split[s];
  size_t total = (size_t)st->info.n * (size_t)st->info.y_width;
  st->targets = malloc((total ? total : 1) * sizeof *st->targets);
  if (!st->targets)
    return ds_err(ds, err, errlen, DPT_ENOMEM, "%s: out of memory for %zu targets", where, total);
  if (total > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->targets) < 0)
    return ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read the targets", where);
  return DPT_OK;
}

/* Checks the type and shape of /<split>/y (open as d) and reads it whole. */
static int load_y(dpt_dataset *ds, int s, hid_t d, char *err, size_t errlen) {
  dpt_split_info *in = &ds->split[s].info;
  char where[32], tn[32];
  snprintf(where, sizeof where, "/%s/y", split_name(s));
  hid_t t = H5Dget_type(d);
  if (t < 0) return ds_err(ds, err, errlen, DPT_EIO, "%s: cannot read its type", where);
  H5T_class_t c = H5Tget_class(t);
  type_name(t, tn, sizeof tn);
  H5Tclose(t);
  if (c != H5T_INTEGER && c != H5T_FLOAT)
    return ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s has type %s (expected integer labels or float32 targets)", where, tn);
  int rank;
  hsize_t dims[8];
  int rc = get_shape(ds, d, where, &rank, dims, err, errlen);
  if (rc < 0) return rc;
  in->y_labels = c == H5T_INTEGER;
  in->y_width = rank == 2 ? (int64_t)dims[1] : 1;
  if (rank > 2 || (in->y_labels && in->y_width != 1) || in->y_width < 1)
    return ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s has an unsupported shape (expected [N] labels or [N] / [N, k] targets)",
                  where);
  if ((int64_t)dims[0] != in->n)
    return ds_err(ds, err, errlen, DPT_EINVAL, "%s has %lld samples but /%s/x has %lld", where,
                  (long long)dims[0], split_name(s), (long long)in->n);
  /* read whole as int64 labels or float targets: the byte count must not wrap (HDF5 accepts
   * dims whose product does, when the chunks are never written) */
  size_t values, bytes;
  if (__builtin_mul_overflow((size_t)in->n, (size_t)in->y_width, &values) ||
      __builtin_mul_overflow(values, sizeof(int64_t), &bytes))
    return ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s has %lld samples of %lld values: too many to address", where,
                  (long long)in->n, (long long)in->y_width);
  if (in->y_labels) return read_labels(ds, s, d, where, err, errlen);
  in->num_classes = 0;
  return read_targets(ds, s, d, where, err, errlen);
}

static int open_y(dpt_dataset *ds, int s, char *err, size_t errlen) {
  char where[32];
  snprintf(where, sizeof where, "/%s/y", split_name(s));
  hid_t d = H5Dopen2(ds->file, where, H5P_DEFAULT);
  if (d < 0) return ds_err(ds, err, errlen, DPT_EINVAL, "%s is not a readable dataset", where);
  int rc = load_y(ds, s, d, err, errlen);
  H5Dclose(d);
  return rc;
}

/* Closes the split's x handles (after caching, or on close). */
static void close_x(split_state *st) {
  if (st->xspace >= 0) H5Sclose(st->xspace);
  if (st->x >= 0) H5Dclose(st->x);
  st->xspace = H5I_INVALID_HID;
  st->x = H5I_INVALID_HID;
}

/* The first non-finite value of rows[0, count) of f floats (converted, as the model sees them):
 * 0 if none, else 1 with its row and column. One pass over each batch read, float32 datasets
 * only (uint8 values are finite, and scale and offset are checked when the file is opened). */
static int find_nonfinite(const float *rows, size_t count, size_t f, size_t *row, size_t *col) {
  for (size_t i = 0; i < count; i++) {
    const float *x = rows + i * f;
    float acc = 0; /* x*0 is NaN iff x is NaN or Inf: one branch per row, not per value */
    for (size_t j = 0; j < f; j++) acc += x[j] * 0.0f;
    if (acc == 0) continue;
    for (size_t j = 0; j < f; j++)
      if (!isfinite(x[j])) {
        *row = i, *col = j;
        return 1;
      }
  }
  return 0;
}

static int nonfinite_error(const dpt_dataset *ds, int s, int64_t sample, size_t col, float v,
                           char *err, size_t errlen) {
  return ds_err(ds, err, errlen, DPT_EINVAL,
                "/%s/x: %s sample %lld holds %s at feature %zu "
                "(input values must be finite)",
                split_name(s), split_word(s), (long long)sample,
                isnan(v) ? "NaN"
                : v > 0  ? "+Inf"
                         : "-Inf",
                col);
}

/* Bytes per value of x as stored in the file (and in the cache). */
static size_t stored_size(const dpt_split_info *in) {
  return in->x_u8 ? 1 : sizeof(float);
}

/* Reads x whole into memory in its stored size, then closes its handles: uint8 is kept as read
 * (converted per batch by dpt_io_dataset_read); float32 is converted in place now, which costs
 * no memory and leaves reads a copy. */
static int cache_x(dpt_dataset *ds, int s, char *err, size_t errlen) {
  split_state *st = &ds->split[s];
  const dpt_split_info *in = &st->info;
  size_t total = (size_t)in->n * (size_t)in->features;
  st->xcache = malloc((total ? total : 1) * stored_size(in));
  if (!st->xcache)
    return ds_err(ds, err, errlen, DPT_ENOMEM, "/%s/x: out of memory caching %zu values",
                  split_name(s), total);
  hid_t mt = in->x_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  int rc = DPT_OK;
  if (total > 0 && H5Dread(st->x, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->xcache) < 0)
    rc = ds_err(ds, err, errlen, DPT_EIO, "/%s/x: cannot read the samples", split_name(s));
  else if (!in->x_u8)
    convert_f32(st->xcache, total, in->scale, in->offset, st->xcache);
  close_x(st);
  return rc;
}

/* The budget counts the stored bytes, not the floats a reader gets: a uint8 split needs a
 * quarter of what it did when the cache held floats (Fashion-MNIST's 60000x784 training images:
 * 47 MB instead of 188 MB), so a split that did not fit before may fit now. */
static int fits_cache(const dpt_split_info *in, size_t cache_bytes) {
  uint64_t cap = cache_bytes / stored_size(in);
  uint64_t n = (uint64_t)in->n, f = (uint64_t)in->features;
  return n == 0 || f <= cap / n;
}

static int open_split(dpt_dataset *ds, int s, size_t cache_bytes, char *err, size_t errlen) {
  const char *nm = split_name(s);
  char group[16], xpath[32], ypath[32];
  snprintf(group, sizeof group, "/%s", nm);
  snprintf(xpath, sizeof xpath, "/%s/x", nm);
  snprintf(ypath, sizeof ypath, "/%s/y", nm);
  htri_t g = H5Lexists(ds->file, group, H5P_DEFAULT);
  if (g < 0) return ds_err(ds, err, errlen, DPT_EIO, "cannot look up %s", group);
  if (g == 0 && s == DPT_SPLIT_TEST) return DPT_OK; /* optional split absent */
  if (object_exists(ds->file, group, xpath) <= 0)
    return ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s not found (expected the %s samples, see README 'Dataset format')", xpath,
                  split_word(s));
  if (object_exists(ds->file, group, ypath) <= 0)
    return ds_err(ds, err, errlen, DPT_EINVAL,
                  "%s not found (expected the %s labels or targets, see README 'Dataset format')",
                  ypath, split_word(s));
  ds->split[s].present = 1;
  int rc = open_x(ds, s, err, errlen);
  if (rc == DPT_OK) rc = open_y(ds, s, err, errlen);
  if (rc == DPT_OK && fits_cache(&ds->split[s].info, cache_bytes)) rc = cache_x(ds, s, err, errlen);
  return rc;
}

/* ---- public API --------------------------------------------------------------------------- */

/* Explains why path cannot be opened as HDF5 (missing, unreadable, or not HDF5). */
static int explain_open_failure(const char *path, char *err, size_t errlen) {
  if (access(path, R_OK) != 0)
    return dpt_io__errf(err, errlen, DPT_EIO, "cannot open '%s': %s", path, strerror(errno));
  htri_t h5 = H5Fis_hdf5(path);
  if (h5 == 0) return dpt_io__errf(err, errlen, DPT_EINVAL, "'%s' is not an HDF5 file", path);
  return dpt_io__errf(err, errlen, DPT_EIO, "cannot open '%s' as an HDF5 file", path);
}

static dpt_dataset *dataset_new(const char *path) {
  dpt_dataset *ds = calloc(1, sizeof *ds);
  if (!ds) return NULL;
  ds->file = H5I_INVALID_HID;
  for (int s = 0; s < 2; s++) {
    ds->split[s].x = H5I_INVALID_HID;
    ds->split[s].xspace = H5I_INVALID_HID;
  }
  size_t len = strlen(path) + 1;
  if (!(ds->path = malloc(len))) {
    free(ds);
    return NULL;
  }
  memcpy(ds->path, path, len);
  return ds;
}

static void dataset_free(dpt_dataset *ds) {
  for (int s = 1; s >= 0; s--) {
    split_state *st = &ds->split[s];
    close_x(st);
    free(st->slot);
    free(st->req);
    free(st->buf);
    free(st->targets);
    free(st->labels);
    free(st->xcache);
  }
  if (ds->file >= 0) H5Fclose(ds->file);
  free(ds->path);
  free(ds);
}

static int open_all(dpt_dataset *ds, size_t cache_bytes, char *err, size_t errlen) {
  int regular = dpt_io__regular(ds->path, "dataset", err, errlen);
  if (regular) return regular;
  if (access(ds->path, R_OK) != 0 || H5Fis_hdf5(ds->path) <= 0 ||
      (ds->file = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
    return explain_open_failure(ds->path, err, errlen);
  int rc = read_num_classes(ds, err, errlen);
  for (int s = 0; s < 2 && rc == DPT_OK; s++) rc = open_split(ds, s, cache_bytes, err, errlen);
  if (rc == DPT_OK && ds->split[0].x < 0 && ds->split[1].x < 0) {
    H5Fclose(ds->file); /* everything is in memory */
    ds->file = H5I_INVALID_HID;
  }
  return rc;
}

int dpt_io_dataset_open(const char *path, size_t cache_bytes, dpt_dataset **out, char *err,
                        size_t errlen) {
  if (!out) return dpt_io__errf(err, errlen, DPT_EINVAL, "dpt_io_dataset_open: out is NULL");
  *out = NULL;
  if (!path || !*path)
    return dpt_io__errf(err, errlen, DPT_EINVAL, "dpt_io_dataset_open: empty path");
  dpt_dataset *ds = dataset_new(path);
  if (!ds) return dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory", path);
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  int rc = open_all(ds, cache_bytes, err, errlen);
  if (rc == DPT_OK)
    *out = ds;
  else
    dataset_free(ds);
  dpt_io__quiet_end(&q);
  return rc;
}

void dpt_io_dataset_close(dpt_dataset *ds) {
  if (!ds) return;
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  dataset_free(ds);
  dpt_io__quiet_end(&q);
}

static int valid_split(const dpt_dataset *ds, dpt_split split) {
  return ds && (split == DPT_SPLIT_TRAIN || split == DPT_SPLIT_TEST) && ds->split[split].present;
}

int dpt_io_dataset_info(const dpt_dataset *ds, dpt_split split, dpt_split_info *info) {
  if (!ds || !info) return DPT_EINVAL;
  if (!valid_split(ds, split)) return DPT_ENOENT;
  *info = ds->split[split].info;
  return DPT_OK;
}

int dpt_io_dataset_cached(const dpt_dataset *ds, dpt_split split) {
  return valid_split(ds, split) && ds->split[split].xcache != NULL;
}

/* ---- reading ------------------------------------------------------------------------------ */

static int cmp_req(const void *a, const void *b) {
  const read_req *p = a, *q = b;
  if (p->idx != q->idx) return p->idx < q->idx ? -1 : 1;
  return p->pos < q->pos ? -1 : p->pos > q->pos;
}

/* Sorts the requests and assigns each a row of the scratch buffer (repeats share a row);
 * returns the number of distinct indices. */
static size_t plan_rows(split_state *st, const int64_t *idx, size_t count) {
  for (size_t i = 0; i < count; i++) st->req[i] = (read_req){idx[i], i};
  qsort(st->req, count, sizeof *st->req, cmp_req);
  size_t rows = 0;
  for (size_t i = 0; i < count; i++) {
    if (i > 0 && st->req[i].idx != st->req[i - 1].idx) rows++;
    st->slot[st->req[i].pos] = rows;
  }
  return count ? rows + 1 : 0;
}

/* Selects the distinct sorted indices in st->xspace, one hyperslab per run of consecutive ones. */
static int select_runs(split_state *st, size_t count) {
  hsize_t start[8] = {0}, cnt[8];
  for (int d = 1; d < st->info.x_rank; d++) cnt[d] = (hsize_t)st->info.x_dims[d];
  H5S_seloper_t op = H5S_SELECT_SET;
  size_t i = 0;
  while (i < count) {
    size_t j = i + 1;
    while (j < count && st->req[j].idx <= st->req[j - 1].idx + 1) j++;
    start[0] = (hsize_t)st->req[i].idx;
    cnt[0] = (hsize_t)(st->req[j - 1].idx - st->req[i].idx + 1);
    if (H5Sselect_hyperslab(st->xspace, op, start, NULL, cnt, NULL) < 0) return -1;
    op = H5S_SELECT_OR;
    i = j;
  }
  return 0;
}

static int read_uncached(dpt_dataset *ds, int s, const int64_t *idx, size_t count, float *x,
                         char *err, size_t errlen) {
  split_state *st = &ds->split[s];
  size_t f = (size_t)st->info.features, esz = stored_size(&st->info);
  if (grow((void **)&st->req, &st->req_cap, count * sizeof *st->req) < 0 ||
      grow((void **)&st->slot, &st->slot_cap, count * sizeof *st->slot) < 0)
    return ds_err(ds, err, errlen, DPT_ENOMEM, "out of memory reading %zu samples", count);
  size_t rows = plan_rows(st, idx, count);
  if (grow(&st->buf, &st->buf_cap, rows * f * esz) < 0)
    return ds_err(ds, err, errlen, DPT_ENOMEM, "out of memory reading %zu samples", count);
  hsize_t mdims = (hsize_t)(rows * f);
  hid_t mem = H5I_INVALID_HID;
  int ok = select_runs(st, count) == 0 && (mem = H5Screate_simple(1, &mdims, NULL)) >= 0 &&
           H5Dread(st->x, st->info.x_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, mem, st->xspace,
                   H5P_DEFAULT, st->buf) >= 0;
  if (mem >= 0) H5Sclose(mem);
  if (!ok)
    return ds_err(ds, err, errlen, DPT_EIO, "/%s/x: cannot read %zu samples", split_name(s), count);
  const uint8_t *base = st->buf;
  for (size_t i = 0; i < count; i++)
    convert_row(base + st->slot[i] * f * esz, st->info.x_u8, f, st->info.scale, st->info.offset,
                x + i * f);
  return DPT_OK;
}

static void read_y(const split_state *st, const int64_t *idx, size_t count, int32_t *labels,
                   float *y) {
  size_t w = (size_t)st->info.y_width;
  for (size_t i = 0; i < count; i++) {
    if (st->info.y_labels)
      labels[i] = st->labels[idx[i]];
    else
      memcpy(y + i * w, st->targets + (size_t)idx[i] * w, w * sizeof *y);
  }
}

static int check_read_args(const dpt_dataset *ds, dpt_split split, const int64_t *idx, size_t count,
                           const float *x, const int32_t *labels, const float *y, char *err,
                           size_t errlen) {
  if (!valid_split(ds, split))
    return ds ? ds_err(ds, err, errlen, DPT_ENOENT, "no /%s split in the file",
                       split == DPT_SPLIT_TEST ? "test" : "train")
              : dpt_io__errf(err, errlen, DPT_EINVAL, "dpt_io_dataset_read: dataset is NULL");
  const dpt_split_info *in = &ds->split[split].info;
  if (count > 0 && (!idx || !x || (in->y_labels && !labels) || (!in->y_labels && !y)))
    return ds_err(ds, err, errlen, DPT_EINVAL, "dpt_io_dataset_read: NULL idx, x or %s",
                  in->y_labels ? "labels" : "y");
  for (size_t i = 0; i < count; i++)
    if (idx[i] < 0 || idx[i] >= in->n)
      return ds_err(ds, err, errlen, DPT_EINVAL,
                    "index %lld (at position %zu) out of range for /%s (expected 0 to %lld)",
                    (long long)idx[i], i, split_name(split), (long long)in->n - 1);
  return DPT_OK;
}

/* Gathers rows idx[0..count) of the cache into x as float: uint8 rows are converted (the same
 * to_float as the uncached path), float32 rows were converted when cached and are copied. */
static void read_cached(const split_state *st, const int64_t *idx, size_t count, float *x) {
  const dpt_split_info *in = &st->info;
  size_t f = (size_t)in->features;
  if (in->x_u8) {
    const uint8_t *base = st->xcache;
    for (size_t i = 0; i < count; i++)
      convert_u8(base + (size_t)idx[i] * f, f, in->scale, in->offset, x + i * f);
  } else {
    const float *base = st->xcache;
    for (size_t i = 0; i < count; i++) memcpy(x + i * f, base + (size_t)idx[i] * f, f * sizeof *x);
  }
}

int dpt_io_dataset_read(dpt_dataset *ds, dpt_split split, const int64_t *idx, size_t count,
                        float *x, int32_t *labels, float *y, char *err, size_t errlen) {
  int rc = check_read_args(ds, split, idx, count, x, labels, y, err, errlen);
  if (rc < 0 || count == 0) return rc;
  split_state *st = &ds->split[split];
  if (st->xcache) {
    read_cached(st, idx, count, x);
  } else {
    dpt_io__quiet q;
    dpt_io__quiet_begin(&q);
    rc = read_uncached(ds, split, idx, count, x, err, errlen);
    dpt_io__quiet_end(&q);
    if (rc < 0) return rc;
  }
  /* where the data enters: the same check cached or not, so both fail on the same read */
  size_t f = (size_t)st->info.features, row, col;
  if (!st->info.x_u8 && find_nonfinite(x, count, f, &row, &col))
    return nonfinite_error(ds, split, idx[row], col, x[row * f + col], err, errlen);
  read_y(st, idx, count, labels, y);
  return DPT_OK;
}

/* ---- writing (shared by idx.c and synth.c) ------------------------------------------------ */

int dpt_io__writer_open(dpt_io__writer *w, const char *out, char *err, size_t errlen) {
  w->file = H5I_INVALID_HID;
  w->out = out;
  w->tmp = NULL;
  int rc = dpt_mkdirs_parent(out, "output file", err, errlen);
  if (rc < 0) return rc;
  size_t len = strlen(out) + 32;
  if (!(w->tmp = malloc(len))) return dpt_io__errf(err, errlen, DPT_ENOMEM, "out of memory");
  snprintf(w->tmp, len, "%s.tmp.%ld", out, (long)getpid());
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (w->file < 0)
    return dpt_io__errf(err, errlen, DPT_EIO,
                        "cannot create '%s' (check that its directory is writable)", w->tmp);
  return DPT_OK;
}

static int write_attr(hid_t obj, const char *name, hid_t filetype, hid_t memtype, const void *v) {
  hid_t sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
  int ok = (sp = H5Screate(H5S_SCALAR)) >= 0 &&
           (a = H5Acreate2(obj, name, filetype, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
           H5Awrite(a, memtype, v) >= 0;
  if (a >= 0 && H5Aclose(a) < 0) ok = 0;
  if (sp >= 0) H5Sclose(sp);
  return ok ? 0 : -1;
}

/* Creates <loc>/<name> of type and shape and writes data (contiguous layout). With
 * scale_offset non-NULL also writes the scale and offset attributes. */
static int write_array(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
                       const void *data, const double *scale_offset) {
  hid_t sp = H5I_INVALID_HID, d = H5I_INVALID_HID;
  hsize_t total = 1;
  for (int i = 0; i < rank; i++) total *= dims[i];
  int ok = (sp = H5Screate_simple(rank, dims, NULL)) >= 0 &&
           (d = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
           (total == 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  if (ok && scale_offset)
    ok = write_attr(d, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &scale_offset[0]) == 0 &&
         write_attr(d, "offset", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &scale_offset[1]) == 0;
  if (d >= 0 && H5Dclose(d) < 0) ok = 0;
  if (sp >= 0) H5Sclose(sp);
  return ok ? 0 : -1;
}

int dpt_io__write_split(dpt_io__writer *w, const dpt_io__split_data *s, char *err, size_t errlen) {
  hid_t g = H5Gcreate2(w->file, s->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0)
    return dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot create group /%s", w->tmp, s->name);
  double so[2] = {s->scale, s->offset};
  int rc = DPT_OK;
  const char *why;
  if (write_array(g, "x", s->xtype, s->xrank, s->xdims, s->x, so) < 0)
    why = dpt_io__full(w->tmp),
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot write /%s/x%s%s", w->tmp, s->name,
                      why[0] ? ": " : "", why);
  else if (write_array(g, "y", s->ytype, 1, s->xdims, s->y, NULL) < 0)
    why = dpt_io__full(w->tmp),
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot write /%s/y%s%s", w->tmp, s->name,
                      why[0] ? ": " : "", why);
  if (H5Gclose(g) < 0 && rc == DPT_OK)
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot close group /%s", w->tmp, s->name);
  return rc;
}

int dpt_io__writer_commit(dpt_io__writer *w, int64_t num_classes, char *err, size_t errlen) {
  int rc = DPT_OK;
  if (write_attr(w->file, "num_classes", H5T_STD_I64LE, H5T_NATIVE_INT64, &num_classes) < 0)
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot write root attribute num_classes", w->tmp);
  herr_t closed = H5Fclose(w->file); /* not closed again, whatever it returned */
  w->file = H5I_INVALID_HID;
  if (rc == DPT_OK && closed < 0) {
    const char *why = dpt_io__full(w->tmp);
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot finish writing: %s", w->tmp,
                      why[0] ? why : "the close failed (disk full?)");
  }
  if (rc == DPT_OK) rc = dpt_file_commit(w->tmp, w->out, err, errlen); /* durable, then visible */
  if (rc == DPT_OK) {
    free(w->tmp);
    w->tmp = NULL;
  } else {
    dpt_io__writer_abort(w);
  }
  return rc;
}

void dpt_io__writer_abort(dpt_io__writer *w) {
  if (w->file >= 0) H5Fclose(w->file);
  w->file = H5I_INVALID_HID;
  if (w->tmp) remove(w->tmp);
  free(w->tmp);
  w->tmp = NULL;
}

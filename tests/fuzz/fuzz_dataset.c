/* fuzz_dataset.c — libFuzzer harness for the dataset loader (io/dataset.c): dpt_io_dataset_open,
 * _info and _read on files whose layout the input chooses.
 *
 * Two kinds of input:
 * - structured (the default, and what `run.sh fuzz` explores): the input is a list of choices
 *   from which the harness writes a VALID HDF5 file with the HDF5 API: which splits, groups and
 *   datasets exist (or are something else), their types, ranks, dims, storage layouts and
 *   contents, the scale/offset/num_classes attributes in any type and shape. Mutating raw
 *   HDF5 bytes mostly finds HDF5 1.10's own crashes; this reaches dpt's checks instead.
 * - raw: an input starting with the HDF5 signature is the file itself (the seed corpus keeps
 *   real dataset files so that replay proves they load). DPT_FUZZ_RAW=0 in the environment
 *   turns raw inputs into structured ones, which is how run.sh fuzzes.
 *
 * Checks beyond "no crash, no leak": every HDF5 object dpt opened is closed again, errors carry
 * a message, and a cached and an uncached opening of the same file agree bit for bit (same
 * status, same info, same samples and labels) — the invariant io/dataset.c states. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io.h"

/* Limits that keep one execution small; dims beyond them are still reachable through chunked
 * datasets that are never written (HDF5 stores nothing for them). */
#define FZ_MAX_WRITE_BYTES ((size_t)1 << 20)  /* data actually written per dataset */
#define FZ_MAX_READ_FLOATS ((int64_t)1 << 22) /* floats a read may produce (16 MiB) */
#define FZ_MAX_INDICES 16

static int g_raw = 1;
static int g_verbose; /* DPT_FUZZ_VERBOSE=1: print what each input led to (to tune the harness) */

/* Huge dims make dpt ask for more than ASan's 1 TiB limit: that must come back as
 * DPT_ENOMEM, not abort the process. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allocator_may_return_null=1";
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_init();
  fz_hdf5_flags(&g_raw, &g_verbose);
  return 0;
}

/* --- building the file --- */

/* The types a dataset or attribute may get; dpt accepts only some of them where. */
enum { T_U8, T_F32, T_F64, T_I8, T_U16, T_I32, T_I64, T_U64, T_STR, T_ENUM, T_ARRAY, T_COUNT };

/* A new handle for type kind k (closed by the caller). */
static hid_t make_type(int k) {
  switch (k) {
  case T_U8: return H5Tcopy(H5T_NATIVE_UINT8);
  case T_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
  case T_F64: return H5Tcopy(H5T_NATIVE_DOUBLE);
  case T_I8: return H5Tcopy(H5T_NATIVE_INT8);
  case T_U16: return H5Tcopy(H5T_STD_U16BE); /* big-endian: a conversion on every read */
  case T_I32: return H5Tcopy(H5T_NATIVE_INT32);
  case T_I64: return H5Tcopy(H5T_NATIVE_INT64);
  case T_U64: return H5Tcopy(H5T_NATIVE_UINT64);
  case T_STR: {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    return t;
  }
  case T_ENUM: { /* class ENUM over uint8: size 1 and unsigned, but not an integer */
    hid_t t = H5Tenum_create(H5T_NATIVE_UINT8);
    for (unsigned char v = 0; v < 4; v++) {
      char name[8];
      snprintf(name, sizeof name, "e%u", v);
      H5Tenum_insert(t, name, &v);
    }
    return t;
  }
  default: {
    hsize_t d = 2;
    return H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &d);
  }
  }
}

/* Fills buf[len] with bytes taken cyclically from the input's remaining bytes (zeros if none),
 * so that contents are the fuzzer's without consuming the choices that follow. */
static void fill_bytes(fz_in *in, uint8_t *buf, size_t len) {
  size_t n;
  const uint8_t *src = fz_bytes(in, 256, &n);
  for (size_t i = 0; i < len; i++) buf[i] = n ? src[i % n] : 0;
}

/* Writes attribute `name` on obj in a shape the input picks: absent, a scalar of some type, two
 * values, a string, or a null dataspace. */
static void make_attr(fz_in *in, hid_t obj, const char *name) {
  int kind = (int)fz_range(in, 0, 7);
  if (kind == 0) return;
  hid_t sp = H5I_INVALID_HID, t = H5I_INVALID_HID, a = H5I_INVALID_HID;
  uint8_t val[16];
  double d = fz_double(in);
  memcpy(val, &d, sizeof d);
  memcpy(val + 8, &d, sizeof d);
  hsize_t two = 2;
  switch (kind) {
  case 1:
  case 2: sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_NATIVE_DOUBLE); break;
  case 3: sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_NATIVE_INT64); break;
  case 4: sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_NATIVE_INT8); break;
  case 5: sp = H5Screate_simple(1, &two, NULL), t = H5Tcopy(H5T_NATIVE_DOUBLE); break;
  case 6: sp = H5Screate(H5S_SCALAR), t = make_type(T_STR); break;
  default: sp = H5Screate(H5S_NULL), t = H5Tcopy(H5T_NATIVE_DOUBLE); break;
  }
  if (sp >= 0 && t >= 0 && (a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
      kind != 7)
    H5Awrite(a, t, val);
  if (a >= 0) H5Aclose(a);
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
}

/* A dim far beyond memory: at least FZ_HUGE, so that any buffer it sizes is refused by the
 * allocator (ASan's limit is 1 TiB; allocator_may_return_null=1) instead of being a
 * legitimately large allocation that libFuzzer's malloc or RSS limits would report. */
#define FZ_HUGE ((uint64_t)1 << 41)
static hsize_t huge_dim(fz_in *in) {
  return (hsize_t)(fz_u64(in) | FZ_HUGE);
}

/* Creates <loc>/<name>: type, rank (0 = scalar, up to 9 where dpt takes 8), dims (the first is
 * n0 unless the input shifts it), layout (contiguous, chunked, compact) and contents. A
 * chunked dataset may be left unwritten with dims far beyond memory (HDF5 stores nothing for
 * unwritten chunks); `huge` forces that (the split's N is huge). Returns the open dataset, or
 * H5I_INVALID_HID when HDF5 refused the layout. */
static hid_t make_dataset(fz_in *in, hid_t loc, const char *name, hsize_t n0, int y, int huge) {
  static const int x_types[] = {T_U8, T_U8,  T_F32, T_F32,  T_F64,
                                T_I8, T_U16, T_STR, T_ENUM, T_ARRAY};
  static const int y_types[] = {T_U8,  T_I64, T_I32, T_F32, T_F32, T_I8,
                                T_U64, T_U16, T_F64, T_STR, T_ENUM};
  int tk = y ? y_types[fz_range(in, 0, sizeof y_types / sizeof *y_types - 1)]
             : x_types[fz_range(in, 0, sizeof x_types / sizeof *x_types - 1)];
  unsigned shape = fz_u8(in);
  int rank = y                 ? (shape & 3) == 3 ? (int)(shape >> 2) % 4 : 1 + (shape & 1)
                             : (shape & 7) < 5 ? 1 + (int)(shape & 3)
                               : (int)(shape >> 3) % 10;
  int layout = huge ? 2 : (int)fz_range(in, 0, 3);      /* 0, 1 contiguous; 2 chunked; 3 compact */
  if (layout == 2 && fz_range(in, 0, 7) == 0) huge = 1; /* huge trailing dims too */
  hsize_t dims[10], chunk[10];
  for (int i = 0; i < rank; i++) {
    if (i == 0)
      dims[i] = n0 + (hsize_t)(fz_range(in, 0, 15) == 0 ? fz_range(in, -1, 1) : 0);
    else if (huge && fz_bool(in))
      dims[i] = huge_dim(in);
    else
      dims[i] = (hsize_t)fz_range(in, y ? 1 : 0, 5);
    chunk[i] = dims[i] < 1 ? 1 : dims[i] > 4 ? 4 : dims[i];
  }
  hid_t t = make_type(tk), sp = H5Screate_simple(rank, dims, NULL);
  if (rank == 0) {
    H5Sclose(sp);
    sp = H5Screate(H5S_SCALAR);
  }
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (layout == 2 && rank > 0) H5Pset_chunk(dcpl, rank, chunk);
  if (layout == 3) H5Pset_layout(dcpl, H5D_COMPACT);
  if (layout == 2 && fz_bool(in)) { /* a fill value: what unwritten chunks read as */
    uint8_t fill[16];
    fill_bytes(in, fill, sizeof fill);
    H5Pset_fill_value(dcpl, t, fill);
  }
  hid_t d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d >= 0 && !huge && fz_range(in, 0, 7)) { /* usually written */
    hssize_t npts = H5Sget_simple_extent_npoints(sp);
    size_t bytes = fz_bytes_upto(npts, H5Tget_size(t), FZ_MAX_WRITE_BYTES);
    if (bytes > 0) {
      uint8_t *buf = malloc(bytes);
      if (!buf) abort();
      fill_bytes(in, buf, bytes);
      if (tk == T_STR) /* HDF5 reads any bytes back; keep them printable anyway */
        for (size_t i = 0; i < bytes; i++) buf[i] = (uint8_t)('0' + buf[i] % 10);
      H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
      free(buf);
    }
  }
  H5Pclose(dcpl);
  H5Sclose(sp);
  H5Tclose(t);
  return d;
}

/* One split: absent, an empty group, a group missing x or y, a dataset where the group should
 * be, x where a group should be, or the full layout. */
static void make_split(fz_in *in, hid_t file, const char *split) {
  int kind = (int)fz_range(in, 0, 15);
  if (kind == 0) return;
  if (kind == 1) { /* /<split> is not a group */
    hid_t d = make_dataset(in, file, split, 3, 1, 0);
    if (d >= 0) H5Dclose(d);
    return;
  }
  hid_t g = H5Gcreate2(file, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return;
  int64_t nk = fz_range(in, 0, 15); /* N: small, up to 4096, or huge (1 in 16) */
  int huge = nk == 0;
  hsize_t n = huge     ? huge_dim(in)
              : nk < 4 ? (hsize_t)fz_range(in, 0, 4096)
                       : (hsize_t)fz_range(in, 0, 24);
  if (kind != 2) {   /* kind 2: no x */
    if (kind == 3) { /* x is a group */
      hid_t sub = H5Gcreate2(g, "x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (sub >= 0) H5Gclose(sub);
    } else {
      hid_t x = make_dataset(in, g, "x", n, 0, huge);
      if (x >= 0) {
        make_attr(in, x, "scale");
        make_attr(in, x, "offset");
        H5Dclose(x);
      }
    }
  }
  if (kind == 4) { /* y is a dangling soft link */
    H5Lcreate_soft("/nowhere", g, "y", H5P_DEFAULT, H5P_DEFAULT);
  } else if (kind != 5) { /* kind 5: no y */
    hid_t y = make_dataset(in, g, "y", n, 1, huge);
    if (y >= 0) H5Dclose(y);
  }
  H5Gclose(g);
}

/* Writes the file the input describes to path. */
static void build_file(fz_in *in, const char *path) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fz_bool(in)) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (f < 0) {
    fprintf(stderr, "fuzz_dataset: cannot create %s\n", path);
    abort();
  }
  make_attr(in, f, "num_classes");
  make_split(in, f, "train");
  make_split(in, f, "test");
  if (H5Fclose(f) < 0) abort();
  fz_check_no_open_hdf5("building the file (harness)");
}

/* --- reading it with dpt --- */

static void fail(const char *what, const char *a, const char *b) {
  fprintf(stderr, "fuzz_dataset: %s\n  %s\n  %s\n", what, a, b);
  abort();
}

/* Reads idx[0..count) of split s from both openings; they must agree bit for bit. */
static void read_both(dpt_dataset *a, dpt_dataset *b, int s, const dpt_split_info *info,
                      const int64_t *idx, size_t count) {
  if (count && (info->features > FZ_MAX_READ_FLOATS / (int64_t)count ||
                info->y_width > FZ_MAX_READ_FLOATS / (int64_t)count))
    return;
  size_t nx = count * (size_t)info->features, ny = count * (size_t)info->y_width;
  float *x[2], *y[2];
  int32_t lab[2][FZ_MAX_INDICES];
  char err[2][DPT_ERR_LEN];
  int rc[2];
  dpt_dataset *ds[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    x[k] = malloc(nx * sizeof(float) + 1), y[k] = malloc(ny * sizeof(float) + 1);
    if (!x[k] || !y[k]) abort();
    memset(x[k], 0, nx * sizeof(float));
    memset(y[k], 0, ny * sizeof(float));
    memset(lab[k], 0, sizeof lab[k]);
    err[k][0] = 0;
    rc[k] = dpt_io_dataset_read(ds[k], (dpt_split)s, idx, count, x[k], lab[k], y[k], err[k],
                                sizeof err[k]);
    if (rc[k] && !err[k][0]) fail("read failed without a message", "", "");
  }
  if (rc[0] != rc[1]) fail("uncached and cached reads disagree on success", err[0], err[1]);
  if (!rc[0] && (memcmp(x[0], x[1], nx * sizeof(float)) || memcmp(lab[0], lab[1], sizeof lab[0]) ||
                 memcmp(y[0], y[1], ny * sizeof(float))))
    fail("uncached and cached reads return different samples", "", "");
  for (int k = 0; k < 2; k++) free(x[k]), free(y[k]);
}

/* Opens path uncached and with the input's cache budget; both must give the same answer.
 * raw: a raw file, whose choices are fixed: everything cached, samples 0, 1, n/2 and n-1. */
static void load(fz_in *in, const char *path, int raw) {
  char err[2][DPT_ERR_LEN] = {"", ""};
  dpt_dataset *ds[2] = {NULL, NULL};
  int rc0 = dpt_io_dataset_open(path, 0, &ds[0], err[0], sizeof err[0]);
  if (rc0) fz_check_no_open_hdf5("a failed dpt_io_dataset_open");
  /* the second budget: everything, nothing, or the exact size of the training x, +-1 */
  size_t budget = SIZE_MAX;
  int64_t pick = fz_range(in, 0, 3);
  dpt_split_info tr;
  if (pick && !rc0 && !dpt_io_dataset_info(ds[0], DPT_SPLIT_TRAIN, &tr)) {
    size_t exact = (size_t)tr.n * (size_t)tr.features * (tr.x_u8 ? 1 : 4);
    budget = pick == 1 ? exact : pick == 2 ? exact - (exact > 0) : exact + 1;
  }
  int rc1 = dpt_io_dataset_open(path, budget, &ds[1], err[1], sizeof err[1]);
  if (g_verbose) fprintf(stderr, "open: %d %s\n", rc0, rc0 ? err[0] : "ok");
  if (rc0 == DPT_ENOMEM || rc1 == DPT_ENOMEM) { /* too big to cache: nothing to compare */
    dpt_io_dataset_close(ds[1]);
    dpt_io_dataset_close(ds[0]);
    return;
  }
  if (rc0 != rc1) fail("uncached and cached opens disagree", err[0], err[1]);
  if (rc0) {
    if (!err[0][0]) fail("open failed without a message", "", "");
    return;
  }
  for (int s = 0; s < 2; s++) {
    dpt_split_info i0, i1;
    int r0 = dpt_io_dataset_info(ds[0], (dpt_split)s, &i0),
        r1 = dpt_io_dataset_info(ds[1], (dpt_split)s, &i1);
    if (r0 != r1 || (!r0 && memcmp(&i0, &i1, sizeof i0)))
      fail("uncached and cached opens describe the file differently", "", "");
    /* indices: mostly in range, sometimes -1 or n (must be refused) */
    size_t count = (size_t)fz_range(in, 0, FZ_MAX_INDICES);
    int64_t idx[FZ_MAX_INDICES];
    int64_t n = r0 ? 1 : i0.n;
    for (size_t k = 0; k < count; k++) idx[k] = fz_range(in, -1, n);
    if (raw) {
      int64_t fixed[4] = {0, n > 1, n / 2, n - 1};
      count = n > 0 ? 4 : 0;
      memcpy(idx, fixed, sizeof fixed);
    }
    if (r0) { /* an absent split must refuse reads */
      float xx;
      int32_t ll;
      if (count && dpt_io_dataset_read(ds[0], (dpt_split)s, idx, count, &xx, &ll, &xx, err[0],
                                       sizeof err[0]) == 0)
        fail("a read of an absent split succeeded", "", "");
      continue;
    }
    read_both(ds[0], ds[1], s, &i0, idx, count);
  }
  dpt_io_dataset_close(ds[1]);
  dpt_io_dataset_close(ds[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  char path[4096];
  fz_path(path, "data.h5");
  fz_in in = {data, size};
  int raw = g_raw && size >= 8 && !memcmp(data, sig, 8);
  if (raw) {
    fz_write(path, data, size);
    in.n = 0; /* no choices left: uncached vs everything cached */
  } else {
    build_file(&in, path);
  }
  load(&in, path, raw);
  fz_check_no_open_hdf5("dpt_io_dataset_close");
  return 0;
}

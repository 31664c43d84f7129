/* test_dataset.c — unit tests of io/dataset.c: reading synthetic and hand-written HDF5 fixtures
 * (written under DPT_TEST_TMP), cached vs uncached reads bitwise identical, cached reads equal to
 * the conversion formula bit for bit, the cache budget counting stored bytes, info fields, and
 * every documented error naming the file, the dataset and what was expected. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

static char *tmp_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/ds_%s", DPT_TEST_TMP, name);
  return buf;
}

/* ---- fixtures ----------------------------------------------------------------------------- */

typedef struct {
  const char *xname; /* NULL: no /train/x */
  hid_t xtype;
  int xrank;
  hsize_t xdims[3];
  const void *x;
  hid_t ytype;
  int yrank;
  hsize_t ydims[2];
  const void *y;
  int64_t num_classes;  /* > 0: root attribute */
  double scale, offset; /* written when scale != 0 */
} fixture;

static void write_array(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
                        const void *data, double scale, double offset) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  assert_true(sp >= 0);
  hid_t d = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(d >= 0);
  assert_true(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  if (scale != 0) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(d, "scale", H5T_NATIVE_DOUBLE, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_DOUBLE, &scale) >= 0);
    H5Aclose(a);
    a = H5Acreate2(d, "offset", H5T_NATIVE_DOUBLE, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_DOUBLE, &offset) >= 0);
    H5Aclose(a);
    H5Sclose(s);
  }
  H5Dclose(d);
  H5Sclose(sp);
}

static void write_fixture(const char *path, const fixture *f) {
  hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(file >= 0);
  hid_t g = H5Gcreate2(file, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(g >= 0);
  if (f->xname) write_array(g, f->xname, f->xtype, f->xrank, f->xdims, f->x, f->scale, f->offset);
  write_array(g, "y", f->ytype, f->yrank, f->ydims, f->y, 0, 0);
  if (f->num_classes > 0) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, "num_classes", H5T_NATIVE_INT64, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &f->num_classes) >= 0);
    H5Aclose(a);
    H5Sclose(s);
  }
  H5Gclose(g);
  H5Fclose(file);
}

static const float k_xf[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const int32_t k_y6[6] = {0, 1, 2, 0, 1, 2};

/* A valid float32 [6, 2] fixture with int32 labels 0..2; callers tweak it. */
static fixture base_fixture(void) {
  fixture f = {"x", H5T_NATIVE_FLOAT, 2,    {6, 2, 0}, k_xf, H5T_NATIVE_INT32,
               1,   {6, 0},           k_y6, 0,         0,    0};
  return f;
}

/* Opens path expecting failure rc whose message contains every non-NULL needle. */
static void expect_open_error(const char *path, int rc_want, const char *n1, const char *n2) {
  char err[DPT_ERR_LEN] = "";
  dpt_dataset *ds = (dpt_dataset *)&ds;
  int rc = dpt_io_dataset_open(path, 1 << 20, &ds, err, sizeof err);
  if (rc != rc_want || (n1 && !strstr(err, n1)) || (n2 && !strstr(err, n2)))
    fail_msg("rc %d (want %d), message '%s'", rc, rc_want, err);
  assert_null(ds);
}

/* ---- synthetic dataset: cached vs uncached ------------------------------------------------ */

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return *s >> 33;
}

static void read_both(const char *path, dpt_split split, const int64_t *idx, size_t count,
                      int64_t features) {
  float *x[2];
  int32_t *lab[2];
  char err[DPT_ERR_LEN];
  for (int m = 0; m < 2; m++) {
    dpt_dataset *ds = NULL;
    size_t cache = m == 0 ? 0 : (size_t)1 << 30;
    assert_int_equal(dpt_io_dataset_open(path, cache, &ds, err, sizeof err), DPT_OK);
    assert_int_equal(dpt_io_dataset_cached(ds, split), m);
    x[m] = malloc(count * (size_t)features * sizeof(float));
    lab[m] = malloc(count * sizeof(int32_t));
    assert_int_equal(
        dpt_io_dataset_read(ds, split, idx, count, x[m], lab[m], NULL, err, sizeof err), DPT_OK);
    dpt_io_dataset_close(ds);
  }
  assert_memory_equal(x[0], x[1], count * (size_t)features * sizeof(float));
  assert_memory_equal(lab[0], lab[1], count * sizeof(int32_t));
  for (int m = 0; m < 2; m++) {
    free(x[m]);
    free(lab[m]);
  }
}

static void test_synth_cached_equals_uncached(void **state) {
  (void)state;
  char path[512], err[DPT_ERR_LEN];
  tmp_path(path, sizeof path, "synth.h5");
  assert_int_equal(dpt_io_synth(path, 300, 40, 7, 4, 42, err, sizeof err), DPT_OK);
  dpt_dataset *ds = NULL;
  assert_int_equal(dpt_io_dataset_open(path, 0, &ds, err, sizeof err), DPT_OK);
  dpt_split_info in;
  assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TRAIN, &in), DPT_OK);
  assert_int_equal(in.n, 300);
  assert_int_equal(in.features, 7);
  assert_int_equal(in.x_rank, 2);
  assert_int_equal(in.x_u8, 0);
  assert_int_equal(in.num_classes, 4);
  assert_int_equal(in.y_labels, 1);
  assert_int_equal(in.y_width, 1);
  assert_true(in.scale == 1.0 && in.offset == 0.0);
  assert_true(in.label_min >= 0 && in.label_max <= 3);
  assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TEST, &in), DPT_OK);
  assert_int_equal(in.n, 40);
  dpt_io_dataset_close(ds);

  int64_t idx[330];
  for (int i = 0; i < 300; i++) idx[i] = i;
  uint64_t s = 7;
  for (int i = 299; i > 0; i--) {
    int j = (int)(lcg(&s) % (uint64_t)(i + 1));
    int64_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  for (int i = 300; i < 330; i++) idx[i] = idx[(i * 7) % 300]; /* repeats */
  read_both(path, DPT_SPLIT_TRAIN, idx, 330, 7);
  int64_t tidx[5] = {39, 0, 1, 2, 39};
  read_both(path, DPT_SPLIT_TEST, tidx, 5, 7);
}

static void test_synth_is_deterministic(void **state) {
  (void)state;
  char p1[512], p2[512], err[DPT_ERR_LEN];
  tmp_path(p1, sizeof p1, "det1.h5");
  tmp_path(p2, sizeof p2, "det2.h5");
  assert_int_equal(dpt_io_synth(p1, 20, 0, 3, 3, 9, err, sizeof err), DPT_OK);
  assert_int_equal(dpt_io_synth(p2, 20, 0, 3, 3, 9, err, sizeof err), DPT_OK);
  float x[2][60];
  int32_t y[2][20];
  int64_t idx[20];
  for (int i = 0; i < 20; i++) idx[i] = i;
  for (int k = 0; k < 2; k++) {
    dpt_dataset *ds = NULL;
    assert_int_equal(dpt_io_dataset_open(k ? p2 : p1, 1 << 20, &ds, err, sizeof err), 0);
    dpt_split_info in;
    assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TEST, &in), DPT_ENOENT);
    assert_int_equal(
        dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, 20, x[k], y[k], NULL, err, sizeof err), 0);
    dpt_io_dataset_close(ds);
  }
  assert_memory_equal(x[0], x[1], sizeof x[0]);
  assert_memory_equal(y[0], y[1], sizeof y[0]);
}

/* uint8 x [4, 2, 3] with scale/offset: values are (float)(v*scale+offset) in both modes. The
 * 24 stored bytes fit a budget of 24, not 23 (as floats they would need 96). */
static void test_uint8_scale_offset(void **state) {
  (void)state;
  char path[512], err[DPT_ERR_LEN];
  tmp_path(path, sizeof path, "u8.h5");
  uint8_t xu[24];
  for (int i = 0; i < 24; i++) xu[i] = (uint8_t)(i * 10);
  int16_t y[4] = {3, 0, 2, 1};
  fixture f = {"x", H5T_NATIVE_UINT8, 3, {4, 2, 3}, xu,  H5T_NATIVE_INT16,
               1,   {4, 0},           y, 0,         0.1, -0.5};
  write_fixture(path, &f);
  int64_t idx[5] = {3, 1, 1, 0, 2};
  for (int m = 0; m < 2; m++) {
    dpt_dataset *ds = NULL;
    assert_int_equal(dpt_io_dataset_open(path, m ? 24 : 23, &ds, err, sizeof err), 0);
    assert_int_equal(dpt_io_dataset_cached(ds, DPT_SPLIT_TRAIN), m);
    dpt_split_info in;
    assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TRAIN, &in), 0);
    assert_int_equal(in.features, 6);
    assert_int_equal(in.x_rank, 3);
    assert_int_equal(in.x_dims[2], 3);
    assert_int_equal(in.x_u8, 1);
    assert_int_equal(in.num_classes, 4);
    assert_int_equal(in.label_max, 3);
    float x[30];
    int32_t lab[5];
    assert_int_equal(
        dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, 5, x, lab, NULL, err, sizeof err), 0);
    for (int i = 0; i < 5; i++) {
      assert_int_equal(lab[i], y[idx[i]]);
      for (int j = 0; j < 6; j++) {
        float want = (float)(xu[idx[i] * 6 + j] * 0.1 + -0.5);
        assert_memory_equal(&x[i * 6 + j], &want, sizeof want);
      }
    }
    dpt_io_dataset_close(ds);
  }
}

/* Reads idx[0..count) of the training split with the given cache budget, expecting it cached
 * or not, and checks every value against want[idx * features + j] bit for bit. */
static void expect_reads(const char *path, size_t cache, int cached, const int64_t *idx,
                         size_t count, size_t features, const float *want) {
  char err[DPT_ERR_LEN];
  dpt_dataset *ds = NULL;
  assert_int_equal(dpt_io_dataset_open(path, cache, &ds, err, sizeof err), DPT_OK);
  assert_int_equal(dpt_io_dataset_cached(ds, DPT_SPLIT_TRAIN), cached);
  float *x = malloc(count * features * sizeof *x);
  int32_t *lab = malloc(count * sizeof *lab);
  assert_non_null(x);
  assert_non_null(lab);
  assert_int_equal(
      dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, count, x, lab, NULL, err, sizeof err), DPT_OK);
  for (size_t i = 0; i < count; i++)
    for (size_t j = 0; j < features; j++)
      if (memcmp(&x[i * features + j], &want[(size_t)idx[i] * features + j], sizeof *x))
        fail_msg("cache %zu: sample %lld value %zu is %a, want %a", cache, (long long)idx[i], j,
                 (double)x[i * features + j], (double)want[(size_t)idx[i] * features + j]);
  free(lab);
  free(x);
  dpt_io_dataset_close(ds);
}

/* Batch-sized index list over n samples: a shuffled run with repeats. */
static void make_indices(int64_t *idx, size_t count, int64_t n, uint64_t seed) {
  for (size_t i = 0; i < count; i++) idx[i] = (int64_t)(lcg(&seed) % (uint64_t)n);
  idx[count - 1] = idx[0]; /* a repeat */
}

/* The cache holds uint8 as stored, so a 1000x100 uint8 split (100000 bytes) is cached under a
 * 0.2 MB budget, where its 400000 bytes of floats would not have fit; reads from the cache and
 * from the file both equal (float)(v*scale+offset) computed in double, bit for bit. */
static void test_uint8_cache_holds_stored_bytes(void **state) {
  (void)state;
  enum { N = 1000, F = 100, COUNT = 256 };
  char path[512];
  tmp_path(path, sizeof path, "u8cache.h5");
  uint8_t *xu = malloc((size_t)N * F);
  float *want = malloc((size_t)N * F * sizeof *want);
  int32_t *y = malloc(N * sizeof *y);
  assert_true(xu && want && y);
  /* The importer's kind of scale/offset: standardising, neither exact in binary. */
  const double scale = 1.0 / (255.0 * 0.3530), offset = -0.2860 / 0.3530;
  uint64_t seed = 11;
  for (size_t i = 0; i < (size_t)N * F; i++) {
    xu[i] = i < 256 ? (uint8_t)i : (uint8_t)lcg(&seed); /* every byte value occurs */
    want[i] = (float)(xu[i] * scale + offset);
  }
  for (int i = 0; i < N; i++) y[i] = i % 10;
  fixture f = {"x", H5T_NATIVE_UINT8, 2, {N, F, 0}, xu,    H5T_NATIVE_INT32,
               1,   {N, 0},           y, 0,         scale, offset};
  write_fixture(path, &f);
  int64_t idx[COUNT];
  make_indices(idx, COUNT, N, 5);
  idx[1] = 0; /* the rows holding bytes 0..255 */
  idx[2] = 1;
  idx[3] = 2;
  expect_reads(path, 200000, 1, idx, COUNT, F, want);
  expect_reads(path, (size_t)N * F, 1, idx, COUNT, F, want);
  expect_reads(path, (size_t)N * F - 1, 0, idx, COUNT, F, want);
  free(y);
  free(want);
  free(xu);
}

/* float32 x with scale/offset, and with none (where -0 + 0 = +0: the formula still applies, so
 * the cache converts rather than copying the stored floats); the budget is 4 bytes a value. */
static void test_float32_cache_equals_formula(void **state) {
  (void)state;
  enum { N = 64, F = 9, COUNT = 40 };
  char path[512];
  tmp_path(path, sizeof path, "f32cache.h5");
  float xf[N * F], want[N * F];
  int32_t y[N];
  uint64_t seed = 3;
  for (int i = 0; i < N * F; i++) xf[i] = ((float)lcg(&seed) / 2147483648.0f - 0.5f) * 1000.0f;
  xf[0] = -0.0f;
  xf[1] = 1e-40f; /* subnormal */
  for (int i = 0; i < N; i++) y[i] = i % 3;
  int64_t idx[COUNT];
  make_indices(idx, COUNT, N, 9);
  idx[1] = 0;
  const double so[2][2] = {{0.1, -3.25}, {1.0, 0.0}};
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < N * F; i++) want[i] = (float)(xf[i] * so[k][0] + so[k][1]);
    fixture f = {"x", H5T_NATIVE_FLOAT, 2, {N, F, 0}, xf,       H5T_NATIVE_INT32,
                 1,   {N, 0},           y, 0,         so[k][0], so[k][1]};
    write_fixture(path, &f);
    expect_reads(path, (size_t)N * F * sizeof(float), 1, idx, COUNT, F, want);
    expect_reads(path, (size_t)N * F * sizeof(float) - 1, 0, idx, COUNT, F, want);
  }
  assert_true(want[0] == 0.0f && !signbit(want[0])); /* -0 * 1 + 0 */
}

static void test_float_targets(void **state) {
  (void)state;
  char path[512], err[DPT_ERR_LEN];
  tmp_path(path, sizeof path, "targets.h5");
  float t[18];
  for (int i = 0; i < 18; i++) t[i] = 0.25f * (float)i - 1.0f;
  fixture f = base_fixture();
  f.ytype = H5T_NATIVE_FLOAT;
  f.yrank = 2;
  f.ydims[1] = 3;
  f.y = t;
  write_fixture(path, &f);
  for (int m = 0; m < 2; m++) {
    dpt_dataset *ds = NULL;
    assert_int_equal(dpt_io_dataset_open(path, m ? 4096 : 0, &ds, err, sizeof err), 0);
    dpt_split_info in;
    assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TRAIN, &in), 0);
    assert_int_equal(in.y_labels, 0);
    assert_int_equal(in.y_width, 3);
    assert_int_equal(in.num_classes, 0);
    int64_t idx[3] = {5, 0, 2};
    float x[6], y[9];
    assert_int_equal(dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, 3, x, NULL, y, err, sizeof err),
                     0);
    for (int i = 0; i < 3; i++) {
      assert_true(x[i * 2] == k_xf[idx[i] * 2] && x[i * 2 + 1] == k_xf[idx[i] * 2 + 1]);
      for (int j = 0; j < 3; j++) assert_true(y[i * 3 + j] == t[idx[i] * 3 + j]);
    }
    dpt_io_dataset_close(ds);
  }
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_missing_file(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "nofile.h5");
  remove(path);
  expect_open_error(path, DPT_EIO, "cannot open", "No such file or directory");
}

static void test_not_hdf5(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "foo.txt");
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("hello, not hdf5\n", f);
  fclose(f);
  expect_open_error(path, DPT_EINVAL, "is not an HDF5 file", path);
}

static void test_no_train_x(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "nox.h5");
  fixture f = base_fixture();
  f.xname = NULL;
  write_fixture(path, &f);
  expect_open_error(path, DPT_EINVAL, "/train/x not found", "Dataset format");
}

static void test_y_wrong_n(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "wrongn.h5");
  fixture f = base_fixture();
  f.ydims[0] = 5;
  write_fixture(path, &f);
  expect_open_error(path, DPT_EINVAL, "/train/y has 5 samples but /train/x has 6", path);
}

static void test_x_int16(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "int16.h5");
  int16_t x[12] = {0};
  fixture f = base_fixture();
  f.xtype = H5T_NATIVE_INT16;
  f.x = x;
  write_fixture(path, &f);
  expect_open_error(path, DPT_EINVAL, "/train/x has type int16 (expected uint8 or float32)", path);
}

/* HDF5 accepts dims whose product wraps around 2^64 when the chunks are never written: such a
 * file is a few KB. Found by fuzzing (the feature count overflowed). */
static void test_dims_too_large(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "huge.h5");
  hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = H5Gcreate2(file, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[3] = {1, ((hsize_t)1 << 62) + 1, 4}, chunk[3] = {1, 1, 4};
  hid_t sp = H5Screate_simple(3, dims, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
  assert_true(H5Pset_chunk(pl, 3, chunk) >= 0);
  hid_t d = H5Dcreate2(g, "x", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
  assert_true(d >= 0);
  H5Dclose(d);
  H5Pclose(pl);
  H5Sclose(sp);
  hsize_t n = 1;
  write_array(g, "y", H5T_NATIVE_INT32, 1, &n, k_y6, 0, 0);
  H5Gclose(g);
  H5Fclose(file);
  expect_open_error(path, DPT_EINVAL, "/train/x has dims too large to address", path);
}

static void test_negative_label(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof path, "neglabel.h5");
  int64_t y[6] = {0, 1, 2, -1, 1, 0};
  fixture f = base_fixture();
  f.ytype = H5T_NATIVE_INT64;
  f.y = y;
  write_fixture(path, &f);
  expect_open_error(path, DPT_EINVAL, "sample 3", "negative");
}

static void test_label_ge_num_classes(void **state) {
  (void)state;
  char path[512], err[DPT_ERR_LEN];
  tmp_path(path, sizeof path, "numclasses.h5");
  fixture f = base_fixture();
  f.num_classes = 2;
  write_fixture(path, &f);
  expect_open_error(path, DPT_EINVAL, "sample 2 is >= num_classes 2", "/train/y");
  f.num_classes = 10; /* a larger attribute wins over max + 1 */
  write_fixture(path, &f);
  dpt_dataset *ds = NULL;
  assert_int_equal(dpt_io_dataset_open(path, 0, &ds, err, sizeof err), 0);
  dpt_split_info in;
  assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TRAIN, &in), 0);
  assert_int_equal(in.num_classes, 10);
  assert_int_equal(in.label_max, 2);
  dpt_io_dataset_close(ds);
}

static void test_index_out_of_range(void **state) {
  (void)state;
  char path[512], err[DPT_ERR_LEN];
  tmp_path(path, sizeof path, "range.h5");
  fixture f = base_fixture();
  write_fixture(path, &f);
  for (int m = 0; m < 2; m++) {
    dpt_dataset *ds = NULL;
    assert_int_equal(dpt_io_dataset_open(path, m ? 4096 : 0, &ds, err, sizeof err), 0);
    int64_t idx[3] = {0, 6, 1};
    float x[6];
    int32_t lab[3];
    err[0] = '\0';
    assert_int_equal(
        dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, 3, x, lab, NULL, err, sizeof err),
        DPT_EINVAL);
    assert_non_null(strstr(err, "index 6"));
    assert_non_null(strstr(err, "out of range"));
    idx[1] = -1;
    assert_int_equal(
        dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, 3, x, lab, NULL, err, sizeof err),
        DPT_EINVAL);
    assert_int_equal(dpt_io_dataset_read(ds, DPT_SPLIT_TEST, idx, 1, x, lab, NULL, err, sizeof err),
                     DPT_ENOENT);
    dpt_io_dataset_close(ds);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_synth_cached_equals_uncached),
      cmocka_unit_test(test_synth_is_deterministic),
      cmocka_unit_test(test_uint8_scale_offset),
      cmocka_unit_test(test_uint8_cache_holds_stored_bytes),
      cmocka_unit_test(test_float32_cache_equals_formula),
      cmocka_unit_test(test_float_targets),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_not_hdf5),
      cmocka_unit_test(test_no_train_x),
      cmocka_unit_test(test_y_wrong_n),
      cmocka_unit_test(test_x_int16),
      cmocka_unit_test(test_dims_too_large),
      cmocka_unit_test(test_negative_label),
      cmocka_unit_test(test_label_ge_num_classes),
      cmocka_unit_test(test_index_out_of_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

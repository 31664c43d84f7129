/* test_import_idx.c — unit tests of io/idx.c: tiny MNIST-format idx files (plain and gzipped)
 * written under DPT_TEST_TMP are imported and read back through dpt_io_dataset_open; broken
 * inputs fail with a message naming the file and leave an existing output untouched. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io.h"

enum { N = 5, ROWS = 3, COLS = 4, F = ROWS * COLS, NT = 2 };

static uint8_t g_x[N * F], g_tx[NT * F];
static const uint8_t g_y[N] = {0, 1, 2, 1, 0};
static const uint8_t g_ty[NT] = {2, 0};

static char *tmp_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/idx_%s", DPT_TEST_TMP, name);
  return buf;
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Writes an idx file: images (dims n, ROWS, COLS) or labels (dims n), payload data[0..len),
 * gzipped when gz. */
static void write_idx(const char *path, int images, uint32_t n, const uint8_t *data, size_t len,
                      int gz) {
  unsigned char h[16];
  size_t hlen = images ? 16 : 8;
  put_be32(h, images ? 0x803 : 0x801);
  put_be32(h + 4, n);
  put_be32(h + 8, ROWS);
  put_be32(h + 12, COLS);
  if (gz) {
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, h, (unsigned)hlen), (int)hlen);
    if (len) assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
  } else {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, 1, hlen, f), hlen);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
  }
}

typedef struct {
  char x[512], y[512], tx[512], ty[512];
} idx_files;

static void write_good_files(idx_files *p, const char *tag, int gz) {
  char name[64];
  snprintf(name, sizeof name, "%s_train_x", tag);
  write_idx(tmp_path(p->x, sizeof p->x, name), 1, N, g_x, sizeof g_x, gz);
  snprintf(name, sizeof name, "%s_train_y", tag);
  write_idx(tmp_path(p->y, sizeof p->y, name), 0, N, g_y, sizeof g_y, gz);
  snprintf(name, sizeof name, "%s_test_x", tag);
  write_idx(tmp_path(p->tx, sizeof p->tx, name), 1, NT, g_tx, sizeof g_tx, gz);
  snprintf(name, sizeof name, "%s_test_y", tag);
  write_idx(tmp_path(p->ty, sizeof p->ty, name), 0, NT, g_ty, sizeof g_ty, gz);
}

static int setup(void **state) {
  (void)state;
  for (int i = 0; i < N * F; i++) g_x[i] = (uint8_t)((i * 37 + 11) % 256);
  for (int i = 0; i < NT * F; i++) g_tx[i] = (uint8_t)((i * 53 + 5) % 256);
  return 0;
}

/* Reads the whole train split: x [N*F] and labels [N]. */
static void read_train(const char *path, float *x, int32_t *lab) {
  char err[DPT_ERR_LEN];
  dpt_dataset *ds = NULL;
  assert_int_equal(dpt_io_dataset_open(path, 0, &ds, err, sizeof err), DPT_OK);
  int64_t idx[N];
  for (int i = 0; i < N; i++) idx[i] = i;
  assert_int_equal(dpt_io_dataset_read(ds, DPT_SPLIT_TRAIN, idx, N, x, lab, NULL, err, sizeof err),
                   DPT_OK);
  dpt_io_dataset_close(ds);
}

static void check_imported(const char *out) {
  char err[DPT_ERR_LEN];
  dpt_dataset *ds = NULL;
  assert_int_equal(dpt_io_dataset_open(out, 1 << 20, &ds, err, sizeof err), DPT_OK);
  dpt_split_info in;
  assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TRAIN, &in), DPT_OK);
  assert_int_equal(in.n, N);
  assert_int_equal(in.x_rank, 3);
  assert_int_equal(in.x_dims[1], ROWS);
  assert_int_equal(in.x_dims[2], COLS);
  assert_int_equal(in.features, F);
  assert_int_equal(in.x_u8, 1);
  assert_int_equal(in.y_labels, 1);
  assert_int_equal(in.num_classes, 3);
  dpt_split_info tin;
  assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TEST, &tin), DPT_OK);
  assert_int_equal(tin.n, NT);
  assert_true(tin.scale == in.scale && tin.offset == in.offset);
  dpt_io_dataset_close(ds);

  float x[N * F];
  int32_t lab[N];
  read_train(out, x, lab);
  double sum = 0, sq = 0;
  for (int i = 0; i < N * F; i++) sum += x[i];
  double mean = sum / (N * F);
  for (int i = 0; i < N * F; i++) sq += (x[i] - mean) * (x[i] - mean);
  assert_true(fabs(mean) < 1e-5);
  assert_true(fabs(sqrt(sq / (N * F)) - 1.0) < 1e-5);
  for (int i = 0; i < N; i++) assert_int_equal(lab[i], g_y[i]);
  for (int i = 0; i < N * F; i++) {
    float want = (float)(g_x[i] * in.scale + in.offset);
    assert_memory_equal(&x[i], &want, sizeof want);
  }
}

static void test_import_plain_and_gzip(void **state) {
  (void)state;
  char err[DPT_ERR_LEN], out_p[512], out_g[512];
  idx_files p, g;
  write_good_files(&p, "plain", 0);
  write_good_files(&g, "gz", 1);
  tmp_path(out_p, sizeof out_p, "plain.h5");
  tmp_path(out_g, sizeof out_g, "gz.h5");
  assert_int_equal(dpt_io_import_idx(p.x, p.y, p.tx, p.ty, out_p, err, sizeof err), DPT_OK);
  assert_int_equal(dpt_io_import_idx(g.x, g.y, g.tx, g.ty, out_g, err, sizeof err), DPT_OK);
  check_imported(out_p);
  check_imported(out_g);
}

static void test_import_train_only_nested_dir(void **state) {
  (void)state;
  char err[DPT_ERR_LEN], out[512];
  idx_files p;
  write_good_files(&p, "nested", 0);
  snprintf(out, sizeof out, "%s/idx_nested_%ld/a/b/out.h5", DPT_TEST_TMP, (long)getpid());
  assert_int_equal(dpt_io_import_idx(p.x, p.y, NULL, NULL, out, err, sizeof err), DPT_OK);
  dpt_dataset *ds = NULL;
  assert_int_equal(dpt_io_dataset_open(out, 0, &ds, err, sizeof err), DPT_OK);
  dpt_split_info in;
  assert_int_equal(dpt_io_dataset_info(ds, DPT_SPLIT_TEST, &in), DPT_ENOENT);
  dpt_io_dataset_close(ds);
}

/* A failing import names the bad file, returns EINVAL and leaves out as it was. */
static void expect_import_fails(const idx_files *p, const char *out, const char *n1,
                                const char *n2) {
  char err[DPT_ERR_LEN] = "", tmp[600];
  int rc = dpt_io_import_idx(p->x, p->y, p->tx, p->ty, out, err, sizeof err);
  if (rc != DPT_EINVAL || !strstr(err, n1) || (n2 && !strstr(err, n2)))
    fail_msg("rc %d, message '%s' (expected '%s')", rc, err, n1);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
  assert_int_not_equal(access(tmp, F_OK), 0);
}

static void test_truncated_keeps_output(void **state) {
  (void)state;
  char err[DPT_ERR_LEN], out[512];
  idx_files p;
  write_good_files(&p, "trunc", 0);
  tmp_path(out, sizeof out, "trunc.h5");
  assert_int_equal(dpt_io_import_idx(p.x, p.y, p.tx, p.ty, out, err, sizeof err), DPT_OK);
  float x0[N * F], x1[N * F];
  int32_t l0[N], l1[N];
  read_train(out, x0, l0);

  write_idx(p.x, 1, N, g_x, sizeof g_x - 7, 0); /* plain, 7 bytes short */
  expect_import_fails(&p, out, p.x, "truncated");
  write_idx(p.x, 1, N, g_x, sizeof g_x - 7, 1); /* gzipped, 7 bytes short */
  expect_import_fails(&p, out, p.x, NULL);
  write_idx(p.x, 1, N, g_x, sizeof g_x, 0);
  write_idx(p.tx, 0, NT, g_tx, sizeof g_tx, 0); /* labels magic where images expected */
  expect_import_fails(&p, out, p.tx, "magic");

  read_train(out, x1, l1);
  assert_memory_equal(x0, x1, sizeof x0);
  assert_memory_equal(l0, l1, sizeof l0);
}

/* Image dims of 0xffffffff x 0xffffffff: rows * cols overflowed int64 before it was checked
 * (found by fuzzing). */
static void test_huge_image_dims(void **state) {
  (void)state;
  char out[512];
  idx_files p;
  write_good_files(&p, "huge", 0);
  unsigned char h[16];
  put_be32(h, 0x803);
  put_be32(h + 4, 1);
  put_be32(h + 8, 0xffffffffu);
  put_be32(h + 12, 0xffffffffu);
  FILE *f = fopen(p.x, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(h, 1, sizeof h, f), sizeof h);
  assert_int_equal(fclose(f), 0);
  tmp_path(out, sizeof out, "huge.h5");
  remove(out);
  expect_import_fails(&p, out, p.x, "idx dims 1 x 4294967295 x 4294967295");
  assert_int_not_equal(access(out, F_OK), 0);
}

static void test_mismatched_n(void **state) {
  (void)state;
  char out[512];
  idx_files p;
  write_good_files(&p, "mismatch", 1);
  write_idx(p.y, 0, N - 1, g_y, N - 1, 1);
  tmp_path(out, sizeof out, "mismatch.h5");
  remove(out);
  expect_import_fails(&p, out, p.y, "4 labels");
  assert_int_not_equal(access(out, F_OK), 0);
}

static void test_missing_input(void **state) {
  (void)state;
  char err[DPT_ERR_LEN], out[512], missing[512];
  idx_files p;
  write_good_files(&p, "missing", 0);
  tmp_path(out, sizeof out, "missing.h5");
  tmp_path(missing, sizeof missing, "does_not_exist");
  int rc = dpt_io_import_idx(missing, p.y, NULL, NULL, out, err, sizeof err);
  assert_int_equal(rc, DPT_EIO);
  assert_non_null(strstr(err, missing));
  assert_non_null(strstr(err, "No such file"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_import_plain_and_gzip),
      cmocka_unit_test(test_import_train_only_nested_dir),
      cmocka_unit_test(test_truncated_keeps_output),
      cmocka_unit_test(test_huge_image_dims),
      cmocka_unit_test(test_mismatched_n),
      cmocka_unit_test(test_missing_input),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}

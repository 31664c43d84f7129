/* test_base.c — the shared vocabulary of base.h: error codes and their descriptions, one parser
 * of booleans and numbers, and the atomic file commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

static void test_error_space_is_one_table(void **state) {
  (void)state;
  assert_string_equal(dpt_strerror(DPT_OK), "success");
  assert_string_equal(dpt_err_name(DPT_EINVAL), "EINVAL");
  assert_string_equal(dpt_err_name(DPT_EMPI), "EMPI");
  assert_string_equal(dpt_strerror(12345), "unknown error");
  /* every code is distinct, negative, and has its own description */
  int codes[] = {
#define CODE(name, value, desc) DPT_##name,
      DPT_ERRNO_MAP(CODE)
#undef CODE
  };
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(dpt_strerror(codes[i]), "unknown error");
    for (size_t j = 0; j < i; j++) assert_int_not_equal(codes[i], codes[j]);
  }
}

static void test_booleans_one_vocabulary(void **state) {
  (void)state;
  const char *yes[] = {"1", "true", "TRUE", "yes", "Yes", "on", " on "};
  const char *no[] = {"0", "false", "no", "NO", "off", "\toff"};
  const char *bad[] = {"", "2", "y", "onn", "true1", "-1", "o n"};
  int v;
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    v = 0;
    assert_int_equal(dpt_parse_bool(yes[i], &v), DPT_OK);
    assert_int_equal(v, 1);
  }
  for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
    v = 1;
    assert_int_equal(dpt_parse_bool(no[i], &v), DPT_OK);
    assert_int_equal(v, 0);
  }
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    v = 7;
    assert_int_equal(dpt_parse_bool(bad[i], &v), DPT_EINVAL);
    assert_int_equal(v, 7); /* untouched */
  }
}

static void test_numbers_blanks_and_infinity(void **state) {
  (void)state;
  double d = 0;
  assert_int_equal(dpt_parse_double("1e-3", &d), DPT_OK);
  assert_true(d == 1e-3);
  assert_int_equal(dpt_parse_double("  -2.5\t", &d), DPT_OK);
  assert_true(d == -2.5);
  assert_int_equal(dpt_parse_double("0x1p-4", &d), DPT_OK);
  assert_true(d == 0.0625);
  const char *bad[] = {"", " ", "inf", "-Infinity", "nan", "1e999", "1.5x", "1 2", "--1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    d = 42;
    assert_int_equal(dpt_parse_double(bad[i], &d), DPT_EINVAL);
    assert_true(d == 42);
  }
  long l = 0;
  assert_int_equal(dpt_parse_long("9007199254740993", &l), DPT_OK); /* 2^53 + 1, exact */
  assert_true(l == 9007199254740993L);
  assert_int_equal(dpt_parse_long(" 1e6 ", &l), DPT_OK);
  assert_true(l == 1000000);
  assert_int_equal(dpt_parse_long("-12", &l), DPT_OK);
  assert_true(l == -12);
  const char *badl[] = {"", "1.5", "1e30", "99999999999999999999", "12abc", "inf", "+"};
  for (size_t i = 0; i < sizeof badl / sizeof *badl; i++) {
    l = 42;
    assert_int_equal(dpt_parse_long(badl[i], &l), DPT_EINVAL);
    assert_true(l == 42);
  }
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[256];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static void test_atomic_file_replaces_or_keeps(void **state) {
  (void)state;
  char dir[512], path[600], tmp[620], err[DPT_ERR_LEN];
  snprintf(dir, sizeof dir, "%s/base-files/a/b", DPT_TEST_TMP);
  assert_int_equal(dpt_mkdirs(dir, "test", err, sizeof err), DPT_OK);
  assert_int_equal(dpt_mkdirs(dir, "test", err, sizeof err), DPT_OK); /* exists: fine */
  snprintf(path, sizeof path, "%s/out.txt", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  dpt_afile a;
  assert_int_equal(dpt_afile_open(&a, path, err, sizeof err), DPT_OK);
  fputs("first\n", a.f);
  assert_int_equal(dpt_afile_commit(&a, err, sizeof err), DPT_OK);
  assert_string_equal(slurp(path), "first\n");
  assert_int_equal(access(tmp, F_OK), -1);
  /* an abandoned write leaves the committed file as it was and no temporary file */
  assert_int_equal(dpt_afile_open(&a, path, err, sizeof err), DPT_OK);
  fputs("second, never committed\n", a.f);
  dpt_afile_abort(&a);
  assert_string_equal(slurp(path), "first\n");
  assert_int_equal(access(tmp, F_OK), -1);
  /* a directory in the way of mkdir -p is named */
  char clash[700];
  snprintf(clash, sizeof clash, "%s/sub", path);
  assert_int_equal(dpt_mkdirs(clash, "--run-dir", err, sizeof err), DPT_EIO);
  assert_non_null(strstr(err, "--run-dir"));
  /* a FIFO is refused before anything opens it (an open would block) */
  char fifo[700];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(dpt_check_regular(fifo, "--data", err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "FIFO"));
  assert_int_equal(dpt_afile_open(&a, fifo, err, sizeof err), DPT_EINVAL);
  assert_int_equal(dpt_check_regular(path, "--data", err, sizeof err), DPT_OK);
  unlink(fifo);
  /* a commit whose temporary file is missing reports the target and keeps it */
  assert_int_equal(dpt_file_commit(tmp, path, err, sizeof err), DPT_EIO);
  assert_non_null(strstr(err, path));
  assert_string_equal(slurp(path), "first\n");
}

static void test_splitmix_and_json(void **state) {
  (void)state;
  uint64_t s = 0;
  /* the reference sequence of splitmix64 seeded with 0 */
  assert_true(dpt_splitmix64(&s) == 0xE220A8397B1DCDAFull);
  assert_true(dpt_splitmix64(&s) == 0x6E789E6AA1B965F4ull);
  char buf[64];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  dpt_json_escape(f, "a\"b\\c\n\x01é");
  fclose(f);
  assert_string_equal(buf, "a\\\"b\\\\c\\u000a\\u0001é");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_space_is_one_table),
      cmocka_unit_test(test_booleans_one_vocabulary),
      cmocka_unit_test(test_numbers_blanks_and_infinity),
      cmocka_unit_test(test_atomic_file_replaces_or_keeps),
      cmocka_unit_test(test_splitmix_and_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_import_text.c — unit tests of io/text.c: small UTF-8 texts written under DPT_TEST_TMP are
 * imported and read back through dpt_io_tokens_open (vocabulary, token ids, held-out split,
 * windows); bad inputs (empty, missing, invalid UTF-8 of several kinds) fail with a message
 * naming the file (and the byte offset) and leave an existing output untouched. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

static char *tmp_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/text_%s", DPT_TEST_TMP, name);
  return buf;
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (len) assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* "héllo wörld\n" + "ab€" in two files: the character vocabulary is the sorted code points, the
 * tokens spell the text back, the last ceil(0.25 * N) tokens are the test split. */
static void test_char_roundtrip(void **state) {
  (void)state;
  char a[512], b[512], out[512], err[DPT_ERR_LEN] = "";
  const char *ta = "h\xc3\xa9llo w\xc3\xb6rld\n", *tb = "ab\xe2\x82\xac";
  write_file(tmp_path(a, sizeof a, "a.txt"), ta, strlen(ta));
  write_file(tmp_path(b, sizeof b, "b.txt"), tb, strlen(tb));
  tmp_path(out, sizeof out, "rt.h5");
  const char *files[] = {a, b};
  dpt_text_summary sum;
  assert_int_equal(dpt_io_import_text(files, 2, out, 0.25, "char", &sum, err, sizeof err), 0);
  const uint32_t text[] = {'h', 0xE9, 'l', 'l',  'o', ' ', 'w',   0xF6,
                           'r', 'l',  'd', '\n', 'a', 'b', 0x20AC};
  const size_t n = sizeof text / sizeof *text;
  assert_int_equal(sum.tokens, n);
  assert_int_equal(sum.test, 4); /* ceil(0.25 * 15) */
  assert_int_equal(sum.train, n - 4);
  dpt_tokens *t = NULL;
  assert_int_equal(dpt_io_tokens_open(out, &t, err, sizeof err), 0);
  const int32_t *codes;
  int bytes = -1;
  int64_t v = dpt_io_tokens_vocab(t, &codes, &bytes);
  assert_int_equal(bytes, 0);
  assert_int_equal(v, 13); /* \n space a b d e-acute h l o o-umlaut r w euro */
  assert_int_equal(sum.vocab, v);
  for (int64_t i = 1; i < v; i++) assert_true(codes[i - 1] < codes[i]);
  assert_int_equal(codes[0], '\n');
  assert_int_equal(codes[v - 1], 0x20AC);
  assert_int_equal(dpt_io_tokens_count(t, DPT_SPLIT_TRAIN), n - 4);
  assert_int_equal(dpt_io_tokens_count(t, DPT_SPLIT_TEST), 4);
  /* windows: x = tokens[p, p+T), next = tokens[p+1, p+T+1), mapping back to the text */
  int64_t starts[2] = {0, 7};
  float x[2 * 3];
  int32_t next[2 * 3];
  assert_int_equal(dpt_io_tokens_read(t, DPT_SPLIT_TRAIN, starts, 2, 3, x, next, err, sizeof err),
                   0);
  for (int w = 0; w < 2; w++)
    for (int j = 0; j < 3; j++) {
      assert_int_equal(codes[(int)x[w * 3 + j]], text[starts[w] + j]);
      assert_int_equal(codes[next[w * 3 + j]], text[starts[w] + j + 1]);
    }
  int64_t test0 = 0;
  assert_int_equal(dpt_io_tokens_read(t, DPT_SPLIT_TEST, &test0, 1, 3, x, next, err, sizeof err),
                   0);
  assert_int_equal(codes[(int)x[0]], '\n'); /* the test split starts at token 11 */
  assert_int_equal(codes[next[2]], 0x20AC);
  /* a window needs len + 1 tokens */
  int64_t last = (int64_t)(n - 4) - 3;
  assert_int_equal(dpt_io_tokens_read(t, DPT_SPLIT_TRAIN, &last, 1, 3, x, next, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, out));
  assert_int_equal(dpt_io_tokens_read(t, DPT_SPLIT_TEST, &test0, 1, 4, x, next, err, sizeof err),
                   DPT_EINVAL);
  dpt_io_tokens_close(t);
  assert_int_equal(dpt_io_is_tokens(out), 1);
}

/* --vocab byte: 256 tokens, any bytes (invalid UTF-8 included), token = byte. */
static void test_byte_vocab(void **state) {
  (void)state;
  char a[512], out[512], err[DPT_ERR_LEN] = "";
  const unsigned char raw[] = {'a', 0xFF, 0x00, 0xC3, 'z'};
  write_file(tmp_path(a, sizeof a, "raw.bin"), raw, sizeof raw);
  tmp_path(out, sizeof out, "bytes.h5");
  const char *files[] = {a};
  assert_int_equal(dpt_io_import_text(files, 1, out, 0, "byte", NULL, err, sizeof err), 0);
  dpt_tokens *t = NULL;
  assert_int_equal(dpt_io_tokens_open(out, &t, err, sizeof err), 0);
  int bytes = 0;
  assert_int_equal(dpt_io_tokens_vocab(t, NULL, &bytes), 256);
  assert_int_equal(bytes, 1);
  assert_int_equal(dpt_io_tokens_count(t, DPT_SPLIT_TRAIN), 5);
  assert_int_equal(dpt_io_tokens_count(t, DPT_SPLIT_TEST), 0);
  int64_t s0 = 0;
  float x[4];
  int32_t next[4];
  assert_int_equal(dpt_io_tokens_read(t, DPT_SPLIT_TRAIN, &s0, 1, 4, x, next, err, sizeof err), 0);
  for (int j = 0; j < 4; j++)
    assert_int_equal((int)x[j], raw[j]), assert_int_equal(next[j], raw[j + 1]);
  dpt_io_tokens_close(t);
}

/* Each bad input fails with the file named (and the byte offset for UTF-8), and the good file
 * already at out is left as it was. */
static void test_bad_input(void **state) {
  (void)state;
  char out[512], good[512], p[512], err[DPT_ERR_LEN];
  tmp_path(out, sizeof out, "keep.h5");
  tmp_path(good, sizeof good, "good.txt");
  write_file(good, "hello", 5);
  const char *gf[] = {good};
  assert_int_equal(dpt_io_import_text(gf, 1, out, 0, NULL, NULL, err, sizeof err), 0);
  struct stat before;
  assert_int_equal(stat(out, &before), 0);
  struct {
    const char *name;
    const char *bytes;
    size_t len;
    const char *want; /* in the message besides the file name */
  } cases[] = {
      {"empty.txt", "", 0, "empty"},
      {"ff.txt", "ab\xff", 3, "byte offset 2"},
      {"overlong.txt", "x\xc0\x80", 3, "byte offset 1"},
      {"surrogate.txt", "xyz\xed\xa0\x80", 6, "byte offset 3"},
      {"truncated.txt", "abcd\xe2\x82", 6, "byte offset 4"},
      {"toolarge.txt", "\xf4\x90\x80\x80", 4, "byte offset 0"},
      {"lonecont.txt", "a\x80", 2, "byte offset 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    tmp_path(p, sizeof p, cases[i].name);
    write_file(p, cases[i].bytes, cases[i].len);
    const char *files[] = {good, p}; /* the second file is named, not the first */
    err[0] = 0;
    assert_int_equal(dpt_io_import_text(files, 2, out, 0.1, "char", NULL, err, sizeof err),
                     DPT_EINVAL);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, cases[i].want));
    assert_null(strchr(err, '\n'));
  }
  tmp_path(p, sizeof p, "does-not-exist.txt");
  const char *missing[] = {p};
  assert_int_equal(dpt_io_import_text(missing, 1, out, 0.1, "char", NULL, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, p));
  assert_int_equal(dpt_io_import_text(gf, 1, out, 0.1, "word", NULL, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "word"));
  assert_int_equal(dpt_io_import_text(gf, 1, out, 1.0, "char", NULL, err, sizeof err), DPT_EINVAL);
  struct stat after;
  assert_int_equal(stat(out, &after), 0);
  assert_int_equal(after.st_ino, before.st_ino); /* never replaced */
  assert_int_equal(after.st_size, before.st_size);
}

/* A file that is not a token dataset is told apart. */
static void test_not_tokens(void **state) {
  (void)state;
  char p[512], err[DPT_ERR_LEN];
  tmp_path(p, sizeof p, "plain.txt");
  write_file(p, "not hdf5", 8);
  assert_int_equal(dpt_io_is_tokens(p), 0);
  dpt_tokens *t = (dpt_tokens *)&err;
  assert_true(dpt_io_tokens_open(p, &t, err, sizeof err) < 0);
  assert_null(t);
  assert_non_null(strstr(err, p));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_char_roundtrip),
      cmocka_unit_test(test_byte_vocab),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_not_tokens),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

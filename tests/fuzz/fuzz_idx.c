/* fuzz_idx.c — libFuzzer harness for dpt_io_import_idx (io/idx.c): MNIST-format idx files,
 * plain or gzipped, converted into a dataset file. Whenever an import succeeds, the file it
 * wrote must open with dpt_io_dataset_open and read back (io/idx.c promises "the written file
 * always opens"); a failure of that is reported as a crash.
 *
 * Input: a mode byte, then file contents.
 *   mode & 3    which file the fuzz bytes replace (train x, train y, test x, test y)
 *   mode & 4    import a test split too (forced on when the fuzz bytes are a test file)
 *   mode & 8    the harness gzips the fuzz bytes (so mutations reach the parser through zlib)
 *   mode & 16   split mode: the rest is four length-prefixed pieces (2-byte big-endian
 *               length each), one per file, instead of one file's contents
 * Files not given by the input are small valid ones (3 training and 2 test images of 2x2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_util.h"
#include "io.h"

/* An announced payload above this is skipped: dpt mallocs the announced size before reading
 * (fails cleanly with DPT_ENOMEM on a real system), which libFuzzer's malloc limit would
 * report as an out-of-memory crash. 64 MiB is above Fashion-MNIST's 47 MB training images. */
#define FZ_MAX_PAYLOAD ((uint64_t)64 << 20)

static const uint8_t k_train_x[] = {0, 0, 8, 3,  0,   0,   0, 3, 0, 0, 0,   2,   0,  0,
                                    0, 2, 0, 64, 128, 255, 1, 2, 3, 4, 200, 100, 50, 0};
static const uint8_t k_train_y[] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2};
static const uint8_t k_test_x[] = {0, 0, 8, 3, 0, 0, 0, 2, 0,   0,   0, 2,
                                   0, 0, 0, 2, 9, 8, 7, 6, 255, 255, 0, 0};
static const uint8_t k_test_y[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 0};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_init();
  return 0;
}

static void write_gz(const char *path, const uint8_t *d, size_t n) {
  gzFile g = gzopen(path, "wb");
  if (!g || (n && gzwrite(g, d, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) {
    fprintf(stderr, "fuzz_idx: cannot gzip into %s\n", path);
    abort();
  }
}

/* Bytes the header of the file at path announces (as dpt reads it, through zlib), or 0 when
 * dpt rejects the header before allocating. */
static uint64_t announced(const char *path) {
  gzFile g = gzopen(path, "rb");
  if (!g) return 0;
  unsigned char h[16];
  int k = gzread(g, h, sizeof h);
  gzclose(g);
  if (k < 8) return 0;
  uint64_t d[3] = {0, 1, 1};
  int images = h[3] == 3, nd = images ? 3 : 1;
  if (k < 4 + 4 * nd) return 0;
  for (int i = 0; i < nd; i++)
    d[i] = (uint64_t)h[4 + 4 * i] << 24 | (uint64_t)h[5 + 4 * i] << 16 |
           (uint64_t)h[6 + 4 * i] << 8 | h[7 + 4 * i];
  if (d[1] * d[2] > (1u << 24)) return 0;
  return d[0] * d[1] * d[2];
}

/* The imported file must open and read back. */
static void check_output(const char *out, int with_test) {
  char err[DPT_ERR_LEN];
  dpt_dataset *ds = NULL;
  if (dpt_io_dataset_open(out, (size_t)1 << 20, &ds, err, sizeof err)) {
    fprintf(stderr, "fuzz_idx: import succeeded but its file does not open: %s\n", err);
    abort();
  }
  for (int s = 0; s < 1 + with_test; s++) {
    dpt_split_info in;
    if (dpt_io_dataset_info(ds, (dpt_split)s, &in) || !in.y_labels || !in.x_u8 || in.x_rank != 3 ||
        in.label_max >= in.num_classes) {
      fprintf(stderr, "fuzz_idx: imported split %d has an unexpected layout\n", s);
      abort();
    }
    int64_t idx[2] = {0, in.n - 1};
    float *x = malloc(2 * (size_t)in.features * sizeof *x);
    int32_t lab[2];
    if (!x) abort();
    if (dpt_io_dataset_read(ds, (dpt_split)s, idx, 2, x, lab, NULL, err, sizeof err)) {
      fprintf(stderr, "fuzz_idx: imported split %d does not read: %s\n", s, err);
      abort();
    }
    free(x);
  }
  dpt_io_dataset_close(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  unsigned mode = fz_u8(&in);
  static const char *const names[4] = {"train-x.idx", "train-y.idx", "test-x.idx", "test-y.idx"};
  static const uint8_t *const defs[4] = {k_train_x, k_train_y, k_test_x, k_test_y};
  static const size_t deflen[4] = {sizeof k_train_x, sizeof k_train_y, sizeof k_test_x,
                                   sizeof k_test_y};
  char paths[4][4096], out[4096];
  const uint8_t *piece[4];
  size_t plen[4];
  for (int i = 0; i < 4; i++) {
    fz_path(paths[i], names[i]);
    piece[i] = defs[i], plen[i] = deflen[i];
  }
  int with_test = (mode & 4) != 0;
  if (mode & 16) {
    with_test = 1;
    for (int i = 0; i < 4; i++) {
      size_t hi = fz_u8(&in), lo = fz_u8(&in), want = hi << 8 | lo;
      plen[i] = want < in.n ? want : in.n;
      piece[i] = in.p;
      in.p += plen[i], in.n -= plen[i];
    }
  } else {
    unsigned which = mode & 3;
    piece[which] = in.p, plen[which] = in.n;
    if (which >= 2) with_test = 1;
  }
  for (int i = 0; i < 4; i++) {
    int fuzzed = piece[i] != defs[i];
    if (fuzzed && (mode & 8))
      write_gz(paths[i], piece[i], plen[i]);
    else
      fz_write(paths[i], piece[i], plen[i]);
    if ((i < 2 || with_test) && announced(paths[i]) > FZ_MAX_PAYLOAD) return 0;
  }
  fz_path(out, "out/data.h5"); /* "out/" exercises the importer's mkdir -p */
  char err[DPT_ERR_LEN] = "";
  int rc = dpt_io_import_idx(paths[0], paths[1], with_test ? paths[2] : NULL,
                             with_test ? paths[3] : NULL, out, err, sizeof err);
  if (rc == DPT_OK) {
    check_output(out, with_test);
    remove(out);
  } else if (!err[0]) {
    fprintf(stderr, "fuzz_idx: import failed (%d) without a message\n", rc);
    abort();
  }
  return 0;
}

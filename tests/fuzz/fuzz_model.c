/* fuzz_model.c — libFuzzer harness for model files (runtime/model_file.c over inih, and
 * model_show.c): the input is a model file's text; it is built as `--model file:PATH` against
 * a flat dataset ([784], 10 classes), an image dataset ([8, 8], 4 classes) and none, and what
 * builds is shown, printed as a torch module, initialised and evaluated on two samples.
 * Findings: a crash, a leak, a failure without a message, or a model that fails its check. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime.h"

/* Sizes of at most this many digits (layer widths, kernels up to 999), so that a legitimately
 * huge model does not count as a finding (an out-of-memory). */
#define FZ_MAX_DIGITS 3

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_init();
  return 0;
}

static int small(const uint8_t *data, size_t size) {
  int run = 0;
  for (size_t i = 0; i < size; i++) {
    run = data[i] >= '0' && data[i] <= '9' ? run + 1 : 0;
    if (run > FZ_MAX_DIGITS) return 0;
  }
  return 1;
}

static void need_message(int rc, const char *err, const char *what) {
  if (rc && !err[0]) {
    fprintf(stderr, "fuzz_model: %s failed (%d) without a message\n", what, rc);
    abort();
  }
}

static void try_data(const char *spec, const dpt_model_data *d) {
  char err[DPT_ERR_LEN] = "", *text = NULL;
  dpt_model m;
  int rc = dpt_model_create(spec, "relu", "ce", d, &m, err, sizeof err);
  need_message(rc, err, "dpt_model_create");
  if (rc) return;
  if (dpt_model_check(&m, err, sizeof err)) {
    fprintf(stderr, "fuzz_model: a built model fails its check: %s\n", err);
    abort();
  }
  if (m.nparams <= (1u << 22) && m.in_features <= (1 << 16)) {
    float *p = malloc(m.nparams * sizeof *p), *x = calloc(2 * (size_t)m.in_features, sizeof *x);
    int32_t y[2] = {0, 1};
    double loss = 0;
    int64_t correct = 0;
    if (p && x && !m.init(&m, p, 1, err, sizeof err))
      m.evaluate(&m, p, x, m.wants_labels ? y : NULL, x, 2, &loss, &correct, err, sizeof err);
    free(p), free(x);
  }
  m.destroy(&m);
  rc = dpt_model_show(spec, "relu", "ce", d, &text, err, sizeof err);
  need_message(rc, err, "dpt_model_show");
  free(text);
  text = NULL;
  rc = dpt_model_torch(spec, "relu", "ce", d, &text, err, sizeof err);
  need_message(rc, err, "dpt_model_torch");
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!small(data, size)) return 0;
  char path[4096], spec[4200];
  fz_path(path, "model.ini");
  fz_write(path, data, size);
  snprintf(spec, sizeof spec, "file:%s", path);
  dpt_model_data flat = {
      .sample = {1, {784}}, .features = 784, .labels = 1, .classes = 10, .targets = 1};
  dpt_model_data img = {
      .sample = {2, {8, 8}}, .features = 64, .labels = 1, .classes = 4, .targets = 1};
  try_data(spec, &flat);
  try_data(spec, &img);
  try_data(spec, NULL);
  return 0;
}

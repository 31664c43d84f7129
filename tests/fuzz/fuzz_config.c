/* fuzz_config.c — libFuzzer harness for the dpt command's option parsing: --config INI files
 * (inih) and command-line words, applied to dpt_train_opts and validated, as `dpt train` does
 * (launch/main.c cmd_train); then what a validated configuration goes on to build: the model
 * spec, the solver and the scheduler, stepped a few times.
 *
 * Input: the INI file's text, then optionally a NUL byte and command-line words separated by
 * NUL bytes; argv is {"dpt", "train", "--config", <file>, words...}. Words that name another
 * config file are dropped (the fuzzer must not make dpt read /dev/zero or a FIFO). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "launch.h"

/* Bounds on what the harness builds from a valid configuration, so that a legitimately huge
 * model or run does not count as a finding: layer sizes (digits per size), slice length and
 * scheduler steps. */
#define FZ_MAX_SIZE_DIGITS 4
#define FZ_SOLVER_LEN 16
#define FZ_SCHED_STEPS 300
#define FZ_MAX_WORDS 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_init();
  return 0;
}

static void on_param(void *ctx, const char *name, const char *value, const char *help) {
  (void)ctx, (void)name, (void)value, (void)help;
}

/* 1 if every layer size of "mlp:..." has at most FZ_MAX_SIZE_DIGITS digits. */
static int small_model(const char *spec) {
  int run = 0;
  for (const char *c = spec; *c; c++) {
    run = (*c >= '0' && *c <= '9') ? run + 1 : 0;
    if (run > FZ_MAX_SIZE_DIGITS) return 0;
  }
  return 1;
}

/* What dpt_train_run builds from the options before it touches data (runtime/train.c). */
static void build_from(const dpt_train_opts *o) {
  char err[DPT_ERR_LEN];
  if (small_model(o->model)) {
    dpt_model m;
    if (dpt_mlp_create(o->model, o->activation, o->loss, &m, err, sizeof err) == 0) m.destroy(&m);
  }
  dpt_solver *s = NULL;
  if (dpt_solver_create(&o->solver, FZ_SOLVER_LEN, &s, err, sizeof err)) return;
  /* runtime/train.c: the run's scheduler steps for a 1000-sample training set */
  long per_epoch = (long)(1000 / o->batch);
  long total = per_epoch * o->epochs;
  if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
  long steps = o->sched.interval == DPT_SCHED_EVERY_STEP ? total : o->epochs;
  dpt_sched *sc = NULL;
  if (dpt_sched_create(&o->sched, o->solver.lr, dpt_solver_has_momentum(s), dpt_solver_momentum(s),
                       steps, &sc, err, sizeof err) == 0) {
    float param[FZ_SOLVER_LEN], grad[FZ_SOLVER_LEN];
    for (int i = 0; i < FZ_SOLVER_LEN; i++)
      param[i] = 0.5f - (float)i / 8, grad[i] = 0.25f * (float)(i % 5) - 0.5f;
    for (int k = 0; k < FZ_SCHED_STEPS && k < steps + 2; k++) {
      dpt_solver_set_lr(s, dpt_sched_lr(sc));
      if (dpt_sched_cycles_momentum(sc)) dpt_solver_set_momentum(s, dpt_sched_momentum(sc));
      if (k < 4) dpt_solver_step(s, param, grad);
      dpt_sched_step(sc, (double)(k % 7));
    }
    dpt_sched_free(sc);
  }
  dpt_solver_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[4096];
  fz_path(path, "config.ini");
  const uint8_t *nul = memchr(data, 0, size);
  size_t ini_len = nul ? (size_t)(nul - data) : size;
  fz_write(path, data, ini_len);

  /* argv words: copies of the NUL-separated pieces after the INI text */
  char *words = NULL;
  char *argv[4 + FZ_MAX_WORDS];
  int argc = 0;
  argv[argc++] = "dpt";
  argv[argc++] = "train";
  argv[argc++] = "--config";
  argv[argc++] = path;
  if (nul) {
    size_t rest = size - ini_len - 1;
    words = malloc(rest + 1);
    if (!words) return 0;
    memcpy(words, nul + 1, rest);
    words[rest] = 0;
    for (char *w = words; w <= words + rest && argc < 4 + FZ_MAX_WORDS; w += strlen(w) + 1) {
      if (strstr(w, "config")) { /* keeps the fuzzer off arbitrary files */
        free(words);
        return 0;
      }
      argv[argc++] = w;
    }
  }

  char err[DPT_ERR_LEN] = "";
  dpt_train_opts o;
  dpt_train_defaults(&o);
  kv_list l = {0};
  int rc = dpt_launch_collect(argc, argv, 2, &l, err, sizeof err);
  if (!rc) rc = dpt_launch_apply(&o, &l, err, sizeof err);
  if (!rc && dpt_train_validate(&o, err, sizeof err)) {
    rc = DPT_EXIT_USAGE;
    dpt_launch_blame(&l, err, sizeof err);
  }
  dpt_launch_kv_free(&l);
  if (rc && !err[0]) {
    fprintf(stderr, "fuzz_config: status %d without a message\n", rc);
    abort();
  }
  if (!rc) {
    dpt_train_describe(&o, on_param, NULL);
    dpt_optim_solver_describe(&o.solver, on_param, NULL);
    dpt_optim_sched_describe(&o.sched, on_param, NULL);
    build_from(&o);
  }
  free(words);
  return 0;
}

/* Replays the PyTorch 1.13 solver recordings (ref/solvers/CASE.txt, written by
 * gen_solver_ref.py) through dpt's solvers, bitwise: after every step the digest of all n
 * parameters and the watched elements equal torch's bit for bit (tolerance 0, the sign of zero
 * included), and so does every state entry torch holds at the end, under torch's name.
 * Each case runs twice: straight, and re-created from its named state before every step (the
 * checkpoint/resume path: enumerate, free, create with the creation-time hyperparameters,
 * restore by name), which must continue bitwise. The lr and momentum/beta1 of each step are
 * set before it as the trainer does. Also checks the recordings cover what issue 15 asks for. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

#define REF_DIR "ref/solvers"
#define MAX_WATCH 16 /* gen_solver_ref.py's WATCH */
#define MAX_STATE 8

/* --- the generator and digest of gen_solver_ref.py --- */

static uint64_t splitmix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* n floats m * 2^(e-23), exact in fp32; stream 0: initial parameters, 1: gradients (with
 * about 10% exact zeros) at this step. */
static void draw(uint64_t seed, uint64_t stream, uint64_t step, float *v, size_t n) {
  uint64_t k = splitmix((seed << 40) ^ (stream << 32) ^ step);
  int e = stream == 0 ? 0 : (int)((k >> 8) % 14) - 10;
  float scale = ldexpf(1.0f, e - 23);
  for (size_t i = 0; i < n; i++) {
    uint64_t h = splitmix(k ^ (uint64_t)i);
    v[i] = (float)((int64_t)(h >> 40) - (1 << 23)) * scale;
    if (stream == 1 && ((h >> 8) & 255) < 26) v[i] = 0.0f;
  }
}

static uint64_t digest(const float *v, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits;
    memcpy(&bits, &v[i], sizeof bits);
    sum += splitmix((uint64_t)bits + ((uint64_t)i << 32));
  }
  return sum;
}

static int same_bits(float a, float b) {
  return !memcmp(&a, &b, sizeof a);
}

/* --- re-creation from named state --- */

static dpt_solver *recreate(dpt_solver *s, const dpt_solver_params *p0, size_t n) {
  int count = dpt_solver_state_count(s);
  assert_true(count <= MAX_STATE);
  const char *names[MAX_STATE];
  dpt_state_type types[MAX_STATE];
  void *saved[MAX_STATE];
  for (int i = 0; i < count; i++) {
    dpt_state_info info;
    void *ptr = dpt_solver_state(s, i, &info);
    size_t bytes = info.type == DPT_STATE_VECTOR ? n * sizeof(float) : sizeof(double);
    names[i] = info.name; /* static strings: valid after free */
    types[i] = info.type;
    saved[i] = malloc(bytes ? bytes : 1);
    memcpy(saved[i], ptr, bytes);
  }
  dpt_solver_free(s);
  char err[DPT_ERR_LEN];
  dpt_solver *t = NULL;
  assert_int_equal(dpt_solver_create(p0, n, &t, err, sizeof err), 0);
  assert_int_equal(dpt_solver_state_count(t), count);
  for (int i = 0; i < count; i++) {
    int idx = dpt_solver_state_find(t, names[i]);
    assert_true(idx >= 0);
    dpt_state_info info;
    void *ptr = dpt_solver_state(t, idx, &info);
    assert_int_equal(info.type, types[i]);
    memcpy(ptr, saved[i], info.type == DPT_STATE_VECTOR ? n * sizeof(float) : sizeof(double));
    free(saved[i]);
  }
  return t;
}

/* --- one case --- */

typedef struct {
  dpt_solver_kind kind;
  size_t n;
  int has_momentum; /* the recording gives a momentum/beta1 per step */
} case_info;

static int report(int *failures, const char *path, int pass, const char *fmt, ...) {
  if ((*failures)++ < 6) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("%s (%s): %s\n", path, pass ? "re-created every step" : "straight", msg);
  }
  return 0;
}

/* Compares v (length n) with a recorded "DIGEST w1 ... wk" on f. */
static void compare_vec(FILE *f, const float *v, size_t n, const size_t *watch, int nw,
                        int *failures, const char *path, int pass, const char *what) {
  unsigned long long want;
  assert_int_equal(fscanf(f, "%llx", &want), 1);
  for (int j = 0; j < nw; j++) {
    float w;
    assert_int_equal(fscanf(f, "%f", &w), 1);
    if (!same_bits(v[watch[j]], w))
      report(failures, path, pass, "%s[%zu]: got %.9g, torch %.9g", what, watch[j], v[watch[j]], w);
  }
  if (digest(v, n) != (uint64_t)want)
    report(failures, path, pass, "%s: digest of all %zu elements differs from torch's", what, n);
}

/* Replays path; pass 1 re-creates the solver from its named state before every step.
 * Returns the number of mismatches. */
static int replay(const char *path, int pass, case_info *ci) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char word[128], key[128], val[128], err[DPT_ERR_LEN];
  dpt_solver_params p;
  dpt_solver *s = NULL;
  size_t n = 0, watch[MAX_WATCH];
  int nw = 0, failures = 0;
  unsigned long long seed = 0;
  float *param = NULL, *grad = NULL;
  memset(ci, 0, sizeof *ci);
  while (fscanf(f, "%127s", word) == 1) {
    if (word[0] == '#') {
      int c;
      while ((c = fgetc(f)) != '\n' && c != EOF) {
      }
    } else if (!strcmp(word, "solver")) {
      assert_int_equal(fscanf(f, "%127s", val), 1);
      assert_int_equal(dpt_optim_solver_kind(val, &ci->kind, err, sizeof err), 0);
      dpt_optim_solver_defaults(ci->kind, &p);
    } else if (!strcmp(word, "set")) {
      assert_int_equal(fscanf(f, "%127s %127s", key, val), 2);
      if (dpt_optim_solver_set(&p, key, val, err, sizeof err)) fail_msg("%s: %s", path, err);
    } else if (!strcmp(word, "n")) {
      assert_int_equal(fscanf(f, "%zu", &n), 1);
      ci->n = n;
      param = malloc(n * sizeof *param);
      grad = malloc(n * sizeof *grad);
    } else if (!strcmp(word, "seed")) {
      assert_int_equal(fscanf(f, "%llu", &seed), 1);
    } else if (!strcmp(word, "init")) {
      unsigned long long want;
      assert_int_equal(fscanf(f, "%llx", &want), 1);
      draw(seed, 0, 0, param, n);
      if (digest(param, n) != (uint64_t)want)
        fail_msg("%s: the generator differs from gen_solver_ref.py's", path);
      if (dpt_solver_create(&p, n, &s, err, sizeof err)) { /* torch accepted these */
        report(&failures, path, pass, "%s", err);
        break;
      }
    } else if (!strcmp(word, "watch")) {
      assert_int_equal(fscanf(f, "%d", &nw), 1);
      assert_true(nw > 0 && nw <= MAX_WATCH);
      for (int j = 0; j < nw; j++) {
        assert_int_equal(fscanf(f, "%zu", &watch[j]), 1);
        assert_true(watch[j] < n);
      }
    } else if (!strcmp(word, "steps")) {
      int steps;
      assert_int_equal(fscanf(f, "%d", &steps), 1);
    } else if (!strcmp(word, "step")) {
      int step;
      double lr, mom = 0;
      assert_int_equal(fscanf(f, "%d %lf", &step, &lr), 2);
      int c = fgetc(f);
      ci->has_momentum = c == ' ' && fscanf(f, "%lf", &mom) == 1;
      if (pass == 1 && step > 1) s = recreate(s, &p, n);
      dpt_solver_set_lr(s, lr);
      if (ci->has_momentum) dpt_solver_set_momentum(s, mom);
      draw(seed, 1, (uint64_t)step, grad, n);
      dpt_solver_step(s, param, grad);
      assert_int_equal(fscanf(f, "%127s", word), 1);
      assert_string_equal(word, "param");
      char what[32];
      snprintf(what, sizeof what, "step %d param", step);
      compare_vec(f, param, n, watch, nw, &failures, path, pass, what);
    } else if (!strcmp(word, "vstate") || !strcmp(word, "sstate")) {
      assert_int_equal(fscanf(f, "%127s", key), 1);
      int idx = dpt_solver_state_find(s, key);
      if (idx < 0) fail_msg("%s: dpt has no state entry named '%s'", path, key);
      dpt_state_info info;
      void *ptr = dpt_solver_state(s, idx, &info);
      assert_int_equal(info.type, word[0] == 'v' ? DPT_STATE_VECTOR : DPT_STATE_SCALAR);
      if (info.type == DPT_STATE_VECTOR) {
        compare_vec(f, ptr, n, watch, nw, &failures, path, pass, key);
      } else {
        double w;
        assert_int_equal(fscanf(f, "%lf", &w), 1);
        if (*(double *)ptr != w)
          report(&failures, path, pass, "state %s: got %.17g, torch %.17g", key, *(double *)ptr, w);
      }
    } else {
      fail_msg("%s: unexpected word '%s'", path, word);
    }
  }
  fclose(f);
  if (!s) assert_true(failures > 0);
  dpt_solver_free(s);
  free(param);
  free(grad);
  return failures;
}

/* --- coverage --- */

static const size_t lengths[] = {1, 13, 1000, 70001}; /* issue 15: every solver at these */
static const char *const schedules[] = {"_sched_cyclic_", "_sched_onecycle_", "_sched_warmup_",
                                        "_sched_pattern_"};
#define NLEN (sizeof lengths / sizeof lengths[0])
#define NSCHED (sizeof schedules / sizeof schedules[0])

typedef struct {
  unsigned len_seen[DPT_SOLVER_COUNT];   /* bit per entry of lengths[] */
  unsigned sched_seen[DPT_SOLVER_COUNT]; /* bit per entry of schedules[], momentum cases */
  int draws[DPT_SOLVER_COUNT];
  int momentum[DPT_SOLVER_COUNT]; /* the solver has a momentum/beta1 */
} coverage;

static void note(coverage *cov, const char *name, const case_info *ci) {
  for (size_t i = 0; i < NLEN; i++)
    if (ci->n == lengths[i]) cov->len_seen[ci->kind] |= 1u << i;
  if (strstr(name, "_draw")) cov->draws[ci->kind]++;
  /* schedules that move momentum count for solvers created with one */
  dpt_solver_params p;
  dpt_optim_solver_defaults(ci->kind, &p);
  p.momentum = 0.9;
  dpt_solver *s;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_solver_create(&p, 1, &s, err, sizeof err), 0);
  cov->momentum[ci->kind] = dpt_solver_has_momentum(s);
  dpt_solver_free(s);
  for (size_t i = 0; i < NSCHED; i++)
    if (ci->has_momentum && strstr(name, schedules[i])) cov->sched_seen[ci->kind] |= 1u << i;
}

/* argv[1], if given, replays only the cases whose file name contains it (no coverage check) */
static const char *only;

static void test_every_recorded_trajectory_matches_torch_bitwise(void **state) {
  (void)state;
  DIR *d = opendir(REF_DIR);
  assert_non_null(d);
  struct dirent *e;
  int cases = 0, failed = 0;
  coverage cov;
  memset(&cov, 0, sizeof cov);
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".txt")) continue;
    if (only && !strstr(e->d_name, only)) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", REF_DIR, e->d_name);
    case_info ci;
    int bad = 0;
    for (int pass = 0; pass < 2; pass++) bad += replay(path, pass, &ci);
    if (bad) {
      print_error("%s: %d mismatches\n", path, bad);
      failed++;
    }
    note(&cov, e->d_name, &ci);
    cases++;
  }
  closedir(d);
  print_message("replayed %d cases bitwise, %d differ from torch\n", cases, failed);
  for (int k = 0; !only && k < DPT_SOLVER_COUNT; k++) {
    const char *name = dpt_optim_solver_name((dpt_solver_kind)k);
    if (cov.len_seen[k] != (1u << NLEN) - 1)
      fail_msg("%s: recordings lack one of the lengths 1, 13, 1000, 70001", name);
    if (cov.draws[k] < 3) fail_msg("%s: %d random draws (expected >= 3)", name, cov.draws[k]);
    if (cov.momentum[k] && cov.sched_seen[k] != (1u << NSCHED) - 1)
      fail_msg("%s: recordings lack a cyclic, onecycle, warm-up or momentum-pattern case", name);
  }
  assert_int_equal(failed, 0);
}

int main(int argc, char **argv) {
  only = argc > 1 ? argv[1] : NULL;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_recorded_trajectory_matches_torch_bitwise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

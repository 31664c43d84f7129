/* Slicing is bitwise-neutral: a buffer stepped whole, or cut at random points into slices each
 * with its own solver (as ZeRO shards it), ends with bitwise the same parameters and state, for
 * every solver and option set, with lr and momentum/beta1 moved every step. Also checks that state
 * enumerates under the expected names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

#define N 1003 /* odd: slices get unaligned starts and vector tails */
#define STEPS 25
#define MAX_CUTS 9

static uint64_t rng = 88172645463325252ull;
static double uniform(void) { /* xorshift64: reproducible, no libc state */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct {
  const char *solver;
  const char *keys[8]; /* key, value pairs, NULL-terminated */
} config;

static const config configs[] = {
    {"gd", {"weight_decay", "0.1", NULL}},
    {"sgd", {"momentum", "0.9", "nesterov", "1", NULL}},
    {"sgd", {"momentum", "0.9", "dampening", "0.2", "weight_decay", "0.01", NULL}},
    {"adagrad", {"lr_decay", "0.01", "initial_accumulator_value", "0.1", NULL}},
    {"adadelta", {"weight_decay", "0.01", NULL}},
    {"asgd", {"t0", "5", NULL}},
    {"rprop", {"weight_decay", "0.01", NULL}},
    {"rmsprop", {"centered", "1", "momentum", "0.9", NULL}},
    {"adam", {"amsgrad", "1", "weight_decay", "0.01", NULL}},
    {"adamax", {"maximize", "1", NULL}},
    {"adamw", {NULL}},
    {"lion", {"weight_decay", "0.1", NULL}},
};

static dpt_solver *make(const config *c, size_t n) {
  dpt_solver_params p;
  dpt_solver_kind k;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_optim_solver_kind(c->solver, &k, err, sizeof err), 0);
  dpt_optim_solver_defaults(k, &p);
  for (int i = 0; c->keys[i]; i += 2)
    assert_int_equal(dpt_optim_solver_set(&p, c->keys[i], c->keys[i + 1], err, sizeof err), 0);
  dpt_solver *s;
  assert_int_equal(dpt_solver_create(&p, n, &s, err, sizeof err), 0);
  return s;
}

static void test_random_cuts_are_bitwise_neutral(void **state) {
  (void)state;
  float *whole = malloc(N * sizeof(float)), *cut = malloc(N * sizeof(float));
  float *grad = malloc(N * sizeof(float));
  for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
    for (int trial = 0; trial < 4; trial++) {
      /* random cut points 0 = b[0] < b[1] < ... < b[k] = N */
      size_t b[MAX_CUTS + 2];
      int k = 1 + (int)(uniform() * MAX_CUTS);
      b[0] = 0;
      for (int i = 1; i < k; i++) b[i] = b[i - 1] + 1 + (size_t)(uniform() * (N / k));
      b[k] = N;
      dpt_solver *ref = make(&configs[c], N);
      dpt_solver *part[MAX_CUTS + 1];
      for (int i = 0; i < k; i++) part[i] = make(&configs[c], b[i + 1] - b[i]);
      for (size_t i = 0; i < N; i++) whole[i] = cut[i] = (float)(uniform() * 2 - 1);
      for (int step = 0; step < STEPS; step++) {
        for (size_t i = 0; i < N; i++) grad[i] = (float)(uniform() * 2 - 1) * (step + 1);
        if (step % 3 == 0) grad[step] = 0; /* zeros exercise Rprop's sign == 0 path */
        /* a schedule: lr moves every step, momentum/beta1 reaches 0 and comes back */
        double lr = dpt_solver_hparams(ref)->lr * (step % 2 ? 1.1 : 0.95);
        double mom = step % 7 < 2 ? 0.0 : 0.5 + 0.05 * (step % 7);
        dpt_solver *all[MAX_CUTS + 2] = {ref};
        for (int i = 0; i < k; i++) all[i + 1] = part[i];
        for (int i = 0; i <= k; i++) {
          dpt_solver_set_lr(all[i], lr);
          dpt_solver_set_momentum(all[i], mom);
        }
        dpt_solver_step(ref, whole, grad);
        for (int i = 0; i < k; i++) dpt_solver_step(part[i], cut + b[i], grad + b[i]);
      }
      assert_memory_equal(whole, cut, N * sizeof(float));
      /* every state entry: vectors concatenate to the whole, scalars agree */
      for (int e = 0; e < dpt_solver_state_count(ref); e++) {
        dpt_state_info info;
        void *w = dpt_solver_state(ref, e, &info);
        for (int i = 0; i < k; i++) {
          dpt_state_info pi;
          void *pv = dpt_solver_state(part[i], dpt_solver_state_find(part[i], info.name), &pi);
          assert_int_equal(pi.type, info.type);
          if (info.type == DPT_STATE_VECTOR)
            assert_memory_equal((float *)w + b[i], pv, (b[i + 1] - b[i]) * sizeof(float));
          else
            assert_memory_equal(w, pv, sizeof(double));
        }
      }
      dpt_solver_free(ref);
      for (int i = 0; i < k; i++) dpt_solver_free(part[i]);
    }
  }
  free(whole);
  free(cut);
  free(grad);
}

/* State names are torch's keys, so checkpoints read like torch's state_dict. */
static void test_state_enumerates_by_name(void **state) {
  (void)state;
  static const struct {
    config c;
    const char *names;
  } want[] = {
      {{"gd", {NULL}}, "step"},
      {{"sgd", {NULL}}, "step"},
      {{"sgd", {"momentum", "0.9", NULL}}, "momentum_buffer step has_momentum_buffer"},
      {{"adagrad", {NULL}}, "sum step"},
      {{"adadelta", {NULL}}, "square_avg acc_delta step"},
      {{"asgd", {NULL}}, "ax step eta mu"},
      {{"rprop", {NULL}}, "prev step_size step"},
      {{"rmsprop", {"momentum", "0.5", "centered", "1", NULL}},
       "square_avg momentum_buffer grad_avg step"},
      {{"adam", {NULL}}, "exp_avg exp_avg_sq step"},
      {{"adam", {"amsgrad", "1", NULL}}, "exp_avg exp_avg_sq max_exp_avg_sq step"},
      {{"adamax", {NULL}}, "exp_avg exp_inf step"},
      {{"adamw", {NULL}}, "exp_avg exp_avg_sq step"},
      {{"lion", {NULL}}, "exp_avg step"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    dpt_solver *s = make(&want[i].c, 10);
    char names[256] = "";
    size_t bytes = 0;
    for (int e = 0; e < dpt_solver_state_count(s); e++) {
      dpt_state_info info;
      assert_non_null(dpt_solver_state(s, e, &info));
      if (e) strcat(names, " ");
      strcat(names, info.name);
      assert_int_equal(dpt_solver_state_find(s, info.name), e);
      bytes += info.type == DPT_STATE_VECTOR ? 10 * sizeof(float) : sizeof(double);
    }
    assert_string_equal(names, want[i].names);
    assert_int_equal(bytes, dpt_solver_state_bytes(s));
    assert_int_equal(dpt_solver_state_find(s, "no_such_entry"), DPT_ESTATE);
    assert_null(dpt_solver_state(s, dpt_solver_state_count(s), &(dpt_state_info){0}));
    dpt_solver_free(s);
  }
}

/* Restoring saved state into a fresh solver continues the trajectory bit for bit. */
static void test_state_restore_resumes_exactly(void **state) {
  (void)state;
  enum { n = 77 };
  for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
    float p1[n], p2[n], g[n];
    for (int i = 0; i < n; i++) p1[i] = p2[i] = (float)(uniform() - 0.5);
    dpt_solver *a = make(&configs[c], n), *b = NULL;
    for (int step = 0; step < 20; step++) {
      for (int i = 0; i < n; i++) g[i] = (float)(uniform() - 0.5);
      if (step == 10) { /* "checkpoint": copy params and every state entry into a new solver */
        b = make(&configs[c], n);
        memcpy(p2, p1, sizeof p1);
        for (int e = 0; e < dpt_solver_state_count(a); e++) {
          dpt_state_info ia, ib;
          void *src = dpt_solver_state(a, e, &ia);
          void *dst = dpt_solver_state(b, dpt_solver_state_find(b, ia.name), &ib);
          memcpy(dst, src, ia.type == DPT_STATE_VECTOR ? n * sizeof(float) : sizeof(double));
        }
      }
      dpt_solver_step(a, p1, g);
      if (b) dpt_solver_step(b, p2, g);
    }
    assert_memory_equal(p1, p2, sizeof p1);
    dpt_solver_free(a);
    dpt_solver_free(b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_cuts_are_bitwise_neutral),
      cmocka_unit_test(test_state_enumerates_by_name),
      cmocka_unit_test(test_state_restore_resumes_exactly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

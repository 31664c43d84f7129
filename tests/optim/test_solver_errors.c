/* Bad solver input is rejected by name: unknown solvers, keys a solver does not take, text that
 * is not a number, and out-of-range hyperparameters, each with a message naming the parameter
 * and the allowed range. Also the seed's worked example (GD on x^2 - 4x + 3). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

static char err[DPT_ERR_LEN];

static dpt_solver_params params(const char *name) {
  dpt_solver_params p;
  dpt_solver_kind k;
  assert_int_equal(dpt_optim_solver_kind(name, &k, err, sizeof err), 0);
  dpt_optim_solver_defaults(k, &p);
  return p;
}

#define assert_contains(hay, needle)                                                               \
  do {                                                                                             \
    if (!strstr((hay), (needle))) fail_msg("'%s' does not mention '%s'", (hay), (needle));         \
  } while (0)

static void test_unknown_solver_lists_known_names(void **state) {
  (void)state;
  dpt_solver_kind k;
  assert_int_equal(dpt_optim_solver_kind("adamm", &k, err, sizeof err), DPT_EINVAL);
  assert_contains(err, "adamm");
  for (int i = 0; i < DPT_SOLVER_COUNT; i++)
    assert_contains(err, dpt_optim_solver_name((dpt_solver_kind)i));
  assert_int_equal(dpt_optim_solver_kind("AdamW", &k, err, sizeof err), 0);
  assert_int_equal(k, DPT_SOLVER_ADAMW);
}

/* One row per rejected value: solver, key, value, words the message must contain. */
static const struct {
  const char *solver, *key, *value, *want1, *want2;
} bad_ranges[] = {
    {"sgd", "lr", "-0.1", "lr", ">= 0"},
    {"adam", "betas", "1.5,0.999", "betas[0]", "[0, 1)"},
    {"adam", "betas", "0.9,1", "betas[1]", "[0, 1)"},
    {"lion", "betas", "-0.1,0.99", "betas[0]", "[0, 1)"},
    {"adamw", "weight_decay", "-1", "weight_decay", ">= 0"},
    {"adam", "eps", "-1e-8", "eps", ">= 0"},
    {"adadelta", "rho", "1.5", "rho", "[0, 1]"},
    {"adadelta", "rho", "-0.1", "rho", "[0, 1]"},
    {"rprop", "etas", "1.2,0.5", "etas", "etaminus < 1 < etaplus"},
    {"rprop", "etas", "0,1.2", "etas[0]", "> 0"},
    {"rprop", "step_sizes", "1,0.1", "step_sizes", "min <= max"},
    {"rprop", "step_sizes", "-1e-6,50", "step_sizes[0]", ">= 0"},
    {"rprop", "etas", "0.5,1e39", "etas[1]", "overflows float32"},
    {"rmsprop", "alpha", "1.5", "alpha", "[0, 1]"},
    {"rmsprop", "momentum", "-0.5", "momentum", ">= 0"},
    {"sgd", "dampening", "2", "dampening", "[0, 1]"},
    {"sgd", "nesterov", "1", "nesterov", "momentum > 0"},
    {"adagrad", "lr_decay", "-1", "lr_decay", ">= 0"},
    {"adagrad", "initial_accumulator_value", "-1", "initial_accumulator_value", ">= 0"},
    {"asgd", "t0", "-1", "t0", ">= 0"},
};

static void test_out_of_range_is_rejected_by_name(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_ranges / sizeof bad_ranges[0]; i++) {
    dpt_solver_params p = params(bad_ranges[i].solver);
    assert_int_equal(
        dpt_optim_solver_set(&p, bad_ranges[i].key, bad_ranges[i].value, err, sizeof err), 0);
    assert_int_equal(dpt_optim_solver_validate(&p, err, sizeof err), DPT_EINVAL);
    assert_contains(err, bad_ranges[i].solver);
    assert_contains(err, bad_ranges[i].want1);
    assert_contains(err, bad_ranges[i].want2);
    dpt_solver *s = (dpt_solver *)&p; /* create validates too and leaves *out NULL */
    assert_int_equal(dpt_solver_create(&p, 4, &s, err, sizeof err), DPT_EINVAL);
    assert_null(s);
  }
}

/* ref/validate.txt (gen_solver_ref.py): hyperparameters at float32's edges, and whether torch
 * 1.13 accepts them (constructs the solver and steps it). dpt accepts and rejects the same. */
static void test_rprop_ranges_agree_with_torch(void **state) {
  (void)state;
  FILE *f = fopen("ref/validate.txt", "r");
  assert_non_null(f);
  char line[256], solver[32], key[32], value[64];
  int accepts, rows = 0, disagree = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    assert_int_equal(sscanf(line, "%31s %31s %63s %d", solver, key, value, &accepts), 4);
    dpt_solver_params p = params(solver);
    assert_int_equal(dpt_optim_solver_set(&p, key, value, err, sizeof err), 0);
    int ok = dpt_optim_solver_validate(&p, err, sizeof err) == 0;
    if (ok != accepts) {
      print_error("%s %s = %s: torch %s it, dpt %s it\n", solver, key, value,
                  accepts ? "accepts" : "rejects", ok ? "accepts" : "rejects");
      disagree++;
    }
    rows++;
  }
  fclose(f);
  assert_true(rows >= 10);
  assert_int_equal(disagree, 0);
}

static void test_defaults_are_valid_and_follow_torch(void **state) {
  (void)state;
  for (int k = 0; k < DPT_SOLVER_COUNT; k++) {
    dpt_solver_params p;
    dpt_optim_solver_defaults((dpt_solver_kind)k, &p);
    assert_int_equal(dpt_optim_solver_validate(&p, err, sizeof err), 0);
  }
  dpt_solver_params p = params("lion");
  assert_true(p.lr == 1e-4 && p.beta1 == 0.9 && p.beta2 == 0.99);
  p = params("adamw");
  assert_true(p.lr == 1e-3 && p.weight_decay == 1e-2 && p.eps == 1e-8 && p.beta2 == 0.999);
  p = params("adadelta");
  assert_true(p.lr == 1.0 && p.rho == 0.9 && p.eps == 1e-6);
  p = params("rprop");
  assert_true(p.eta_minus == 0.5 && p.eta_plus == 1.2 && p.step_min == 1e-6 && p.step_max == 50);
  p = params("asgd");
  assert_true(p.lambd == 1e-4 && p.alpha == 0.75 && p.t0 == 1e6);
  p = params("adamax");
  assert_true(p.lr == 2e-3);
  p = params("adagrad");
  assert_true(p.lr == 1e-2 && p.eps == 1e-10);
  p = params("rmsprop");
  assert_true(p.lr == 1e-2 && p.alpha == 0.99);
}

static void test_bad_keys_and_text_are_rejected(void **state) {
  (void)state;
  dpt_solver_params p = params("adam");
  assert_int_equal(dpt_optim_solver_set(&p, "momentum", "0.9", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "adam");
  assert_contains(err, "momentum");
  assert_contains(err, "betas"); /* lists what it takes */
  assert_int_equal(dpt_optim_solver_set(&p, "lr", "fast", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "lr");
  assert_contains(err, "fast");
  assert_int_equal(dpt_optim_solver_set(&p, "lr", "1e-3x", err, sizeof err), DPT_EINVAL);
  assert_int_equal(dpt_optim_solver_set(&p, "lr", "nan", err, sizeof err), DPT_EINVAL);
  assert_int_equal(dpt_optim_solver_set(&p, "betas", "0.9", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "pair");
  assert_int_equal(dpt_optim_solver_set(&p, "amsgrad", "maybe", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "amsgrad");
  assert_int_equal(dpt_optim_solver_set(&p, "betas", "0.8, 0.99", err, sizeof err), 0);
  assert_true(p.beta1 == 0.8 && p.beta2 == 0.99);
  assert_int_equal(dpt_optim_solver_set(&p, "amsgrad", "true", err, sizeof err), 0);
  assert_int_equal(p.amsgrad, 1);
}

static void count_param(void *ctx, const char *name, const char *value, const char *help) {
  assert_non_null(name);
  assert_non_null(value);
  assert_true(strlen(help) > 0);
  ++*(int *)ctx;
}

static void test_describe_lists_every_hyperparameter(void **state) {
  (void)state;
  /* lr, weight_decay and maximize everywhere, plus each solver's own */
  static const int want[DPT_SOLVER_COUNT] = {
      [DPT_SOLVER_GD] = 3,       [DPT_SOLVER_SGD] = 6,  [DPT_SOLVER_ADAGRAD] = 6,
      [DPT_SOLVER_ADADELTA] = 5, [DPT_SOLVER_ASGD] = 6, [DPT_SOLVER_RPROP] = 5,
      [DPT_SOLVER_RMSPROP] = 7,  [DPT_SOLVER_ADAM] = 6, [DPT_SOLVER_ADAMAX] = 5,
      [DPT_SOLVER_ADAMW] = 6,    [DPT_SOLVER_LION] = 4,
  };
  for (int k = 0; k < DPT_SOLVER_COUNT; k++) {
    dpt_solver_params p;
    dpt_optim_solver_defaults((dpt_solver_kind)k, &p);
    int n = 0;
    assert_int_equal(dpt_optim_solver_describe(&p, count_param, &n), want[k]);
    assert_int_equal(n, want[k]);
  }
}

/* The seed's worked example: GD on f(x) = x^2 - 4x + 3 from x = 0 with lr 0.3 gives 1.2, then
 * 1.68, and converges to the minimum at 2. */
static void test_gd_worked_example(void **state) {
  (void)state;
  dpt_solver_params p = params("gd");
  p.lr = 0.3;
  dpt_solver *s;
  assert_int_equal(dpt_solver_create(&p, 1, &s, err, sizeof err), 0);
  float x = 0.0f;
  const float want[2] = {1.2f, 1.68f};
  for (int step = 0; step < 100; step++) {
    float g = 2.0f * x - 4.0f;
    dpt_solver_step(s, &x, &g);
    if (step < 2) assert_true(fabsf(x - want[step]) <= 1e-6f);
  }
  assert_true(fabsf(x - 2.0f) <= 1e-6f);
  dpt_solver_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unknown_solver_lists_known_names),
      cmocka_unit_test(test_out_of_range_is_rejected_by_name),
      cmocka_unit_test(test_rprop_ranges_agree_with_torch),
      cmocka_unit_test(test_defaults_are_valid_and_follow_torch),
      cmocka_unit_test(test_bad_keys_and_text_are_rejected),
      cmocka_unit_test(test_describe_lists_every_hyperparameter),
      cmocka_unit_test(test_gd_worked_example),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

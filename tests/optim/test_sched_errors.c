/* Bad scheduler input is rejected by name: unknown kinds (message lists the known ones),
 * keys a kind does not take, values that do not parse, out-of-range values (message names the
 * parameter and range), momentum cycling on a solver without momentum, and "whole run" lengths
 * without a run length. describe lists every kind's keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

static char err[DPT_OPTIM_ERR_LEN];

#define assert_contains(hay, needle)                                                         \
  do {                                                                                       \
    if (!strstr((hay), (needle))) fail_msg("'%s' does not mention '%s'", (hay), (needle)); \
  } while (0)

static dpt_sched_params params(const char *name) {
  dpt_sched_params p;
  dpt_sched_kind k;
  assert_int_equal(dpt_optim_sched_kind(name, &k, err, sizeof err), 0);
  dpt_optim_sched_defaults(k, &p);
  return p;
}

static void test_unknown_kind_lists_names(void **state) {
  (void)state;
  dpt_sched_kind k;
  assert_int_equal(dpt_optim_sched_kind("cosin", &k, err, sizeof err), DPT_OPTIM_EINVAL);
  assert_contains(err, "cosin");
  for (int i = 0; i < DPT_SCHED_COUNT; i++)
    assert_contains(err, dpt_optim_sched_name((dpt_sched_kind)i));
}

static const struct {
  const char *kind, *key, *value, *want1, *want2;
} bad_ranges[] = {
    {"step", "step_size", "0", "step_size", "[1,"},
    {"step", "gamma", "-0.5", "gamma", "[0,"},
    {"cosine", "T_max", "-3", "T_max", "[0,"},
    {"onecycle", "pct_start", "1.5", "pct_start", "[0, 1]"},
    {"linear", "start_factor", "2", "start_factor", "1]"},
    {"constant", "factor", "0", "factor", "1]"},
    {"plateau", "factor", "1.5", "factor", "range"},
    {"plateau", "patience", "-1", "patience", "[0,"},
    {"multistep", "milestones", "50,10", "milestones", "ascending"},
    {"cosine_warm_restarts", "T_0", "0", "T_0", "[1,"},
    {"cyclic", "base_momentum", "0.95", "base_momentum", "max_momentum"},
};

static void test_out_of_range_rejected_by_name(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_ranges / sizeof bad_ranges[0]; i++) {
    dpt_sched_params p = params(bad_ranges[i].kind);
    assert_int_equal(dpt_optim_sched_set(&p, bad_ranges[i].key, bad_ranges[i].value, err,
                                         sizeof err), 0);
    assert_int_equal(dpt_optim_sched_validate(&p, err, sizeof err), DPT_OPTIM_EINVAL);
    assert_contains(err, bad_ranges[i].kind);
    assert_contains(err, bad_ranges[i].want1);
    assert_contains(err, bad_ranges[i].want2);
    dpt_sched *s = NULL;
    assert_int_equal(dpt_sched_create(&p, 0.1, 1, 0.9, 100, &s, err, sizeof err),
                     DPT_OPTIM_EINVAL);
    assert_null(s);
  }
}

static void test_bad_keys_and_values(void **state) {
  (void)state;
  dpt_sched_params p = params("step");
  assert_int_equal(dpt_optim_sched_set(&p, "T_max", "5", err, sizeof err), DPT_OPTIM_EINVAL);
  assert_contains(err, "step");
  assert_contains(err, "T_max");
  assert_contains(err, "step_size"); /* lists what it takes */
  assert_int_equal(dpt_optim_sched_set(&p, "gamma", "half", err, sizeof err), DPT_OPTIM_EINVAL);
  assert_contains(err, "half");
  assert_int_equal(dpt_optim_sched_set(&p, "step_size", "2.5", err, sizeof err),
                   DPT_OPTIM_EINVAL);
  assert_contains(err, "whole number");
  p = params("cyclic");
  assert_int_equal(dpt_optim_sched_set(&p, "mode", "triangle", err, sizeof err),
                   DPT_OPTIM_EINVAL);
  assert_contains(err, "triangular|triangular2|exp_range");
  assert_int_equal(dpt_optim_sched_set(&p, "mode", "exp_range", err, sizeof err), 0);
  assert_int_equal(p.cyclic_mode, 2);
  p = params("multistep");
  assert_int_equal(dpt_optim_sched_set(&p, "milestones", "5,x", err, sizeof err),
                   DPT_OPTIM_EINVAL);
  assert_int_equal(dpt_optim_sched_set(&p, "milestones", "5, 9,12", err, sizeof err), 0);
  assert_int_equal(p.n_milestones, 3);
  assert_int_equal(p.milestones[2], 12);
  p = params("none");
  assert_int_equal(dpt_optim_sched_set(&p, "warmup", "linear", err, sizeof err),
                   DPT_OPTIM_EINVAL);
}

static void test_momentum_cycling_needs_momentum(void **state) {
  (void)state;
  dpt_sched_params p = params("cyclic");
  dpt_sched *s = NULL;
  assert_int_equal(dpt_sched_create(&p, 0.01, 0, 0, 100, &s, err, sizeof err),
                   DPT_OPTIM_EINVAL);
  assert_contains(err, "cycle_momentum");
  assert_int_equal(dpt_optim_sched_set(&p, "cycle_momentum", "false", err, sizeof err), 0);
  assert_int_equal(dpt_sched_create(&p, 0.01, 0, 0, 100, &s, err, sizeof err), 0);
  assert_false(dpt_sched_cycles_momentum(s));
  dpt_sched_free(s);
}

static void test_whole_run_lengths(void **state) {
  (void)state;
  dpt_sched_params p = params("cosine"); /* T_max 0: whole run */
  dpt_sched *s = NULL;
  assert_int_equal(dpt_sched_create(&p, 0.1, 0, 0, 0, &s, err, sizeof err), DPT_OPTIM_EINVAL);
  assert_contains(err, "T_max");
  assert_int_equal(dpt_sched_create(&p, 0.1, 0, 0, 10, &s, err, sizeof err), 0);
  for (int i = 0; i < 10; i++) dpt_sched_step(s, 0);
  assert_true(dpt_sched_lr(s) < 1e-12); /* annealed to eta_min = 0 at the end of the run */
  dpt_sched_free(s);
}

static void count(void *ctx, const char *name, const char *value, const char *help) {
  assert_true(*name && *value && *help);
  ++*(int *)ctx;
}

static void test_defaults_valid_and_described(void **state) {
  (void)state;
  for (int k = 0; k < DPT_SCHED_COUNT; k++) {
    dpt_sched_params p;
    dpt_optim_sched_defaults((dpt_sched_kind)k, &p);
    assert_int_equal(dpt_optim_sched_validate(&p, err, sizeof err), 0);
    int n = 0;
    int got = dpt_optim_sched_describe(&p, count, &n);
    assert_int_equal(got, n);
    assert_true(n >= 1); /* at least "interval" */
  }
  dpt_sched_params p = params("plateau");
  int n = 0;
  dpt_optim_sched_describe(&p, count, &n);
  assert_int_equal(n, 1 + 8 + 3); /* interval, plateau's eight, the warm-up three */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unknown_kind_lists_names),
      cmocka_unit_test(test_out_of_range_rejected_by_name),
      cmocka_unit_test(test_bad_keys_and_values),
      cmocka_unit_test(test_momentum_cycling_needs_momentum),
      cmocka_unit_test(test_whole_run_lengths),
      cmocka_unit_test(test_defaults_valid_and_described),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

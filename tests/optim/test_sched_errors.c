/* Bad scheduler input is rejected by name: unknown kinds (message lists the known ones),
 * keys a kind does not take, values that do not parse, out-of-range values (message names the
 * parameter and range), momentum cycling on a solver without momentum, and "whole run" lengths
 * without a run length. describe lists exactly each kind's keys, with values that set back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

static char err[DPT_ERR_LEN];

#define assert_contains(hay, needle)                                                               \
  do {                                                                                             \
    if (!strstr((hay), (needle))) fail_msg("'%s' does not mention '%s'", (hay), (needle));         \
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
  assert_int_equal(dpt_optim_sched_kind("cosin", &k, err, sizeof err), DPT_EINVAL);
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
    assert_int_equal(
        dpt_optim_sched_set(&p, bad_ranges[i].key, bad_ranges[i].value, err, sizeof err), 0);
    assert_int_equal(dpt_optim_sched_validate(&p, err, sizeof err), DPT_EINVAL);
    assert_contains(err, bad_ranges[i].kind);
    assert_contains(err, bad_ranges[i].want1);
    assert_contains(err, bad_ranges[i].want2);
    if (strchr(bad_ranges[i].value, ',') == NULL) assert_contains(err, bad_ranges[i].value);
    dpt_sched *s = NULL;
    assert_int_equal(dpt_sched_create(&p, 0.1, 1, 0.9, 100, &s, err, sizeof err), DPT_EINVAL);
    assert_null(s);
  }
}

static void test_bad_keys_and_values(void **state) {
  (void)state;
  dpt_sched_params p = params("step");
  assert_int_equal(dpt_optim_sched_set(&p, "T_max", "5", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "step");
  assert_contains(err, "T_max");
  assert_contains(err, "step_size"); /* lists what it takes */
  assert_int_equal(dpt_optim_sched_set(&p, "gamma", "half", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "half");
  assert_int_equal(dpt_optim_sched_set(&p, "step_size", "2.5", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "whole number");
  p = params("cyclic");
  assert_int_equal(dpt_optim_sched_set(&p, "mode", "triangle", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "triangular|triangular2|exp_range");
  assert_int_equal(dpt_optim_sched_set(&p, "mode", "exp_range", err, sizeof err), 0);
  assert_int_equal(p.cyclic_mode, 2);
  p = params("multistep");
  assert_int_equal(dpt_optim_sched_set(&p, "milestones", "5,x", err, sizeof err), DPT_EINVAL);
  assert_int_equal(dpt_optim_sched_set(&p, "milestones", "5, 9,12", err, sizeof err), 0);
  assert_int_equal(p.n_milestones, 3);
  assert_int_equal(p.milestones[2], 12);
  p = params("none");
  assert_int_equal(dpt_optim_sched_set(&p, "warmup", "linear", err, sizeof err), DPT_EINVAL);
}

static void test_momentum_cycling_needs_momentum(void **state) {
  (void)state;
  dpt_sched_params p = params("cyclic");
  dpt_sched *s = NULL;
  assert_int_equal(dpt_sched_create(&p, 0.01, 0, 0, 100, &s, err, sizeof err), DPT_EINVAL);
  assert_contains(err, "cyclic");
  assert_contains(err, "cycle_momentum 0");
  assert_contains(err, "momentum or beta1");
  p = params("onecycle");
  assert_int_equal(dpt_sched_create(&p, 0.01, 0, 0, 100, &s, err, sizeof err), DPT_EINVAL);
  assert_null(s);
  assert_contains(err, "onecycle");
  assert_contains(err, "cycle_momentum 0");
  p = params("cyclic");
  assert_int_equal(dpt_optim_sched_set(&p, "cycle_momentum", "false", err, sizeof err), 0);
  assert_int_equal(dpt_sched_create(&p, 0.01, 0, 0, 100, &s, err, sizeof err), 0);
  assert_false(dpt_sched_cycles_momentum(s));
  dpt_sched_free(s);
}

static void test_whole_run_lengths(void **state) {
  (void)state;
  dpt_sched_params p = params("cosine"); /* T_max 0: whole run */
  dpt_sched *s = NULL;
  assert_int_equal(dpt_sched_create(&p, 0.1, 0, 0, 0, &s, err, sizeof err), DPT_EINVAL);
  assert_contains(err, "T_max");
  assert_null(s);
  dpt_sched_params q = params("onecycle");
  assert_int_equal(dpt_sched_create(&q, 0.1, 1, 0.9, 0, &s, err, sizeof err), DPT_EINVAL);
  assert_contains(err, "total_steps");
  q = params("polynomial");
  assert_int_equal(dpt_optim_sched_set(&q, "total_iters", "0", err, sizeof err), 0);
  assert_int_equal(dpt_sched_create(&q, 0.1, 0, 0, 0, &s, err, sizeof err), DPT_EINVAL);
  assert_contains(err, "total_iters");
  assert_int_equal(dpt_sched_create(&p, 0.1, 0, 0, 10, &s, err, sizeof err), 0);
  for (int i = 0; i < 10; i++) dpt_sched_step(s, 0);
  assert_true(dpt_sched_lr(s) < 1e-12); /* annealed to eta_min = 0 at the end of the run */
  dpt_sched_free(s);
}

static void count(void *ctx, const char *name, const char *value, const char *help) {
  assert_true(*name && *value && *help);
  ++*(int *)ctx;
}

/* The keys each kind takes, in any order ("W" stands for the three warm-up keys). */
static const char *const kind_keys[DPT_SCHED_COUNT] = {
    [DPT_SCHED_NONE] = "interval",
    [DPT_SCHED_STEP] = "interval step_size gamma W",
    [DPT_SCHED_MULTISTEP] = "interval milestones gamma W",
    [DPT_SCHED_EXPONENTIAL] = "interval gamma W",
    [DPT_SCHED_COSINE] = "interval T_max eta_min W",
    [DPT_SCHED_COSINE_WARM_RESTARTS] = "interval T_0 T_mult eta_min W",
    [DPT_SCHED_CYCLIC] = "interval base_lr max_lr step_size_up step_size_down mode gamma "
                         "cycle_momentum base_momentum max_momentum W",
    [DPT_SCHED_ONECYCLE] = "interval max_lr total_steps pct_start anneal_strategy div_factor "
                           "final_div_factor three_phase cycle_momentum base_momentum "
                           "max_momentum W",
    [DPT_SCHED_LINEAR] = "interval start_factor end_factor total_iters W",
    [DPT_SCHED_CONSTANT] = "interval factor total_iters W",
    [DPT_SCHED_POLYNOMIAL] = "interval total_iters power W",
    [DPT_SCHED_PLATEAU] = "interval mode factor patience threshold threshold_mode cooldown "
                          "min_lr eps W",
};

typedef struct {
  int n;
  char names[64][32], values[64][256];
} listing;

static void collect(void *ctx, const char *name, const char *value, const char *help) {
  listing *l = ctx;
  assert_true(*name && *value && *help);
  assert_true(l->n < 64);
  snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
  snprintf(l->values[l->n], sizeof l->values[0], "%s", value);
  l->n++;
}

static const char *value_of(const listing *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->names[i], name)) return l->values[i];
  fail_msg("'%s' not described", name);
  return NULL;
}

static void test_describe_lists_each_kinds_keys(void **state) {
  (void)state;
  for (int k = 0; k < DPT_SCHED_COUNT; k++) {
    const char *kname = dpt_optim_sched_name((dpt_sched_kind)k);
    dpt_sched_params p;
    dpt_optim_sched_defaults((dpt_sched_kind)k, &p);
    listing l = {0};
    int described = dpt_optim_sched_describe(&p, collect, &l);
    assert_int_equal(described, l.n);
    char want[512];
    snprintf(want, sizeof want, "%s", kind_keys[k]);
    int n_want = 0;
    for (char *w = strtok(want, " "); w; w = strtok(NULL, " ")) {
      const char *ws[3] = {w, NULL, NULL};
      if (!strcmp(w, "W")) {
        ws[0] = "warmup";
        ws[1] = "warmup_iters";
        ws[2] = "warmup_factor";
      }
      for (int j = 0; j < 3 && ws[j]; j++, n_want++) {
        value_of(&l, ws[j]); /* described */
        /* and taken by set */
        dpt_sched_params q = p;
        if (dpt_optim_sched_set(&q, ws[j], value_of(&l, ws[j]), err, sizeof err))
          fail_msg("%s: described %s = '%s' does not set back: %s", kname, ws[j],
                   value_of(&l, ws[j]), err);
        /* describe prints reals with %g, so 1/3 comes back as 0.333333: compare the text */
        listing m = {0};
        dpt_optim_sched_describe(&q, collect, &m);
        if (strcmp(value_of(&m, ws[j]), value_of(&l, ws[j])))
          fail_msg("%s: setting %s to its described value '%s' describes it as '%s'", kname, ws[j],
                   value_of(&l, ws[j]), value_of(&m, ws[j]));
      }
    }
    if (l.n != n_want) fail_msg("%s describes %d keys, expected %d", kname, l.n, n_want);
  }
  /* values as text */
  dpt_sched_params p = params("multistep");
  listing l = {0};
  dpt_optim_sched_describe(&p, collect, &l);
  assert_string_equal(value_of(&l, "milestones"), "30,80");
  assert_string_equal(value_of(&l, "gamma"), "0.1");
  assert_string_equal(value_of(&l, "interval"), "epoch");
  p = params("cyclic");
  l.n = 0;
  dpt_optim_sched_describe(&p, collect, &l);
  assert_string_equal(value_of(&l, "mode"), "triangular");
  assert_string_equal(value_of(&l, "interval"), "step");
  p = params("plateau");
  l.n = 0;
  dpt_optim_sched_describe(&p, collect, &l);
  assert_string_equal(value_of(&l, "mode"), "min");
  assert_string_equal(value_of(&l, "threshold_mode"), "rel");
  assert_string_equal(value_of(&l, "warmup"), "none");
  p = params("onecycle");
  l.n = 0;
  dpt_optim_sched_describe(&p, collect, &l);
  assert_string_equal(value_of(&l, "anneal_strategy"), "cos");
}

static void test_interval_and_warmup_keys_everywhere(void **state) {
  (void)state;
  for (int k = 0; k < DPT_SCHED_COUNT; k++) {
    dpt_sched_params p;
    dpt_optim_sched_defaults((dpt_sched_kind)k, &p);
    assert_int_equal(dpt_optim_sched_set(&p, "interval", "step", err, sizeof err), 0);
    assert_int_equal(p.interval, DPT_SCHED_EVERY_STEP);
    assert_int_equal(dpt_optim_sched_set(&p, "interval", "epoch", err, sizeof err), 0);
    assert_int_equal(p.interval, DPT_SCHED_EVERY_EPOCH);
    assert_int_equal(dpt_optim_sched_set(&p, "interval", "sometimes", err, sizeof err), DPT_EINVAL);
    assert_contains(err, "interval");
    int rc = dpt_optim_sched_set(&p, "warmup", "constant", err, sizeof err);
    if (k == DPT_SCHED_NONE) {
      assert_int_equal(rc, DPT_EINVAL);
      assert_contains(err, "none");
      assert_contains(err, "warmup");
      continue;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(p.warmup, 2);
    assert_int_equal(dpt_optim_sched_set(&p, "warmup_iters", "5", err, sizeof err), 0);
    assert_int_equal(dpt_optim_sched_set(&p, "warmup_factor", "0.5", err, sizeof err), 0);
    assert_int_equal(dpt_optim_sched_validate(&p, err, sizeof err), 0);
    assert_int_equal(dpt_optim_sched_set(&p, "warmup", "cosine", err, sizeof err), DPT_EINVAL);
    assert_contains(err, "warmup");
  }
  /* booleans and enums */
  dpt_sched_params p = params("onecycle");
  assert_int_equal(dpt_optim_sched_set(&p, "three_phase", "true", err, sizeof err), 0);
  assert_int_equal(p.three_phase, 1);
  assert_int_equal(dpt_optim_sched_set(&p, "three_phase", "0", err, sizeof err), 0);
  assert_int_equal(p.three_phase, 0);
  /* one vocabulary of booleans everywhere (base.h): yes/no and on/off too */
  assert_int_equal(dpt_optim_sched_set(&p, "three_phase", "yes", err, sizeof err), 0);
  assert_int_equal(p.three_phase, 1);
  assert_int_equal(dpt_optim_sched_set(&p, "three_phase", "Off", err, sizeof err), 0);
  assert_int_equal(p.three_phase, 0);
  assert_int_equal(dpt_optim_sched_set(&p, "three_phase", "maybe", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "three_phase");
  assert_int_equal(dpt_optim_sched_set(&p, "anneal_strategy", "linear", err, sizeof err), 0);
  assert_int_equal(p.anneal_cos, 0);
  p = params("plateau");
  assert_int_equal(dpt_optim_sched_set(&p, "mode", "max", err, sizeof err), 0);
  assert_int_equal(p.plateau_max, 1);
  assert_int_equal(dpt_optim_sched_set(&p, "mode", "triangular", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "plateau");
  assert_contains(err, "mode");
  assert_int_equal(dpt_optim_sched_set(&p, "threshold_mode", "abs", err, sizeof err), 0);
  assert_int_equal(p.threshold_abs, 1);
  p = params("cyclic");
  assert_int_equal(dpt_optim_sched_set(&p, "patience", "3", err, sizeof err), DPT_EINVAL);
  assert_contains(err, "cyclic");
  assert_contains(err, "patience");
}

static void test_cyclic_max_lr_above_base(void **state) {
  (void)state;
  dpt_sched_params p = params("cyclic");
  assert_int_equal(dpt_optim_sched_set(&p, "cycle_momentum", "0", err, sizeof err), 0);
  assert_int_equal(dpt_optim_sched_set(&p, "base_lr", "0.5", err, sizeof err), 0);
  assert_int_equal(dpt_optim_sched_set(&p, "max_lr", "0.1", err, sizeof err), 0);
  dpt_sched *s = NULL;
  assert_int_equal(dpt_sched_create(&p, 0.01, 0, 0, 100, &s, err, sizeof err), DPT_EINVAL);
  assert_null(s);
  assert_contains(err, "max_lr");
  assert_contains(err, "base_lr");
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
      cmocka_unit_test(test_describe_lists_each_kinds_keys),
      cmocka_unit_test(test_interval_and_warmup_keys_everywhere),
      cmocka_unit_test(test_cyclic_max_lr_above_base),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Momentum that a schedule moves, through the API the trainer uses (dpt_solver_set_momentum
 * before each step): it can reach 0 and come back (it does not latch); at 0, SGD and RMSprop
 * neither read nor write their buffer; SGD fills its buffer (torch's clone of d_p) at the first
 * step with momentum != 0 and says so in "has_momentum_buffer"; a solver created without
 * momentum ignores it. The torch recordings (test_solver_replay) check the same trajectories
 * against torch; this test names each rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

#define N 9

static dpt_solver *make(const char *solver, const char *momentum) {
  dpt_solver_params p;
  dpt_solver_kind k;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_optim_solver_kind(solver, &k, err, sizeof err), 0);
  dpt_optim_solver_defaults(k, &p);
  assert_int_equal(dpt_optim_solver_set(&p, "momentum", momentum, err, sizeof err), 0);
  dpt_solver *s;
  assert_int_equal(dpt_solver_create(&p, N, &s, err, sizeof err), 0);
  return s;
}

static void *entry(dpt_solver *s, const char *name) {
  int i = dpt_solver_state_find(s, name);
  assert_true(i >= 0);
  dpt_state_info info;
  return dpt_solver_state(s, i, &info);
}

static void fill(float *v, float base) {
  for (int i = 0; i < N; i++) v[i] = base + 0.25f * (float)i - 1.0f;
}

static int all_zero(const float *v) {
  for (int i = 0; i < N; i++)
    if (v[i] != 0.0f) return 0;
  return 1;
}

static void test_sgd_momentum_zero_then_back(void **state) {
  (void)state;
  dpt_solver *s = make("sgd", "0.9"), *plain = make("sgd", "0");
  float p[N], q[N], g[N];
  fill(p, 0.5f);
  memcpy(q, p, sizeof p);
  double *set = entry(s, "has_momentum_buffer");
  float *buf = entry(s, "momentum_buffer");
  /* two steps at momentum 0: plain SGD, the buffer untouched and not yet "set" */
  for (int k = 0; k < 2; k++) {
    fill(g, (float)k);
    dpt_solver_set_momentum(s, 0.0);
    dpt_solver_step(s, p, g);
    dpt_solver_step(plain, q, g);
    assert_memory_equal(p, q, sizeof p);
    assert_true(all_zero(buf));
    assert_true(*set == 0);
  }
  assert_int_equal(dpt_solver_has_momentum(s), 1); /* it did not latch */
  /* the first step at momentum != 0 clones d_p (the gradient: no weight decay) */
  fill(g, 3.0f);
  dpt_solver_set_momentum(s, 0.9);
  assert_true(dpt_solver_momentum(s) == 0.9);
  dpt_solver_step(s, p, g);
  assert_memory_equal(buf, g, sizeof g);
  assert_true(*set == 1);
  /* at 0 again: the buffer keeps its value */
  float kept[N];
  memcpy(kept, buf, sizeof kept);
  dpt_solver_set_momentum(s, 0.0);
  memcpy(q, p, sizeof p);
  dpt_solver_step(s, p, g);
  dpt_solver_step(plain, q, g);
  assert_memory_equal(p, q, sizeof p);
  assert_memory_equal(buf, kept, sizeof kept);
  /* and back: buf = 0.5 * buf + g */
  dpt_solver_set_momentum(s, 0.5);
  dpt_solver_step(s, p, g);
  for (int i = 0; i < N; i++) assert_true(buf[i] == kept[i] * 0.5f + g[i]);
  dpt_solver_free(s);
  dpt_solver_free(plain);
}

static void test_rmsprop_buffer_untouched_at_zero(void **state) {
  (void)state;
  dpt_solver *s = make("rmsprop", "0.5");
  float p[N], g[N];
  fill(p, 0.5f);
  fill(g, 1.0f);
  float *buf = entry(s, "momentum_buffer");
  dpt_solver_step(s, p, g);
  assert_false(all_zero(buf));
  float kept[N];
  memcpy(kept, buf, sizeof kept);
  dpt_solver_set_momentum(s, 0.0);
  dpt_solver_step(s, p, g);
  assert_memory_equal(buf, kept, sizeof kept);
  assert_int_equal(dpt_solver_has_momentum(s), 1);
  dpt_solver_set_momentum(s, 0.5);
  dpt_solver_step(s, p, g);
  assert_memory_not_equal(buf, kept, sizeof kept);
  dpt_solver_free(s);
}

static void test_created_without_momentum_ignores_it(void **state) {
  (void)state;
  const char *solvers[] = {"sgd", "rmsprop"};
  for (int k = 0; k < 2; k++) {
    dpt_solver *s = make(solvers[k], "0");
    assert_int_equal(dpt_solver_has_momentum(s), 0);
    dpt_solver_set_momentum(s, 0.9);
    assert_true(dpt_solver_momentum(s) == 0);
    assert_int_equal(dpt_solver_state_find(s, "momentum_buffer"), DPT_ESTATE);
    dpt_solver_free(s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_momentum_zero_then_back),
      cmocka_unit_test(test_rmsprop_buffer_untouched_at_zero),
      cmocka_unit_test(test_created_without_momentum_ignores_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

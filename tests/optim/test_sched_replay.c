/* Replays the PyTorch 1.13 schedules (ref/sched/CASE.txt, written by gen_sched_ref.py): every
 * learning rate (and cycled momentum) within 1e-9 relative of torch's after construction and
 * after each of 200 steps; a momentum dpt does not cycle must be constant in torch too; and
 * saving every state double after any step k into a fresh scheduler continues the schedule
 * (lr and momentum) bit for bit. Fails when ref/sched is missing, empty, or lacks a kind.
 * Also: a plateau scheduler after a warm-up (no torch equivalent) starts from the base lr. */
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

#define REF_DIR "ref/sched"
#define REL_TOL 1e-9  /* the tolerance for learning rates */
#define ABS_TOL 1e-15 /* where torch's value is 0 */
#define MAX_STEPS 512

typedef struct {
  char name[512];
  dpt_sched_params p;
  double base_lr, base_m;
  int has_m;
  long run_steps;
  int n; /* recorded values: index 0 is after construction */
  double lr[MAX_STEPS + 1], mom[MAX_STEPS + 1], metric[MAX_STEPS + 1];
} ref_case;

static double worst;

static void load(const char *path, ref_case *c) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[512], a[128], b[128], err[DPT_ERR_LEN];
  snprintf(c->name, sizeof c->name, "%s", path);
  c->n = 0;
  while (fgets(line, sizeof line, f)) {
    int i;
    double x, y, z;
    if (line[0] == '#') continue;
    if (sscanf(line, "sched %127s", a) == 1) {
      dpt_sched_kind k;
      assert_int_equal(dpt_optim_sched_kind(a, &k, err, sizeof err), 0);
      dpt_optim_sched_defaults(k, &c->p);
    } else if (sscanf(line, "set %127s %127s", a, b) == 2) {
      if (dpt_optim_sched_set(&c->p, a, b, err, sizeof err)) fail_msg("%s: %s", path, err);
    } else if (sscanf(line, "base_lr %lf", &x) == 1) {
      c->base_lr = x;
    } else if (sscanf(line, "has_momentum %d", &i) == 1) {
      c->has_m = i;
    } else if (sscanf(line, "base_momentum %lf", &x) == 1) {
      c->base_m = x;
    } else if (sscanf(line, "run_steps %ld", &c->run_steps) == 1) {
    } else {
      int got = sscanf(line, "step %d %lf %lf %lf", &i, &x, &y, &z);
      if (got < 3 || i != c->n || i > MAX_STEPS) fail_msg("%s: bad line '%s'", path, line);
      c->lr[i] = x;
      c->mom[i] = y;
      c->metric[i] = got == 4 ? z : NAN;
      c->n++;
    }
  }
  fclose(f);
  assert_true(c->n >= 201); /* construction + >= 200 steps */
}

static int close_enough(double got, double want) {
  double d = fabs(got - want);
  double rel = want != 0 ? d / fabs(want) : d;
  if (rel > worst) worst = rel;
  return d <= ABS_TOL || rel <= REL_TOL;
}

static dpt_sched *make(const ref_case *c) {
  dpt_sched *s;
  char err[DPT_ERR_LEN];
  if (dpt_sched_create(&c->p, c->base_lr, c->has_m, c->base_m, c->run_steps, &s, err, sizeof err))
    fail_msg("%s: %s", c->name, err);
  return s;
}

static int replay(const ref_case *c) {
  dpt_sched *s = make(c);
  int bad = 0;
  for (int i = 0; i < c->n; i++) {
    if (i > 0) dpt_sched_step(s, c->metric[i]);
    double lr = dpt_sched_lr(s);
    if (!close_enough(lr, c->lr[i]) && bad++ < 3)
      print_error("%s: step %d lr %.17g, torch %.17g\n", c->name, i, lr, c->lr[i]);
    if (dpt_sched_cycles_momentum(s) && !close_enough(dpt_sched_momentum(s), c->mom[i]) &&
        bad++ < 3)
      print_error("%s: step %d momentum %.17g, torch %.17g\n", c->name, i, dpt_sched_momentum(s),
                  c->mom[i]);
    if (!dpt_sched_cycles_momentum(s) && c->mom[i] != c->mom[0] && bad++ < 3)
      print_error("%s: step %d torch cycled momentum to %.17g, dpt does not\n", c->name, i,
                  c->mom[i]);
  }
  dpt_sched_free(s);
  return bad;
}

/* Save every state double at step k, load into a fresh scheduler, compare the rest bitwise. */
static void resume_exact(const ref_case *c, int k) {
  dpt_sched *a = make(c), *b = make(c);
  for (int i = 1; i <= k; i++) dpt_sched_step(a, c->metric[i]);
  assert_int_equal(dpt_sched_state_count(a), dpt_sched_state_count(b));
  for (int e = 0; e < dpt_sched_state_count(a); e++) {
    const char *name = NULL;
    double *src = dpt_sched_state(a, e, &name);
    assert_non_null(src);
    assert_non_null(name);
    int j = dpt_sched_state_find(b, name);
    if (j < 0) fail_msg("%s: state '%s' not found by name", c->name, name);
    *dpt_sched_state(b, j, NULL) = *src;
  }
  for (int i = k + 1; i < c->n; i++) {
    dpt_sched_step(a, c->metric[i]);
    dpt_sched_step(b, c->metric[i]);
    double la = dpt_sched_lr(a), lb = dpt_sched_lr(b);
    double ma = dpt_sched_momentum(a), mb = dpt_sched_momentum(b);
    if (memcmp(&la, &lb, sizeof la))
      fail_msg("%s: resumed after step %d, lr at step %d is %.17g, uninterrupted %.17g", c->name, k,
               i, lb, la);
    if (memcmp(&ma, &mb, sizeof ma))
      fail_msg("%s: resumed after step %d, momentum at step %d is %.17g, uninterrupted %.17g",
               c->name, k, i, mb, ma);
  }
  dpt_sched_free(a);
  dpt_sched_free(b);
}

static void test_every_recorded_schedule_matches_torch(void **state) {
  (void)state;
  DIR *d = opendir(REF_DIR);
  assert_non_null(d);
  struct dirent *e;
  int cases = 0, failed = 0;
  unsigned seen = 0;
  ref_case *c = malloc(sizeof *c);
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".txt")) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", REF_DIR, e->d_name);
    load(path, c);
    double before = worst;
    worst = 0;
    if (replay(c)) failed++;
    print_message("%-45s worst relative error %.3g\n", e->d_name, worst);
    if (before > worst) worst = before;
    for (int k = 0; k < c->n - 1; k++) resume_exact(c, k);
    seen |= 1u << c->p.kind;
    cases++;
  }
  closedir(d);
  free(c);
  print_message("replayed %d schedules; worst relative error %.3g\n", cases, worst);
  if (cases == 0) fail_msg("no recordings in %s (run gen_sched_ref.py)", REF_DIR);
  for (int k = 0; k < DPT_SCHED_COUNT; k++)
    if (!(seen & (1u << k))) fail_msg("no recording of %s", dpt_optim_sched_name(k));
  assert_int_equal(failed, 0);
}

/* torch cannot chain ReduceLROnPlateau in SequentialLR; dpt warms up, then runs the plateau
 * logic from the base lr, counting metrics from the end of the warm-up. */
static void test_plateau_after_warmup(void **state) {
  (void)state;
  dpt_sched_params p;
  char err[DPT_ERR_LEN];
  dpt_optim_sched_defaults(DPT_SCHED_PLATEAU, &p);
  assert_int_equal(dpt_optim_sched_set(&p, "warmup", "linear", err, sizeof err), 0);
  assert_int_equal(dpt_optim_sched_set(&p, "warmup_iters", "4", err, sizeof err), 0);
  assert_int_equal(dpt_optim_sched_set(&p, "warmup_factor", "0.25", err, sizeof err), 0);
  assert_int_equal(dpt_optim_sched_set(&p, "patience", "2", err, sizeof err), 0);
  assert_int_equal(dpt_optim_sched_set(&p, "factor", "0.5", err, sizeof err), 0);
  dpt_sched *s;
  assert_int_equal(dpt_sched_create(&p, 0.2, 0, 0, 100, &s, err, sizeof err), 0);
  assert_true(fabs(dpt_sched_lr(s) - 0.05) < 1e-15);
  double prev = dpt_sched_lr(s);
  for (int i = 1; i < 4; i++) { /* rising, whatever the metric does */
    dpt_sched_step(s, 10.0);
    assert_true(dpt_sched_lr(s) > prev);
    prev = dpt_sched_lr(s);
  }
  dpt_sched_step(s, 10.0); /* end of warm-up: the base lr */
  assert_true(dpt_sched_lr(s) == 0.2);
  dpt_sched_step(s, 1.0); /* first metric sets best */
  dpt_sched_step(s, 1.0);
  dpt_sched_step(s, 1.0); /* two bad epochs: patience 2 not exceeded */
  assert_true(dpt_sched_lr(s) == 0.2);
  dpt_sched_step(s, 1.0); /* third: halved */
  assert_true(dpt_sched_lr(s) == 0.1);
  dpt_sched_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_recorded_schedule_matches_torch),
      cmocka_unit_test(test_plateau_after_warmup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Replays the PyTorch 1.13 solver recordings (ref/solvers/CASE.txt, written by gen_solver_ref.py)
 * through dpt's solvers: parameters after every step within 1e-6 relative (1e-7 absolute near
 * zero) of torch's, and the final state, entry by entry under torch's state names. */
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
/* The tolerance: fp32 parameters within 1e-6 relative, or 1e-7 absolute near zero. */
#define REL_TOL 1e-6
#define ABS_TOL 1e-7

static double worst_rel; /* largest relative error seen over all cases, for the summary */

static int close_enough(double got, double want) {
  double d = fabs(got - want);
  double rel = want != 0 ? d / fabs(want) : d;
  if (rel > worst_rel) worst_rel = rel;
  return d <= ABS_TOL || rel <= REL_TOL;
}

static void read_floats(FILE *f, float *v, size_t n, const char *path) {
  for (size_t i = 0; i < n; i++) {
    if (fscanf(f, "%f", &v[i]) != 1) fail_msg("%s: expected %zu numbers", path, n);
  }
}

/* Returns 0 when every step and every state entry matched. */
static int replay(const char *path) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char word[128], key[128], val[128], err[DPT_ERR_LEN];
  dpt_solver_params p;
  dpt_solver *s = NULL;
  size_t n = 0;
  float *param = NULL, *grad = NULL, *want = NULL;
  int failures = 0;
  while (fscanf(f, "%127s", word) == 1) {
    if (word[0] == '#') {
      int c;
      while ((c = fgetc(f)) != '\n' && c != EOF) {}
    } else if (!strcmp(word, "solver")) {
      assert_int_equal(fscanf(f, "%127s", val), 1);
      dpt_solver_kind k;
      assert_int_equal(dpt_optim_solver_kind(val, &k, err, sizeof err), 0);
      dpt_optim_solver_defaults(k, &p);
    } else if (!strcmp(word, "set")) {
      assert_int_equal(fscanf(f, "%127s %127s", key, val), 2);
      if (dpt_optim_solver_set(&p, key, val, err, sizeof err)) fail_msg("%s: %s", path, err);
    } else if (!strcmp(word, "n")) {
      assert_int_equal(fscanf(f, "%zu", &n), 1);
      param = calloc(n, sizeof *param);
      grad = calloc(n, sizeof *grad);
      want = calloc(n, sizeof *want);
    } else if (!strcmp(word, "steps")) {
      int steps;
      assert_int_equal(fscanf(f, "%d", &steps), 1);
      assert_true(steps >= 50);
    } else if (!strcmp(word, "init")) {
      read_floats(f, param, n, path);
      if (dpt_solver_create(&p, n, &s, err, sizeof err)) fail_msg("%s: %s", path, err);
    } else if (!strcmp(word, "step")) {
      int step;
      double lr;
      assert_int_equal(fscanf(f, "%d %lf", &step, &lr), 2);
      assert_int_equal(fscanf(f, "%127s", word), 1);
      assert_string_equal(word, "grad");
      read_floats(f, grad, n, path);
      assert_int_equal(fscanf(f, "%127s", word), 1);
      assert_string_equal(word, "param");
      read_floats(f, want, n, path);
      dpt_solver_set_lr(s, lr);
      dpt_solver_step(s, param, grad);
      for (size_t i = 0; i < n; i++) {
        if (!close_enough(param[i], want[i]) && failures++ < 5)
          print_error("%s: step %d element %zu: got %.9g, torch %.9g\n", path, step, i,
                      param[i], want[i]);
      }
    } else if (!strcmp(word, "state")) {
      assert_int_equal(fscanf(f, "%127s", key), 1);
      int idx = dpt_solver_state_find(s, key);
      if (idx < 0) fail_msg("%s: dpt has no state entry named '%s'", path, key);
      dpt_state_info info;
      void *ptr = dpt_solver_state(s, idx, &info);
      if (info.type == DPT_STATE_VECTOR) {
        read_floats(f, want, n, path);
        for (size_t i = 0; i < n; i++)
          if (!close_enough(((float *)ptr)[i], want[i]) && failures++ < 5)
            print_error("%s: state %s[%zu]: got %.9g, torch %.9g\n", path, key, i,
                        ((float *)ptr)[i], want[i]);
      } else {
        double w;
        assert_int_equal(fscanf(f, "%lf", &w), 1);
        if (!close_enough(*(double *)ptr, w) && failures++ < 5)
          print_error("%s: state %s: got %.9g, torch %.9g\n", path, key, *(double *)ptr, w);
      }
    } else {
      fail_msg("%s: unexpected word '%s'", path, word);
    }
  }
  fclose(f);
  assert_non_null(s);
  dpt_solver_free(s);
  free(param);
  free(grad);
  free(want);
  return failures;
}

static void test_every_recorded_trajectory_matches_torch(void **state) {
  (void)state;
  DIR *d = opendir(REF_DIR);
  assert_non_null(d);
  struct dirent *e;
  int cases = 0, failed = 0;
  unsigned seen = 0; /* bit per solver kind that has at least one recording */
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".txt")) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", REF_DIR, e->d_name);
    double before = worst_rel;
    worst_rel = 0;
    int bad = replay(path);
    print_message("%-40s worst relative error %.3g\n", e->d_name, worst_rel);
    if (before > worst_rel) worst_rel = before;
    if (bad) {
      print_error("%s: %d mismatches\n", path, bad);
      failed++;
    }
    char kind[32];
    snprintf(kind, sizeof kind, "%.*s", (int)strcspn(e->d_name, "_."), e->d_name);
    dpt_solver_kind k;
    char err[DPT_ERR_LEN];
    if (!dpt_optim_solver_kind(kind, &k, err, sizeof err)) seen |= 1u << k;
    cases++;
  }
  closedir(d);
  print_message("replayed %d cases; worst relative error %.3g\n", cases, worst_rel);
  assert_int_equal(seen, (1u << DPT_SOLVER_COUNT) - 1); /* every solver is covered */
  assert_int_equal(failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_recorded_trajectory_matches_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

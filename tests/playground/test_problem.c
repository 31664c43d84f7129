/* test_problem.c — unit tests of runtime/playground/problem.c, the solver playground: the worked
 * example (GD with lr 0.3 on x^2 - 4x + 3 goes 0, 1.2, 1.68, 1.872, ... to 2) read back from
 * trajectories.jsonl, a Rosenbrock run that reaches (1, 1) next to one that cannot, the
 * scheduler stepped every step, divergence reported as a result, bad input rejected before
 * anything is written, and every problem's files. Outputs go under DPT_TEST_TMP/svg/problem,
 * where check_svg.py parses the charts as XML. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "playground.h"

#define OUT DPT_TEST_TMP "/svg/problem"
#define MAX_POINTS 4096

static char err[DPT_ERR_LEN];

#define assert_contains(hay, needle)                                                               \
  do {                                                                                             \
    if (!strstr((hay), (needle))) fail_msg("'%s' does not mention '%s'", (hay), (needle));         \
  } while (0)

/* cmocka 1.1 has no double comparison */
#define assert_near(a, b, tol)                                                                     \
  do {                                                                                             \
    double a_ = (a), b_ = (b);                                                                     \
    if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.9g, expected %.9g +- %g", #a, a_, b_, (tol));  \
  } while (0)

static dpt_problem_run solver(const char *name, dpt_solver_kind kind, double lr) {
  dpt_problem_run r;
  memset(&r, 0, sizeof r);
  snprintf(r.name, sizeof r.name, "%s", name);
  dpt_optim_solver_defaults(kind, &r.solver);
  r.solver.lr = lr;
  dpt_optim_sched_defaults(DPT_SCHED_NONE, &r.sched);
  return r;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open '%s'", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = 0;
  fclose(f);
  return s;
}

/* One run's points from dir/trajectories.jsonl, in file order: x[k * dim + d], f[k]. Checks
 * the steps count 0, 1, 2, ... Returns how many points. */
typedef struct {
  double x[MAX_POINTS * 2], f[MAX_POINTS];
} points;

static long read_run(const char *dir, const char *run, int dim, points *p) {
  char path[1024], line[512], name[64];
  snprintf(path, sizeof path, "%s/trajectories.jsonl", dir);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open '%s'", path);
  long n = 0, step;
  while (fgets(line, sizeof line, f)) {
    double x[2] = {0, 0}, fx;
    int got = dim == 1
                  ? sscanf(line, "{\"run\":\"%63[^\"]\",\"step\":%ld,\"x\":[%lf],\"f\":%lf}", name,
                           &step, &x[0], &fx)
                  : sscanf(line, "{\"run\":\"%63[^\"]\",\"step\":%ld,\"x\":[%lf,%lf],\"f\":%lf}",
                           name, &step, &x[0], &x[1], &fx);
    if (got != 3 + dim) fail_msg("%s: unreadable line '%s'", path, line);
    if (strcmp(name, run)) continue;
    assert_int_equal(step, n);
    assert_true(n < MAX_POINTS);
    for (int d = 0; d < dim; d++) p->x[n * dim + d] = x[d];
    p->f[n++] = fx;
  }
  fclose(f);
  return n;
}

/* Cell `col` (0-based) of the summary table's row for run, trimmed, into buf. */
static void cell(const char *md, const char *run, int col, char *buf, size_t len) {
  char key[96];
  snprintf(key, sizeof key, "\n| %s ", run);
  const char *p = strstr(md, key);
  if (!p) fail_msg("no row for '%s' in\n%s", run, md);
  p += 2;
  for (int c = 0; c < col; c++) p = strchr(p, '|') + 1;
  while (*p == ' ') p++;
  size_t n = strcspn(p, "|");
  while (n && p[n - 1] == ' ') n--;
  snprintf(buf, len, "%.*s", (int)n, p);
}

static int exists(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

/* ---- the worked example ------------------------------------------------------------------- */

/* x_{k+1} = x_k - 0.3 (2 x_k - 4): x_k - 2 shrinks by 0.4 a step from -2, so x_k = 2 - 2 * 0.4^k.
 */
static void test_quadratic_gd_is_the_worked_example(void **state) {
  (void)state;
  dpt_problem_run run = solver("gd", DPT_SOLVER_GD, 0.3);
  char *printed = NULL;
  size_t plen = 0;
  FILE *out = open_memstream(&printed, &plen);
  assert_int_equal(
      dpt_problem_compare("quadratic", &run, 1, 20, NULL, 0, OUT "/worked", out, err, sizeof err),
      0);
  fclose(out);
  static points p;
  assert_int_equal(read_run(OUT "/worked", "gd", 1, &p), 21);
  const double first[] = {0, 1.2, 1.68, 1.872, 1.9488};
  for (int k = 0; k < 5; k++) assert_near(p.x[k], first[k], 1e-6);
  for (int k = 0; k <= 20; k++) {
    assert_near(p.x[k], 2 - 2 * pow(0.4, k), 1e-6);
    assert_near(p.f[k], p.x[k] * p.x[k] - 4 * p.x[k] + 3, 1e-7); /* x has 9 digits */
  }
  assert_near(p.x[20], 2, 1e-5);
  assert_near(p.f[0], 3, 0);
  /* f - f* = (x - 2)^2 = 4 * 0.16^k < 1e-6 first at k = 9 (4 * 0.16^8 = 1.7e-6) */
  char *md = slurp(OUT "/worked/summary.md");
  assert_contains(md, "# quadratic");
  char c[64];
  cell(md, "gd", 1, c, sizeof c);
  assert_string_equal(c, "20");
  cell(md, "gd", 6, c, sizeof c);
  assert_string_equal(c, "9");
  cell(md, "gd", 8, c, sizeof c);
  assert_string_equal(c, "ok");
  assert_string_equal(printed, md); /* the same summary to out */
  free(md);
  free(printed);
}

/* A given start replaces the problem's, and the scheduler is stepped every step whatever its
 * interval: StepLR(step_size 1, gamma 0.5) halves the lr between the first and second step. */
static void test_start_point_and_schedule_per_step(void **state) {
  (void)state;
  dpt_problem_run runs[2] = {solver("gd", DPT_SOLVER_GD, 0.3),
                             solver("gd step", DPT_SOLVER_GD, 0.3)};
  dpt_optim_sched_defaults(DPT_SCHED_STEP, &runs[1].sched);
  runs[1].sched.step_size = 1;
  runs[1].sched.gamma = 0.5;
  assert_int_equal(runs[1].sched.interval, DPT_SCHED_EVERY_EPOCH);
  double x0 = 4;
  assert_int_equal(
      dpt_problem_compare("quadratic", runs, 2, 2, &x0, 1, OUT "/start", NULL, err, sizeof err), 0);
  static points p;
  assert_int_equal(read_run(OUT "/start", "gd", 1, &p), 3);
  assert_near(p.x[0], 4, 0);
  assert_near(p.x[1], 2.8, 1e-6); /* 4 - 0.3 * 4 */
  assert_int_equal(read_run(OUT "/start", "gd step", 1, &p), 3);
  assert_near(p.x[1], 2.8, 1e-6);
  assert_near(p.x[2], 2.56, 1e-6); /* 2.8 - 0.15 * 1.6 */
}

/* ---- Rosenbrock: the test can tell reaching the minimum from not -------------------------- */

static double dist11(const double *x) {
  return hypot(x[0] - 1, x[1] - 1);
}

static void test_rosenbrock_adam_reaches_minimum_small_gd_does_not(void **state) {
  (void)state;
  dpt_problem_run runs[3] = {solver("adam", DPT_SOLVER_ADAM, 0.02),
                             solver("sgd momentum=0.9", DPT_SOLVER_SGD, 5e-4),
                             solver("gd small lr", DPT_SOLVER_GD, 1e-4)};
  runs[1].solver.momentum = 0.9;
  assert_int_equal(dpt_problem_compare("rosenbrock", runs, 3, 3000, NULL, 0, OUT "/rosen_check",
                                       NULL, err, sizeof err),
                   0);
  static points p;
  assert_int_equal(read_run(OUT "/rosen_check", "adam", 2, &p), 3001);
  assert_near(p.x[0], -1.5, 0);
  assert_near(p.x[1], 2, 0);
  assert_true(dist11(&p.x[2 * 3000]) < 1e-2);
  assert_int_equal(read_run(OUT "/rosen_check", "sgd momentum=0.9", 2, &p), 3001);
  assert_true(dist11(&p.x[2 * 3000]) < 1e-2);
  assert_int_equal(read_run(OUT "/rosen_check", "gd small lr", 2, &p), 3001);
  assert_true(dist11(&p.x[2 * 3000]) > 0.5);
  char *md = slurp(OUT "/rosen_check/summary.md");
  char c[64];
  cell(md, "gd small lr", 6, c, sizeof c);
  assert_string_equal(c, "\xe2\x80\x94"); /* gd never gets f - f* < 1e-6 */
  cell(md, "adam", 8, c, sizeof c);
  assert_string_equal(c, "ok");
  free(md);
}

/* ---- divergence is a result, bad input an error ------------------------------------------- */

/* GD with lr 1.5 on the quadratic: x - 2 doubles and flips sign every step until fp32 runs out. */
static void test_divergence_is_reported_not_an_error(void **state) {
  (void)state;
  dpt_problem_run runs[2] = {solver("gd 1.5", DPT_SOLVER_GD, 1.5),
                             solver("gd 0.3", DPT_SOLVER_GD, 0.3)};
  assert_int_equal(dpt_problem_compare("quadratic", runs, 2, 500, NULL, 0, OUT "/diverge", NULL,
                                       err, sizeof err),
                   0);
  static points p;
  long n = read_run(OUT "/diverge", "gd 1.5", 1, &p);
  assert_true(n > 50 && n < 501);
  for (long k = 0; k < n; k++) assert_true(isfinite(p.x[k]) && isfinite(p.f[k]));
  assert_true(fabs(p.x[n - 1] - 2) > 1e30);
  assert_int_equal(read_run(OUT "/diverge", "gd 0.3", 1, &p), 501);
  char *md = slurp(OUT "/diverge/summary.md"), want[64];
  snprintf(want, sizeof want, "diverged at step %ld", n);
  char c[64];
  cell(md, "gd 1.5", 8, c, sizeof c);
  assert_string_equal(c, want);
  cell(md, "gd 0.3", 8, c, sizeof c);
  assert_string_equal(c, "ok");
  free(md);
  assert_true(exists(OUT "/diverge", "trajectory.svg"));
  assert_true(exists(OUT "/diverge", "loss_step.svg"));
}

static void collect(void *ctx, const char *name, const char *desc) {
  char *names = ctx;
  assert_true(desc && *desc);
  strcat(names, name), strcat(names, " ");
}

static void test_bad_input_is_rejected_before_writing(void **state) {
  (void)state;
  const char *dir = OUT "/never";
  rmdir(dir);
  dpt_problem_run run = solver("adam", DPT_SOLVER_ADAM, 0.01);
  assert_int_equal(
      dpt_problem_compare("rosenbrok", &run, 1, 10, NULL, 0, dir, NULL, err, sizeof err),
      DPT_EINVAL);
  assert_contains(err, "rosenbrok");
  char names[256] = "";
  dpt_problem_list(collect, names);
  assert_string_equal(names, "quadratic rosenbrock himmelblau ellipse ");
  for (char *n = strtok(names, " "); n; n = strtok(NULL, " ")) assert_contains(err, n);

  double x0 = 1;
  assert_int_equal(
      dpt_problem_compare("rosenbrock", &run, 1, 10, &x0, 1, dir, NULL, err, sizeof err),
      DPT_EINVAL);
  assert_contains(err, "rosenbrock");
  assert_contains(err, "2-D");
  assert_int_equal(
      dpt_problem_compare("quadratic", &run, 1, 0, NULL, 0, dir, NULL, err, sizeof err),
      DPT_EINVAL);
  assert_contains(err, "steps = 0");
  assert_int_equal(
      dpt_problem_compare("quadratic", &run, 0, 10, NULL, 0, dir, NULL, err, sizeof err),
      DPT_EINVAL);
  dpt_problem_run bad = solver("bad lr", DPT_SOLVER_SGD, -1);
  assert_int_equal(
      dpt_problem_compare("quadratic", &bad, 1, 10, NULL, 0, dir, NULL, err, sizeof err),
      DPT_EINVAL);
  assert_contains(err, "bad lr");
  assert_contains(err, "lr");
  assert_int_not_equal(access(dir, F_OK), 0); /* nothing written */
}

/* ---- every problem writes its four files -------------------------------------------------- */

static void check_svg_text(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *s = slurp(path);
  assert_contains(s, "<svg xmlns=\"http://www.w3.org/2000/svg\"");
  assert_contains(s, "</svg>\n");
  assert_null(strstr(s, "nan"));
  assert_null(strstr(s, "inf"));
  free(s);
  strcat(path, ".tmp");
  assert_int_not_equal(access(path, F_OK), 0);
}

/* The solvers of the pictures in the report: quadratic with three, the 2-D ones with four. */
static void test_every_problem_writes_its_files(void **state) {
  (void)state;
  static const struct {
    const char *name;
    long steps;
    int nruns;
    double lr[4]; /* gd, sgd momentum=0.9, adam, lion */
  } cases[] = {
      {"quadratic", 30, 3, {0.3, 0.05, 0.5}}, /* steps that can be told apart on the curve */
      {"rosenbrock", 3000, 4, {5e-4, 5e-4, 0.02, 2e-3}},
      {"himmelblau", 3000, 4, {0.01, 0.005, 0.02, 2e-3}},
      {"ellipse", 3000, 4, {0.09, 0.01, 0.02, 2e-3}}, /* gd near 2 / 20: zig-zag */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dpt_problem_run runs[4] = {solver("gd", DPT_SOLVER_GD, cases[i].lr[0]),
                               solver("sgd momentum=0.9", DPT_SOLVER_SGD, cases[i].lr[1]),
                               solver("adam", DPT_SOLVER_ADAM, cases[i].lr[2]),
                               solver("lion", DPT_SOLVER_LION, cases[i].lr[3])};
    runs[1].solver.momentum = 0.9;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", OUT, cases[i].name);
    assert_int_equal(dpt_problem_compare(cases[i].name, runs, cases[i].nruns, cases[i].steps, NULL,
                                         0, dir, NULL, err, sizeof err),
                     0);
    assert_true(exists(dir, "trajectories.jsonl") && exists(dir, "summary.md"));
    assert_false(exists(dir, "trajectories.jsonl.tmp") || exists(dir, "summary.md.tmp"));
    check_svg_text(dir, "trajectory.svg");
    check_svg_text(dir, "loss_step.svg");
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quadratic_gd_is_the_worked_example),
      cmocka_unit_test(test_start_point_and_schedule_per_step),
      cmocka_unit_test(test_rosenbrock_adam_reaches_minimum_small_gd_does_not),
      cmocka_unit_test(test_divergence_is_reported_not_an_error),
      cmocka_unit_test(test_bad_input_is_rejected_before_writing),
      cmocka_unit_test(test_every_problem_writes_its_files),
  };
  mkdir(DPT_TEST_TMP "/svg", 0777);
  mkdir(OUT, 0777);
  return cmocka_run_group_tests(tests, NULL, NULL);
}

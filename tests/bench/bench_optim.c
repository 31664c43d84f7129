/* bench_optim — solver step speed on one core against a triad over the same bytes.
 *
 * For every solver: time per step on N parameters (default 16M, >= 10M as the optim issue asks),
 * the bytes the step must touch (params read+write, grads read, each state vector read+write),
 * the resulting GB/s, and its ratio to a triad a[i] = b[i] + s*c[i] moving the same number of
 * bytes, measured in the same run, interleaved with the solver runs, because the machine is
 * shared and noisy. Best of R repetitions for both. Targets (optim issue): SGD-momentum, Adam,
 * AdamW, Lion >= 0.8 of triad; no solver below 0.5. Exit status 1 if a target is missed.
 * Usage: bench_optim [N] [reps]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "optim.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *alloc_floats(size_t n, float v) {
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "bench_optim: cannot allocate %zu floats\n", n);
    exit(1);
  }
  for (size_t i = 0; i < n; i++) p[i] = v;
  return p;
}

/* Best time of one triad pass over m elements (3 arrays: 12 bytes per element). */
static double triad_best(float *a, const float *b, const float *c, size_t m, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    const float s = 1.0001f;
    for (size_t i = 0; i < m; i++) a[i] = b[i] + s * c[i];
    double t = now() - t0;
    if (t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : (size_t)16 << 20;
  int reps = argc > 2 ? atoi(argv[2]) : 7;
  if (n < 1 || reps < 1) {
    fprintf(stderr, "usage: bench_optim [N >= 1] [reps >= 1]\n");
    return 2;
  }
  float *param = alloc_floats(n, 0.5f), *grad = alloc_floats(n, 0.0f);
  for (size_t i = 0; i < n; i++) grad[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  /* triad arrays sized for the largest solver (11 floats per element: RMSprop centered+mom) */
  size_t tmax = n * 11 / 3 + 16;
  float *ta = alloc_floats(tmax, 0), *tb = alloc_floats(tmax, 1), *tc = alloc_floats(tmax, 2);

  static const struct {
    const char *label, *solver, *key, *value;
    int target; /* 80 = must reach 0.8 of triad */
  } rows[] = {
      {"gd", "gd", NULL, NULL, 50},
      {"sgd", "sgd", NULL, NULL, 50},
      {"sgd momentum", "sgd", "momentum", "0.9", 80},
      {"sgd nesterov", "sgd", "nesterov", "1", 50}, /* with momentum set below */
      {"adagrad", "adagrad", NULL, NULL, 50},
      {"adadelta", "adadelta", NULL, NULL, 50},
      {"asgd", "asgd", NULL, NULL, 50},
      {"rprop", "rprop", NULL, NULL, 50},
      {"rmsprop", "rmsprop", NULL, NULL, 50},
      {"rmsprop centered", "rmsprop", "centered", "1", 50},
      {"adam", "adam", NULL, NULL, 80},
      {"adam amsgrad", "adam", "amsgrad", "1", 50},
      {"adamax", "adamax", NULL, NULL, 50},
      {"adamw", "adamw", NULL, NULL, 80},
      {"lion", "lion", NULL, NULL, 80},
  };
  printf("dpt solver step on one core, N = %zu parameters, best of %d\n", n, reps);
  printf("%-18s %10s %8s %9s %9s %7s %s\n", "solver", "ms/step", "B/elem", "GB/s", "triad GB/s",
         "ratio", "target");
  int missed = 0;
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    dpt_solver_params p;
    dpt_solver_kind k;
    char err[DPT_ERR_LEN];
    dpt_optim_solver_kind(rows[r].solver, &k, err, sizeof err);
    dpt_optim_solver_defaults(k, &p);
    p.lr = 1e-6; /* keep parameters finite over many steps */
    if (!strcmp(rows[r].label, "sgd nesterov")) p.momentum = 0.9;
    if (rows[r].key) dpt_optim_solver_set(&p, rows[r].key, rows[r].value, err, sizeof err);
    dpt_solver *s;
    if (dpt_solver_create(&p, n, &s, err, sizeof err)) {
      fprintf(stderr, "bench_optim: %s\n", err);
      return 1;
    }
    size_t bpe = dpt_solver_bytes_per_element(s);
    double bytes = (double)bpe * n;
    size_t m = (size_t)(bytes / 12); /* triad elements moving the same bytes */
    dpt_solver_step(s, param, grad); /* first touch of state */
    double best = 1e30, tbest = 1e30;
    for (int i = 0; i < reps; i++) {
      double t0 = now();
      dpt_solver_step(s, param, grad);
      double t = now() - t0;
      if (t < best) best = t;
      double tt = triad_best(ta, tb, tc, m, 1);
      if (tt < tbest) tbest = tt;
    }
    double gbs = bytes / best * 1e-9, tgbs = (double)m * 12 / tbest * 1e-9;
    double ratio = gbs / tgbs;
    int ok = ratio * 100 >= rows[r].target;
    missed += !ok;
    printf("%-18s %10.2f %8zu %9.1f %9.1f %7.2f >= %.1f %s\n", rows[r].label, best * 1e3, bpe, gbs,
           tgbs, ratio, rows[r].target / 100.0, ok ? "ok" : "MISSED");
    dpt_solver_free(s);
  }
  free(param);
  free(grad);
  free(ta);
  free(tb);
  free(tc);
  return missed ? 1 : 0;
}

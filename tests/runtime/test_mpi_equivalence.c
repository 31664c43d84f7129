/* W ranks train what 1 rank trains: the same small problem, same global batch and seed, on
 * 1, 2 and 4 ranks (sub-communicators of MPI_COMM_WORLD, as many as the world allows), ends
 * with final parameters that agree to <= 1e-5 relative (the runtime issue's bar), for a
 * momentum solver and for Adam, with and without ZeRO-1 sharding and gradient accumulation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime.h" /* before mpi_test.h: its dataset helper needs it */
#include "mpi_test.h"

/* Parameters of runs on different rank counts agree to this relative L2 distance. */
#define REL_TOL 1e-5

static int world_rank, world_size;
static char data_path[1024];

/* Trains on the first w ranks of the world; returns the parameters on world rank 0. */
static float *train_on(int w, const char *solver, const char *zero, const char *accum,
                       const char *cache_mb, size_t *n) {
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < w ? 0 : MPI_UNDEFINED, world_rank, &sub);
  float *params = NULL;
  if (sub != MPI_COMM_NULL) {
    dpt_train_opts o;
    dpt_train_defaults(&o);
    dpt_test_set_many(
        &o, (const char *[]){"data", data_path, "model", "mlp:12-24-16-3", "solver", solver, NULL});
    if (!strcmp(solver, "sgd")) dpt_test_set(&o, "momentum", "0.9");
    dpt_test_set_many(&o, (const char *[]){"lr", !strcmp(solver, "sgd") ? "0.05" : "0.003", "batch",
                                           "32", "accum", accum, "epochs", "3", "zero", zero,
                                           "progress", "none", NULL});
    dpt_test_set(&o, "bucket_mb", "0.001"); /* several buckets even for this small model */
    dpt_test_set(&o, "cache_mb", cache_mb);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/run_w%d", DPT_TEST_TMP, w);
    dpt_test_set(&o, "run_dir", dir);
    dpt_model m;
    char err[DPT_ERR_LEN];
    assert_int_equal(dpt_mlp_create(o.model, o.activation, o.loss, &m, err, sizeof err), 0);
    *n = m.nparams;
    params = malloc(m.nparams * sizeof(float));
    dpt_train_result res;
    int rc = dpt_train_run_model(&o, &m, sub, &res, params, err, sizeof err);
    if (rc) fail_msg("W=%d: %s", w, err);
    assert_int_equal(res.steps, 3 * (480 / 32));
    assert_true(res.test_accuracy > 0.5); /* it learned something */
    m.destroy(&m);
    MPI_Comm_free(&sub);
    if (world_rank != 0) {
      free(params);
      params = NULL;
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return params;
}

static void compare_rank_counts(const char *solver, const char *zero, const char *accum) {
  size_t n = 0;
  float *ref = train_on(1, solver, zero, accum, "1024", &n);
  for (int w = 2; w <= world_size && w <= 4; w *= 2) {
    float *p = train_on(w, solver, zero, accum, "1024", &n);
    if (world_rank == 0) {
      double worst = 0;
      for (size_t i = 0; i < n; i++)
        if (fabs((double)p[i] - ref[i]) > worst) worst = fabs((double)p[i] - ref[i]);
      double rel = dpt_test_rel_l2(p, ref, n);
      print_message("%s zero=%s accum=%s: W=%d vs W=1: relative L2 %.3g, max abs %.3g\n", solver,
                    zero, accum, w, rel, worst);
      assert_true(rel <= REL_TOL);
    }
    free(p);
  }
  free(ref);
}

static void test_sgd_momentum_same_on_any_rank_count(void **state) {
  (void)state;
  compare_rank_counts("sgd", "0", "1");
}

static void test_adam_zero1_same_on_any_rank_count(void **state) {
  (void)state;
  compare_rank_counts("adam", "1", "1");
}

static void test_accumulation_same_on_any_rank_count(void **state) {
  (void)state;
  compare_rank_counts("adamw", "-1", "2");
}

/* A dataset that does not fit the cache budget is read per batch with hyperslab selections,
 * and trains bit for bit what the cached one trains. */
static void test_uncached_reads_train_the_same(void **state) {
  (void)state;
  size_t n = 0;
  int w = world_size < 4 ? world_size : 4;
  float *cached = train_on(w, "adam", "-1", "1", "1024", &n);
  float *uncached = train_on(w, "adam", "-1", "1", "0", &n);
  if (world_rank == 0) assert_memory_equal(cached, uncached, n * sizeof(float));
  free(cached);
  free(uncached);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  dpt_log_init(world_rank, DPT_LOG_WARN, 0);
  snprintf(data_path, sizeof data_path, "%s/equiv_np%d.h5", DPT_TEST_TMP, world_size);
  if (dpt_test_synth(data_path, 480, 96, 12, 3, 7)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_momentum_same_on_any_rank_count),
      cmocka_unit_test(test_adam_zero1_same_on_any_rank_count),
      cmocka_unit_test(test_accumulation_same_on_any_rank_count),
      cmocka_unit_test(test_uncached_reads_train_the_same),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

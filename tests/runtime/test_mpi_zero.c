/* ZeRO stages for every solver: stages 0, 1, 2 and 3 at the same W give bitwise-identical
 * parameters after 20 steps (the reduction sums in rank order whatever the stage, stages 2 and
 * 3 streaming each layer's gradient through a pool of bucket buffers, here many small buckets;
 * stage 3 gathering each layer's parameters from the shards, with and without prefetch),
 * W = 1, 2, 4 agree to <= 1e-5 relative, gradient clipping sees the global norm under
 * sharding, at W = 4 a rank holds <= 0.26 of stage 0's optimizer state, in stages 2 and 3 a
 * rank holds only its shard of the gradient (stages 0 and 1: all of it), and in stage 3 only
 * its shard of the parameters and two working buffers of the widest layer. */
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

#define REL_TOL 1e-5     /* W = 1, 2, 4 agreement (the issues' bar) */
#define STATE_RATIO 0.26 /* state per rank at W = 4 relative to stage 0 */

static int world_rank, world_size;
static char data_path[1024];

/* solver, then key/value pairs exercising its extra state */
static const char *const solvers[][7] = {
    {"gd", NULL},
    {"sgd", "momentum", "0.9", "nesterov", "1", NULL},
    {"adagrad", "lr_decay", "0.01", NULL},
    {"adadelta", NULL},
    {"asgd", "t0", "5", NULL},
    {"rprop", NULL},
    {"rmsprop", "centered", "1", "momentum", "0.5", NULL},
    {"adam", "amsgrad", "1", NULL},
    {"adamax", NULL},
    {"adamw", "weight_decay", "0.1", NULL},
    {"lion", "lr", "3e-4", NULL},
};
#define NSOLVERS (sizeof solvers / sizeof solvers[0])

typedef struct {
  float *params; /* on world rank 0 */
  size_t n;
  double state_max; /* largest optimizer state on any rank of the run */
  double grad_max;  /* largest gradient bytes on any rank of the run */
  double param_max; /* largest parameter bytes on any rank of the run */
  size_t widest;    /* the widest layer's parameters */
} outcome;

static const char *model = "mlp:12-200-3"; /* 3203 parameters: shards of 816 at W = 4 */
static const char *keep_mb = "0";

static outcome train_with(int w, size_t s, const char *zero, const char *clip,
                          const char *prefetch) {
  outcome out = {0};
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < w ? 0 : MPI_UNDEFINED, world_rank, &sub);
  if (sub != MPI_COMM_NULL) {
    dpt_train_opts o;
    dpt_train_defaults(&o);
    dpt_test_set_many(&o, (const char *[]){"data", data_path, "model", model, "zero_keep_mb",
                                           keep_mb, "solver", solvers[s][0], NULL});
    for (int i = 1; solvers[s][i]; i += 2) dpt_test_set(&o, solvers[s][i], solvers[s][i + 1]);
    dpt_test_set_many(&o, (const char *[]){"batch", "16", "max_steps", "20", "zero", zero,
                                           "clip_norm", clip, "zero_prefetch", prefetch,
                                           "eval_every", "0", "progress", "none", "bucket_mb",
                                           "0.0005", "run_dir", DPT_TEST_TMP "/run_zero", NULL});
    dpt_model m;
    char err[DPT_ERR_LEN];
    assert_int_equal(dpt_mlp_create(o.model, o.activation, o.loss, &m, err, sizeof err), 0);
    out.n = m.nparams;
    for (int l = 0; l < m.nlayers; l++)
      if (m.layers[l].len > out.widest) out.widest = m.layers[l].len;
    out.params = malloc(m.nparams * sizeof(float));
    dpt_train_result res;
    if (dpt_train_run_model(&o, &m, sub, &res, out.params, err, sizeof err))
      fail_msg("%s zero=%s W=%d: %s", solvers[s][0], zero, w, err);
    assert_int_equal(res.steps, 20);
    out.state_max = (double)res.state_bytes;
    out.grad_max = (double)res.grad_bytes;
    out.param_max = (double)res.param_bytes;
    MPI_Allreduce(MPI_IN_PLACE, &out.state_max, 1, MPI_DOUBLE, MPI_MAX, sub);
    MPI_Allreduce(MPI_IN_PLACE, &out.grad_max, 1, MPI_DOUBLE, MPI_MAX, sub);
    MPI_Allreduce(MPI_IN_PLACE, &out.param_max, 1, MPI_DOUBLE, MPI_MAX, sub);
    m.destroy(&m);
    MPI_Comm_free(&sub);
  }
  MPI_Bcast(&out.state_max, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MPI_Bcast(&out.grad_max, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MPI_Bcast(&out.param_max, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MPI_Bcast(&out.widest, sizeof out.widest, MPI_BYTE, 0, MPI_COMM_WORLD);
  if (world_rank != 0) {
    free(out.params);
    out.params = NULL;
  }
  return out;
}

static outcome train(int w, size_t s, const char *zero, const char *clip) {
  return train_with(w, s, zero, clip, "1");
}

static void test_stages_bitwise_identical_for_every_solver(void **state) {
  (void)state;
  int w = world_size < 4 ? world_size : 4;
  for (size_t s = 0; s < NSOLVERS; s++) {
    for (int c = 0; c < 2; c++) {
      const char *clip = c ? "0.05" : "0"; /* 0.05 clips: the global norm matters */
      outcome z0 = train(w, s, "0", clip), z1 = train(w, s, "1", clip), z2 = train(w, s, "2", clip);
      /* stage 3, gathering each layer when it starts on every other solver */
      outcome z3 = train_with(w, s, "3", clip, s % 2 ? "0" : "1");
      if (world_rank == 0) {
        if (memcmp(z0.params, z1.params, z0.n * sizeof(float)) ||
            memcmp(z0.params, z2.params, z0.n * sizeof(float)))
          fail_msg("%s clip=%s W=%d: stages 0, 1, 2 differ", solvers[s][0], clip, w);
        if (memcmp(z1.params, z3.params, z0.n * sizeof(float)))
          fail_msg("%s clip=%s W=%d: stage 3 differs from stage 1 (relative L2 %g)", solvers[s][0],
                   clip, w, dpt_test_rel_l2(z3.params, z1.params, z0.n));
      }
      /* the gradient: whole in stages 0 and 1, this rank's shard (of W, aligned) in 2 and 3 */
      double whole = (double)z0.n * sizeof(float);
      double shard_max = ((double)z0.n / w + 16) * sizeof(float);
      assert_true(z0.grad_max == whole && z1.grad_max == whole);
      assert_true(z2.grad_max <= shard_max && z3.grad_max <= shard_max);
      /* the parameters: whole below stage 3; the shard and two working buffers in stage 3 */
      double work = 2.0 * (double)z0.widest * sizeof(float);
      assert_true(z0.param_max == whole && z2.param_max == whole);
      if (!(z3.param_max - work >= (double)z0.n / w * sizeof(float) - 1 &&
            z3.param_max - work <= shard_max))
        fail_msg("W=%d: stage 3 holds %.0f parameter bytes, expected its shard (at most %.0f) and "
                 "%.0f of working buffers",
                 w, z3.param_max, shard_max, work);
      if (w == 4 && z0.state_max > 1024) { /* solvers with per-element state */
        assert_true(z1.state_max <= STATE_RATIO * z0.state_max);
        assert_true(z2.state_max <= STATE_RATIO * z0.state_max);
      }
      if (world_rank == 0 && !c)
        print_message("%-8s W=%d state bytes per rank: stage 0 %.0f, 1 %.0f, 2 %.0f\n",
                      solvers[s][0], w, z0.state_max, z1.state_max, z2.state_max);
      free(z0.params);
      free(z1.params);
      free(z2.params);
      free(z3.params);
    }
  }
}

/* Stage 3 keeping forward's gathered layers for backward (--zero-keep-mb: none, some, all)
 * trains bitwise what stage 1 trains, and holds the kept layers' bytes besides its shard and
 * two working buffers. */
static void test_stage3_keeping_layers_is_bitwise_the_same(void **state) {
  (void)state;
  int w = world_size < 4 ? world_size : 4;
  model = "mlp:12-40-40-40-40-3";            /* layers of 520, 1640 x 3 and 123 parameters */
  const char *keeps[] = {"0", "0.007", "1"}; /* 0.007 MiB: 1835 floats, one 1640 layer */
  const double kept[] = {0, 1640, 1640 * 2 + 520};
  outcome ref = train(w, 0, "1", "0");
  for (int k = 0; k < 3; k++) {
    keep_mb = keeps[k];
    outcome z3 = train_with(w, 0, "3", "0", k == 1 ? "0" : "1");
    if (world_rank == 0 && memcmp(ref.params, z3.params, ref.n * sizeof(float)))
      fail_msg("--zero-keep-mb %s W=%d: stage 3 differs from stage 1", keeps[k], w);
    double work = (2.0 * (double)z3.widest + kept[k]) * sizeof(float);
    double shard_max = ((double)z3.n / w + 16) * sizeof(float);
    if (!(z3.param_max - work >= (double)z3.n / w * sizeof(float) - 1 &&
          z3.param_max - work <= shard_max))
      fail_msg("--zero-keep-mb %s W=%d: %.0f parameter bytes, expected a shard, two buffers "
               "and %.0f kept",
               keeps[k], w, z3.param_max, kept[k] * sizeof(float));
    free(z3.params);
  }
  free(ref.params);
  model = "mlp:12-200-3", keep_mb = "0";
}

static void test_rank_counts_agree_for_every_solver(void **state) {
  (void)state;
  for (size_t s = 0; s < NSOLVERS; s++) {
    outcome ref = train(1, s, "0", "0");
    for (int w = 2; w <= world_size && w <= 4; w *= 2) {
      outcome o = train(w, s, "2", "0");
      if (world_rank == 0) {
        double rel = dpt_test_rel_l2(o.params, ref.params, ref.n);
        print_message("%-8s W=%d (stage 2) vs W=1: relative L2 %.3g\n", solvers[s][0], w, rel);
        if (!(rel <= REL_TOL)) fail_msg("%s: W=%d differs from W=1 by %g", solvers[s][0], w, rel);
      }
      free(o.params);
    }
    free(ref.params);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  snprintf(data_path, sizeof data_path, "%s/zero_np%d.h5", DPT_TEST_TMP, world_size);
  if (dpt_test_synth(data_path, 640, 0, 12, 3, 11)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stages_bitwise_identical_for_every_solver),
      cmocka_unit_test(test_stage3_keeping_layers_is_bitwise_the_same),
      cmocka_unit_test(test_rank_counts_agree_for_every_solver),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

/* A CNN with BatchNorm and Dropout through the trainer (issue 19): in --deterministic mode
 * W = 1, 2, 4 and ZeRO 0 to 3 train bitwise the same parameters and running statistics; without
 * it, SyncBatchNorm's global statistics keep W = 2, 4 within 1e-5 of W = 1, and ZeRO 2 and 3 are
 * bitwise ZeRO 1; and a run stopped mid-epoch resumes exactly in both modes, also across ZeRO
 * stages 1 and 3. The model is built from the layer library here, as a user's C program would. */
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

#define REL_TOL 1e-5
#define STEPS 12 /* two epochs of 6 steps: 96 samples, batch 16 */

static int world_rank, world_size;
static char data_path[1024];

static int create_tcnn(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  (void)a;
  dpt_shape in = {3, {1, 8, 8}};
  dpt_net *n;
  int rc = dpt_net_create("tcnn", &in, &n, err, errlen);
  static const char *const layers[][3] = {
      {"conv2d", "conv1", "out=4,kernel=3,padding=1"},
      {"batchnorm2d", "bn1", ""},
      {"relu", "act1", ""},
      {"maxpool2d", "pool1", "kernel=2"},
      {"dropout", "drop1", "p=0.25"},
      {"flatten", "flat", ""},
      {"linear", "fc1", "out=16"},
      {"batchnorm1d", "bn2", "momentum=0.2"},
      {"relu", "act2", ""},
      {"linear", "fc2", "out=3"},
  };
  for (size_t i = 0; !rc && i < sizeof layers / sizeof layers[0]; i++)
    rc = dpt_net_add(n, layers[i][0], layers[i][1], layers[i][2], err, errlen);
  if (!rc) rc = dpt_net_set_loss_opts(n, "ce", "label_smoothing=0.1", err, errlen);
  if (rc) {
    dpt_net_free(n);
    return rc;
  }
  return dpt_model_from_net(m, "tcnn", n, err, errlen);
}

typedef struct {
  float *params, *buffers; /* world rank 0's */
  size_t n, nb;
} outcome;

/* Trains on the first w world ranks. steps: max_steps; resume: "" or "latest"; dir: run dir. */
static outcome train(int w, int det, const char *zero, long steps, const char *resume,
                     const char *dir) {
  outcome out = {0};
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < w ? 0 : MPI_UNDEFINED, world_rank, &sub);
  if (sub != MPI_COMM_NULL) {
    dpt_train_opts o;
    dpt_train_defaults(&o);
    dpt_test_set_many(&o, (const char *[]){"data", data_path, "model", "tcnn:", "solver", "sgd",
                                           "lr", "0.05", "momentum", "0.9", "batch", "16", "epochs",
                                           "2", "eval_every", "0", "bucket_mb", "0.001", NULL});
    dpt_test_run_opts(&o, steps, zero, dir, resume, det);
    dpt_model m = {0};
    char err[DPT_ERR_LEN];
    dpt_model_args a = {.spec = "tcnn:", .args = ""};
    assert_int_equal(create_tcnn(&a, &m, err, sizeof err), 0);
    out.n = m.nparams, out.nb = m.nbuffer_floats;
    out.params = malloc(m.nparams * sizeof(float));
    out.buffers = malloc(m.nbuffer_floats * sizeof(float));
    dpt_train_result res;
    if (dpt_train_run_model(&o, &m, sub, &res, out.params, err, sizeof err))
      dpt_test_note("det=%d zero=%s W=%d: %s", det, zero, w, err);
    else if (res.steps != steps)
      dpt_test_note("det=%d zero=%s W=%d: %ld steps, expected %ld", det, zero, w, res.steps, steps);
    memcpy(out.buffers, m.buffer_data, m.nbuffer_floats * sizeof(float));
    /* one training forward per step (a redone deterministic pass or a skipped step does not
     * count), continued across a resume */
    for (int b = 0; b < m.nbuffers; b++)
      if (strstr(m.buffers[b].name, "num_batches_tracked") &&
          m.buffer_data[m.buffers[b].offset] != (float)steps)
        dpt_test_note("det=%d W=%d: %s is %g after %ld steps", det, w, m.buffers[b].name,
                      m.buffer_data[m.buffers[b].offset], steps);
    /* every rank holds the same statistics */
    float *b0 = malloc(m.nbuffer_floats * sizeof(float));
    memcpy(b0, m.buffer_data, m.nbuffer_floats * sizeof(float));
    MPI_Bcast(b0, (int)m.nbuffer_floats, MPI_FLOAT, 0, sub);
    int differ = memcmp(b0, m.buffer_data, m.nbuffer_floats * sizeof(float)) != 0, any = 0;
    MPI_Allreduce(&differ, &any, 1, MPI_INT, MPI_MAX, sub);
    if (any) dpt_test_note("W=%d: the ranks' running statistics differ", w);
    free(b0);
    m.destroy(&m);
    MPI_Comm_free(&sub);
  }
  if (world_rank != 0) {
    free(out.params), free(out.buffers);
    out.params = out.buffers = NULL;
  }
  return out;
}

static void drop(outcome *o) {
  free(o->params), free(o->buffers);
}

static int same(const outcome *a, const outcome *b) {
  return a->n == b->n && a->nb == b->nb && !memcmp(a->params, b->params, a->n * sizeof(float)) &&
         !memcmp(a->buffers, b->buffers, a->nb * sizeof(float));
}

static void test_deterministic_bitwise_for_any_w_and_stage(void **state) {
  (void)state;
  outcome ref = train(1, 1, "0", STEPS, NULL, DPT_TEST_TMP "/run_cnn_det");
  for (int w = 1; w <= world_size && w <= 4; w *= 2)
    for (int z = 0; z < 4; z++) { /* stage 2: layers' exact sums reduce-scattered one by one;
                                     stage 3: each layer's parameters gathered from the shards */
      const char *stage = z == 3 ? "3" : z == 2 ? "2" : z ? "1" : "0";
      outcome o = train(w, 1, stage, STEPS, NULL, DPT_TEST_TMP "/run_cnn_det");
      if (world_rank == 0 && !same(&o, &ref))
        dpt_test_note("--deterministic W=%d zero=%d differs from W=1: parameters %g, statistics %g",
                      w, z, dpt_test_rel_l2(o.params, ref.params, ref.n),
                      dpt_test_rel_l2(o.buffers, ref.buffers, ref.nb));
      drop(&o);
    }
  if (world_rank == 0) { /* the statistics moved: num_batches_tracked counted the steps */
    int moved = 0;
    for (size_t i = 0; i < ref.nb; i++) moved |= ref.buffers[i] != 0 && ref.buffers[i] != 1;
    if (!moved) dpt_test_note("the running statistics never moved");
  }
  drop(&ref);
  dpt_test_raise();
}

static void test_syncbn_rank_counts_agree(void **state) {
  (void)state;
  outcome ref = train(1, 0, "0", STEPS, NULL, DPT_TEST_TMP "/run_cnn_sync");
  for (int w = 2; w <= world_size && w <= 4; w *= 2) {
    outcome o = train(w, 0, "1", STEPS, NULL, DPT_TEST_TMP "/run_cnn_sync");
    /* stage 2 streams each layer's gradient to the reducer: bitwise stage 1 at the same W */
    outcome o2 = train(w, 0, "2", STEPS, NULL, DPT_TEST_TMP "/run_cnn_sync");
    if (world_rank == 0 && !same(&o, &o2)) dpt_test_note("W=%d: ZeRO 2 differs from ZeRO 1", w);
    drop(&o2);
    /* stage 3 gathers each layer's parameters (BatchNorm's too) from the shards: bitwise too */
    outcome o3 = train(w, 0, "3", STEPS, NULL, DPT_TEST_TMP "/run_cnn_sync");
    if (world_rank == 0 && !same(&o, &o3)) dpt_test_note("W=%d: ZeRO 3 differs from ZeRO 1", w);
    drop(&o3);
    if (world_rank == 0) {
      double rp = dpt_test_rel_l2(o.params, ref.params, ref.n);
      double rb = dpt_test_rel_l2(o.buffers, ref.buffers, ref.nb);
      print_message("SyncBatchNorm W=%d vs W=1: parameters %.3g, statistics %.3g\n", w, rp, rb);
      if (!(rp <= REL_TOL && rb <= REL_TOL))
        dpt_test_note("W=%d differs from W=1: parameters %g, statistics %g", w, rp, rb);
    }
    drop(&o);
  }
  drop(&ref);
  dpt_test_raise();
}

static void test_resume_mid_epoch_is_exact(void **state) {
  (void)state;
  int w = world_size < 4 ? world_size : 4;
  for (int det = 0; det < 2; det++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/run_cnn_resume_%d_np%d", DPT_TEST_TMP, det, world_size);
    /* across stages (checkpoints are stage-independent): stage 3 resumed in stage 1, and in
     * deterministic mode stage 1 resumed in stage 3 */
    outcome straight = train(w, det, "1", STEPS, NULL, dir);
    outcome first = train(w, det, det ? "1" : "3", 5, "", dir); /* step 5 of 6: mid-epoch */
    outcome resumed = train(w, det, det ? "3" : "1", STEPS, "latest", dir);
    if (world_rank == 0 && !same(&straight, &resumed))
      dpt_test_note("det=%d W=%d: resumed at step 5 differs from the straight run: parameters %g, "
                    "statistics %g",
                    det, w, dpt_test_rel_l2(resumed.params, straight.params, straight.n),
                    dpt_test_rel_l2(resumed.buffers, straight.buffers, straight.nb));
    if (world_rank == 0 && same(&straight, &first)) dpt_test_note("the first part trained nothing");
    drop(&straight), drop(&first), drop(&resumed);
  }
  dpt_test_raise();
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  snprintf(data_path, sizeof data_path, "%s/cnn_np%d.h5", DPT_TEST_TMP, world_size);
  if (dpt_test_synth(data_path, 96, 32, 64, 3, 5)) return 1;
  char err[DPT_ERR_LEN];
  if (dpt_model_register("tcnn", create_tcnn, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    MPI_Finalize();
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deterministic_bitwise_for_any_w_and_stage),
      cmocka_unit_test(test_syncbn_rank_counts_agree),
      cmocka_unit_test(test_resume_mid_epoch_is_exact),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

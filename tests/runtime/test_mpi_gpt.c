/* A tiny GPT on a token dataset through the trainer (issue 21): training windows are drawn from
 * (seed, epoch, step, sample index), so in --deterministic mode W = 1, 2, 4 and ZeRO 0/1 train
 * bitwise the same parameters (and ZeRO 2/3: the tied head's share of the embedding's sums is
 * kept apart until backward reaches it); without it W = 2, 4 stay within 1e-5 of W = 1; a run
 * stopped mid-epoch and resumed is bitwise the straight run; held-out loss is reported per token.
 * The per-position cross-entropy is checked against the same rows as separate samples. Its output
 * head is tied to the token embedding, and ZeRO stages 2 and 3 (issue 22: the net folds the
 * tied use into the embedding's span) train bitwise what stage 1 does at the same W, with
 * stage 3's gathered layers kept or not, and a checkpoint of either resumes in the other. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io.h"
#include "runtime.h" /* before mpi_test.h: its dataset helper needs it */
#include "mpi_test.h"

/* Without --deterministic the reduction's order depends on W: float rounding, which Adam's
 * normalisation amplifies where a gradient is near 0 (2e-5 after 5 steps), so that comparison
 * trains with SGD, where it stays at rounding level; different windows would differ by order 1. */
#define REL_TOL 1e-5
static const char *g_solver = "adamw";
static const char *g_keep_mb = "0"; /* --zero-keep-mb */
#define CONTEXT "16"
#define MODEL "gpt:2-2-16"
#define STEPS 20 /* 1999 training tokens: 124 windows of 16, 15 steps of 8 an epoch */

static int world_rank, world_size;
static char data_path[1024];
static dpt_model_data g_data;

typedef struct {
  float *params; /* world rank 0's */
  size_t n;
  double test_loss, train_loss;
} outcome;

/* Trains on the first w world ranks; resume: NULL (no checkpoints), "" (fresh, checkpointed) or
 * "latest". */
static outcome train(int w, int det, const char *zero, long steps, const char *resume,
                     const char *dir, int eval) {
  outcome out = {0};
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < w ? 0 : MPI_UNDEFINED, world_rank, &sub);
  if (sub != MPI_COMM_NULL) {
    dpt_train_opts o;
    dpt_train_defaults(&o);
    dpt_test_set_many(&o, (const char *[]){"data",      data_path, "model",        MODEL,
                                           "context",   CONTEXT,   "solver",       g_solver,
                                           "lr",        "0.01",    "batch",        "8",
                                           "epochs",    "3",       "eval_every",   eval ? "1" : "0",
                                           "bucket_mb", "0.01",    "zero_keep_mb", g_keep_mb,
                                           NULL});
    dpt_test_run_opts(&o, steps, zero, dir, resume, det);
    dpt_model m = {0};
    char err[DPT_ERR_LEN];
    if (dpt_model_create(MODEL, "relu", "ce", &g_data, &m, err, sizeof err)) fail_msg("%s", err);
    out.n = m.nparams;
    out.params = malloc(m.nparams * sizeof(float));
    dpt_train_result res;
    if (dpt_train_run_model(&o, &m, sub, &res, out.params, err, sizeof err))
      dpt_test_note("det=%d zero=%s W=%d: %s", det, zero, w, err);
    else if (res.steps != steps)
      dpt_test_note("det=%d zero=%s W=%d: %ld steps, expected %ld", det, zero, w, res.steps, steps);
    out.test_loss = res.test_loss, out.train_loss = res.train_loss;
    m.destroy(&m);
    MPI_Comm_free(&sub);
  }
  if (world_rank != 0) {
    free(out.params);
    out.params = NULL;
  }
  return out;
}

static int same(const outcome *a, const outcome *b) {
  return a->n == b->n && !memcmp(a->params, b->params, a->n * sizeof(float));
}

static void test_deterministic_bitwise_for_any_w_and_stage(void **state) {
  (void)state;
  outcome ref = train(1, 1, "0", STEPS, NULL, DPT_TEST_TMP "/run_gpt_det", 0);
  for (int w = 1; w <= world_size && w <= 4; w *= 2)
    for (int z = 0; z < 4; z++) {
      const char *stage[] = {"0", "1", "2", "3"};
      outcome o = train(w, 1, stage[z], STEPS, NULL, DPT_TEST_TMP "/run_gpt_det", 0);
      if (world_rank == 0 && !same(&o, &ref))
        dpt_test_note("--deterministic W=%d zero=%d differs from W=1: parameters %g", w, z,
                      dpt_test_rel_l2(o.params, ref.params, ref.n));
      free(o.params);
    }
  free(ref.params);
  dpt_test_raise();
}

static void test_rank_counts_agree(void **state) {
  (void)state;
  g_solver = "sgd";
  outcome ref = train(1, 0, "0", STEPS, NULL, DPT_TEST_TMP "/run_gpt_w", 0);
  for (int w = 2; w <= world_size && w <= 4; w *= 2) {
    outcome o = train(w, 0, "1", STEPS, NULL, DPT_TEST_TMP "/run_gpt_w", 0);
    if (world_rank == 0) {
      double rp = dpt_test_rel_l2(o.params, ref.params, ref.n);
      print_message("GPT W=%d vs W=1: parameters %.3g\n", w, rp);
      if (!(rp <= REL_TOL)) dpt_test_note("W=%d differs from W=1: parameters %g", w, rp);
    }
    free(o.params);
  }
  free(ref.params);
  g_solver = "adamw";
  dpt_test_raise();
}

static void test_resume_mid_epoch_is_exact(void **state) {
  (void)state;
  int w = world_size < 4 ? world_size : 4;
  for (int det = 0; det < 2; det++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/run_gpt_resume_%d_np%d", DPT_TEST_TMP, det, world_size);
    outcome straight = train(w, det, "1", STEPS, NULL, dir, 0);
    outcome first = train(w, det, "1", 7, "", dir, 0); /* step 7 of the first epoch's 15 */
    outcome resumed = train(w, det, "1", STEPS, "latest", dir, 0);
    if (world_rank == 0 && !same(&straight, &resumed))
      dpt_test_note("det=%d W=%d: resumed at step 7 differs from the straight run: parameters %g",
                    det, w, dpt_test_rel_l2(resumed.params, straight.params, straight.n));
    if (world_rank == 0 && same(&straight, &first)) dpt_test_note("the first part trained nothing");
    free(straight.params), free(first.params), free(resumed.params);
  }
  dpt_test_raise();
}

/* The tied head in stages 2 and 3: bitwise stage 1's parameters at W = 2 and 4 (stage 3 with
 * none or all of its gathered layers kept for backward), and a stage-3 checkpoint taken at
 * step 7 resumes in stage 1 (and the reverse) where the straight run ends. */
static void test_tied_head_stages_bitwise(void **state) {
  (void)state;
  for (int w = 2; w <= world_size && w <= 4; w *= 2) {
    outcome ref = train(w, 0, "1", STEPS, NULL, DPT_TEST_TMP "/run_gpt_stage", 0);
    const char *runs[][2] = {{"2", "0"}, {"3", "0"}, {"3", "1000"}};
    for (int k = 0; k < 3; k++) {
      g_keep_mb = runs[k][1];
      outcome o = train(w, 0, runs[k][0], STEPS, NULL, DPT_TEST_TMP "/run_gpt_stage", 0);
      if (world_rank == 0 && !same(&o, &ref))
        dpt_test_note("tied GPT W=%d: ZeRO %s (keep %s MiB) differs from stage 1: parameters %g", w,
                      runs[k][0], runs[k][1], dpt_test_rel_l2(o.params, ref.params, ref.n));
      free(o.params);
    }
    g_keep_mb = "0";
    for (int k = 0; k < 2; k++) { /* stage 3, then 1; then stage 1, then 3 */
      const char *a = k ? "1" : "3", *b = k ? "3" : "1";
      char dir[1024];
      snprintf(dir, sizeof dir, "%s/run_gpt_cross_%d_np%d", DPT_TEST_TMP, k, w);
      outcome first = train(w, 0, a, 7, "", dir, 0);
      outcome resumed = train(w, 0, b, STEPS, "latest", dir, 0);
      if (world_rank == 0 && !same(&resumed, &ref))
        dpt_test_note("tied GPT W=%d: stage %s to step 7, resumed in stage %s, differs from the "
                      "straight run: parameters %g",
                      w, a, b, dpt_test_rel_l2(resumed.params, ref.params, ref.n));
      free(first.params), free(resumed.params);
    }
    free(ref.params);
  }
  dpt_test_raise();
}

/* Held-out loss in nats per token: finite, and below the uniform guess ln V after training. */
static void test_heldout_loss_per_token(void **state) {
  (void)state;
  outcome o = train(world_size < 2 ? 1 : 2, 0, "0", 45, NULL, DPT_TEST_TMP "/run_gpt_eval", 1);
  double uniform = log((double)g_data.classes);
  if (world_rank == 0) {
    print_message("held-out %.4f nats/token (uniform %.4f), train %.4f\n", o.test_loss, uniform,
                  o.train_loss);
    if (!(isfinite(o.test_loss) && o.test_loss < uniform - 0.3))
      dpt_test_note("held-out loss %g after 3 epochs, expected finite and below ln V - 0.3 = %g",
                    o.test_loss, uniform - 0.3);
  }
  free(o.params);
  dpt_test_raise();
}

/* ce per_position=1 on [P, k] outputs is the mean over the P rows, each row a sample of the
 * plain ce: the loss is the plain loss / P and the gradient that of scale / P. */
static void test_per_position_loss_is_row_mean(void **state) {
  (void)state;
  enum { P = 3, C = 4, K = 5, N = 2 };
  dpt_shape in_seq = {2, {P, C}}, in_row = {1, {C}};
  dpt_net *seq, *row;
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_net_create("seq", &in_seq, &seq, err, sizeof err), 0);
  assert_int_equal(dpt_net_create("row", &in_row, &row, err, sizeof err), 0);
  assert_int_equal(dpt_net_add(seq, "linear", "fc", "out=5,last=1", err, sizeof err), 0);
  assert_int_equal(dpt_net_add(row, "linear", "fc", "out=5", err, sizeof err), 0);
  assert_int_equal(dpt_net_set_loss_opts(seq, "ce", "per_position=1", err, sizeof err), 0);
  assert_int_equal(dpt_net_set_loss(row, "ce", err, sizeof err), 0);
  assert_int_equal(dpt_net_nparams(seq), dpt_net_nparams(row));
  size_t np = dpt_net_nparams(seq);
  float params[K * C + K], gs[K * C + K] = {0}, gr[K * C + K] = {0}, x[N * P * C];
  for (size_t i = 0; i < np; i++) params[i] = (float)sin(1.0 + (double)i) * 0.5f;
  for (int i = 0; i < N * P * C; i++) x[i] = (float)cos(0.3 * i);
  int32_t labels[N * P] = {0, 4, 2, 1, 3, 3};
  double ls = 0, lr = 0;
  int64_t cs = 0, cr = 0;
  assert_int_equal(dpt_net_loss_grad(seq, params, gs, 0.5f, x, labels, NULL, N, &ls, &cs, NULL,
                                     NULL, err, sizeof err),
                   0);
  assert_int_equal(dpt_net_loss_grad(row, params, gr, 0.5f / P, x, labels, NULL, N * P, &lr, &cr,
                                     NULL, NULL, err, sizeof err),
                   0);
  assert_true(fabs(ls - lr / P) <= 1e-12 * fabs(lr));
  assert_int_equal(cs, cr);
  assert_true(dpt_test_rel_l2(gs, gr, np) <= 1e-6);
  int32_t bad[N * P] = {0, 4, 5, 1, 3, 3}; /* 5 is outside [0, K) */
  assert_int_equal(dpt_net_evaluate(seq, params, x, bad, NULL, N, &ls, &cs, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "sample 0"));
  /* per_position needs [T, V] outputs */
  assert_int_equal(dpt_net_set_loss_opts(row, "ce", "per_position=1", err, sizeof err), DPT_EINVAL);
  dpt_net_free(seq);
  dpt_net_free(row);
}

/* A text with structure (so a tiny model learns), written and imported by rank 0. */
static int make_data(void) {
  char txt[1100], err[DPT_ERR_LEN] = "";
  int rc = 0;
  snprintf(txt, sizeof txt, "%s/gpt_np%d.txt", DPT_TEST_TMP, world_size);
  snprintf(data_path, sizeof data_path, "%s/gpt_np%d.h5", DPT_TEST_TMP, world_size);
  if (world_rank == 0) {
    FILE *f = fopen(txt, "w");
    static const char *words[] = {"in ",     "the ", "beginning ", "god ", "created ",
                                  "heaven ", "and ", "earth ",     ".\n"};
    uint64_t s = 7;
    for (int i = 0; f && i < 2222;) { /* 2222 characters, the last 10% held out */
      const char *w = words[dpt_splitmix64(&s) % 9];
      for (; *w && i < 2222; w++, i++) fputc(*w, f);
    }
    const char *files[] = {txt};
    int64_t counts[4];
    if (!f || fclose(f) ||
        dpt_data_import_text(files, 1, data_path, 0.1, "char", counts, err, sizeof err))
      rc = 1, fprintf(stderr, "could not make %s: %s\n", data_path, err);
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rc) return rc;
  dpt_tokens *t;
  if (dpt_io_tokens_open(data_path, &t, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  g_data.sample.rank = 1, g_data.sample.dims[0] = atoi(CONTEXT);
  g_data.features = g_data.sample.dims[0];
  g_data.labels = 1, g_data.targets = 1;
  g_data.classes = dpt_io_tokens_vocab(t, NULL, NULL);
  dpt_io_tokens_close(t);
  return 0;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (make_data()) {
    MPI_Finalize();
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_per_position_loss_is_row_mean),
      cmocka_unit_test(test_deterministic_bitwise_for_any_w_and_stage),
      cmocka_unit_test(test_rank_counts_agree),
      cmocka_unit_test(test_resume_mid_epoch_is_exact),
      cmocka_unit_test(test_tied_head_stages_bitwise),
      cmocka_unit_test(test_heldout_loss_per_token),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

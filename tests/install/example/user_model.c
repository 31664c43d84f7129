/* A model of your own, trained by an installed dpt: softmax regression (one linear layer and
 * cross-entropy, written here rather than taken from dpt's MLP) on a generated dataset, trained
 * data-parallel on every rank of MPI_COMM_WORLD.
 *
 *   mpiexec -n 2 ./user_model WORKDIR     writes WORKDIR/data.h5 and WORKDIR/run/
 *
 * Exits 0 when the test loss fell below ln(CLASSES), the loss of the zero-initialised model
 * (every class at probability 1/CLASSES), to half of it or less; 1 otherwise. */
#include <dpt/runtime.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FEATURES 16
#define CLASSES 4

/* --- the model: logits = W x + b, W [CLASSES, FEATURES] then b [CLASSES] in one buffer --- */

static int init(dpt_model *m, float *p, uint64_t seed, char *err, size_t errlen) {
  (void)seed, (void)err, (void)errlen;
  memset(p, 0, m->nparams * sizeof *p);
  return DPT_OK;
}

/* Adds scale * d(loss)/d(params) into g (g == NULL: forward only); per-sample loss is
 * -log softmax(logits)[label]. */
static void forward_backward(const float *p, float *g, float scale, const float *x,
                             const int32_t *labels, size_t n, double *loss_sum, int64_t *correct) {
  const float *w = p, *b = p + CLASSES * FEATURES;
  double loss = 0;
  int64_t hits = 0;
  for (size_t i = 0; i < n; i++) {
    const float *xi = x + i * FEATURES;
    float z[CLASSES], zmax = -INFINITY;
    int best = 0;
    for (int k = 0; k < CLASSES; k++) {
      z[k] = b[k];
      for (int j = 0; j < FEATURES; j++) z[k] += w[k * FEATURES + j] * xi[j];
      if (z[k] > zmax) zmax = z[k], best = k;
    }
    double sum = 0;
    for (int k = 0; k < CLASSES; k++) sum += exp((double)(z[k] - zmax));
    loss += log(sum) - (double)(z[labels[i]] - zmax);
    hits += best == labels[i];
    if (!g) continue;
    for (int k = 0; k < CLASSES; k++) {
      float d = scale * ((float)(exp((double)(z[k] - zmax)) / sum) - (k == labels[i]));
      for (int j = 0; j < FEATURES; j++) g[k * FEATURES + j] += d * xi[j];
      g[CLASSES * FEATURES + k] += d;
    }
  }
  *loss_sum = loss;
  *correct = hits;
}

static int loss_grad(dpt_model *m, const float *p, float *g, float scale, const float *x,
                     const int32_t *labels, const float *y, size_t n, double *loss_sum,
                     int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx, char *err,
                     size_t errlen) {
  (void)y, (void)err, (void)errlen;
  forward_backward(p, g, scale, x, labels, n, loss_sum, correct);
  if (ready) ready(ready_ctx, 0, m->nparams); /* the whole gradient is final */
  return DPT_OK;
}

static int evaluate(dpt_model *m, const float *p, const float *x, const int32_t *labels,
                    const float *y, size_t n, double *loss_sum, int64_t *correct, char *err,
                    size_t errlen) {
  (void)m, (void)y, (void)err, (void)errlen;
  forward_backward(p, NULL, 0, x, labels, n, loss_sum, correct);
  return DPT_OK;
}

static void destroy(dpt_model *m) {
  (void)m;
}

/* The model's tensor table: any number of tensors, names of any length, owned by the model. */
static const dpt_tensor k_tensors[2] = {
    {"linear.weight", 2, {CLASSES, FEATURES}, 0, CLASSES *FEATURES},
    {"linear.bias", 1, {CLASSES}, CLASSES *FEATURES, CLASSES},
};

static void softmax_regression(dpt_model *m) {
  memset(m, 0, sizeof *m);
  m->kind = "softmax-regression";
  m->ntensors = 2;
  m->tensors = k_tensors;
  m->nparams = CLASSES * FEATURES + CLASSES;
  m->in_features = FEATURES;
  m->out_features = CLASSES;
  m->wants_labels = 1;
  m->init = init;
  m->loss_grad = loss_grad;
  m->evaluate = evaluate;
  m->destroy = destroy;
}

/* --- training it on every rank --- */

int main(int argc, char **argv) {
  dpt_env_setup(argv); /* before MPI_Init: one OpenBLAS thread per rank */
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc != 2) {
    if (rank == 0) fprintf(stderr, "usage: mpiexec -n W %s WORKDIR\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  char err[DPT_ERR_LEN], data[1024], run_dir[1024];
  snprintf(data, sizeof data, "%s/data.h5", argv[1]);
  snprintf(run_dir, sizeof run_dir, "%s/run", argv[1]);

  /* a dataset of Gaussian clusters, one per class, written by rank 0 */
  int rc = DPT_OK;
  if (rank == 0) rc = dpt_data_synth(data, 4096, 1024, FEATURES, CLASSES, 1, err, sizeof err);
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);

  dpt_model m;
  softmax_regression(&m);
  dpt_train_opts o;
  dpt_train_defaults(&o);
  const char *opts[][2] = {{"data", data},      {"run_dir", run_dir}, {"solver", "sgd"},
                           {"lr", "0.1"},       {"batch", "64"},      {"epochs", "2"},
                           {"progress", "none"}};
  for (size_t i = 0; rc == DPT_OK && i < sizeof opts / sizeof opts[0]; i++)
    rc = dpt_train_set(&o, opts[i][0], opts[i][1], err, sizeof err);
  dpt_train_result res;
  if (rc == DPT_OK) rc = dpt_train_run_model(&o, &m, MPI_COMM_WORLD, &res, NULL, err, sizeof err);

  int status = 0;
  if (rc != DPT_OK) {
    if (rank == 0) fprintf(stderr, "user_model: %s (%s)\n", err, dpt_strerror(rc));
    status = 1;
  } else if (rank == 0) {
    double start = log(CLASSES);
    printf("user_model: %ld steps; test loss %.4f (from %.4f), test accuracy %.4f\n", res.steps,
           res.test_loss, start, res.test_accuracy);
    status = !(res.test_loss <= 0.5 * start);
    if (status) fprintf(stderr, "user_model: the loss did not fall to half its start\n");
  }
  MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return status;
}

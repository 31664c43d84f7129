/* A user-supplied model, written as a user of dpt would: linear regression y = w.x + b with a
 * squared-error loss, declared as named tensors in a flat buffer plus a loss-and-gradient
 * function, trained by dpt_train_run_model on 1, 2 and 4 ranks from an HDF5 file with float
 * targets. The fitted weights must recover the generating ones. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpi_test.h"
#include "runtime.h"

#define IN 3
static const float true_w[IN] = {1.5f, -2.0f, 0.5f};
static const float true_b = 0.25f;

/* --- the user's model --- */

static int lin_init(dpt_model *m, float *p, uint64_t seed, char *err, size_t errlen) {
  (void)m, (void)seed, (void)err, (void)errlen;
  memset(p, 0, (IN + 1) * sizeof(float));
  return DPT_OK;
}

/* loss per sample: 0.5 * (w.x + b - y)^2 */
static int lin_loss_grad(dpt_model *m, const float *p, float *g, float scale, const float *x,
                         const int32_t *labels, const float *y, size_t n, double *loss_sum,
                         int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx, char *err,
                         size_t errlen) {
  (void)labels, (void)err, (void)errlen;
  double loss = 0;
  for (size_t i = 0; i < n; i++) {
    float pred = p[IN];
    for (int j = 0; j < IN; j++) pred += p[j] * x[i * IN + j];
    float r = pred - y[i];
    loss += 0.5 * (double)r * r;
    for (int j = 0; j < IN; j++) g[j] += scale * r * x[i * IN + j];
    g[IN] += scale * r;
  }
  *loss_sum = loss;
  *correct = 0;
  if (ready) ready(ready_ctx, 0, m->nparams);
  return DPT_OK;
}

static int lin_evaluate(dpt_model *m, const float *p, const float *x, const int32_t *labels,
                        const float *y, size_t n, double *loss_sum, int64_t *correct,
                        char *err, size_t errlen) {
  float scratch[IN + 1] = {0};
  return lin_loss_grad(m, p, scratch, 0.0f, x, labels, y, n, loss_sum, correct, NULL, NULL,
                       err, errlen);
}

static void lin_destroy(dpt_model *m) { (void)m; }

static void linear_model(dpt_model *m) {
  memset(m, 0, sizeof *m);
  m->kind = "linreg";
  m->ntensors = 2;
  m->tensors[0] = (dpt_tensor){"linear.weight", 2, {1, IN}, 0, IN};
  m->tensors[1] = (dpt_tensor){"linear.bias", 1, {1, 0}, IN, 1};
  m->nparams = IN + 1;
  m->in_features = IN;
  m->out_features = 1;
  m->wants_labels = 0;
  m->init = lin_init;
  m->loss_grad = lin_loss_grad;
  m->evaluate = lin_evaluate;
  m->destroy = lin_destroy;
}

/* --- a regression dataset with float targets, written with HDF5 directly --- */

static void write_split(hid_t f, const char *group, int n, uint64_t seed) {
  dpt_rng r;
  dpt_rng_seed(&r, seed, 0);
  float *x = malloc((size_t)n * IN * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
  for (int i = 0; i < n; i++) {
    y[i] = true_b;
    for (int j = 0; j < IN; j++) {
      x[i * IN + j] = (float)dpt_rng_normal(&r);
      y[i] += true_w[j] * x[i * IN + j];
    }
    y[i] += 0.01f * (float)dpt_rng_normal(&r);
  }
  hid_t g = H5Gcreate2(f, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dx[2] = {(hsize_t)n, IN}, dy[1] = {(hsize_t)n};
  hid_t sx = H5Screate_simple(2, dx, NULL), sy = H5Screate_simple(1, dy, NULL);
  hid_t ds = H5Dcreate2(g, "x", H5T_NATIVE_FLOAT, sx, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  H5Dclose(ds);
  ds = H5Dcreate2(g, "y", H5T_NATIVE_FLOAT, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
  H5Dclose(ds);
  H5Sclose(sx);
  H5Sclose(sy);
  H5Gclose(g);
  free(x);
  free(y);
}

static int world_rank, world_size;
static char path[1024];

static void test_user_linear_regression_recovers_weights(void **state) {
  (void)state;
  dpt_model m;
  linear_model(&m);
  dpt_train_opts o;
  char err[DPT_ERR_LEN];
  dpt_train_defaults(&o);
  const char *kv[][2] = {{"data", path},     {"solver", "sgd"},  {"lr", "0.1"},
                         {"batch", "16"},    {"epochs", "5"},    {"progress", "none"},
                         {"run_dir", DPT_TEST_TMP "/run_user"}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    assert_int_equal(dpt_train_set(&o, kv[i][0], kv[i][1], err, sizeof err), 0);
  float p[IN + 1];
  dpt_train_result res;
  int rc = dpt_train_run_model(&o, &m, MPI_COMM_WORLD, &res, p, err, sizeof err);
  if (rc) fail_msg("%s", err);
  for (int j = 0; j < IN; j++) assert_true(fabsf(p[j] - true_w[j]) < 0.02f);
  assert_true(fabsf(p[IN] - true_b) < 0.02f);
  assert_true(res.test_loss < 1e-3);
  assert_true(isnan(res.test_accuracy)); /* regression: no accuracy */
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  snprintf(path, sizeof path, "%s/linreg_np%d.h5", DPT_TEST_TMP, world_size);
  if (world_rank == 0) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_split(f, "train", 512, 1);
    write_split(f, "test", 128, 2);
    H5Fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_user_linear_regression_recovers_weights),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

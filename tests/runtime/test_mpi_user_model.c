/* A user-supplied model, written as a user of dpt would: linear regression y = w.x + b with a
 * squared-error loss, declared as named tensors in a flat buffer plus a loss-and-gradient
 * function, registered as model kind "linreg" and trained on 1, 2 and 4 ranks from an HDF5
 * file with float targets, by dpt_train_run_model and by dpt_train_run (`--model linreg:`).
 * The fitted weights must recover the generating ones; the kind sees the sample shape. */
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

/* --- the user's model ---
 * Its own tensor table (any number of tensors, names of any length, owned by the model), one
 * layer span, and a create function registered as kind "linreg", so that `--model linreg:`
 * builds it: it sizes itself from the dataset's sample shape. */

typedef struct {
  int64_t in;            /* features per sample */
  dpt_tensor tensors[2]; /* linear.weight [1, in], linear.bias [1] */
  dpt_layer_span layer;
} lin_ctx;

static dpt_shape seen_sample; /* the sample shape the last create was given */

static int lin_init(dpt_model *m, float *p, uint64_t seed, char *err, size_t errlen) {
  (void)seed, (void)err, (void)errlen;
  memset(p, 0, m->nparams * sizeof(float));
  return DPT_OK;
}

/* loss per sample: 0.5 * (w.x + b - y)^2 */
static int lin_loss_grad(dpt_model *m, const float *p, float *g, float scale, const float *x,
                         const int32_t *labels, const float *y, size_t n, double *loss_sum,
                         int64_t *correct, dpt_grad_ready_fn ready, void *ready_ctx, char *err,
                         size_t errlen) {
  (void)labels, (void)err, (void)errlen;
  const int64_t in = ((lin_ctx *)m->ctx)->in;
  double loss = 0;
  for (size_t i = 0; i < n; i++) {
    float pred = p[in];
    for (int64_t j = 0; j < in; j++) pred += p[j] * x[i * (size_t)in + (size_t)j];
    float r = pred - y[i];
    loss += 0.5 * (double)r * r;
    if (!g) continue;
    for (int64_t j = 0; j < in; j++) g[j] += scale * r * x[i * (size_t)in + (size_t)j];
    g[in] += scale * r;
  }
  *loss_sum = loss;
  *correct = 0;
  if (ready) ready(ready_ctx, 0, m->nparams); /* its one layer, whole */
  return DPT_OK;
}

static int lin_evaluate(dpt_model *m, const float *p, const float *x, const int32_t *labels,
                        const float *y, size_t n, double *loss_sum, int64_t *correct, char *err,
                        size_t errlen) {
  return lin_loss_grad(m, p, NULL, 0.0f, x, labels, y, n, loss_sum, correct, NULL, NULL, err,
                       errlen);
}

static void lin_destroy(dpt_model *m) {
  free(m->ctx);
  m->ctx = NULL;
}

/* "linreg:" (no arguments): y = w.x + b over the flattened sample. */
static int lin_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  if (a->args[0]) {
    snprintf(err, errlen, "model '%s': linreg takes no arguments (expected linreg:)", a->spec);
    return DPT_EINVAL;
  }
  if (!a->data || a->data->labels || a->data->targets != 1) {
    snprintf(err, errlen, "model '%s': needs a dataset with one float target per sample", a->spec);
    return DPT_EINVAL;
  }
  seen_sample = a->data->sample;
  lin_ctx *c = calloc(1, sizeof *c);
  if (!c) return DPT_ENOMEM;
  const int64_t in = a->data->features;
  c->in = in;
  c->tensors[0] = (dpt_tensor){"linear.weight", 2, {1, in}, 0, (size_t)in};
  c->tensors[1] = (dpt_tensor){"linear.bias", 1, {1}, (size_t)in, 1};
  c->layer = (dpt_layer_span){"linear", 0, 2, 0, (size_t)in + 1};
  m->kind = "linreg";
  m->ntensors = 2;
  m->tensors = c->tensors;
  m->nlayers = 1;
  m->layers = &c->layer;
  m->nparams = (size_t)in + 1;
  m->input = a->data->sample;
  m->in_features = in;
  m->out_features = 1;
  m->wants_labels = 0;
  m->ctx = c;
  m->init = lin_init;
  m->loss_grad = lin_loss_grad;
  m->evaluate = lin_evaluate;
  m->destroy = lin_destroy;
  return DPT_OK;
}

/* --- a regression dataset with float targets, written with HDF5 directly --- */

/* x is [n, IN], or [n, 1, IN] when image_like (a sample shape of rank 2). */
static void write_split(hid_t f, const char *group, int n, uint64_t seed, int image_like) {
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
  hsize_t dx[3] = {(hsize_t)n, image_like ? 1 : IN, IN}, dy[1] = {(hsize_t)n};
  hid_t sx = H5Screate_simple(image_like ? 3 : 2, dx, NULL), sy = H5Screate_simple(1, dy, NULL);
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
static char path[1024], path3[1024];

static void set_options(dpt_train_opts *o, const char *data, const char *run_dir) {
  char err[DPT_ERR_LEN];
  dpt_train_defaults(o);
  const char *kv[][2] = {{"data", data},       {"solver", "sgd"},   {"lr", "0.1"},
                         {"batch", "16"},      {"epochs", "5"},     {"progress", "none"},
                         {"model", "linreg:"}, {"run_dir", run_dir}};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    assert_int_equal(dpt_train_set(o, kv[i][0], kv[i][1], err, sizeof err), 0);
}

/* Built through the registry with the data's shape, trained by dpt_train_run_model. */
static void test_user_linear_regression_recovers_weights(void **state) {
  (void)state;
  dpt_train_opts o;
  char err[DPT_ERR_LEN];
  set_options(&o, path, DPT_TEST_TMP "/run_user");
  dpt_model_data data;
  assert_int_equal(dpt_model_data_read(path, &data, err, sizeof err), 0);
  dpt_model m;
  assert_int_equal(dpt_model_create(o.model, o.activation, o.loss, &data, &m, err, sizeof err), 0);
  assert_int_equal(m.nparams, IN + 1);
  float p[IN + 1];
  dpt_train_result res;
  int rc = dpt_train_run_model(&o, &m, MPI_COMM_WORLD, &res, p, err, sizeof err);
  m.destroy(&m);
  if (rc) fail_msg("%s", err);
  for (int j = 0; j < IN; j++) assert_true(fabsf(p[j] - true_w[j]) < 0.02f);
  assert_true(fabsf(p[IN] - true_b) < 0.02f);
  assert_true(res.test_loss < 1e-3);
  assert_true(isnan(res.test_accuracy)); /* regression: no accuracy */
}

/* `--model linreg:` through dpt_train_run on samples of shape [1, IN]: the model's create sees
 * that shape (not only the flattened IN), and trains as well. */
static void test_registered_kind_sees_the_sample_shape(void **state) {
  (void)state;
  dpt_train_opts o;
  char err[DPT_ERR_LEN];
  set_options(&o, path3, DPT_TEST_TMP "/run_user3");
  memset(&seen_sample, 0, sizeof seen_sample);
  dpt_train_result res;
  int rc = dpt_train_run(&o, MPI_COMM_WORLD, &res, err, sizeof err);
  if (rc) fail_msg("%s", err);
  assert_int_equal(seen_sample.rank, 2);
  assert_int_equal(seen_sample.dims[0], 1);
  assert_int_equal(seen_sample.dims[1], IN);
  assert_true(res.test_loss < 1e-3);
  /* the kind's own errors name the spec */
  dpt_train_set(&o, "model", "linreg:7", err, sizeof err);
  assert_int_equal(dpt_train_run(&o, MPI_COMM_WORLD, &res, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "'linreg:7'"));
  /* ZeRO-3 gathers layer by layer: a model with loss_grad alone is refused, naming why */
  dpt_train_set(&o, "model", "linreg:", err, sizeof err);
  dpt_train_set(&o, "zero", "3", err, sizeof err);
  assert_int_equal(dpt_train_run(&o, MPI_COMM_WORLD, &res, err, sizeof err), DPT_EINVAL);
  if (!strstr(err, "--zero 3: model linreg gives its gradient whole")) fail_msg("%s", err);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  dpt_log_init(world_rank, DPT_LOG_WARN, 0);
  char err[DPT_ERR_LEN];
  if (dpt_model_register("linreg", lin_create, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  snprintf(path, sizeof path, "%s/linreg_np%d.h5", DPT_TEST_TMP, world_size);
  snprintf(path3, sizeof path3, "%s/linreg3_np%d.h5", DPT_TEST_TMP, world_size);
  if (world_rank == 0) {
    for (int k = 0; k < 2; k++) {
      hid_t f = H5Fcreate(k ? path3 : path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
      write_split(f, "train", 512, 1, k);
      write_split(f, "test", 128, 2, k);
      H5Fclose(f);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_user_linear_regression_recovers_weights),
      cmocka_unit_test(test_registered_kind_sees_the_sample_shape),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}

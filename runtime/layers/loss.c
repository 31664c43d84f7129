/* loss.c — the losses on a net's last output: softmax cross-entropy on class labels and mean
 * squared error on float targets, as torch's CrossEntropyLoss and MSELoss per sample.
 *
 * Invariant: per-sample losses are computed in double and added to the caller's sum in sample
 * order, so a sum over chunks is the same as over the whole batch.
 */
#include <math.h>
#include <string.h>

#include "layers.h"

/* Softmax cross-entropy of one sample with label smoothing eps (torch: the target is
 * (1 - eps) on the label plus eps / k everywhere); writes scale * dloss/dz into d when
 * d != NULL. */
static double ce_sample(const float *z, int64_t k, int32_t label, double eps, float scale, float *d,
                        int *correct) {
  int64_t arg = 0;
  for (int64_t j = 1; j < k; j++)
    if (z[j] > z[arg]) arg = j;
  double mx = z[arg], sum = 0.0, zsum = 0.0;
  for (int64_t j = 0; j < k; j++) sum += exp((double)z[j] - mx), zsum += z[j];
  double lse = mx + log(sum), off = eps / (double)k;
  for (int64_t j = 0; d && j < k; j++)
    d[j] =
        (float)((double)scale * (exp((double)z[j] - lse) - off - (j == label ? 1.0 - eps : 0.0)));
  *correct = arg == label;
  double nll = lse - (double)z[label];
  return eps > 0 ? (1.0 - eps) * nll + eps * (lse - zsum / (double)k) : nll;
}

static void ce(const float *z, size_t n, int64_t k, const int32_t *labels, const float *y,
               const dpt_loss_opts *o, float scale, float *d, double *loss_sum, int64_t *correct) {
  (void)y;
  double eps = o ? o->label_smoothing : 0.0;
  for (size_t i = 0; i < n; i++) {
    int ok;
    *loss_sum +=
        ce_sample(z + i * (size_t)k, k, labels[i], eps, scale, d ? d + i * (size_t)k : NULL, &ok);
    *correct += ok;
  }
}

/* Mean over outputs of the squared error of one sample; gradient into d when d != NULL. */
static double mse_sample(const float *z, int64_t k, const float *y, float scale, float *d) {
  double sum = 0.0;
  for (int64_t j = 0; j < k; j++) {
    double e = (double)z[j] - (double)y[j];
    sum += e * e;
    if (d) d[j] = (float)((double)scale * 2.0 * e / (double)k);
  }
  return sum / (double)k;
}

static void mse(const float *z, size_t n, int64_t k, const int32_t *labels, const float *y,
                const dpt_loss_opts *o, float scale, float *d, double *loss_sum, int64_t *correct) {
  (void)labels, (void)correct, (void)o;
  for (size_t i = 0; i < n; i++)
    *loss_sum +=
        mse_sample(z + i * (size_t)k, k, y + i * (size_t)k, scale, d ? d + i * (size_t)k : NULL);
}

static const dpt_loss_ops losses[] = {{"ce", 1, ce}, {"mse", 0, mse}};

const dpt_loss_ops *dpt_loss_find(const char *name) {
  for (size_t i = 0; name && i < sizeof losses / sizeof losses[0]; i++)
    if (!strcmp(losses[i].name, name)) return &losses[i];
  return NULL;
}

/* bench_cnn.c — the CNN microbenchmark of issue 19: builds a CNN as a dpt_net from layers.h,
 * times forward + backward (dpt_net_loss_grad) on one batch, each layer's forward, param_grad
 * and backward, and cblas_sgemm at a large square size in the same run, and prints samples/s and
 * model-FLOPs utilisation (model FLOPs per second / that sgemm rate), all in CPU time of the
 * process (the machine is shared; the wall time of the net is printed too). One thread, no MPI: the
 * per-core speed that dpt at W ranks multiplies. tests/bench/cnn.sh runs it against
 * tests/bench/bench_cnn.py (the same net in PyTorch) in the same run.
 *
 *   bench_cnn [--net c32-c64-f128] [--batch 128] [--reps 20] [--layers] [--nobn] [--drop P]
 *
 * Net specs as tests/bench/cnn_preset.py: cN = conv 3x3 padding 1 -> batchnorm2d -> ReLU ->
 * 2x2 max-pool (cNn: no pool), fN = linear -> ReLU -> dropout (p 0.25), then linear to 10
 * classes, cross-entropy; --nobn drops the BatchNorm layers, --drop 0 the dropout layers. Model
 * FLOPs: 2 per multiply-add of convolutions and linears, forward once, backward twice (weights
 * and inputs) except the input gradient of the first layer. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cnn_net.h"
#include "runtime.h"

#define SGEMM_N 1024 /* square sgemm for the machine's rate (fits the bench's time budget) */

/* CPU seconds of this process: on a shared machine a run's wall time includes the time other
 * processes held the core, its CPU time mostly does not (both are printed for the net). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double uniform(void *ctx) {
  return dpt_rng_uniform(ctx);
}

/* Best-of-`tries` rate of one single-threaded cblas_sgemm n x n x n, GFLOP/s. */
static double sgemm_rate(int n, int tries) {
  size_t nn = (size_t)n * (size_t)n;
  float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
  if (!a || !b || !c) return 0;
  for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
  double best = 1e30;
  for (int t = 0; t < tries; t++) {
    double t0 = cpu_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = cpu_now() - t0;
    if (dt < best) best = dt;
  }
  free(a), free(b), free(c);
  return 2.0 * n * (double)n * n / best * 1e-9;
}

/* Forward multiply-adds of layer l per sample (convolutions and linears; 0 for the others). */
static double layer_macs(const dpt_layer *l) {
  if (!l->ntensors) return 0;
  const char *k = l->ops->kind;
  if (!strcmp(k, "conv2d")) /* out positions x weight elements per output channel */
    return (double)l->out_numel * (double)(l->tensors[0].numel / (size_t)l->tensors[0].dims[0]);
  if (!strcmp(k, "linear")) return (double)l->tensors[0].numel;
  return 0;
}

int main(int argc, char **argv) {
  dpt_env_setup(argv);
  const char *spec = "c32-c64-f128";
  int batch = 128, reps = 20, per_layer = 0, bn = 1;
  double drop = 0.25;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--net") && i + 1 < argc)
      spec = argv[++i];
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
      batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--layers"))
      per_layer = 1;
    else if (!strcmp(argv[i], "--nobn"))
      bn = 0;
    else if (!strcmp(argv[i], "--drop") && i + 1 < argc)
      drop = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_cnn [--net SPEC] [--batch N] [--reps N] [--layers] [--nobn] "
                      "[--drop P]\n");
      return 2;
    }
  }
  if (batch < 1 || reps < 1) {
    fprintf(stderr, "bench_cnn: --batch and --reps must be positive\n");
    return 2;
  }
  char err[DPT_ERR_LEN] = "";
  dpt_net *n;
  if (cnn_net_build(spec, bn, drop, "", &n, err, sizeof err)) {
    fprintf(stderr, "bench_cnn: %s\n", err);
    return 2;
  }
  size_t np = dpt_net_nparams(n), in = 784, B = (size_t)batch;
  float *p = malloc(np * sizeof *p), *g = calloc(np, sizeof *g), *x = malloc(B * in * sizeof *x);
  int32_t *lab = malloc(B * sizeof *lab);
  if (!p || !g || !x || !lab) return 1;
  dpt_rng r;
  dpt_rng_seed(&r, 1, 0);
  dpt_layer_rng src = {uniform, &r};
  dpt_net_init(n, p, &src);
  for (size_t i = 0; i < B * in; i++) x[i] = (float)dpt_rng_normal(&r);
  for (size_t i = 0; i < B; i++) lab[i] = (int32_t)(i % 10);

  double macs = 0, first_in = 0; /* the first layer with parameters needs no input gradient */
  int nl = dpt_net_nlayers(n);
  for (int i = 0; i < nl; i++) {
    double m = layer_macs(dpt_net_layer(n, i));
    if (m && !first_in) first_in = m;
    macs += m;
  }
  double flops = 2.0 * (3.0 * macs - first_in); /* per sample */

  double peak = sgemm_rate(SGEMM_N, 5);
  /* whole net: best of 3 rounds of reps steps */
  double loss, best = 1e30, best_wall = 1e30;
  int64_t correct;
  for (int round = 0; round < 3; round++) {
    double t0 = cpu_now(), w0 = bench_now();
    for (int k = 0; k < reps; k++)
      if (dpt_net_loss_grad(n, p, g, 1.0f / (float)B, x, lab, NULL, B, &loss, &correct, NULL, NULL,
                            err, sizeof err)) {
        fprintf(stderr, "bench_cnn: %s\n", err);
        return 1;
      }
    double dt = (cpu_now() - t0) / reps, dw = (bench_now() - w0) / reps;
    if (dt < best) best = dt;
    if (dw < best_wall) best_wall = dw;
  }
  double peak2 = sgemm_rate(SGEMM_N, 5); /* again after: the machine is shared */
  if (peak2 > peak) peak = peak2;
  double sps = (double)B / best, mfu = sps * flops * 1e-9 / peak;
  printf("bench_cnn: net %s (%s, dropout %g), batch %d, %zu params, %.2f MFLOP/sample "
         "(fwd+bwd), OpenBLAS %s\n",
         spec, bn ? "batchnorm" : "no batchnorm", drop, batch, np, flops * 1e-6,
         getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(detected)");
  printf("sgemm %d^3: %.1f GFLOP/s (CPU time)\n", SGEMM_N, peak);
  printf("dpt fwd+bwd: %.2f ms/batch, %.0f samples/s, %.1f GFLOP/s, MFU %.3f (CPU time; wall "
         "%.2f ms/batch)\n",
         best * 1e3, sps, sps * flops * 1e-9, mfu, best_wall * 1e3);

  if (per_layer) { /* each layer alone on buffers of its own */
    printf("%-10s %10s %10s %10s %8s\n", "layer", "fwd ms", "pgrad ms", "bwd ms", "GFLOP/s");
    for (int i = 0; i < nl; i++) {
      dpt_layer *l = (dpt_layer *)dpt_net_layer(n, i);
      size_t fs = l->ops->scratch ? l->ops->scratch(l, B) : 0;
      float *lx = malloc(B * l->in_numel * sizeof *lx), *ly = malloc(B * l->out_numel * sizeof *ly);
      float *ldy = malloc(B * l->out_numel * sizeof *ldy),
            *ldx = malloc(B * l->in_numel * sizeof *ldx);
      float *sc = fs ? malloc(fs * sizeof *sc) : NULL;
      for (size_t j = 0; j < B * l->in_numel; j++) lx[j] = (float)dpt_rng_normal(&r);
      for (size_t j = 0; j < B * l->out_numel; j++) ldy[j] = (float)dpt_rng_normal(&r);
      l->scratch = sc;
      dpt_layer_pass pass = {.train = 1, .nseg = 1};
      const float *lp = p + l->offset;
      float *lg = g + l->offset;
      double t[3] = {1e30, 1e30, 1e30};
      for (int round = 0; round < 3; round++) {
        double t0 = cpu_now();
        for (int k = 0; k < reps; k++) l->ops->forward(l, lp, lx, ly, B, &pass);
        double t1 = cpu_now();
        if (l->ops->param_grad)
          for (int k = 0; k < reps; k++) l->ops->param_grad(l, lp, lx, ly, ldy, lg, B, &pass);
        double t2 = cpu_now();
        if (l->ops->backward && !l->ops->elementwise)
          for (int k = 0; k < reps; k++) l->ops->backward(l, lp, lx, ly, ldy, ldx, B, &pass);
        double t3 = cpu_now();
        double d[3] = {t1 - t0, t2 - t1, t3 - t2};
        for (int q = 0; q < 3; q++)
          if (d[q] / reps < t[q]) t[q] = d[q] / reps;
      }
      double m = layer_macs(l), tt = t[0] + t[1] + (i ? t[2] : 0);
      printf("%-10s %10.3f %10.3f %10.3f %8.1f\n", l->name, t[0] * 1e3, t[1] * 1e3, t[2] * 1e3,
             m ? 2.0 * m * (i ? 3 : 2) * (double)B / tt * 1e-9 : 0.0);
      free(lx), free(ly), free(ldy), free(ldx), free(sc);
    }
  }
  free(p), free(g), free(x), free(lab);
  dpt_net_free(n);
  return 0;
}

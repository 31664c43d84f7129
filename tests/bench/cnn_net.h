/* cnn_net.h — the benchmarks' CNNs from tests/bench/cnn_preset.py's net specs, as dpt nets built
 * from layers.h: cN = conv2d 3x3 padding 1 -> [batchnorm2d] -> relu -> maxpool2d 2 (cNn: no
 * pool), fN = linear -> relu -> [dropout p], then linear to 10 classes and softmax
 * cross-entropy (loss_opts: "label_smoothing=0.1" or ""). Input [1, 28, 28]. Header-only. */
#ifndef DPT_BENCH_CNN_NET_H
#define DPT_BENCH_CNN_NET_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static inline int cnn_net_build(const char *spec, int bn, double drop, const char *loss_opts,
                                dpt_net **out, char *err, size_t errlen) {
  dpt_shape in = {3, {1, 28, 28}};
  dpt_net *n;
  int rc = dpt_net_create("cnn", &in, &n, err, errlen), nc = 0, nf = 0, flat = 0;
  if (rc) return rc;
  char buf[256], name[32], opts[64];
  snprintf(buf, sizeof buf, "%s", spec);
  char *save = NULL;
  for (char *it = strtok_r(buf, "-", &save); it && !rc; it = strtok_r(NULL, "-", &save)) {
    long c = strtol(it + 1, NULL, 10);
    if (it[0] == 'c' && c > 0) {
      snprintf(name, sizeof name, "conv%d", ++nc);
      snprintf(opts, sizeof opts, "out=%ld,kernel=3,padding=1", c);
      rc = dpt_net_add(n, "conv2d", name, opts, err, errlen);
      snprintf(name, sizeof name, "bn%d", nc);
      if (!rc && bn) rc = dpt_net_add(n, "batchnorm2d", name, "", err, errlen);
      snprintf(name, sizeof name, "relu_c%d", nc);
      if (!rc) rc = dpt_net_add(n, "relu", name, "", err, errlen);
      snprintf(name, sizeof name, "pool%d", nc);
      if (!rc && it[strlen(it) - 1] != 'n')
        rc = dpt_net_add(n, "maxpool2d", name, "kernel=2", err, errlen);
    } else if (it[0] == 'f' && c > 0) {
      if (!flat) rc = dpt_net_add(n, "flatten", "flatten", "", err, errlen), flat = 1;
      snprintf(name, sizeof name, "fc%d", ++nf);
      snprintf(opts, sizeof opts, "out=%ld", c);
      if (!rc) rc = dpt_net_add(n, "linear", name, opts, err, errlen);
      snprintf(name, sizeof name, "relu_f%d", nf);
      if (!rc) rc = dpt_net_add(n, "relu", name, "", err, errlen);
      snprintf(name, sizeof name, "drop%d", nf);
      snprintf(opts, sizeof opts, "p=%g", drop);
      if (!rc && drop > 0) rc = dpt_net_add(n, "dropout", name, opts, err, errlen);
    } else {
      snprintf(err, errlen, "--net: item '%s' is not cN, cNn or fN", it);
      rc = DPT_EINVAL;
    }
  }
  if (!rc && !flat) rc = dpt_net_add(n, "flatten", "flatten", "", err, errlen);
  snprintf(name, sizeof name, "fc%d", ++nf);
  if (!rc) rc = dpt_net_add(n, "linear", name, "out=10", err, errlen);
  if (!rc) rc = dpt_net_set_loss_opts(n, "ce", loss_opts, err, errlen);
  if (rc) {
    dpt_net_free(n);
    return rc;
  }
  *out = n;
  return 0;
}

#endif

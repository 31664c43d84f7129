/* kinds.c — the table of layer kinds: a new layer is its own file and one line here. */
#include <string.h>

#include "layers.h"

extern const dpt_layer_ops dpt_layer_linear; /* linear.c */
extern const dpt_layer_ops dpt_layer_relu, dpt_layer_tanh, dpt_layer_gelu, dpt_layer_gelu_tanh,
    dpt_layer_sigmoid, dpt_layer_silu;       /* act.c */
extern const dpt_layer_ops dpt_layer_conv2d; /* conv2d.c */
extern const dpt_layer_ops dpt_layer_maxpool2d, dpt_layer_avgpool2d,
    dpt_layer_globalavgpool2d;                                           /* pool.c */
extern const dpt_layer_ops dpt_layer_flatten;                            /* flatten.c */
extern const dpt_layer_ops dpt_layer_batchnorm1d, dpt_layer_batchnorm2d; /* batchnorm.c */
extern const dpt_layer_ops dpt_layer_layernorm;                          /* layernorm.c */
extern const dpt_layer_ops dpt_layer_dropout;                            /* dropout.c */
extern const dpt_layer_ops dpt_layer_embedding;                          /* embedding.c */
extern const dpt_layer_ops dpt_layer_attention;                          /* attention.c */
extern const dpt_layer_ops dpt_layer_add;                                /* add.c */

static const dpt_layer_ops *const kinds[] = {
    &dpt_layer_linear,          &dpt_layer_relu,        &dpt_layer_tanh,      &dpt_layer_gelu,
    &dpt_layer_sigmoid,         &dpt_layer_conv2d,      &dpt_layer_maxpool2d, &dpt_layer_avgpool2d,
    &dpt_layer_globalavgpool2d, &dpt_layer_flatten,     &dpt_layer_gelu_tanh, &dpt_layer_silu,
    &dpt_layer_batchnorm1d,     &dpt_layer_batchnorm2d, &dpt_layer_layernorm, &dpt_layer_dropout,
    &dpt_layer_embedding,       &dpt_layer_attention,   &dpt_layer_add,
};

const dpt_layer_ops *dpt_layer_find(const char *kind) {
  for (size_t i = 0; kind && i < sizeof kinds / sizeof kinds[0]; i++)
    if (!strcmp(kinds[i]->kind, kind)) return kinds[i];
  return NULL;
}

void dpt_layer_kinds(void (*fn)(void *ctx, const dpt_layer_ops *ops), void *ctx) {
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) fn(ctx, kinds[i]);
}

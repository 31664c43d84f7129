/* model_gpt.c — a GPT language model (nanoGPT's architecture) built from the layer library,
 * registered as model kind "gpt": `--model gpt:tiny`, `gpt:small` or `gpt:LAYERS-HEADS-WIDTH`,
 * on a token dataset read in windows of --context T (the sample shape [T]) with V tokens.
 *
 * Layers, named as nanoGPT's GPT module names them, so a checkpoint's /model/<name> tensors
 * load into it with load_state_dict (bias=True: biases everywhere but lm_head, whose weight is
 * tied to the token embedding's, nanoGPT's lm_head.weight = transformer.wte.weight):
 *   transformer.wte   embedding num=V dim=C          [T] ids -> [T, C]
 *   transformer.wpe   posembed (weight [T, C])       + position embeddings
 *   transformer.h.i   for each block i, pre-LayerNorm:
 *     .ln_1 layernorm, .attn attention heads=H (c_attn, c_proj), .res_1 add from=block input,
 *     .ln_2 layernorm, .mlp.c_fc linear last=1 out=4C, .mlp.gelu gelu, .mlp.c_proj linear
 *     last=1 out=C, .res_2 add from=.res_1
 *   transformer.ln_f  layernorm
 *   lm_head           linear last=1 out=V bias=0 tie=transformer.wte  -> [T, V] logits
 *                     (the checkpoint holds the tied [V, C] weight once, as
 *                     transformer.wte.weight; its gradient is the sum of both uses)
 * Loss: ce per_position=1: a sample's loss is the mean over its T positions (nats per token).
 */
#include <stdio.h>
#include <string.h>

#include "runtime.h"

/* The presets: small enough for a 2-core machine. */
typedef struct {
  const char *name;
  long layers, heads, width;
} gpt_preset;
static const gpt_preset presets[] = {{"tiny", 2, 4, 64}, {"small", 4, 4, 128}};

#define GPT_HINT "gpt:tiny, gpt:small or gpt:LAYERS-HEADS-WIDTH"

static int parse(const char *spec, const char *args, long *l, long *h, long *c, char *err,
                 size_t errlen) {
  for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
    if (!strcmp(args, presets[i].name)) {
      *l = presets[i].layers, *h = presets[i].heads, *c = presets[i].width;
      return DPT_OK;
    }
  char tail;
  if (sscanf(args, "%ld-%ld-%ld%c", l, h, c, &tail) != 3 || *l < 1 || *h < 1 || *c < 1 || *c % *h)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "model '%s': expected " GPT_HINT " (HEADS dividing WIDTH, all positive)", spec);
  return DPT_OK;
}

static int build(const char *spec, long nl, long nh, long c, int64_t t, int64_t v, dpt_net **out,
                 char *err, size_t errlen) {
  dpt_shape in = {1, {t}};
  dpt_net *n = NULL;
  char lerr[DPT_ERR_LEN] = "", name[96], opts[160], block_in[96] = "transformer.wpe";
  int rc = dpt_net_create("gpt", &in, &n, lerr, sizeof lerr);
  snprintf(opts, sizeof opts, "num=%lld,dim=%ld,std=0.02", (long long)v, c);
  if (!rc) rc = dpt_net_add(n, "embedding", "transformer.wte", opts, lerr, sizeof lerr);
  if (!rc) rc = dpt_net_add(n, "posembed", "transformer.wpe", "std=0.02", lerr, sizeof lerr);
  for (long i = 0; i < nl && !rc; i++) {
    struct {
      const char *suffix, *kind;
      char opts[160];
    } b[] = {{"ln_1", "layernorm", ""},    {"attn", "attention", ""},  {"res_1", "add", ""},
             {"ln_2", "layernorm", ""},    {"mlp.c_fc", "linear", ""}, {"mlp.gelu", "gelu", ""},
             {"mlp.c_proj", "linear", ""}, {"res_2", "add", ""}};
    snprintf(b[1].opts, sizeof b[1].opts, "heads=%ld", nh);
    snprintf(b[2].opts, sizeof b[2].opts, "from=%s", block_in);
    snprintf(b[4].opts, sizeof b[4].opts, "out=%ld,last=1", 4 * c);
    snprintf(b[6].opts, sizeof b[6].opts, "out=%ld,last=1", c);
    snprintf(b[7].opts, sizeof b[7].opts, "from=transformer.h.%ld.res_1", i);
    for (size_t k = 0; k < sizeof b / sizeof *b && !rc; k++) {
      snprintf(name, sizeof name, "transformer.h.%ld.%s", i, b[k].suffix);
      rc = dpt_net_add(n, b[k].kind, name, b[k].opts, lerr, sizeof lerr);
    }
    snprintf(block_in, sizeof block_in, "transformer.h.%ld.res_2", i);
  }
  if (!rc) rc = dpt_net_add(n, "layernorm", "transformer.ln_f", "", lerr, sizeof lerr);
  snprintf(opts, sizeof opts, "out=%lld,last=1,bias=0,tie=transformer.wte", (long long)v);
  if (!rc) rc = dpt_net_add(n, "linear", "lm_head", opts, lerr, sizeof lerr);
  if (!rc) rc = dpt_net_set_loss_opts(n, "ce", "per_position=1", lerr, sizeof lerr);
  if (rc) {
    dpt_net_free(n);
    return dpt_errf(err, errlen, rc, "model '%s': %s", spec, lerr);
  }
  *out = n;
  return DPT_OK;
}

int dpt_gpt_register_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen);
int dpt_gpt_register_create(const dpt_model_args *a, dpt_model *m, char *err, size_t errlen) {
  long nl, nh, c;
  int rc = parse(a->spec, a->args, &nl, &nh, &c, err, errlen);
  if (rc) return rc;
  /* no data (a spec checked on its own, as `dpt train` does before reading the data): the
   * spec is built on a placeholder of 8 tokens of a vocabulary of 2, for its errors alone */
  const dpt_model_data none = {.sample = {1, {8}}, .features = 8, .labels = 1, .classes = 2};
  const dpt_model_data *d = a->data ? a->data : &none;
  if (d->sample.rank != 1 || !d->labels || d->classes < 1)
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "model '%s': needs a token dataset read with --context T (dpt data "
                    "import-text)",
                    a->spec);
  if (a->loss && strcmp(a->loss, "ce"))
    return dpt_errf(err, errlen, DPT_EINVAL, "model '%s': --loss %s (a GPT is trained with ce)",
                    a->spec, a->loss);
  dpt_net *n = NULL;
  rc = build(a->spec, nl, nh, c, d->sample.dims[0], d->classes, &n, err, errlen);
  if (rc) return rc;
  return dpt_model_from_net(m, "gpt", n, err, errlen);
}

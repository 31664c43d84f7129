/* model_show.c — a model file's net as text: `dpt model show` (each layer with its output
 * shape and parameter count) and `dpt model torch` (a self-contained PyTorch 1.13 module whose
 * state_dict has dpt's tensor and buffer names and shapes, and a loader for dpt checkpoints).
 *
 * Invariants:
 * - The torch module holds every layer that has a torch module as an attribute named as dpt
 *   names it, so its state_dict keys are dpt's tensor names ("conv1.weight") and buffer names
 *   ("bn1.running_mean"); its forward follows the file's order, residual adds included, and
 *   returns the logits (or outputs) as [N, outputs].
 * - dpt's Linear flattens its sample; the module flattens before a torch Linear likewise.
 * - A tied weight (linear tie=LAYER) is one Parameter under both names, as nanoGPT ties
 *   lm_head to wte: the class lists it in dpt_tied, and the loader fills the second name from
 *   the first (the checkpoint holds it once).
 * - Text is built in one growing buffer; nothing is printed here (launch prints it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_file_internal.h"

/* --- a growing string --- */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p, b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static int finish(sbuf *b, char **text, char *err, size_t errlen) {
  if (b->oom || !b->s) {
    free(b->s);
    return dpt_errf(err, errlen, DPT_ENOMEM, "out of memory for the model's text");
  }
  *text = b->s;
  return DPT_OK;
}

static size_t layer_buffers(const dpt_net *n, const dpt_layer *l) {
  int nb;
  const dpt_tensor *b = dpt_net_buffers(n, &nb);
  size_t k = 0;
  for (int i = l->first_buffer; i < l->first_buffer + l->nbuffers && i < nb; i++) k += b[i].numel;
  return k;
}

/* "1,234,567" */
static const char *grouped(size_t v, char *buf, size_t len) {
  char raw[32];
  snprintf(raw, sizeof raw, "%zu", v);
  size_t n = strlen(raw), at = 0;
  for (size_t i = 0; i < n && at + 2 < len; i++) {
    buf[at++] = raw[i];
    if ((n - i - 1) % 3 == 0 && i + 1 < n) buf[at++] = ',';
  }
  buf[at] = 0;
  return buf;
}

/* --- dpt model show --- */

int dpt_model_show(const char *spec, const char *activation, const char *loss,
                   const dpt_model_data *data, char **text, char *err, size_t errlen) {
  *text = NULL;
  dpt_mfile_built b;
  int rc = dpt_mfile_build(spec, activation, loss, data, &b, err, errlen);
  if (rc) return rc;
  sbuf s = {0};
  char sh[96], g[40];
  int nb;
  dpt_net_buffers(b.net, &nb);
  put(&s, "%s%s%s\n", spec, b.desc.description ? ": " : "",
      b.desc.description ? b.desc.description : "");
  put(&s, "input %s (%s), loss %s%s%s, identity %s\n",
      dpt_layer_shape_str(dpt_net_in(b.net), sh, sizeof sh), b.input_from, b.loss,
      b.desc.smoothing ? " label_smoothing=" : "", b.desc.smoothing ? b.desc.smoothing : "",
      b.identity);
  put(&s, "  %-16s %-16s %-20s %12s%s\n", "layer", "kind", "output", "parameters",
      nb ? "      buffers" : "");
  size_t bufs = 0;
  for (int i = 0; i < dpt_net_nlayers(b.net); i++) {
    const dpt_layer *l = dpt_net_layer(b.net, i);
    size_t k = layer_buffers(b.net, l);
    bufs += k;
    char kind[64];
    const char *from = dpt_mfile_opt_get(&b.desc.layers[i], "from");
    const char *tie = dpt_mfile_opt_get(&b.desc.layers[i], "tie");
    snprintf(kind, sizeof kind, "%s%s%s%s%s", l->ops->kind, from ? " " : "", from ? from : "",
             tie ? " tie=" : "", tie ? tie : "");
    put(&s, "  %-16s %-16s %-20s %12s", l->name, kind, dpt_layer_shape_str(&l->out, sh, sizeof sh),
        grouped(l->len, g, sizeof g));
    if (nb) put(&s, " %12s", grouped(k, g, sizeof g));
    put(&s, "\n");
  }
  put(&s, "  %-16s %-16s %-20s %12s", "total", "", "",
      grouped(dpt_net_nparams(b.net), g, sizeof g));
  if (nb) put(&s, " %12s", grouped(bufs, g, sizeof g));
  put(&s, "\n");
  dpt_mfile_built_free(&b);
  return finish(&s, text, err, errlen);
}

/* --- dpt model torch --- */

/* Option key of layer i as text, else def. */
static const char *opt(const dpt_mfile_built *b, int i, const char *key, const char *def) {
  const char *v = dpt_mfile_opt_get(&b->desc.layers[i], key);
  return v ? v : def;
}

/* A pooling layer's kernel "(kh, kw)" and its stride and padding, as dpt reads them. */
static void pool_args(const dpt_mfile_built *b, int i, char *buf, size_t len) {
  const char *k = opt(b, i, "kernel", NULL);
  const char *kh = opt(b, i, "kh", k), *kw = opt(b, i, "kw", k);
  const char *s = opt(b, i, "stride", NULL), *p = opt(b, i, "padding", "0");
  if (s)
    snprintf(buf, len, "kernel_size=(%s, %s), stride=%s, padding=%s", kh, kw, s, p);
  else
    snprintf(buf, len, "kernel_size=(%s, %s), padding=%s", kh, kw, p);
}

static const char k_attention_class[] =
    "class CausalSelfAttention(nn.Module):\n"
    "    \"\"\"Multi-head causal self-attention over [N, T, C]: c_attn (C -> 3C: q, k, v), "
    "softmax\n"
    "    of q k^T / sqrt(C / heads) over the positions up to each one, c_proj (C -> C).\"\"\"\n"
    "\n"
    "    def __init__(self, dim, heads):\n"
    "        super().__init__()\n"
    "        self.heads = heads\n"
    "        self.c_attn = nn.Linear(dim, 3 * dim)\n"
    "        self.c_proj = nn.Linear(dim, dim)\n"
    "\n"
    "    def forward(self, x):\n"
    "        n, t, c = x.shape\n"
    "        q, k, v = self.c_attn(x).split(c, dim=2)\n"
    "        q = q.view(n, t, self.heads, c // self.heads).transpose(1, 2)\n"
    "        k = k.view(n, t, self.heads, c // self.heads).transpose(1, 2)\n"
    "        v = v.view(n, t, self.heads, c // self.heads).transpose(1, 2)\n"
    "        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))\n"
    "        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()\n"
    "        att = att.masked_fill(~mask, float(\"-inf\")).softmax(dim=-1)\n"
    "        y = (att @ v).transpose(1, 2).reshape(n, t, c)\n"
    "        return self.c_proj(y)\n"
    "\n\n";

static const char k_loader[] =
    "def load_dpt_checkpoint(module, path):\n"
    "    \"\"\"Loads a dpt checkpoint (HDF5) into module: parameters from /model, buffers "
    "(running\n"
    "    statistics) from /buffers when the file has them; strict, so every name and shape must\n"
    "    match. A buffer that torch keeps as an integer scalar (num_batches_tracked) is\n"
    "    converted to the module's shape and type.\"\"\"\n"
    "    import h5py\n"
    "\n"
    "    own = module.state_dict()\n"
    "    state = {}\n"
    "    with h5py.File(path, \"r\") as f:\n"
    "        for group in (\"model\", \"buffers\"):\n"
    "            if group in f:\n"
    "                for name in f[group]:\n"
    "                    t = torch.from_numpy(f[group][name][()])\n"
    "                    if name in own and own[name].numel() == t.numel():\n"
    "                        t = t.reshape(own[name].shape).to(own[name].dtype)\n"
    "                    state[name] = t\n"
    "    for name, source in getattr(module, \"dpt_tied\", {}).items():\n"
    "        state[name] = state[source]  # a tied weight: held once in the checkpoint\n"
    "    module.load_state_dict(state, strict=True)\n"
    "    return module\n";

/* The torch module of layer i into init (its attribute) and fwd (its forward line). 0, or an
 * error naming the layer whose kind has no torch counterpart here. */
static int torch_layer(const dpt_mfile_built *b, int i, sbuf *init, sbuf *fwd, sbuf *ties,
                       int *attention, char *err, size_t errlen) {
  const dpt_layer *l = dpt_net_layer(b->net, i);
  const char *kind = l->ops->kind, *name = l->name;
  const dpt_shape *in = &l->in;
  char a[200];
  if (!strcmp(kind, "linear")) { /* last=1: on the last dimension, as torch's; else flattened */
    int last = !strcmp(opt(b, i, "last", "0"), "1"), bias = strcmp(opt(b, i, "bias", "1"), "0");
    const char *tie = opt(b, i, "tie", NULL);
    long long k = last ? (long long)in->dims[in->rank - 1] : (long long)l->in_numel;
    put(init, "        self.%s = nn.Linear(%lld, %lld%s)\n", name, k,
        (long long)l->out.dims[l->out.rank - 1], bias ? "" : ", bias=False");
    if (tie) {
      put(init, "        self.%s.weight = self.%s.weight  # tied\n", name, tie);
      put(ties, "\"%s.weight\": \"%s.weight\", ", name, tie);
    }
    put(fwd, "        x = self.%s(%s)\n", name, in->rank > 1 && !last ? "x.flatten(1)" : "x");
  } else if (!strcmp(kind, "conv2d")) {
    const dpt_tensor *w = &l->tensors[0];
    put(init,
        "        self.%s = nn.Conv2d(%lld, %lld, kernel_size=(%lld, %lld), stride=%s, padding=%s, "
        "groups=%lld)\n",
        name, (long long)in->dims[0], (long long)w->dims[0], (long long)w->dims[2],
        (long long)w->dims[3], opt(b, i, "stride", "1"), opt(b, i, "padding", "0"),
        (long long)(in->dims[0] / w->dims[1]));
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "maxpool2d") || !strcmp(kind, "avgpool2d")) {
    pool_args(b, i, a, sizeof a);
    put(init, "        self.%s = nn.%s(%s)\n", name, kind[0] == 'm' ? "MaxPool2d" : "AvgPool2d", a);
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "globalavgpool2d")) {
    put(init, "        self.%s = nn.AdaptiveAvgPool2d(1)\n", name);
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "flatten")) {
    put(init, "        self.%s = nn.Flatten()\n", name);
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "relu") || !strcmp(kind, "tanh") || !strcmp(kind, "gelu") ||
             !strcmp(kind, "sigmoid") || !strcmp(kind, "silu") || !strcmp(kind, "gelu_tanh")) {
    const char *m = !strcmp(kind, "relu")      ? "ReLU()"
                    : !strcmp(kind, "tanh")    ? "Tanh()"
                    : !strcmp(kind, "gelu")    ? "GELU()"
                    : !strcmp(kind, "sigmoid") ? "Sigmoid()"
                    : !strcmp(kind, "silu")    ? "SiLU()"
                                               : "GELU(approximate=\"tanh\")";
    put(init, "        self.%s = nn.%s\n", name, m);
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "dropout")) {
    put(init, "        self.%s = nn.Dropout(p=%s)  # dpt draws its own masks\n", name,
        opt(b, i, "p", "0.5"));
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "batchnorm1d") || !strcmp(kind, "batchnorm2d")) {
    put(init, "        self.%s = nn.BatchNorm%s(%lld, eps=%s, momentum=%s)\n", name,
        kind[9] == '1' ? "1d" : "2d", (long long)in->dims[0], opt(b, i, "eps", "1e-05"),
        opt(b, i, "momentum", "0.1"));
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "layernorm")) {
    put(init, "        self.%s = nn.LayerNorm(%lld, eps=%s)\n", name,
        (long long)in->dims[in->rank - 1], opt(b, i, "eps", "1e-05"));
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "embedding")) {
    const dpt_tensor *w = &l->tensors[0];
    put(init, "        self.%s = nn.Embedding(%lld, %lld)\n", name, (long long)w->dims[0],
        (long long)w->dims[1]);
    put(fwd, "        x = self.%s(x.long())\n", name);
  } else if (!strcmp(kind, "posembed")) { /* learned positions: nn.Embedding(T, C) added */
    put(init, "        self.%s = nn.Embedding(%lld, %lld)\n", name, (long long)in->dims[0],
        (long long)in->dims[1]);
    put(fwd, "        x = x + self.%s(torch.arange(x.shape[1], device=x.device))\n", name);
  } else if (!strcmp(kind, "attention")) {
    *attention = 1;
    put(init, "        self.%s = CausalSelfAttention(%lld, %s)\n", name,
        (long long)in->dims[in->rank - 1], opt(b, i, "heads", "1"));
    put(fwd, "        x = self.%s(x)\n", name);
  } else if (!strcmp(kind, "add")) {
    const dpt_layer *src = l->skip >= 0 ? dpt_net_layer(b->net, l->skip) : NULL;
    put(fwd, "        x = x + h_%s\n", src ? src->name : "input");
  } else {
    return dpt_errf(err, errlen, DPT_EINVAL,
                    "%s:%d: %s: dpt model torch knows no PyTorch module for kind '%s'",
                    b->desc.where, b->desc.layers[i].line, name, kind);
  }
  return DPT_OK;
}

int dpt_model_torch(const char *spec, const char *activation, const char *loss,
                    const dpt_model_data *data, char **text, char *err, size_t errlen) {
  *text = NULL;
  dpt_mfile_built b;
  int rc = dpt_mfile_build(spec, activation, loss, data, &b, err, errlen);
  if (rc) return rc;
  int nl = dpt_net_nlayers(b.net), attention = 0, input_source = 0;
  unsigned char *source = calloc((size_t)nl + 1, 1);
  if (!source) {
    dpt_mfile_built_free(&b);
    return dpt_errf(err, errlen, DPT_ENOMEM, "out of memory");
  }
  for (int i = 0; i < nl; i++) {
    int k = dpt_net_layer(b.net, i)->skip;
    if (k >= 0) source[k] = 1;
    if (k == -1) input_source = 1;
  }
  sbuf init = {0}, fwd = {0}, ties = {0}, s = {0};
  for (int i = 0; i < nl && !rc; i++) {
    rc = torch_layer(&b, i, &init, &fwd, &ties, &attention, err, errlen);
    if (source[i]) put(&fwd, "        h_%s = x\n", dpt_net_layer(b.net, i)->name);
  }
  if (!rc) {
    char sh[96];
    const dpt_shape *in = dpt_net_in(b.net), *out = dpt_net_out(b.net);
    const dpt_loss_opts *lo = dpt_net_loss_opts(b.net);
    put(&s, "# Generated by `dpt model torch %s` (PyTorch 1.13): the module's state_dict has\n",
        spec);
    put(&s, "# dpt's tensor and buffer names and shapes, so a dpt checkpoint loads into it:\n");
    put(&s, "#     net = load_dpt_checkpoint(DptModel(), \"runs/x/ckpt/ckpt-100.h5\").eval()\n");
    long long in_numel = 1;
    for (int k = 0; k < in->rank; k++) in_numel *= in->dims[k];
    put(&s, "# forward takes samples [N, ...] (%lld values each, reshaped to %s) and returns\n",
        in_numel, dpt_layer_shape_str(in, sh, sizeof sh));
    char ls[64] = "";
    if (lo->label_smoothing > 0)
      snprintf(ls, sizeof ls, "label_smoothing=%.17g, ", lo->label_smoothing);
    if (!strcmp(b.loss, "ce") && lo->positions > 1)
      put(&s,
          "# logits [N, %lld, %lld]; dpt's loss per sample is the mean over its %lld positions\n"
          "# of F.cross_entropy(logits.transpose(1, 2), y, %sreduction=\"none\") (y [N, %lld]).\n",
          (long long)out->dims[0], (long long)out->dims[out->rank - 1], (long long)lo->positions,
          ls, (long long)lo->positions);
    else if (!strcmp(b.loss, "ce"))
      put(&s,
          "# logits [N, %zu]; dpt's loss per sample is F.cross_entropy(logits, y, "
          "%sreduction=\"none\").\n",
          dpt_net_layer(b.net, nl - 1)->out_numel, ls);
    else
      put(&s, "# outputs [N, %zu]; dpt's loss per sample is the mean squared error over them.\n",
          dpt_net_layer(b.net, nl - 1)->out_numel);
    put(&s, "import math\n\nimport torch\nfrom torch import nn\n\n\n");
    if (attention) put(&s, "%s", k_attention_class);
    put(&s, "class DptModel(nn.Module):\n");
    if (b.desc.description) put(&s, "    \"\"\"%s\"\"\"\n\n", b.desc.description);
    if (ties.s) /* tied name -> the name the checkpoint holds it under */
      put(&s, "    dpt_tied = {%.*s}\n\n", (int)(ties.len - 2), ties.s);
    put(&s, "    def __init__(self):\n        super().__init__()\n");
    if (init.s) put(&s, "%s", init.s);
    put(&s, "\n    def forward(self, x):\n        x = x.reshape(x.shape[0]");
    for (int k = 0; k < in->rank; k++) put(&s, ", %lld", (long long)in->dims[k]);
    put(&s, ")\n");
    if (input_source) put(&s, "        h_input = x\n");
    if (fwd.s) put(&s, "%s", fwd.s);
    put(&s, "        return x%s\n\n\n", out->rank > 1 && lo->positions <= 1 ? ".flatten(1)" : "");
    put(&s, "%s", k_loader);
  }
  if (init.oom || fwd.oom || ties.oom) s.oom = 1;
  free(init.s), free(fwd.s), free(ties.s), free(source);
  dpt_mfile_built_free(&b);
  if (rc) {
    free(s.s);
    return rc;
  }
  return finish(&s, text, err, errlen);
}

#!/usr/bin/python3
"""gen_layer_ref.py - records torch 1.13 autograd for dpt's layers and the ce loss (issue 19).

For a few fixed small configurations per layer kind it writes, into ref/layers/<kind>.txt next
to this script, the input x, the parameters (torch's state_dict order and layout), an upstream
gradient dy, the forward output y and the gradients dx and d<param>. test_layer_ref.c replays
them through dpt's layer API. Everything is float32 on the CPU, one thread, seeded.

Run with Debian's python3-torch:  /usr/bin/python3 tests/runtime/gen_layer_ref.py

File format (text, one item per line):
  case <name> <kind> <opts or ->      a configuration; opts as dpt_net_add takes them
  in <d1> ... <dk> n <N>              the per-sample input shape (any rank) and the batch size
  out <d1> ... <dk>                   the per-sample output shape
  pass <seed> <step> <sample0>        (optional) the pass's dropout stream; the layer is index 0
  mode eval                           (optional) an evaluation pass (pass->train = 0)
  t <name> <count> v v v ...          a tensor, row-major, values as %.9g (exact for float32)
  end
Tensor names: x, dy, y, dx; for each parameter p (weight, bias, c_attn.weight, ...) p and
grad.p; for each buffer b (running_mean, ...) buf.b (its value before the forward) and after.b
(after it); add's second input x2 and its gradient dx2. ce.txt (the loss): x the logits [N, K],
labels, y the summed loss [1], dx its gradient, with opts the loss's options.
"""
import math
import os

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ref", "layers")

# (name, kind, opts, per-sample shape, N)
CASES = {
    "conv2d": [
        ("s1p0", "out=4,kernel=3", (3, 7, 7), 2),
        ("s2p1g2", "out=6,kernel=3,stride=2,padding=1,groups=2", (4, 8, 6), 2),
        ("depthwise_m2", "out=8,kernel=3,padding=1,groups=4", (4, 5, 5), 2),
        ("depthwise_s2", "out=3,kernel=3,stride=2,padding=1,groups=3", (3, 6, 7), 3),
        ("rect_s2", "out=3,kh=2,kw=3,stride=2", (2, 6, 5), 2),
        ("k1", "out=3,kernel=1", (5, 4, 4), 2),
        ("k5p2", "out=2,kernel=5,padding=2", (1, 6, 6), 2),
    ],
    "maxpool2d": [
        ("k2", "kernel=2", (3, 6, 6), 2),
        ("k3s2p1", "kernel=3,stride=2,padding=1", (2, 7, 8), 2),
        ("k3s1p1", "kernel=3,stride=1,padding=1", (2, 5, 5), 2),
        ("rect_s1", "kh=2,kw=3,stride=1", (2, 4, 5), 2),
    ],
    "avgpool2d": [
        ("k2", "kernel=2", (3, 6, 6), 2),
        ("k3s2p1", "kernel=3,stride=2,padding=1", (2, 7, 8), 2),
        ("k3s1p1", "kernel=3,stride=1,padding=1", (2, 5, 5), 2),
        ("rect_s1", "kh=2,kw=3,stride=1", (2, 4, 5), 2),
    ],
    "globalavgpool2d": [
        ("c3_5x4", "", (3, 5, 4), 2),
        ("c2_7x7", "", (2, 7, 7), 3),
    ],
    "flatten": [
        ("c3_2x4", "", (3, 2, 4), 2),
    ],
    "relu": [("c3_4", "", (3, 4), 3)],
    "tanh": [("c3_4", "", (3, 4), 3)],
    "sigmoid": [("c3_4", "", (3, 4), 3)],
    "gelu": [("c3_4", "", (3, 4), 3)],
    "gelu_tanh": [("c3_4", "", (3, 4), 3), ("wide", "", (40,), 4)],
    "silu": [("c3_4", "", (3, 4), 3), ("wide", "", (40,), 4)],
    "batchnorm1d": [
        ("c5", "", (5,), 6),
        ("c3_l4", "eps=0.001,momentum=0.3", (3, 4), 5),
        ("c4_l3_eval", "", (4, 3), 3),
    ],
    "batchnorm2d": [
        ("c3_4x5", "", (3, 4, 5), 4),
        ("c2_3x3_m", "eps=1e-3,momentum=0.05", (2, 3, 3), 2),
        ("c3_eval", "", (3, 2, 4), 2),
    ],
    "layernorm": [
        ("d7", "", (7,), 4),
        ("t3_d8", "eps=1e-6", (3, 8), 2),
        ("t5_d16", "", (5, 16), 3),
    ],
    "dropout": [
        ("p0.5", "", (3, 4, 4), 3),
        ("p0.2", "p=0.2", (50,), 4),
        ("p0.9", "p=0.9", (2, 10), 3),
        ("p0.3_eval", "p=0.3", (2, 6), 2),
    ],
    "embedding": [
        ("v10_d4", "num=10,dim=4", (6,), 3),
        ("v3_d5", "num=3,dim=5", (7,), 2),
    ],
    "attention": [
        ("t5_c8_h2", "heads=2", (5, 8), 2),
        ("t7_c12_h3", "heads=3", (7, 12), 2),
        ("t1_c4_h1", "heads=1", (1, 4), 3),
        ("t16_c32_h4", "heads=4", (16, 32), 2),
        ("t75_c16_h2", "heads=2", (75, 16), 2),  # more than attention.c's blocks of 32 rows
    ],
    "linear": [
        ("flat", "out=4", (3, 2, 2), 3),
        ("last", "out=5,last=1", (4, 6), 2),
        ("last_rank3", "out=3,last=1", (2, 3, 4), 2),
    ],
    "add": [
        ("c3_4", "from=input", (3, 4), 3),
        ("c2_3x3", "from=input", (2, 3, 3), 2),
    ],
}

# dropout recordings: the pass's stream (seed, step, sample0); the layer is index 0
DROP_PASS = (19, 7, 5)

# ce recordings: (name, opts, K, N)
CE_CASES = [("ls0", "-", 5, 6), ("ls0.1", "label_smoothing=0.1", 7, 5),
            ("ls0.35", "label_smoothing=0.35", 3, 8)]

M64 = (1 << 64) - 1


def splitmix_out(x):
    """splitmix64's output from state x (runtime/base/misc.c, one step)"""
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def hash_uniform(seed, step, sample, layer, elem):
    """net.c's dpt_layer_hash_uniform: a float in [0, 1) with 24 bits"""
    h = splitmix_out((seed ^ 0x64707464726f70) & M64)
    h = splitmix_out(h ^ (step & M64))
    h = splitmix_out(h ^ (sample & M64))
    h = splitmix_out(h ^ (layer & 0xFFFFFFFF))
    h = splitmix_out(h ^ (elem & M64))
    return (h >> 40) * 2.0 ** -24


def dropout_mask(shape, n, p, seed, step, sample0, layer):
    """dpt's keep mask [n, *shape] as float32 (1 keep, 0 drop)"""
    m = 1
    for d in shape:
        m *= d
    keep = [[1.0 if hash_uniform(seed, step, sample0 + i, layer, j) >= p else 0.0
             for j in range(m)] for i in range(n)]
    return torch.tensor(keep, dtype=torch.float32).reshape((n,) + tuple(shape))


def torch_dropout(x, mask, p):
    """torch's _dropout_impl with the given mask: noise.bernoulli_(1 - p).div_(1 - p); x * noise"""
    noise = mask.clone()
    noise.div_(1 - p)
    return x * noise


class FlatLinear(torch.nn.Linear):
    """dpt's linear without last=1: nn.Linear on the flattened sample"""

    def forward(self, x):
        return super().forward(torch.flatten(x, 1))


class CausalSelfAttention(torch.nn.Module):
    """nanoGPT's CausalSelfAttention (model.py) without dropout and with the mask not persistent"""

    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.c_attn = torch.nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = torch.nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd
        mask = torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)
        self.register_buffer("bias", mask, persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


def opts_dict(opts):
    def num(v):
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    return {k: num(v) for k, v in (kv.split("=") for kv in opts.split(",") if kv)}


def kernel(o):
    k = o.get("kernel", 0)
    return (o.get("kh", k), o.get("kw", k))


def module(kind, opts, shape):
    """The torch module and the function applied (global pooling is avg_pool2d over the plane:
    the same values as AdaptiveAvgPool2d(1) up to summation order, checked below)."""
    o = opts_dict(opts)
    if kind == "conv2d":
        return torch.nn.Conv2d(shape[0], o["out"], kernel(o), stride=o.get("stride", 1),
                               padding=o.get("padding", 0), groups=o.get("groups", 1))
    if kind == "maxpool2d":
        return torch.nn.MaxPool2d(kernel(o), stride=o.get("stride"), padding=o.get("padding", 0))
    if kind == "avgpool2d":
        return torch.nn.AvgPool2d(kernel(o), stride=o.get("stride"), padding=o.get("padding", 0))
    if kind == "globalavgpool2d":
        return lambda x: F.avg_pool2d(x, (shape[1], shape[2]))
    if kind == "flatten":
        return torch.nn.Flatten()
    acts = {"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(), "sigmoid": torch.nn.Sigmoid(),
            "gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU(approximate="tanh"),
            "silu": torch.nn.SiLU()}
    if kind in acts:
        return acts[kind]
    if kind in ("batchnorm1d", "batchnorm2d"):
        cls = torch.nn.BatchNorm1d if kind == "batchnorm1d" else torch.nn.BatchNorm2d
        return cls(shape[0], eps=o.get("eps", 1e-5), momentum=o.get("momentum", 0.1))
    if kind == "layernorm":
        return torch.nn.LayerNorm(shape[-1], eps=o.get("eps", 1e-5))
    if kind == "embedding":
        return torch.nn.Embedding(o["num"], o["dim"])
    if kind == "attention":
        return CausalSelfAttention(shape[1], o["heads"], shape[0])
    if kind == "linear":
        if o.get("last", 0):
            return torch.nn.Linear(shape[-1], o["out"])
        return FlatLinear(math.prod(shape), o["out"])
    if kind in ("dropout", "add"):
        return None  # applied in record (dpt's mask; two inputs)
    raise ValueError(kind)


def line(name, t):
    vals = " ".join(format(v, ".9g") for v in t.detach().reshape(-1).tolist())
    return "t %s %d %s\n" % (name, t.numel(), vals)


def randomise(m):
    """Parameters and buffers away from their defaults, so the recordings test them."""
    with torch.no_grad():
        for name, v in m.named_parameters():
            if name.endswith("weight") and isinstance(m, (torch.nn.modules.batchnorm._BatchNorm,
                                                          torch.nn.LayerNorm)):
                v.copy_(1.0 + 0.5 * torch.randn(v.shape))
            elif name.endswith("bias") and isinstance(m, (torch.nn.modules.batchnorm._BatchNorm,
                                                          torch.nn.LayerNorm)):
                v.copy_(0.5 * torch.randn(v.shape))
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape))
            m.num_batches_tracked.fill_(3)


def record(kind, name, opts, shape, n):
    m = module(kind, opts, shape)
    o = opts_dict(opts)
    evaluate = name.endswith("_eval")
    s = "case %s %s %s\n" % (name, kind, opts if opts else "-")
    s += "in %s n %d\n" % (" ".join(str(d) for d in shape), n)
    if isinstance(m, torch.nn.Module):
        randomise(m)
        m.train(not evaluate)
    if kind == "embedding":
        ids = torch.randint(0, o["num"], (n,) + shape)
        ids.view(-1)[1] = ids.view(-1)[0]  # a repeated id: its rows' gradients add up
        x = ids.to(torch.float32).requires_grad_(True)
    else:
        x = torch.randn((n,) + shape, dtype=torch.float32, requires_grad=True)
    buffers = [(b, v.clone()) for b, v in m.named_buffers()] if isinstance(m, torch.nn.Module) \
        else []
    buffers = [(b, v) for b, v in buffers if b != "bias"]  # attention's mask is not a buffer
    x2 = None
    if kind == "embedding":
        y = m(ids)
    elif kind == "dropout":
        p = o.get("p", 0.5)
        s += "pass %d %d %d\n" % DROP_PASS
        if evaluate:
            y = F.dropout(x, p, training=False)
        else:
            y = torch_dropout(x, dropout_mask(shape, n, p, *DROP_PASS, 0), p)
    elif kind == "add":
        x2 = torch.randn((n,) + shape, dtype=torch.float32, requires_grad=True)
        y = x + x2
    else:
        y = m(x)
    if evaluate:
        s += "mode eval\n"
    if kind == "globalavgpool2d":
        ref = torch.nn.AdaptiveAvgPool2d(1)(x)
        assert torch.allclose(y, ref, rtol=1e-6, atol=0), "global pooling differs from adaptive"
    dy = torch.randn(y.shape, dtype=torch.float32)
    y.backward(dy)
    params = list(m.named_parameters()) if isinstance(m, torch.nn.Module) else []
    after = [(b, v.clone()) for b, v in m.named_buffers() if b != "bias"] \
        if isinstance(m, torch.nn.Module) else []
    s += "out %s\n" % " ".join(str(d) for d in y.shape[1:])
    s += line("x", x) + "".join(line(p, v) for p, v in params)
    s += "".join(line("buf." + b, v) for b, v in buffers)
    if x2 is not None:
        s += line("x2", x2)
    s += line("dy", dy) + line("y", y)
    dx = x.grad if x.grad is not None else torch.zeros_like(x)
    s += line("dx", dx) + "".join(line("grad." + p, v.grad) for p, v in params)
    s += "".join(line("after." + b, v) for b, v in after)
    if x2 is not None:
        s += line("dx2", x2.grad)
    return s + "end\n"


def record_ce(name, opts, k, n):
    """CrossEntropyLoss(reduction='sum', label_smoothing) on logits [n, k]"""
    o = opts_dict(opts if opts != "-" else "")
    z = (2.0 * torch.randn(n, k, dtype=torch.float32)).requires_grad_(True)
    labels = torch.randint(0, k, (n,))
    loss = F.cross_entropy(z, labels, reduction="sum", label_smoothing=o.get("label_smoothing", 0.0))
    loss.backward()
    s = "case %s ce %s\n" % (name, opts)
    s += "in %d n %d\nout %d\n" % (k, n, k)
    s += line("x", z) + line("labels", labels.to(torch.float32)) + line("y", loss.reshape(1))
    return s + line("dx", z.grad) + "end\n"


def main():
    assert torch.__version__.startswith("1.13"), torch.__version__
    os.makedirs(OUT, exist_ok=True)
    for kind, cases in CASES.items():
        torch.manual_seed(19)
        text = "# torch %s autograd, written by gen_layer_ref.py; do not edit\n" % torch.__version__
        text += "".join(record(kind, *c) for c in cases)
        with open(os.path.join(OUT, kind + ".txt"), "w") as f:
            f.write(text)
    torch.manual_seed(19)
    text = "# torch %s autograd, written by gen_layer_ref.py; do not edit\n" % torch.__version__
    text += "".join(record_ce(*c) for c in CE_CASES)
    with open(os.path.join(OUT, "ce.txt"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

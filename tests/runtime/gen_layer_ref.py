#!/usr/bin/python3
"""gen_layer_ref.py - records torch 1.13 autograd for dpt's spatial layers (issue 19).

For a few fixed small configurations per layer kind it writes, into ref/layers/<kind>.txt next
to this script, the input x, the parameters (torch's state_dict order and layout), an upstream
gradient dy, the forward output y and the gradients dx and d<param>. test_layer_ref.c replays
them through dpt's layer API. Everything is float32 on the CPU, one thread, seeded.

Run with Debian's python3-torch:  /usr/bin/python3 tests/runtime/gen_layer_ref.py

File format (text, one item per line):
  case <name> <kind> <opts or ->      a configuration; opts as dpt_net_add takes them
  in <C> <H> <W> n <N>                the per-sample input shape and the batch size
  out <C> <H> <W>                     the per-sample output shape (rank 1: out <numel>)
  t <name> <count> v v v ...          a tensor, row-major, values as %.9g (exact for float32)
  end
Tensor names: x, dy, y, dx, and for each parameter p (weight, bias) p and grad.p.
"""
import os

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ref", "layers")

# (name, kind, opts, (C, H, W), N)
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
}


def opts_dict(opts):
    return {k: int(v) for k, v in (kv.split("=") for kv in opts.split(",") if kv)}


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
    raise ValueError(kind)


def line(name, t):
    vals = " ".join(format(v, ".9g") for v in t.detach().reshape(-1).tolist())
    return "t %s %d %s\n" % (name, t.numel(), vals)


def record(kind, name, opts, shape, n):
    m = module(kind, opts, shape)
    x = torch.randn((n,) + shape, dtype=torch.float32, requires_grad=True)
    y = m(x)
    if kind == "globalavgpool2d":
        ref = torch.nn.AdaptiveAvgPool2d(1)(x)
        assert torch.allclose(y, ref, rtol=1e-6, atol=0), "global pooling differs from adaptive"
    dy = torch.randn(y.shape, dtype=torch.float32)
    y.backward(dy)
    params = list(m.named_parameters()) if isinstance(m, torch.nn.Module) else []
    s = "case %s %s %s\n" % (name, kind, opts if opts else "-")
    s += "in %d %d %d n %d\n" % (shape + (n,))
    s += "out %s\n" % " ".join(str(d) for d in y.shape[1:])
    s += line("x", x) + "".join(line(p, v) for p, v in params) + line("dy", dy) + line("y", y)
    s += line("dx", x.grad) + "".join(line("grad." + p, v.grad) for p, v in params)
    return s + "end\n"


def main():
    assert torch.__version__.startswith("1.13"), torch.__version__
    os.makedirs(OUT, exist_ok=True)
    for kind, cases in CASES.items():
        torch.manual_seed(19)
        text = "# torch %s autograd, written by gen_layer_ref.py; do not edit\n" % torch.__version__
        text += "".join(record(kind, *c) for c in cases)
        with open(os.path.join(OUT, kind + ".txt"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""peer_step.py -- torch.optim step time alone, one thread, the PyTorch side of the optimizer
comparison in tests/bench/peer.sh (dpt's side: build/tests/bench/bench_optim N).

Setup mirrors tests/bench/bench_optim.c: one flat fp32 parameter of N elements (default
16*1024*1024, or $PEER_STEP_N, or --n) filled with 0.5, a fixed gradient
((i * 2654435761) % 1000) * 1e-3 - 0.5, lr 1e-6, the other hyperparameters at their defaults
(Adam: weight_decay 0; AdamW: weight_decay 0.01, as dpt's defaults). One untimed step creates
the state, then `opt.step()` alone is timed R times (default 7) and the best kept.

Variants timed, interleaved step by step so that noise hits them alike: foreach=False (the
per-tensor loop, _single_tensor_adam[w]) and foreach=True (_multi_tensor_adam[w], torch._foreach_*
kernels). fused=True is tried and reported: in torch 1.13 it exists for Adam only and only for
CUDA tensors. Output: a line per solver and variant, then one JSON line per solver starting
with {"peer": "torch-step" (best_ms = the faster variant).
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BYTES_PER_ELEM = 28  # param r+w, grad r, exp_avg r+w, exp_avg_sq r+w (4 bytes each)


def make(n, cls, **kw):
    p = torch.nn.Parameter(torch.full((n,), 0.5, dtype=torch.float32))
    i = np.arange(n, dtype=np.uint64)
    g = ((i * np.uint64(2654435761)) % np.uint64(1000)).astype(np.float32) * np.float32(1e-3)
    p.grad = torch.from_numpy(g - np.float32(0.5))
    opt = cls([p], lr=1e-6, **kw)
    opt.step()  # state creation (first touch), not timed
    return p, opt


def fused_status(cls):
    p = torch.nn.Parameter(torch.zeros(16))
    p.grad = torch.ones(16)
    try:
        o = cls([p], fused=True)
        o.step()
        return "available"
    except TypeError as e:
        return "no fused argument (%s)" % str(e).split("\n")[0]
    except RuntimeError as e:
        return "unavailable on CPU (%s)" % str(e).split("\n")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int,
                    default=int(os.environ.get("PEER_STEP_N", str(16 * 1024 * 1024))))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("PEER_STEP_REPS", "7")))
    a = ap.parse_args()
    torch.set_num_threads(1)
    print("torch %s optimizer step on one thread, N = %d parameters, best of %d"
          % (torch.__version__, a.n, a.reps))
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        variants = {}
        for fe in (False, True):
            variants["foreach=%s" % fe] = make(a.n, cls, foreach=fe)
        best = {k: float("inf") for k in variants}
        for _ in range(a.reps):
            for k, (_, opt) in variants.items():
                t0 = time.perf_counter()
                opt.step()
                t = time.perf_counter() - t0
                best[k] = min(best[k], t)
        del variants
        for k, t in best.items():
            print("  %-6s %-14s %9.2f ms/step %7.1f GB/s" % (name, k, t * 1e3,
                                                              BYTES_PER_ELEM * a.n / t * 1e-9))
        bk = min(best, key=best.get)
        fused = fused_status(cls)
        print("  %-6s fused: %s" % (name, fused))
        print(json.dumps({"peer": "torch-step", "solver": name, "n": a.n, "reps": a.reps,
                          "ms": {k: round(v * 1e3, 3) for k, v in best.items()},
                          "best_ms": round(best[bk] * 1e3, 3), "best_variant": bk,
                          "fused": fused}), flush=True)


if __name__ == "__main__":
    sys.exit(main())

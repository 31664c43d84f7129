#!/usr/bin/python3
"""bench_cnn.py - PyTorch 1.13's side of bench_cnn.c: the same CNN (tests/bench/cnn_preset.py's
net specs; BatchNorm unless --nobn, dropout --drop 0.25), one thread, forward + backward with
cross-entropy on one random batch, best of 3 rounds in CPU time of the process (as bench_cnn.c;
the wall time is printed too); prints samples/s.

  /usr/bin/python3 tests/bench/bench_cnn.py --net c32-c64-f128 --batch 128 --reps 20
"""
import argparse, os, sys, time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnn_preset import build


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="c32-c64-f128")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--nobn", action="store_true")
    ap.add_argument("--drop", type=float, default=0.25)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    net = build(a.net, not a.nobn, a.drop, 3)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.arange(a.batch) % 10
    lossf = nn.CrossEntropyLoss()
    best = best_wall = 1e30
    for _ in range(3):
        t0, w0 = time.process_time(), time.perf_counter()
        for _ in range(a.reps):
            for p in net.parameters():
                p.grad = None
            lossf(net(x), y).backward()
        best = min(best, (time.process_time() - t0) / a.reps)
        best_wall = min(best_wall, (time.perf_counter() - w0) / a.reps)
    print(f"torch fwd+bwd: {best*1e3:.2f} ms/batch, {a.batch/best:.0f} samples/s (CPU time; wall "
          f"{best_wall*1e3:.2f} ms/batch; torch {torch.__version__}, mkldnn "
          f"{torch.backends.mkldnn.is_available()}, 1 thread)")


if __name__ == "__main__":
    main()

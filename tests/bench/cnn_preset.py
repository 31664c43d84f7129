#!/usr/bin/python3
"""cnn_preset.py - the experiments behind the Fashion-MNIST CNN preset (issue 19).

Trains a candidate CNN in PyTorch 1.13 on one thread (dpt has no data augmentation, so none here),
standardising pixels as `dpt data import-idx` does (mean 0, std 1 over the training pixels), and
prints per epoch: test accuracy, the seconds spent and the training samples/s. A dpt run at W=2
takes about (60000 * epochs) / (2 * samples/s) seconds if dpt matches torch per core.

  python3 tests/bench/cnn_preset.py --net c32-c64-f128 --solver adamw --lr 3e-3 \
      --sched onecycle --batch 128 --epochs 12 --seed 0

Results (2026-12-01, 2-core Xeon VM shared with other jobs, so epoch times are not meaningful;
AdamW lr=max_lr 3e-3, weight decay 0.01, OneCycleLR per step, batch 128, BatchNorm, dropout
0.25, no label smoothing, seed 0):
  c32-c64-f128       12 epochs: test accuracy per epoch .874 .882 .891 .913 .915 .919 .911
                     .926 .928 .928 .931 .932 -> 0.9320 (25.0 MFLOP per training sample)
  c32-c64-c128-f128  10 epochs: .873 .895 .899 .912 .922 .921 .923 .931 .932 .933 -> 0.9329
                     (45.2 MFLOP per training sample)
  dpt itself (bench_cnn_train, W=2, c32-c64-f128, seed 7; stopped after 4 of 12 epochs for
  lack of CPU): .880 .875 .885 .906, torch's trajectory.

Net specs: dash-separated items, cN (conv 3x3 pad 1 -> BN -> ReLU, then 2x2 max-pool unless the
item ends in 'n', e.g. c32n), fN (linear -> ReLU -> dropout), and the final linear to 10 classes
is added. --nobn drops the BatchNorm layers.
"""
import argparse, gzip, os, time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import torch
import torch.nn as nn

D = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(os.path.join(D, name), "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return torch.frombuffer(bytearray(b[4 + 4 * nd:]), dtype=torch.uint8).reshape(dims)


def data():
    xtr, ytr = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    xte, yte = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    m, s = xtr.double().mean(), xtr.double().std(unbiased=False)
    f = lambda x: ((x.double() - m) / s).float().unsqueeze(1)
    return f(xtr), ytr.long(), f(xte), yte.long()


def build(spec, bn, drop, k):
    layers, c, hw = [], 1, 28
    for it in spec.split("-"):
        if it[0] == "c":
            pool = not it.endswith("n")
            o = int(it[1:].rstrip("n"))
            layers += [nn.Conv2d(c, o, k, padding=k // 2)]
            if bn: layers += [nn.BatchNorm2d(o)]
            layers += [nn.ReLU()]
            if pool: layers += [nn.MaxPool2d(2)]; hw //= 2
            c = o
        elif it[0] == "g":  # global average pool
            layers += [nn.AdaptiveAvgPool2d(1)]; hw = 1
        elif it[0] == "f":
            o = int(it[1:])
            if not any(isinstance(l, nn.Flatten) for l in layers):
                layers += [nn.Flatten()]; c = c * hw * hw
            layers += [nn.Linear(c, o), nn.ReLU()]
            if drop > 0: layers += [nn.Dropout(drop)]
            c = o
    if not any(isinstance(l, nn.Flatten) for l in layers):
        layers += [nn.Flatten()]; c = c * hw * hw
    layers += [nn.Linear(c, 10)]
    return nn.Sequential(*layers)


def flops(net):
    """Multiply-adds x2 of convs and linears per sample, forward."""
    tot, x = 0, torch.zeros(1, 1, 28, 28)
    for l in net:
        y = l(x)
        if isinstance(l, nn.Conv2d):
            tot += 2 * y.numel() * l.weight[0].numel()
        elif isinstance(l, nn.Linear):
            tot += 2 * l.weight.numel()
        x = y
    return tot


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="c32-c64-f128")
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--nobn", action="store_true")
    ap.add_argument("--drop", type=float, default=0.25)
    ap.add_argument("--solver", default="adamw")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=1e-2)
    ap.add_argument("--sched", default="onecycle")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--smooth", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    xtr, ytr, xte, yte = data()
    net = build(a.net, not a.nobn, a.drop, a.kernel)
    f = flops(net)
    npar = sum(p.numel() for p in net.parameters())
    if a.solver == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=a.wd)
    elif a.solver == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, nesterov=True,
                              weight_decay=a.wd)
    steps_per_epoch = len(xtr) // a.batch  # drop the last partial batch
    total = steps_per_epoch * a.epochs
    if a.sched == "onecycle":
        sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total)
    elif a.sched == "cosine":
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sch = None
    lossf = nn.CrossEntropyLoss(label_smoothing=a.smooth)
    print(f"# {vars(a)} params={npar} fwd_flops/sample={f/1e6:.2f}M", flush=True)
    g = torch.Generator().manual_seed(a.seed)
    ttrain = 0.0
    for ep in range(a.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            i = perm[s * a.batch:(s + 1) * a.batch]
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xtr[i]), ytr[i])
            loss.backward()
            opt.step()
            if sch: sch.step()
        dt = time.perf_counter() - t0
        ttrain += dt
        net.eval()
        with torch.no_grad():
            correct = sum((net(xte[j:j + 1000]).argmax(1) == yte[j:j + 1000]).sum().item()
                          for j in range(0, len(xte), 1000))
        sps = steps_per_epoch * a.batch / dt
        print(f"epoch {ep+1} loss {loss.item():.4f} test_acc {correct/len(xte):.4f} "
              f"epoch_s {dt:.1f} samples/s {sps:.0f} train_s {ttrain:.0f} "
              f"est_dpt_W2_s {ttrain/2:.0f}", flush=True)


if __name__ == "__main__":
    main()

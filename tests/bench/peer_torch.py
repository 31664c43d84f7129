#!/usr/bin/python3
"""peer_torch.py -- the PyTorch side of tests/bench/peer.sh: the run `dpt train` does, in
PyTorch 1.13 DistributedDataParallel (gloo) with ZeroRedundancyOptimizer(Adam).

What it trains (the same as `dpt train --model mlp:784-256-128-10 --solver adam --lr 1e-3
--sched cosine --batch B --epochs E --zero 1`):
  - the dpt HDF5 dataset (train/x, train/y, test/x, test/y), read with h5py; every value is
    (float)(raw * scale + offset) computed in double, as dpt's io/dataset.c does, so both
    sides see bitwise the same inputs; each rank holds the whole training split in memory as
    float32, as dpt does when it fits --cache-mb;
  - an MLP of nn.Linear layers fc1, fc2, ... with ReLU between, cross-entropy averaged over the
    global batch (each rank: mean over its B/W samples; DDP averages over the W ranks);
  - global batch B, rank r taking samples [r*B/W, (r+1)*B/W) of every global batch, the last
    incomplete batch of an epoch dropped (dpt: steps_per_epoch = n / B);
  - one seeded permutation of the training set per epoch, the same on every rank;
  - Adam (lr, default betas/eps) wrapped in ZeroRedundancyOptimizer (optimizer state sharded
    over the ranks, parameters broadcast from their owners after each step), or plain Adam with
    --zero 0;
  - CosineAnnealingLR with T_max = E stepped once per epoch: dpt's `--sched cosine` defaults
    to --sched-interval epoch and T_max 0 = the whole run, i.e. E epochs.

What it measures (printed by rank 0 as one JSON line starting with {"peer": "torch"):
  - train_s: wall time on rank 0 of the training loop only (from a barrier after the data is
    in memory and the model/optimizer are built, to the end of the last optimizer step),
    including the per-epoch shuffles and batch gathers; samples_per_s = steps * B / train_s;
  - test_accuracy / test_loss on the whole test split after the last epoch (not timed);
  - rss_mb: resource.getrusage(RUSAGE_SELF).ru_maxrss of every rank (MiB), taken after the
    evaluation, i.e. the peak over the whole process up to that point.

Launch: under mpirun (rank/world from OMPI_COMM_WORLD_RANK/SIZE; what peer.sh does, so that
both sides are started, bound and measured the same way), under torchrun (RANK/WORLD_SIZE), or
stand-alone: `/usr/bin/python3 peer_torch.py --world 2 ...` spawns the ranks itself
(torch.multiprocessing.spawn). Rendezvous: env:// on MASTER_ADDR (default 127.0.0.1) and
MASTER_PORT (--port, default 29517).
"""
import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dpt HDF5 dataset")
    p.add_argument("--model", default="784-256-128-10", help="layer sizes (mlp:... accepted)")
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--zero", type=int, default=1, choices=(0, 1),
                   help="1: ZeroRedundancyOptimizer(Adam); 0: plain Adam on every rank")
    p.add_argument("--bucket-view", type=int, default=0, choices=(0, 1),
                   help="ZeroRedundancyOptimizer(parameters_as_bucket_view=...): 1 broadcasts "
                   "each rank's parameters as one flat bucket instead of tensor by tensor")
    p.add_argument("--world", type=int, default=1,
                   help="ranks to spawn when not started by mpirun or torchrun")
    p.add_argument("--port", type=int, default=int(os.environ.get("MASTER_PORT", "29517")))
    p.add_argument("--label", default="", help="copied into the JSON line")
    return p.parse_args(argv)


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.names = []
        for i in range(len(sizes) - 1):
            name = "fc%d" % (i + 1)
            setattr(self, name, nn.Linear(sizes[i], sizes[i + 1]))
            self.names.append(name)

    def forward(self, x):
        for i, name in enumerate(self.names):
            x = getattr(self, name)(x)
            if i + 1 < len(self.names):
                x = F.relu(x)
        return x


def load_split(f, split):
    """x as float32 [n, features] with dpt's (float)(raw*scale+offset), y as int64 [n]."""
    dx = f[split + "/x"]
    scale = float(dx.attrs.get("scale", 1.0))
    offset = float(dx.attrs.get("offset", 0.0))
    n = dx.shape[0]
    feats = int(np.prod(dx.shape[1:]))
    raw = dx[()].reshape(n, feats)
    if raw.dtype == np.uint8:
        # a 256-entry table gives exactly (float)(v*scale+offset) without a float64 copy
        lut = (np.arange(256, dtype=np.float64) * scale + offset).astype(np.float32)
        x = lut[raw]
    elif scale == 1.0 and offset == 0.0:
        x = np.ascontiguousarray(raw, dtype=np.float32)
    else:
        x = np.empty((n, feats), dtype=np.float32)
        for i in range(0, n, 4096):
            x[i:i + 4096] = raw[i:i + 4096].astype(np.float64) * scale + offset
    del raw
    y = f[split + "/y"][()]
    if y.ndim != 1:
        raise SystemExit("peer_torch: %s/y must hold integer labels [n]" % split)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def worker(rank, world, args):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(args.port)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)

    sizes = [int(s) for s in args.model.replace("mlp:", "").split("-")]
    with h5py.File(args.data, "r") as f:
        x_train, y_train = load_split(f, "train")
        x_test, y_test = load_split(f, "test") if "test" in f else (None, None)
    n = x_train.shape[0]
    if x_train.shape[1] != sizes[0]:
        raise SystemExit("peer_torch: the data has %d features, the model %d"
                         % (x_train.shape[1], sizes[0]))
    B = args.batch
    if B % world:
        raise SystemExit("peer_torch: --batch %d is not divisible by %d ranks" % (B, world))
    per = B // world
    steps_per_epoch = n // B

    torch.manual_seed(args.seed)  # DDP broadcasts rank 0's parameters anyway
    model = MLP(sizes)
    ddp = DDP(model)  # bucket_cap_mb 25 (dpt --bucket-mb 25)
    if args.zero:
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.Adam,
                                      parameters_as_bucket_view=bool(args.bucket_view),
                                      lr=args.lr)
        variant = "DDP+ZeroRedundancyOptimizer(Adam)"
        if args.bucket_view:
            variant = "DDP+ZeroRedundancyOptimizer(Adam, bucket view)"
    else:
        opt = torch.optim.Adam(ddp.parameters(), lr=args.lr)
        variant = "DDP+Adam"
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)

    ddp.train()
    epoch_losses = []
    dist.barrier()
    t0 = time.perf_counter()
    for e in range(args.epochs):
        g = torch.Generator()
        g.manual_seed(args.seed * 1000 + e)
        perm = torch.randperm(n, generator=g)
        loss_sum = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * B + rank * per: s * B + (rank + 1) * per]
            xb = x_train.index_select(0, idx)
            yb = y_train.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(ddp(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
        sched.step()
        epoch_losses.append(loss_sum / steps_per_epoch)  # this rank's; averaged below
    train_s = time.perf_counter() - t0
    steps = steps_per_epoch * args.epochs

    # mean training loss of the last epoch over the ranks (each rank's mean is over B/W samples)
    tl = torch.tensor([epoch_losses[-1] if epoch_losses else float("nan")], dtype=torch.float64)
    dist.all_reduce(tl)
    train_loss = tl.item() / world

    # evaluation: each rank a contiguous share of the test split, summed (as dpt does)
    test_loss = test_acc = float("nan")
    if x_test is not None:
        m = x_test.shape[0]
        lo, hi = m * rank // world, m * (rank + 1) // world
        red = torch.zeros(2, dtype=torch.float64)
        model.eval()
        with torch.no_grad():
            for i in range(lo, hi, 1024):
                out = model(x_test[i:min(i + 1024, hi)])
                yy = y_test[i:min(i + 1024, hi)]
                red[0] += F.cross_entropy(out, yy, reduction="sum").double()
                red[1] += (out.argmax(1) == yy).sum().double()
        dist.all_reduce(red)
        test_loss, test_acc = red[0].item() / m, red[1].item() / m

    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0],
                       dtype=torch.float64)  # ru_maxrss is in KiB on Linux
    rss_all = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(rss_all, rss)
    if rank == 0:
        rec = {
            "peer": "torch", "label": args.label, "variant": variant, "torch": torch.__version__,
            "backend": "gloo", "world": world, "batch": B, "epochs": args.epochs,
            "steps": steps, "train_s": round(train_s, 6),
            "samples_per_s": round(steps * B / train_s, 1) if train_s > 0 else None,
            "train_loss": round(train_loss, 6), "test_loss": round(test_loss, 6),
            "test_accuracy": test_acc, "lr_end": sched.get_last_lr()[0],
            "rss_mb": [round(r.item(), 1) for r in rss_all],
        }
        print(json.dumps(rec), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main():
    args = parse_args()
    env = os.environ
    if "OMPI_COMM_WORLD_RANK" in env:
        worker(int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"]), args)
    elif "RANK" in env and "WORLD_SIZE" in env:
        if "MASTER_PORT" in env:
            args.port = int(env["MASTER_PORT"])
        worker(int(env["RANK"]), int(env["WORLD_SIZE"]), args)
    elif args.world == 1:
        worker(0, 1, args)
    else:
        import torch.multiprocessing as mp
        mp.spawn(worker, args=(args.world, args), nprocs=args.world, join=True)


if __name__ == "__main__":
    sys.exit(main())

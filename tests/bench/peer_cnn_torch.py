#!/usr/bin/python3
"""peer_cnn_torch.py -- the PyTorch side of tests/bench/peer_cnn.sh: the CNN training run that
`dpt train --model CNN` does, in PyTorch 1.13: one process without DDP at W = 1 (issue 19's
"torch single process"), DistributedDataParallel over gloo at W > 1.

What it trains:
  - the dpt HDF5 dataset read as peer_torch.py reads it (bitwise dpt's input values), samples
    [1, 28, 28];
  - the net of `dpt model torch MODEL` (--module FILE: its DptModel, the same layers, names and
    shapes as dpt's model), or of tests/bench/cnn_preset.py's spec (--net, e.g. c32-c64-f128:
    conv 3x3 padding 1 -> BatchNorm2d -> ReLU -> max-pool 2, ..., linear -> ReLU -> dropout,
    linear to 10); BatchNorm is per rank under DDP (torch 1.13's SyncBatchNorm runs on CUDA only; dpt's
    BatchNorm uses the global batch's statistics, which costs it a reduction per layer);
  - cross-entropy (label smoothing --smooth), AdamW (--lr, --wd) and OneCycleLR (max_lr =
    --lr, torch's defaults otherwise) stepped per step, global batch B, rank r taking samples
    [r*B/W, (r+1)*B/W) of every global batch, the last incomplete batch dropped, one seeded
    permutation per epoch.

What it measures (rank 0 prints one JSON line starting with {"peer": "torch"}): as
peer_torch.py: train_s (wall time of the training loop, from a barrier after loading), samples/s,
test accuracy after the last epoch, ru_maxrss of every rank, and the model's FLOPs per training
sample (2 per multiply-add of Conv2d and Linear, forward once, backward twice but the first
layer's input gradient).
"""
import argparse
import json
import os
import resource
import sys
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h5py  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

from cnn_preset import build  # noqa: E402
from peer_torch import load_split  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dpt HDF5 dataset")
    p.add_argument("--net", default="c32-c64-f128", help="cnn_preset.py net spec")
    p.add_argument("--module", default="", help="`dpt model torch` output: use its DptModel")
    p.add_argument("--nobn", action="store_true")
    p.add_argument("--drop", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=128, help="global batch size")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-3, help="OneCycleLR's max_lr")
    p.add_argument("--wd", type=float, default=1e-2)
    p.add_argument("--smooth", type=float, default=0.0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--port", type=int, default=int(os.environ.get("MASTER_PORT", "29517")))
    return p.parse_args(argv)


def make_model(args):
    if not args.module:
        return build(args.net, not args.nobn, args.drop, 3)
    import importlib.util
    spec = importlib.util.spec_from_file_location("dpt_model_module", args.module)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DptModel()


def train_flops(model, x):
    """2 x multiply-adds of Conv2d/Linear per sample: forward, weight and input gradients
    (none for the first such layer)."""
    macs = []

    def hook(m, inp, out):
        w = m.weight
        macs.append(out[0].numel() * w[0].numel() if isinstance(m, torch.nn.Conv2d)
                    else w.numel())
    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(x[:1])
    model.train()
    for h in hs:
        h.remove()
    return 2.0 * (3 * sum(macs) - (macs[0] if macs else 0))


def worker(rank, world, args):
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(args.port)
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    with h5py.File(args.data, "r") as f:
        x_train, y_train = load_split(f, "train")
        x_test, y_test = load_split(f, "test")
    x_train, x_test = x_train.view(-1, 1, 28, 28), x_test.view(-1, 1, 28, 28)
    n, B = x_train.shape[0], args.batch
    if B % world:
        raise SystemExit("peer_cnn_torch: --batch %d is not divisible by %d ranks" % (B, world))
    per, steps_per_epoch = B // world, n // B
    total = steps_per_epoch * args.epochs
    if args.max_steps:
        total = min(total, args.max_steps)
    torch.manual_seed(args.seed)
    model = make_model(args)
    flops = train_flops(model, x_train)
    net = DDP(model) if world > 1 else model
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr,
                                                total_steps=steps_per_epoch * args.epochs)
    net.train()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    step = 0
    for e in range(args.epochs):
        g = torch.Generator()
        g.manual_seed(args.seed * 1000 + e)
        perm = torch.randperm(n, generator=g)
        for s in range(steps_per_epoch):
            if step == total:
                break
            idx = perm[s * B + rank * per: s * B + (rank + 1) * per]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x_train.index_select(0, idx)), y_train.index_select(0, idx),
                                   label_smoothing=args.smooth)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    train_s = time.perf_counter() - t0
    m = x_test.shape[0]
    lo, hi = m * rank // world, m * (rank + 1) // world
    red = torch.zeros(1, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for i in range(lo, hi, 1000):
            red[0] += (model(x_test[i:min(i + 1000, hi)]).argmax(1) ==
                       y_test[i:min(i + 1000, hi)]).sum().double()
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0],
                       dtype=torch.float64)
    rss_all = [rss]
    if world > 1:
        dist.all_reduce(red)
        rss_all = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(rss_all, rss)
    if rank == 0:
        print(json.dumps({
            "peer": "torch", "variant": "DDP(gloo)+AdamW" if world > 1 else "1 process+AdamW",
            "torch": torch.__version__, "world": world, "batch": B,
            "net": args.module or args.net, "flops_per_sample": flops,
            "steps": step, "train_s": round(train_s, 6),
            "samples_per_s": round(step * B / train_s, 1) if train_s > 0 else None,
            "test_accuracy": red[0].item() / m,
            "rss_mb": [round(r.item(), 1) for r in rss_all]}), flush=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def main():
    args = parse_args()
    env = os.environ
    if "OMPI_COMM_WORLD_RANK" in env:
        worker(int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"]), args)
    else:
        worker(0, 1, args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""peer_gpt_torch.py -- the PyTorch side of tests/bench/peer_gpt.sh: the GPT training run that
`dpt train --model gpt:L-H-C --context T` does, in PyTorch 1.13, one thread per rank: one
process without DDP at W = 1, DistributedDataParallel over gloo at W > 1.

What it trains:
  - the dpt token dataset (dpt data import-text: /train/tokens, /test/tokens, /vocab), read as
    windows of T tokens whose targets are the T tokens after each, at the starts dpt draws
    (runtime/step.c's dpt_train_windows: splitmix64 of seed, epoch, step and position, modulo
    the starts that leave T + 1 tokens), so both sides train on the same windows in the same
    order; rank r takes windows [r*B/W, (r+1)*B/W) of every global batch of B, as dpt;
  - nanoGPT's GPT as dpt builds it (bias=True, dropout 0, exact GELU, pre-LayerNorm blocks,
    lm_head without bias tied to transformer.wte), with --init CKPT the parameters of that dpt
    checkpoint (peer_gpt.sh passes dpt's initial ones: the same start exactly); without it
    initialised as dpt's gpt presets (the same distributions, other draws): the embeddings
    N(0, 0.02), Linear (uniform +-1/sqrt(fan-in), weight and bias) and LayerNorm (ones,
    zeros) torch's defaults;
  - cross-entropy over all B*T positions, AdamW (--lr, --wd, torch's betas), no scheduler,
    --steps steps.
Then the held-out loss over the consecutive windows of /test/tokens, as dpt evaluates it.

What it measures (rank 0 prints one JSON line starting with {"peer": "torch"}): train_s (wall
time of the training loop, from a barrier after loading), samples/s and tokens/s, the first
step's loss (first_loss: the global batch's, as dpt's first step record), the held-out loss,
ru_maxrss of every rank, nparams and the FLOPs per token (6 N + 12 L T C with N the parameters
but the position embedding, nanoGPT's estimate_mfu count).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402


class Attention(nn.Module):
    def __init__(self, c, h, t):
        super().__init__()
        self.c_attn, self.c_proj, self.h = nn.Linear(c, 3 * c), nn.Linear(c, c), h
        # a plain attribute, not a buffer: DDP broadcasts buffers, and gloo has no bool
        self.mask = torch.tril(torch.ones(t, t)).view(1, 1, t, t) == 0

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.h, C // self.h).transpose(1, 2) for z in (q, k, v))
        a = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // self.h))
        a = F.softmax(a.masked_fill(self.mask[:, :, :T, :T], float("-inf")), dim=-1)
        return self.c_proj((a @ v).transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, c, h, t):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(c), Attention(c, h, t), nn.LayerNorm(c)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(c, 4 * c), c_proj=nn.Linear(4 * c, c)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, layers, heads, width, t, v):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(v, width), wpe=nn.Embedding(t, width),
            h=nn.ModuleList(Block(width, heads, t) for _ in range(layers)),
            ln_f=nn.LayerNorm(width)))
        self.lm_head = nn.Linear(width, v, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        for e in (self.transformer.wte, self.transformer.wpe):  # as dpt's gpt presets, nanoGPT's
            nn.init.normal_(e.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for b in self.transformer.h:
            x = b(x)
        return self.lm_head(self.transformer.ln_f(x))


PRESETS = {"tiny": (2, 4, 64), "small": (4, 4, 128)}
MASK64 = (1 << 64) - 1


def splitmix64(state):
    """dpt_splitmix64 (runtime/base/misc.c): (new state, value)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def dpt_windows(seed, epoch, first, count, batch, ntokens, t):
    """Window starts first .. first + count - 1 of an epoch as dpt_train_windows draws them."""
    valid, out = ntokens - t, []
    for g in range(first, first + count):
        st = splitmix64(seed & MASK64)[1] ^ epoch
        st = splitmix64(st)[1] ^ (g // batch)
        st = splitmix64(st)[1] ^ (g % batch)
        out.append(splitmix64(st)[1] % valid)
    return torch.tensor(out, dtype=torch.int64)


def load_dpt(model, path):
    """The parameters of a dpt checkpoint (/model/<name>; the tied weight held once)."""
    with h5py.File(path, "r") as f:
        state = {k: torch.from_numpy(np.array(v)) for k, v in f["model"].items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state, strict=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dpt token dataset (dpt data import-text)")
    p.add_argument("--model", default="tiny", help="tiny, small or L-H-C, as dpt's gpt:")
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=32, help="global batch (windows)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=42, help="dpt's --seed: the windows (and init)")
    p.add_argument("--init", help="a dpt checkpoint of this model: start from its parameters")
    p.add_argument("--port", type=int, default=int(os.environ.get("MASTER_PORT", "29519")))
    return p.parse_args(argv)


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
        train = torch.from_numpy(np.asarray(f["train/tokens"], dtype=np.int64))
        test = torch.from_numpy(np.asarray(f["test/tokens"], dtype=np.int64))
        vocab = len(f["vocab"])
    L, H, C = PRESETS.get(args.model) or tuple(int(v) for v in args.model.split("-"))
    T, B = args.context, args.batch
    if B % world:
        raise SystemExit("peer_gpt_torch: --batch %d is not divisible by %d ranks" % (B, world))
    per = B // world
    torch.manual_seed(args.seed)
    model = GPT(L, H, C, T, vocab)
    if args.init:
        load_dpt(model, args.init)
    nparams = sum(p.numel() for p in model.parameters())  # the tied weight once
    n_flops = nparams - model.transformer.wpe.weight.numel()
    flops_per_token = 6 * n_flops + 12 * L * T * C
    net = DDP(model) if world > 1 else model
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.wd)
    offs = torch.arange(T + 1)
    steps_per_epoch = ((len(train) - 1) // T) // B
    starts = [dpt_windows(args.seed, s // steps_per_epoch, s % steps_per_epoch * B + rank * per,
                          per, B, len(train), T) for s in range(args.steps)]  # before the clock
    net.train()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    first_loss = None
    for s in range(args.steps):
        w = train[starts[s][:, None] + offs]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(w[:, :T]).reshape(-1, vocab), w[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        if first_loss is None:
            first_loss = loss.detach().clone()
    train_s = time.perf_counter() - t0
    if world > 1:  # the global batch's mean, as dpt's step record
        dist.all_reduce(first_loss)
        first_loss /= world
    n = (len(test) - 1) // T
    lo, hi = n * rank // world, n * (rank + 1) // world
    red = torch.zeros(2, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for i in range(lo, hi, 64):
            j = torch.arange(i, min(i + 64, hi))[:, None] * T + offs
            w = test[j]
            red[0] += F.cross_entropy(model(w[:, :T]).reshape(-1, vocab), w[:, 1:].reshape(-1),
                                      reduction="sum").double()
            red[1] += w[:, 1:].numel()
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
            "torch": torch.__version__, "world": world, "batch": B, "context": T,
            "nparams": nparams, "flops_per_token": flops_per_token,
            "steps": args.steps, "train_s": round(train_s, 6),
            "samples_per_s": round(args.steps * B / train_s, 2) if train_s > 0 else None,
            "tokens_per_s": round(args.steps * B * T / train_s, 1) if train_s > 0 else None,
            "first_loss": first_loss.item(), "test_loss": red[0].item() / red[1].item(),
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

#!/usr/bin/python3
"""Records PyTorch 1.13 solver trajectories for tests/optim/test_solver_replay.c.

Run with Debian's python3-torch:  /usr/bin/python3 tests/optim/gen_solver_ref.py
Writes tests/optim/ref/solvers/<case>.txt (committed). Each file holds the dpt solver name and
hyperparameters (as dpt_optim_solver_set keys), the initial parameters, then per step the lr,
the gradient fed and the parameters after the step, and finally the solver state by torch's
state keys. Values are printed with 9 significant digits, which round-trips fp32 exactly.

Lion is not in torch 1.13: its reference below follows Chen et al. 2023, Algorithm 2
(decoupled weight decay), written with torch ops in the order dpt uses.
"""
import os
import sys

import torch

N = 33        # odd, so vector loops have tails
STEPS = 60    # the issue asks for >= 50
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref", "solvers")


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                g = p.grad if not group["maximize"] else -p.grad
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.)
                    st["exp_avg"] = torch.zeros_like(p)
                st["step"] += 1
                m = st["exp_avg"]
                c = m.mul(b1).add_(g, alpha=1 - b1)
                p.mul_(1 - lr * wd)
                p.add_(torch.sign(c), alpha=-lr)
                m.mul_(b2).add_(g, alpha=1 - b2)


# name, dpt solver, dpt keys (text, as a user would type them), torch constructor, options
def cases():
    T = torch.optim
    c = []

    def add(name, solver, keys, make, l2=0.0, vary_lr=False):
        c.append((name, solver, keys, make, l2, vary_lr))

    add("gd", "gd", {"lr": "0.05"}, lambda p: T.SGD(p, lr=0.05))
    add("gd_wd", "gd", {"lr": "0.05", "weight_decay": "0.1"},
        lambda p: T.SGD(p, lr=0.05, weight_decay=0.1))
    add("sgd", "sgd", {}, lambda p: T.SGD(p, lr=0.01))
    add("sgd_momentum", "sgd", {"momentum": "0.9"}, lambda p: T.SGD(p, lr=0.01, momentum=0.9))
    add("sgd_dampening_wd", "sgd", {"momentum": "0.8", "dampening": "0.3", "weight_decay": "0.01"},
        lambda p: T.SGD(p, lr=0.01, momentum=0.8, dampening=0.3, weight_decay=0.01))
    add("sgd_nesterov", "sgd", {"momentum": "0.9", "nesterov": "true"},
        lambda p: T.SGD(p, lr=0.01, momentum=0.9, nesterov=True))
    add("sgd_maximize_vary_lr", "sgd", {"momentum": "0.5", "maximize": "1"},
        lambda p: T.SGD(p, lr=0.01, momentum=0.5, maximize=True), vary_lr=True)
    add("adagrad", "adagrad", {}, lambda p: T.Adagrad(p))
    add("adagrad_options", "adagrad",
        {"lr_decay": "0.01", "initial_accumulator_value": "0.1", "weight_decay": "0.01",
         "eps": "1e-8"},
        lambda p: T.Adagrad(p, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01,
                            eps=1e-8))
    add("adagrad_maximize", "adagrad", {"maximize": "true"}, lambda p: T.Adagrad(p, maximize=True))
    add("adadelta", "adadelta", {}, lambda p: T.Adadelta(p))
    add("adadelta_options", "adadelta", {"rho": "0.5", "weight_decay": "0.01", "maximize": "1"},
        lambda p: T.Adadelta(p, rho=0.5, weight_decay=0.01, maximize=True))
    add("asgd", "asgd", {}, lambda p: T.ASGD(p))
    add("asgd_averaging", "asgd",
        {"lambd": "0.001", "alpha": "0.5", "t0": "10", "weight_decay": "0.01"},
        lambda p: T.ASGD(p, lambd=1e-3, alpha=0.5, t0=10, weight_decay=0.01))
    add("asgd_maximize", "asgd", {"t0": "5", "maximize": "1"},
        lambda p: T.ASGD(p, t0=5, maximize=True))
    add("rprop", "rprop", {}, lambda p: T.Rprop(p))
    add("rprop_options", "rprop", {"etas": "0.3,1.5", "step_sizes": "1e-4,0.1", "lr": "0.001"},
        lambda p: T.Rprop(p, lr=0.001, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1)))
    add("rprop_maximize", "rprop", {"maximize": "1"}, lambda p: T.Rprop(p, maximize=True))
    # torch's Rprop has no weight decay: dpt's L2 is the gradient plus wd * p, fed to torch.
    add("rprop_wd", "rprop", {"weight_decay": "0.05"}, lambda p: T.Rprop(p), l2=0.05)
    add("rmsprop", "rmsprop", {}, lambda p: T.RMSprop(p))
    add("rmsprop_centered", "rmsprop", {"centered": "1"}, lambda p: T.RMSprop(p, centered=True))
    add("rmsprop_momentum", "rmsprop", {"momentum": "0.9"}, lambda p: T.RMSprop(p, momentum=0.9))
    add("rmsprop_all", "rmsprop",
        {"centered": "1", "momentum": "0.5", "weight_decay": "0.01", "alpha": "0.9",
         "maximize": "1"},
        lambda p: T.RMSprop(p, centered=True, momentum=0.5, weight_decay=0.01, alpha=0.9,
                            maximize=True))
    add("adam", "adam", {}, lambda p: T.Adam(p, foreach=False))
    add("adam_amsgrad", "adam", {"amsgrad": "1"}, lambda p: T.Adam(p, amsgrad=True, foreach=False))
    add("adam_wd_betas", "adam", {"weight_decay": "0.01", "betas": "0.8,0.99", "eps": "1e-6"},
        lambda p: T.Adam(p, weight_decay=0.01, betas=(0.8, 0.99), eps=1e-6, foreach=False))
    add("adam_maximize_vary_lr", "adam", {"maximize": "1"},
        lambda p: T.Adam(p, maximize=True, foreach=False), vary_lr=True)
    add("adamax", "adamax", {}, lambda p: T.Adamax(p, foreach=False))
    add("adamax_wd_maximize", "adamax", {"weight_decay": "0.01", "maximize": "1"},
        lambda p: T.Adamax(p, weight_decay=0.01, maximize=True, foreach=False))
    add("adamw", "adamw", {}, lambda p: T.AdamW(p, foreach=False))
    add("adamw_amsgrad", "adamw", {"amsgrad": "1", "weight_decay": "0.1"},
        lambda p: T.AdamW(p, amsgrad=True, weight_decay=0.1, foreach=False))
    add("adamw_maximize", "adamw", {"maximize": "1"},
        lambda p: T.AdamW(p, maximize=True, foreach=False))
    add("lion", "lion", {}, lambda p: Lion(p))
    add("lion_wd", "lion", {"lr": "3e-4", "weight_decay": "0.1", "betas": "0.95,0.98"},
        lambda p: Lion(p, lr=3e-4, weight_decay=0.1, betas=(0.95, 0.98)))
    add("lion_maximize_vary_lr", "lion", {"maximize": "1"}, lambda p: Lion(p, maximize=True),
        vary_lr=True)
    return c


def fmt(t):
    return " ".join("%.9g" % v for v in t.reshape(-1).tolist())


def record(case, seed):
    name, solver, keys, make, l2, vary_lr = case
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(N, generator=gen)
    p.requires_grad_(False)
    init = p.clone()
    opt = make([p])
    lines = ["# recorded with torch %s by gen_solver_ref.py" % torch.__version__,
             "solver " + solver]
    lines += ["set %s %s" % kv for kv in keys.items()]
    lines += ["n %d" % N, "steps %d" % STEPS, "init " + fmt(init)]
    lr0 = opt.param_groups[0]["lr"]
    for step in range(1, STEPS + 1):
        scale = 10.0 ** torch.empty(1).uniform_(-3, 1, generator=gen).item()
        g = torch.randn(N, generator=gen) * scale
        g[torch.rand(N, generator=gen) < 0.1] = 0.0   # exact zeros: Rprop's sign == 0 path
        if vary_lr:
            opt.param_groups[0]["lr"] = lr0 * 0.97 ** step
        lr = opt.param_groups[0]["lr"]
        p.grad = g.add(p, alpha=l2) if l2 else g.clone()
        opt.step()
        lines.append("step %d %.17g" % (step, lr))
        lines.append("grad " + fmt(g))
        lines.append("param " + fmt(p))
    for key, val in opt.state[p].items():
        if val is None:
            continue
        if torch.is_tensor(val) and val.numel() == N:
            lines.append("state %s %s" % (key, fmt(val)))
        else:
            lines.append("state %s %.9g" % (key, float(val)))
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for i, case in enumerate(cases()):
        record(case, 1000 + i)
    print("wrote %d cases to %s" % (len(cases()), OUT))


if __name__ == "__main__":
    sys.exit(main())

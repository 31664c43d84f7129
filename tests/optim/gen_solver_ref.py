#!/usr/bin/python3
"""Records PyTorch 1.13 solver trajectories for tests/optim/test_solver_replay.c.

Run with Debian's python3-torch:  /usr/bin/python3 tests/optim/gen_solver_ref.py
Writes tests/optim/ref/solvers/<case>.txt (committed) and tests/optim/ref/validate.txt.

The initial parameters and every gradient come from a counter-based generator (splitmix64 of
seed, stream, step and index; values m * 2^e with m a 24-bit integer, so exact in float32) that
test_solver_replay.c implements too: the files need not hold them, which keeps 70001-element
trajectories small. A case file holds the dpt solver name and its hyperparameters at creation
(as dpt_optim_solver_set keys), n, the generator seed and the indices of the watched elements;
then per step the lr (and momentum or beta1) the param group had at that step, the digest of
all n parameters after it and the watched parameters; finally every state entry torch holds, a
vector as digest and watched values, a scalar in %.17g. Digest: the sum mod 2^64 of
splitmix64(bits(x[i]) + (i << 32)), so it sees every element and the sign of zero. Floats are
printed with 9 significant digits, which round-trips fp32 exactly.

Cases: the hand-written option sets; schedules that move lr and momentum/beta1 every step
(cyclic and onecycle with base_momentum 0, a warm-up, a hand-made momentum pattern with zeros)
for every solver that has a momentum or beta1; lr schedules for the others (ASGD and Rprop
initialise eta and step_size from the lr of the first step); float32-edge Rprop etas; large
ASGD lambd; four seeded random draws per solver at n = 1, 13, 1000 and 70001.

validate.txt: hyperparameter sets with whether torch accepts them (constructs and steps).

Lion is not in torch 1.13: its reference below follows Chen et al. 2023, Algorithm 2
(decoupled weight decay), written with torch ops in the order dpt uses.
"""
import math
import os
import random
import sys
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as S

STEPS = 60        # steps of the hand-written cases
DRAW_STEPS = 40   # steps of the random draws
WATCH = 16        # watched elements per vector (all of them when n <= WATCH)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ref", "solvers")
M64 = (1 << 64) - 1

# --- the generator (test_solver_replay.c has the same) ---

def splitmix(z):
    """splitmix64 finaliser of a uint64 numpy array (wrapping arithmetic)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def key(seed, stream, step):
    return int(splitmix(np.array([(seed << 40) ^ (stream << 32) ^ step], dtype=np.uint64))[0])


def draw(seed, stream, step, n):
    """n floats m * 2^(e-23), m in [-2^23, 2^23), e in [-10, 3] per step (0 for the initial
    parameters); about 10% exact zeros in gradients (stream 1)."""
    with np.errstate(over="ignore"):
        k = key(seed, stream, step)
        h = splitmix(np.uint64(k) ^ np.arange(n, dtype=np.uint64))
    m = (h >> np.uint64(40)).astype(np.int64) - (1 << 23)
    e = 0 if stream == 0 else (k >> 8) % 14 - 10
    v = m.astype(np.float32) * np.float32(2.0 ** (e - 23))
    if stream == 1:
        v[((h >> np.uint64(8)) & np.uint64(255)) < 26] = 0.0
    return v


def digest(t):
    bits = t.detach().numpy().astype(np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = splitmix(bits + (np.arange(bits.size, dtype=np.uint64) << np.uint64(32)))
    return "%016x" % (int(h.sum(dtype=np.uint64)) & M64)


def watch_indices(n):
    if n <= WATCH:
        return list(range(n))
    spread = [n * k // 9 for k in range(1, 9)]  # body elements
    return sorted(set(list(range(4)) + spread + list(range(n - 4, n))))[:WATCH]


# --- Lion (not in torch 1.13) ---

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


# --- solvers: torch constructors from torch-named hyperparameters ---

T = torch.optim
MOMENTUM = {"sgd", "rmsprop", "adam", "adamax", "adamw", "lion"}
BETA1 = {"adam", "adamax", "adamw", "lion"}


def make_opt(solver, hp, params):
    hp = dict(hp)
    if solver in ("gd", "sgd"):
        hp.setdefault("lr", 0.01)
        return T.SGD(params, **hp)
    if solver == "rprop":
        hp.pop("weight_decay", None)  # dpt's L2 extension: fed to torch in the gradient
        return T.Rprop(params, **hp)
    if solver == "lion":
        return Lion(params, **hp)
    cls = dict(adagrad=T.Adagrad, adadelta=T.Adadelta, asgd=T.ASGD, rmsprop=T.RMSprop,
               adam=T.Adam, adamax=T.Adamax, adamw=T.AdamW)[solver]
    if solver in ("adam", "adamax", "adamw"):
        hp["foreach"] = False
    return cls(params, **hp)


def dpt_keys(hp):
    out = []
    for k, v in hp.items():
        if isinstance(v, bool):
            out.append((k, "1" if v else "0"))
        elif isinstance(v, tuple):
            out.append((k, "%r,%r" % (float(v[0]), float(v[1]))))
        else:
            out.append((k, repr(float(v))))
    return out


# --- schedules: what the param group holds before each step ---

def get_mom(opt, solver):
    g = opt.param_groups[0]
    return g["betas"][0] if solver in BETA1 else g["momentum"]


def set_mom(opt, solver, m):
    g = opt.param_groups[0]
    if solver in BETA1:
        g["betas"] = (m, g["betas"][1])
    else:
        g["momentum"] = m


def make_sched(kind, opt, solver, lr, steps):
    """Returns (scheduler or None, before(step) hook). cyc: momentum cycles with it."""
    cyc = solver in MOMENTUM and not (solver in ("sgd", "rmsprop") and
                                      opt.param_groups[0]["momentum"] == 0)
    if kind == "none":
        return None, None
    if kind == "vary":
        return None, lambda o, k: o.param_groups[0].__setitem__("lr", lr * 0.97 ** k)
    if kind == "cyclic":
        def cyclic(o):
            return S.CyclicLR(o, base_lr=lr * 0.1, max_lr=lr, step_size_up=7, step_size_down=5,
                              cycle_momentum=cyc, base_momentum=0.0, max_momentum=0.9)
        if not (cyc and solver in BETA1):
            return cyclic(opt), None
        # torch 1.13's CyclicLR cycles only 'momentum' (beta1 came in torch 2.0): run it on a
        # shadow SGD and copy its lr and momentum into beta1, as later torch does
        shadow = T.SGD([torch.zeros(1)], lr=lr, momentum=0.9)
        sch = cyclic(shadow)

        def before(o, k):
            o.param_groups[0]["lr"] = shadow.param_groups[0]["lr"]
            set_mom(o, solver, shadow.param_groups[0]["momentum"])
        return sch, before
    if kind == "onecycle":
        return S.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.4,
                            cycle_momentum=cyc, base_momentum=0.0, max_momentum=0.95), None
    if kind == "warmup":
        # lr: linear warm-up over 10 steps, then cosine; momentum: a ramp from 0 (SGD: the
        # buffer appears at step 2) to its top over the warm-up (RMSprop from 0.1: torch
        # raises KeyError if its momentum is 0 at the first step and > 0 later)
        w = S.SequentialLR(opt, [S.LinearLR(opt, start_factor=0.05, total_iters=10),
                                 S.CosineAnnealingLR(opt, T_max=steps - 10, eta_min=lr * 0.01)],
                           milestones=[10])
        lo = 0.1 if solver == "rmsprop" else 0.0
        top = 0.9

        def before(o, k):
            if cyc:
                set_mom(o, solver, lo + (top - lo) * min(1.0, (k - 1) / 9.0))
        return w, before
    if kind == "pattern":
        # momentum 0 on some steps (SGD: on the first two as well) and back, lr moving too
        def before(o, k):
            o.param_groups[0]["lr"] = lr * (1.0 + 0.5 * math.sin(k))
            if cyc:
                zero = k % 10 in (3, 4, 5) or (k <= 2 and solver != "rmsprop")
                set_mom(o, solver, 0.0 if zero else (0.9 if k % 20 < 10 else 0.5))
        return None, before
    raise ValueError(kind)


# --- recording ---

def fmt(v):
    return " ".join("%.9g" % x for x in v)


def record(name, solver, hp, n, seed, sched="none", steps=STEPS):
    torch.manual_seed(0)
    l2 = hp.get("weight_decay", 0.0) if solver == "rprop" else 0.0
    p = torch.from_numpy(draw(seed, 0, 0, n).copy())
    opt = make_opt(solver, hp, [p])
    lr0 = opt.param_groups[0]["lr"]
    sch, before = make_sched(sched, opt, solver, lr0, steps)
    w = watch_indices(n)
    lines = ["# recorded with torch %s by gen_solver_ref.py" % torch.__version__,
             "solver " + solver]
    lines += ["set %s %s" % kv for kv in dpt_keys(hp)]
    lines += ["n %d" % n, "seed %d" % seed, "init %s" % digest(p),
              "watch %d %s" % (len(w), " ".join(map(str, w))), "steps %d" % steps]
    with_mom = solver in MOMENTUM
    for k in range(1, steps + 1):
        if before:
            before(opt, k)
        g = torch.from_numpy(draw(seed, 1, k, n))
        lr = opt.param_groups[0]["lr"]
        line = "step %d %.17g" % (k, lr)
        if with_mom:
            line += " %.17g" % get_mom(opt, solver)
        p.grad = g.add(p, alpha=l2) if l2 else g.clone()
        opt.step()
        if sch:
            sch.step()
        lines.append(line)
        lines.append("param %s %s" % (digest(p), fmt(p[w].tolist())))
    for kname, val in opt.state[p].items():
        if val is None:
            continue
        if torch.is_tensor(val) and val.numel() == n and val.dim() == 1:
            lines.append("vstate %s %s %s" % (kname, digest(val), fmt(val[w].tolist())))
        else:
            lines.append("sstate %s %.17g" % (kname, float(val)))
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def fixed_cases():
    c = []

    def add(name, solver, hp, sched="none", n=33):
        c.append((name, solver, hp, n, sched))

    add("gd", "gd", dict(lr=0.05))
    add("gd_wd", "gd", dict(lr=0.05, weight_decay=0.1))
    add("sgd", "sgd", dict(lr=0.01))
    add("sgd_momentum", "sgd", dict(lr=0.01, momentum=0.9))
    add("sgd_dampening_wd", "sgd", dict(lr=0.01, momentum=0.8, dampening=0.3, weight_decay=0.01))
    add("sgd_nesterov", "sgd", dict(lr=0.01, momentum=0.9, nesterov=True))
    add("sgd_maximize_vary_lr", "sgd", dict(lr=0.01, momentum=0.5, maximize=True), "vary")
    add("adagrad", "adagrad", dict())
    add("adagrad_options", "adagrad", dict(lr_decay=0.01, initial_accumulator_value=0.1,
                                           weight_decay=0.01, eps=1e-8))
    add("adagrad_maximize", "adagrad", dict(maximize=True))
    add("adadelta", "adadelta", dict())
    add("adadelta_options", "adadelta", dict(rho=0.5, weight_decay=0.01, maximize=True))
    add("asgd", "asgd", dict())
    add("asgd_averaging", "asgd", dict(lambd=1e-3, alpha=0.5, t0=10, weight_decay=0.01))
    add("asgd_maximize", "asgd", dict(t0=5, maximize=True))
    add("asgd_lambd05", "asgd", dict(lambd=0.5, t0=20), n=1000)   # issue 15.1: drift up to
    add("asgd_lambd09", "asgd", dict(lambd=0.9, alpha=0.9, t0=3))  # 5e-4 without the rounding
    add("rprop", "rprop", dict())
    add("rprop_options", "rprop", dict(lr=0.001, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1)))
    add("rprop_maximize", "rprop", dict(maximize=True))
    add("rprop_wd", "rprop", dict(weight_decay=0.05))
    # issue 15.5: etas that round to 0 or 1 in float32, and a minimum step size of 0
    add("rprop_etaminus_1e-50", "rprop", dict(etas=(1e-50, 1.2)), n=1000)
    add("rprop_etaminus_near1", "rprop", dict(etas=(0.99999999, 1.2)))
    add("rprop_etaplus_near1", "rprop", dict(etas=(0.5, 1.00000001)))
    add("rprop_both_near1", "rprop", dict(etas=(0.99999999, 1.00000001)))
    add("rprop_step_min0", "rprop", dict(lr=0.001, etas=(0.1, 1.2), step_sizes=(0.0, 1.0)))
    add("rmsprop", "rmsprop", dict())
    add("rmsprop_centered", "rmsprop", dict(centered=True))
    add("rmsprop_momentum", "rmsprop", dict(momentum=0.9))
    add("rmsprop_all", "rmsprop", dict(centered=True, momentum=0.5, weight_decay=0.01,
                                       alpha=0.9, maximize=True))
    add("adam", "adam", dict())
    add("adam_amsgrad", "adam", dict(amsgrad=True))
    add("adam_wd_betas", "adam", dict(weight_decay=0.01, betas=(0.8, 0.99), eps=1e-6))
    add("adam_maximize_vary_lr", "adam", dict(maximize=True), "vary")
    add("adamax", "adamax", dict())
    add("adamax_wd_maximize", "adamax", dict(weight_decay=0.01, maximize=True))
    add("adamw", "adamw", dict())
    add("adamw_amsgrad", "adamw", dict(amsgrad=True, weight_decay=0.1))
    add("adamw_maximize", "adamw", dict(maximize=True))
    add("lion", "lion", dict())
    add("lion_wd", "lion", dict(lr=3e-4, weight_decay=0.1, betas=(0.95, 0.98)))
    add("lion_maximize_vary_lr", "lion", dict(maximize=True), "vary")

    # schedules that move lr and momentum/beta1 every step, momentum reaching 0 and back
    momentum_sets = [
        ("sgd_m", "sgd", dict(lr=0.05, momentum=0.9)),
        ("sgd_damp", "sgd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
        ("sgd_nesterov", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
        ("rmsprop_m", "rmsprop", dict(lr=0.01, momentum=0.9)),
        ("rmsprop_centered_m", "rmsprop", dict(lr=0.01, momentum=0.5, centered=True,
                                                weight_decay=0.01)),
        ("adam", "adam", dict(lr=0.01)),
        ("adam_amsgrad", "adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
        ("adamax", "adamax", dict(lr=0.01)),
        ("adamw", "adamw", dict(lr=0.01, weight_decay=0.1)),
        ("lion", "lion", dict(lr=0.001, weight_decay=0.1)),
    ]
    lengths = [13, 33, 1000, 70001]
    for i, (tag, solver, hp) in enumerate(momentum_sets):
        for j, sched in enumerate(("cyclic", "onecycle", "warmup", "pattern")):
            add("%s_sched_%s_%s" % (solver, sched, tag), solver, hp, sched,
                n=lengths[(i + j) % 4])
    # lr schedules for the solvers without momentum (issue 15.2: ASGD and Rprop)
    for solver, hp in (("gd", dict(lr=0.05)), ("sgd", dict(lr=0.05)),
                       ("adagrad", dict(lr=0.05)), ("adadelta", dict()),
                       ("asgd", dict(lr=0.05, lambd=0.01, t0=10)),
                       ("rprop", dict(lr=0.01)), ("rmsprop", dict(lr=0.01))):
        for sched in ("onecycle", "warmup", "cyclic"):
            add("%s_sched_%s" % (solver, sched), solver, hp, sched, n=33)
    return c


# --- seeded random draws ---

def rand_hp(solver, r):
    lu = lambda a, b: math.exp(r.uniform(math.log(a), math.log(b)))  # noqa: E731
    hp = {}
    wd = 0.0 if r.random() < 0.4 else lu(1e-4, 0.1)
    if solver in ("gd", "sgd"):
        hp["lr"] = lu(1e-3, 0.1)
    if solver == "sgd":
        m = 0.0 if r.random() < 0.25 else r.uniform(0.3, 0.99)
        hp["momentum"] = m
        hp["dampening"] = 0.0 if r.random() < 0.5 else r.uniform(0, 0.5)
        if m > 0 and hp["dampening"] == 0 and r.random() < 0.5:
            hp["nesterov"] = True
    if solver == "adagrad":
        hp.update(lr=lu(1e-3, 0.5), lr_decay=lu(1e-4, 0.1),
                  initial_accumulator_value=r.choice([0.0, lu(1e-3, 1)]), eps=lu(1e-10, 1e-6))
    if solver == "adadelta":
        hp.update(lr=r.uniform(0.1, 2), rho=r.uniform(0.5, 0.99), eps=lu(1e-8, 1e-4))
    if solver == "asgd":
        hp.update(lr=lu(1e-3, 0.1), lambd=lu(1e-5, 0.9), alpha=r.uniform(0.5, 1.0),
                  t0=float(r.randint(0, 30)))
    if solver == "rprop":
        hp.update(lr=lu(1e-4, 0.1), etas=(r.uniform(0.1, 0.9), r.uniform(1.05, 2.0)),
                  step_sizes=(r.choice([0.0, lu(1e-8, 1e-4)]), lu(0.1, 50)))
    if solver == "rmsprop":
        hp.update(lr=lu(1e-4, 0.05), alpha=r.uniform(0.8, 0.999), eps=lu(1e-8, 1e-4),
                  momentum=r.choice([0.0, r.uniform(0.3, 0.95)]), centered=r.random() < 0.5)
    if solver in ("adam", "adamw", "adamax", "lion"):
        hp.update(lr=lu(1e-4, 0.05), betas=(r.uniform(0.5, 0.99), r.uniform(0.9, 0.9999)))
        if solver != "lion":
            hp["eps"] = lu(1e-10, 1e-4)
        if solver in ("adam", "adamw"):
            hp["amsgrad"] = r.random() < 0.5
    hp["weight_decay"] = wd
    hp["maximize"] = r.random() < 0.3
    return hp


def draw_cases():
    c = []
    solvers = ["gd", "sgd", "adagrad", "adadelta", "asgd", "rprop", "rmsprop", "adam",
               "adamax", "adamw", "lion"]
    for si, solver in enumerate(solvers):
        for d, n in enumerate((1, 13, 1000, 70001)):
            r = random.Random(15000 + 10 * si + d)
            hp = rand_hp(solver, r)
            sched = r.choice(["none", "vary", "cyclic", "onecycle", "warmup", "pattern"])
            c.append(("%s_draw%d" % (solver, d), solver, hp, n, sched))
    return c


# --- validate.txt: what torch accepts ---

def torch_accepts(solver, hp):
    p = torch.from_numpy(draw(7, 0, 0, 5).copy())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = make_opt(solver, hp, [p])
            for k in range(1, 3):
                p.grad = torch.from_numpy(draw(7, 1, k, 5))
                opt.step()
        return True
    except (ValueError, RuntimeError):
        return False


def write_validate():
    sets = [
        ("rprop", dict(etas=(0.5, 1.2))),
        ("rprop", dict(etas=(0.5, 1e39))),            # overflows float32: torch raises
        ("rprop", dict(etas=(0.5, 3.4028235e38))),    # above FLT_MAX in double: raises too
        ("rprop", dict(etas=(0.5, 3.4e38))),          # below FLT_MAX: fine
        ("rprop", dict(etas=(1e-50, 1.2))),           # rounds to 0: accepted
        ("rprop", dict(etas=(0.99999999, 1.00000001))),  # both round to 1: accepted
        ("rprop", dict(etas=(0.0, 1.2))),
        ("rprop", dict(etas=(1.0, 1.2))),
        ("rprop", dict(etas=(0.5, 1.0))),
        ("rprop", dict(step_sizes=(0.0, 50.0))),      # minimum 0: accepted
        ("rprop", dict(step_sizes=(1e-6, 1e39))),     # overflows: raises
        ("rprop", dict(step_sizes=(1e39, 1e39))),
        ("rprop", dict(lr=1e39)),                     # step_size filled with lr: raises
        ("rprop", dict(lr=0.0)),
    ]
    lines = ["# solver key value torch(1 accepts, 0 raises); by gen_solver_ref.py, torch %s"
             % torch.__version__]
    for solver, hp in sets:
        (k, v), = dpt_keys(hp)
        lines.append("%s %s %s %d" % (solver, k, v, 1 if torch_accepts(solver, hp) else 0))
    with open(os.path.join(HERE, "ref", "validate.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # SequentialLR / scheduler-order warnings
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".txt"):
            os.remove(os.path.join(OUT, f))
    cases = fixed_cases()
    for i, (name, solver, hp, n, sched) in enumerate(cases):
        record(name, solver, hp, n, 1000 + i, sched)
    draws = draw_cases()
    for i, (name, solver, hp, n, sched) in enumerate(draws):
        record(name, solver, hp, n, 5000 + i, sched, DRAW_STEPS)
    write_validate()
    print("wrote %d cases to %s" % (len(cases) + len(draws), OUT))


if __name__ == "__main__":
    sys.exit(main())

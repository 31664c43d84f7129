#!/usr/bin/python3
"""Records PyTorch 1.13 learning-rate schedules for tests/optim/test_sched_replay.c.

Run with Debian's python3-torch:  /usr/bin/python3 tests/optim/gen_sched_ref.py
Writes tests/optim/ref/sched/<case>.txt (committed): the dpt scheduler name and its keys (as
dpt_optim_sched_set takes them), what dpt_sched_create needs (solver lr, whether the solver has
a momentum/beta1 and its value), the metric fed to ReduceLROnPlateau, then the lr (and momentum)
after construction and after each of STEPS scheduler.step() calls, printed with repr precision.
"""
import os
import sys

import torch
from torch.optim import lr_scheduler as S

STEPS = 200
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref", "sched")


def plateau_metric(i, case):
    # improves, plateaus, improves a little, then noisy: exercises patience and cooldown
    if case == "max":
        return min(0.9, 0.5 + 0.01 * i) if i < 60 else 0.9 + 0.0001 * ((i * 7) % 5)
    if i < 40:
        return 2.0 - 0.03 * i
    if i < 90:
        return 0.8 + 0.001 * ((i * 13) % 7)
    if i < 110:
        return 0.8 - 0.01 * (i - 90)
    return 0.6 + 0.002 * ((i * 5) % 3)


def cases():
    c = []

    def add(name, kind, keys, make, opt="sgd", lr=0.1, momentum=0.0, metric=None,
            run_steps=STEPS):
        c.append(dict(name=name, kind=kind, keys=keys, make=make, opt=opt, lr=lr,
                      momentum=momentum, metric=metric, run_steps=run_steps))

    add("step", "step", {"step_size": "7", "gamma": "0.5"},
        lambda o: S.StepLR(o, step_size=7, gamma=0.5))
    add("multistep", "multistep", {"milestones": "10,50,50,120", "gamma": "0.3"},
        lambda o: S.MultiStepLR(o, milestones=[10, 50, 50, 120], gamma=0.3))
    add("exponential", "exponential", {"gamma": "0.97"}, lambda o: S.ExponentialLR(o, 0.97))
    add("cosine", "cosine", {"T_max": "50", "eta_min": "0.001"},
        lambda o: S.CosineAnnealingLR(o, T_max=50, eta_min=0.001))
    add("cosine_warm_restarts", "cosine_warm_restarts", {"T_0": "10", "eta_min": "0.01"},
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10, eta_min=0.01))
    add("cosine_warm_restarts_mult2", "cosine_warm_restarts", {"T_0": "7", "T_mult": "2"},
        lambda o: S.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2))
    add("cyclic_triangular_momentum", "cyclic",
        {"base_lr": "0.01", "max_lr": "0.1", "step_size_up": "20"},
        lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=20), momentum=0.9)
    add("cyclic_triangular2", "cyclic",
        {"base_lr": "0.01", "max_lr": "0.1", "step_size_up": "15", "step_size_down": "25",
         "mode": "triangular2", "cycle_momentum": "0"},
        lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=15, step_size_down=25,
                             mode="triangular2", cycle_momentum=False))
    add("cyclic_exp_range", "cyclic",
        {"base_lr": "0.001", "max_lr": "0.05", "step_size_up": "10", "mode": "exp_range",
         "gamma": "0.99", "base_momentum": "0.85", "max_momentum": "0.95"},
        lambda o: S.CyclicLR(o, base_lr=0.001, max_lr=0.05, step_size_up=10, mode="exp_range",
                             gamma=0.99, base_momentum=0.85, max_momentum=0.95), momentum=0.9)
    add("onecycle_cos", "onecycle", {"max_lr": "0.1", "total_steps": "200"},
        lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=200), momentum=0.9)
    add("onecycle_linear_nomomentum", "onecycle",
        {"max_lr": "0.2", "total_steps": "200", "anneal_strategy": "linear",
         "cycle_momentum": "0", "pct_start": "0.25"},
        lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=200, anneal_strategy="linear",
                               cycle_momentum=False, pct_start=0.25))
    add("onecycle_three_phase_adam", "onecycle",
        {"max_lr": "0.01", "total_steps": "200", "three_phase": "1", "div_factor": "10",
         "final_div_factor": "100"},
        lambda o: S.OneCycleLR(o, max_lr=0.01, total_steps=200, three_phase=True, div_factor=10,
                               final_div_factor=100), opt="adam", lr=0.001)
    add("linear_warmup", "linear", {"start_factor": "0.25", "total_iters": "30"},
        lambda o: S.LinearLR(o, start_factor=0.25, total_iters=30))
    add("linear_decay", "linear", {"start_factor": "1", "end_factor": "0.1", "total_iters": "50"},
        lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=50))
    add("constant", "constant", {"factor": "0.5", "total_iters": "20"},
        lambda o: S.ConstantLR(o, factor=0.5, total_iters=20))
    add("polynomial", "polynomial", {"total_iters": "150", "power": "2"},
        lambda o: S.PolynomialLR(o, total_iters=150, power=2.0))
    add("plateau_min_rel", "plateau",
        {"patience": "5", "cooldown": "3", "min_lr": "0.001", "factor": "0.5"},
        lambda o: S.ReduceLROnPlateau(o, patience=5, cooldown=3, min_lr=0.001, factor=0.5),
        metric="min")
    add("plateau_max_abs", "plateau",
        {"mode": "max", "threshold_mode": "abs", "threshold": "0.01", "patience": "3"},
        lambda o: S.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.01,
                                      patience=3), metric="max")
    add("warmup_linear_cosine", "cosine",
        {"T_max": "190", "warmup": "linear", "warmup_iters": "10", "warmup_factor": "0.1"},
        lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=10),
                                     S.CosineAnnealingLR(o, T_max=190)], milestones=[10]))
    add("warmup_constant_exponential", "exponential",
        {"gamma": "0.98", "warmup": "constant", "warmup_iters": "5", "warmup_factor": "0.5"},
        lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.5, total_iters=5),
                                     S.ExponentialLR(o, gamma=0.98)], milestones=[5]))
    add("warmup_linear_step", "step",
        {"step_size": "30", "gamma": "0.5", "warmup": "linear", "warmup_iters": "20",
         "warmup_factor": "0.2"},
        lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.2, total_iters=20),
                                     S.StepLR(o, step_size=30, gamma=0.5)], milestones=[20]))

    # dpt's "none" is a constant lr: torch's LambdaLR with a factor of 1
    add("none", "none", {}, lambda o: S.LambdaLR(o, lambda e: 1.0), momentum=0.9)
    # base_lr left to the solver's lr (dpt's base_lr 0). torch 1.13's CyclicLR cycles only an
    # SGD-style 'momentum' (betas[0] came in torch 2.0, same formula and values); a dpt
    # scheduler never sees the solver kind, so this also stands for beta1 on Adam.
    add("cyclic_triangular2_solver_lr", "cyclic",
        {"max_lr": "0.006", "step_size_up": "25", "mode": "triangular2",
         "base_momentum": "0.85", "max_momentum": "0.95"},
        lambda o: S.CyclicLR(o, base_lr=0.001, max_lr=0.006, step_size_up=25,
                             mode="triangular2", base_momentum=0.85, max_momentum=0.95),
        lr=0.001, momentum=0.9)
    add("onecycle_linear_momentum", "onecycle",
        {"max_lr": "0.3", "total_steps": "200", "anneal_strategy": "linear", "pct_start": "0.4",
         "base_momentum": "0.8", "max_momentum": "0.9"},
        lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=200, anneal_strategy="linear",
                               pct_start=0.4, base_momentum=0.8, max_momentum=0.9),
        momentum=0.9)
    # 0-valued lengths mean the whole run (run_steps, less the warm-up)
    add("cosine_whole_run", "cosine", {"T_max": "0", "eta_min": "0.0005"},
        lambda o: S.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.0005))
    add("polynomial_whole_run", "polynomial", {"total_iters": "0", "power": "0.5"},
        lambda o: S.PolynomialLR(o, total_iters=STEPS, power=0.5))
    add("onecycle_three_phase_whole_run_cos", "onecycle", {"max_lr": "0.05", "three_phase": "1"},
        lambda o: S.OneCycleLR(o, max_lr=0.05, total_steps=STEPS, three_phase=True),
        momentum=0.95)
    # more warm-up chains, including the children whose constructors touch lr and momentum
    add("warmup_linear_onecycle", "onecycle",
        {"max_lr": "0.1", "total_steps": "0", "warmup": "linear", "warmup_iters": "10",
         "warmup_factor": "0.1"},
        lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=10),
                                     S.OneCycleLR(o, max_lr=0.1, total_steps=STEPS - 10)],
                                 milestones=[10]), momentum=0.9)
    add("warmup_constant_cyclic", "cyclic",
        {"base_lr": "0.001", "max_lr": "0.01", "step_size_up": "12", "warmup": "constant",
         "warmup_iters": "8", "warmup_factor": "0.5"},
        lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.5, total_iters=8),
                                     S.CyclicLR(o, base_lr=0.001, max_lr=0.01, step_size_up=12)],
                                 milestones=[8]), lr=0.002, momentum=0.95)
    add("warmup_linear_cosine_warm_restarts", "cosine_warm_restarts",
        {"T_0": "20", "T_mult": "2", "eta_min": "0.001", "warmup": "linear",
         "warmup_iters": "15", "warmup_factor": "0.05"},
        lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.05, total_iters=15),
                                     S.CosineAnnealingWarmRestarts(o, T_0=20, T_mult=2,
                                                                   eta_min=0.001)],
                                 milestones=[15]))
    add("warmup_linear_multistep", "multistep",
        {"milestones": "40,90,150", "gamma": "0.2", "warmup": "linear", "warmup_iters": "12",
         "warmup_factor": "0.01"},
        lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.01, total_iters=12),
                                     S.MultiStepLR(o, milestones=[40, 90, 150], gamma=0.2)],
                                 milestones=[12]))
    add("warmup_constant_polynomial_whole_run", "polynomial",
        {"total_iters": "0", "power": "3", "warmup": "constant", "warmup_iters": "25",
         "warmup_factor": "0.3"},
        lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.3, total_iters=25),
                                     S.PolynomialLR(o, total_iters=STEPS - 25, power=3.0)],
                                 milestones=[25]))
    add("warmup_linear_linear", "linear",
        {"start_factor": "1", "end_factor": "0.05", "total_iters": "120", "warmup": "linear",
         "warmup_iters": "7", "warmup_factor": "0.3"},
        lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.3, total_iters=7),
                                     S.LinearLR(o, start_factor=1.0, end_factor=0.05,
                                                total_iters=120)], milestones=[7]))
    return c


def momentum_of(opt):
    g = opt.param_groups[0]
    return g["betas"][0] if "betas" in g else g.get("momentum", 0.0)


def record(case):
    p = torch.zeros(3, requires_grad=True)
    if case["opt"] == "adam":
        opt = torch.optim.Adam([p], lr=case["lr"])
    else:
        opt = torch.optim.SGD([p], lr=case["lr"], momentum=case["momentum"])
    base_m = momentum_of(opt)
    has_m = 1 if (case["opt"] == "adam" or case["momentum"] > 0) else 0
    sched = case["make"](opt)
    lines = ["# recorded with torch %s by gen_sched_ref.py" % torch.__version__,
             "sched " + case["kind"]]
    lines += ["set %s %s" % kv for kv in case["keys"].items()]
    lines += ["base_lr %r" % case["lr"], "has_momentum %d" % has_m, "base_momentum %r" % base_m,
              "run_steps %d" % case["run_steps"]]
    lines.append("step 0 %r %r" % (opt.param_groups[0]["lr"], momentum_of(opt)))
    for i in range(1, STEPS + 1):
        p.grad = torch.zeros(3)
        opt.step()
        if case["metric"]:
            m = plateau_metric(i, case["metric"])
            sched.step(m)
            lines.append("step %d %r %r %r" % (i, opt.param_groups[0]["lr"], momentum_of(opt), m))
        else:
            sched.step()
            lines.append("step %d %r %r" % (i, opt.param_groups[0]["lr"], momentum_of(opt)))
    with open(os.path.join(OUT, case["name"] + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    import warnings
    warnings.simplefilter("ignore")
    os.makedirs(OUT, exist_ok=True)
    for case in cases():
        record(case)
    print("wrote %d cases to %s" % (len(cases()), OUT))


if __name__ == "__main__":
    sys.exit(main())

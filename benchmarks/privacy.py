"""Time one DP-SGD step: our torch.func version against opacus and against a per-sample Python loop.

    python benchmarks/privacy.py                          # CPU, chapter 24's MLP (64 -> 128 -> 10), batch 64
    python benchmarks/privacy.py --threads 1 --reps 50    # steadier numbers on a shared machine
    python benchmarks/privacy.py --device cuda --batch 1024

A step is: per-sample gradients, clipping to C = 1, the sum plus Gaussian noise (sigma = 1), division by the
batch size and an SGD update. Ours: ``mmtutorial.privacy.dp_sgd_step`` (``vmap(grad(...))``); opacus:
``GradSampleModule`` (per-sample gradients from hooks) and ``DPOptimizer``; the loop: one backward pass per
example. The candidates run in alternation in one process, so load from other processes slows them alike; the
median of ``--reps`` steps after ``--warmup`` is reported with the ratio ours / opacus (target <= 1.05).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from mmtutorial import privacy

from _timing import interleaved_medians, parse_args, print_header, print_ratio   # benchmarks/_timing.py


def main() -> None:
    args, device = parse_args(__doc__, batch=64, reps=30, warmup=3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    x = torch.randn(args.batch, 64, device=device)                             # (batch, 64) like 8 x 8 digits
    y = torch.randint(0, 10, (args.batch,), device=device)
    ours, looped = copy.deepcopy(model), copy.deepcopy(model)
    ours_optimizer = torch.optim.SGD(ours.parameters(), lr=0.1)
    loop_optimizer = torch.optim.SGD(looped.parameters(), lr=0.1)
    theirs = GradSampleModule(copy.deepcopy(model))
    theirs_optimizer = DPOptimizer(torch.optim.SGD(theirs.parameters(), lr=0.1), noise_multiplier=1.0,
                                   max_grad_norm=1.0, expected_batch_size=args.batch)

    def step_ours():
        privacy.dp_sgd_step(ours, F.cross_entropy, x, y, ours_optimizer, max_norm=1.0, noise_multiplier=1.0)

    def step_opacus():
        theirs_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(theirs(x), y).backward()
        theirs_optimizer.step()

    def step_loop():
        grads = {name: [] for name, _ in looped.named_parameters()}
        for i in range(len(x)):
            looped.zero_grad(set_to_none=True)
            F.cross_entropy(looped(x[i:i + 1]), y[i:i + 1]).backward()
            for name, p in looped.named_parameters():
                grads[name].append(p.grad.detach().clone())
        per_sample = {name: torch.stack(values) for name, values in grads.items()}
        noisy = privacy.noisy_mean_gradient(privacy.clip_per_sample(per_sample, 1.0), 1.0, 1.0)
        for name, p in looped.named_parameters():
            p.grad = noisy[name]
        loop_optimizer.step()

    steps = {"ours (torch.func)": step_ours, "opacus": step_opacus, "per-sample loop": step_loop}
    medians = interleaved_medians(steps, args.reps, args.warmup, device)
    print_header(args, device)
    for name, median in medians.items():
        print(f"{name:>17}: median DP-SGD step {median * 1e3:.2f} ms ({args.batch / median:.0f} examples/s)")
    print_ratio(medians, "ours (torch.func)", "opacus")


if __name__ == "__main__":
    main()

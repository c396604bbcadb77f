"""What the benchmarks share: their command line and the alternating timing loop (interleaved_medians).

Each benchmark builds its candidates (ours and a reference library's, with the same configuration, weights and
inputs), then calls :func:`time_training_steps`: the candidates run in alternation (a, b, a, b, ...) in one
process, so load from other processes slows them alike, and the median of ``reps`` steps after ``warmup`` is
the figure.  A step is forward + loss, backward, optimiser step; on CUDA the clock waits for the device.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch


def parse_args(description: str, batch: int, reps: int = 20, warmup: int = 3) -> tuple[argparse.Namespace, torch.device]:
    """``--device --batch --reps --warmup --threads`` with this benchmark's defaults; sets the thread count."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, torch.device(args.device)


def sync(device: torch.device | None) -> None:
    """Wait for the device, so that the clock measures the work and not its launch."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(steps: dict[str, Callable[[], object]], reps: int, warmup: int,
                        device: torch.device | None = None) -> dict[str, float]:
    """Median seconds of each ``steps[name]()``, the candidates run in alternation (a, b, a, b, ...) so that
    load from other processes slows them alike; the first ``warmup`` rounds are not timed."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(warmup + reps):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def time_training_steps(losses: dict[str, Callable[[], torch.Tensor]], optimizers: dict[str, torch.optim.Optimizer],
                        args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Median seconds per training step of each candidate (``losses[name]()`` computes its loss, then
    ``optimizers[name]`` steps), the candidates interleaved."""
    def training_step(name: str) -> Callable[[], None]:
        def step() -> None:
            loss = losses[name]()
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
        return step

    return interleaved_medians({name: training_step(name) for name in losses}, args.reps, args.warmup, device)


def print_header(args: argparse.Namespace, device: torch.device, unit: str = "") -> None:
    print(f"device {device}, batch {args.batch}{unit}, threads {torch.get_num_threads()}, {args.reps} reps")


def print_steps(args: argparse.Namespace, medians: dict[str, float], parameters: dict[str, int],
                what: str = "parameters", unit: str = "images") -> None:
    """One line per candidate: its parameter count, median step and throughput."""
    width = max(len(name) for name in medians)
    for name, median in medians.items():
        print(f"{name:>{width}}: {parameters[name]:,} {what}, median step {median * 1e3:.2f} ms "
              f"({args.batch / median:.0f} {unit}/s)")


def print_ratio(medians: dict[str, float], ours: str, theirs: str, target: float = 1.05) -> float:
    ratio = medians[ours] / medians[theirs]
    print(f"ratio {ours} / {theirs}: {ratio:.3f} (target <= {target})")
    return ratio

#!/usr/bin/env python
"""Convolution three ways: loops over output positions, im2col + one matrix product, and F.conv2d.

Chapter 10 asserts that the three compute the same FLOPs and only prints their times; this script measures
the times (best of --repeats, alternating between the candidates so that machine load hits each alike).

    python benchmarks/convolution.py [--batch 16] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mmtutorial.encoders import vision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, 28, 28, generator=generator)      # (B, 1, 28, 28)
    weight = torch.randn(32, 1, 3, 3, generator=generator)                # the first block of chapter 10's CNN
    candidates = {"loops": lambda: vision.conv2d_loops(images, weight, padding=1),
                  "im2col": lambda: vision.conv2d_im2col(images, weight, padding=1),
                  "F.conv2d": lambda: F.conv2d(images, weight, padding=1)}
    best = {name: float("inf") for name in candidates}
    for _ in range(args.repeats + 1):                                     # the first round warms up
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:>8}: {1e3 * seconds:8.2f} ms  ({best['loops'] / seconds:6.1f}x the loops' speed)")


if __name__ == "__main__":
    main()

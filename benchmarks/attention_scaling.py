#!/usr/bin/env python
"""How the time of attention grows with the sequence length: the exponent alpha of time ~ n^alpha.

Chapter 6 asserts the FLOP count of attention (exactly 8 n d^2 + 4 n^2 d) and only prints the measured
time, because a timing depends on the machine and its load.  This script measures the exponent: the slope of
log(time) against log(n) for F.scaled_dot_product_attention, best of --repeats calls per length.

    python benchmarks/attention_scaling.py [--device cpu|cuda] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


def best_seconds(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats + 1):                       # the first call is a warm-up
        if q.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v)
        if q.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    seconds = []
    for n in args.lengths:
        q, k, v = torch.randn(3, 1, 4, n, 64, device=device).unbind(0)      # (1, heads, n, head_dim) each
        seconds.append(best_seconds(q, k, v, args.repeats))
        print(f"n = {n:5d}: {1e3 * seconds[-1]:9.3f} ms")
    exponent = np.polyfit(np.log(args.lengths), np.log(seconds), 1)[0]
    print(f"time grows like n^{exponent:.2f} on {device} with {args.threads} thread(s) (the FLOPs grow like n^2)")


if __name__ == "__main__":
    main()

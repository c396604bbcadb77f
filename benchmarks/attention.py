"""Time forward + backward of our attention against PyTorch's, in one process, on the same inputs.

    python benchmarks/attention.py                      # CPU, float32, batch 8, seq 128 and 256, dim 256, 8 heads
    python benchmarks/attention.py --device cuda --dtype bf16 --seq 512 1024
    python benchmarks/attention.py --causal --reps 50 --threads 1

Rows (each timed as forward + backward, median of --reps runs after --warmup runs):
  sdpa from scratch   mmtutorial.nn.scaled_dot_product_attention   vs F.scaled_dot_product_attention
  MHA fused           MultiHeadAttention(use_fused=True)           vs nn.MultiheadAttention(batch_first=True)
  MHA from scratch    MultiHeadAttention(use_fused=False)          vs nn.MultiheadAttention(batch_first=True)
Both MHAs hold the same weights and get the same input; torch's is called with need_weights=False (its
default, True, would route it through the slow path that materialises the weights).  The candidates of
a row are run in alternation, so load from other processes slows both alike.  Target: ratio <= 1.05 for
the fused rows; the from-scratch rows show what the fused kernels buy.
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mmtutorial.nn import MultiHeadAttention, scaled_dot_product_attention
from mmtutorial.zoo.torch_nn import mha_from_torch

from _timing import interleaved_medians   # benchmarks/_timing.py

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def forward_backward(forward: Callable[[], torch.Tensor], leaves: list[torch.Tensor], grad: torch.Tensor):
    def run() -> None:
        for leaf in leaves:
            leaf.grad = None
        forward().backward(grad)
    return run


def benchmark(batch: int, seq: int, dim: int, heads: int, dtype: torch.dtype, device: torch.device,
              causal: bool, warmup: int, reps: int) -> list[tuple[str, float, float]]:
    torch.manual_seed(0)
    head_dim = dim // heads
    rows = []

    # (a) the attention core on (batch, heads, seq, head_dim) tensors
    q, k, v = (torch.randn(batch, heads, seq, head_dim, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))
    grad = torch.randn(batch, heads, seq, head_dim, device=device, dtype=dtype)
    times = interleaved_medians({
        "ours": forward_backward(lambda: scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], grad),
        "torch": forward_backward(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], grad),
    }, reps, warmup, device)
    rows.append(("sdpa from scratch", times["ours"], times["torch"]))

    # (b) multi-head attention modules with the same weights, self-attention on (batch, seq, dim)
    reference = nn.MultiheadAttention(dim, heads, batch_first=True, device=device, dtype=dtype)
    fused = mha_from_torch(reference, use_fused=True)
    scratch = mha_from_torch(reference, use_fused=False)
    x = torch.randn(batch, seq, dim, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(batch, seq, dim, device=device, dtype=dtype)
    # torch's MHA takes causality as a mask (True = blocked) plus the is_causal hint
    blocked = torch.ones(seq, seq, dtype=torch.bool, device=device).triu(1) if causal else None

    def torch_mha() -> torch.Tensor:
        return reference(x, x, x, need_weights=False, attn_mask=blocked, is_causal=causal)[0]

    def leaves(module: nn.Module) -> list[torch.Tensor]:
        return [x, *module.parameters()]

    times = interleaved_medians({
        "fused": forward_backward(lambda: fused(x, is_causal=causal), leaves(fused), grad),
        "scratch": forward_backward(lambda: scratch(x, is_causal=causal), leaves(scratch), grad),
        "torch": forward_backward(torch_mha, leaves(reference), grad),
    }, reps, warmup, device)
    rows.append(("MHA fused", times["fused"], times["torch"]))
    rows.append(("MHA from scratch", times["scratch"], times["torch"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--causal", action="store_true", help="causal attention in every row")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (1 gives steadier numbers on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but CUDA is not available")
    if args.dim % args.heads:
        parser.error(f"--dim {args.dim} must be divisible by --heads {args.heads}")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {device} ({name}), {args.dtype}, batch {args.batch}, dim {args.dim}, "
          f"{args.heads} heads, causal={args.causal}; forward+backward, median of {args.reps}")
    header = f"{'case':<18} {'seq':>5} {'ours ms':>9} {'torch ms':>9} {'ours/torch':>10}"
    print(header)
    print("-" * len(header))
    for seq in args.seq:
        for case, ours, reference in benchmark(args.batch, seq, args.dim, args.heads, dtype, device, args.causal,
                                               args.warmup, args.reps):
            print(f"{case:<18} {seq:>5} {ours * 1e3:>9.3f} {reference * 1e3:>9.3f} {ours / reference:>10.3f}")


if __name__ == "__main__":
    main()

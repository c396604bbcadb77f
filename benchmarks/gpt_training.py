"""Tokens per second of GPT training (forward + backward + AdamW step) on the available device.

    python benchmarks/gpt_training.py                          # chapter 7's model on the CPU (or CUDA if present)
    python benchmarks/gpt_training.py --device cuda --dim 768 --layers 12 --heads 12 --seq 1024 --batch 8
    python benchmarks/gpt_training.py --threads 2 --steps 20   # the book's 2-core CPU budget

On CUDA the step runs under bf16 autocast (as ``mmt.training.fit`` does) unless ``--amp off``; ``--amp bf16``
also autocasts on the CPU (chapter 22: on a CPU without bf16 matrix units it may be no faster); attention
goes through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels).  Random token ids
are used: the speed of a step does not depend on the text.  Prints one line per configuration and, with
``--json PATH``, writes the numbers to a file.  Reported: median seconds per step over ``--steps`` steps
after ``--warmup`` steps, tokens/second = batch * seq / median, and the achieved FLOP rate from
``mmtutorial.models.gpt.training_flops``: 6 N + 12 L T d FLOPs per token (N: the weights of every matrix
product, the LM head included; chapter 22 checks it against ``FlopCounterMode``).
"""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

import torch

import mmtutorial as mmt
from mmtutorial.models.gpt import GPT, GPTConfig, training_flops

from _timing import interleaved_medians   # benchmarks/_timing.py


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: mmt.get_device())")
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                        help="auto: bf16 autocast on CUDA only; bf16: on any device; off: float32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = mmt.get_device(args.device)
    config = GPTConfig(vocab_size=args.vocab, max_seq_len=args.seq, dim=args.dim, num_layers=args.layers,
                       num_heads=args.heads)
    torch.manual_seed(0)
    model = GPT(config).to(device)
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    use_amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else nullcontext
    idx = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=device)
    inputs, targets = idx[:, :-1], idx[:, 1:]                       # (batch, seq) each

    def step() -> float:
        with autocast():
            _, loss = step_model(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    median = interleaved_medians({"step": step}, args.steps, args.warmup, device)["step"]
    tokens_per_second = args.batch * args.seq / median
    flops_per_token = training_flops(config, num_tokens=1, seq_len=args.seq)
    result = {"device": str(device), "amp_bf16": use_amp, "compile": args.compile,
              "threads": torch.get_num_threads(), "config": vars(config), "batch": args.batch,
              "parameters": model.num_parameters(), "seconds_per_step": median,
              "tokens_per_second": tokens_per_second, "tflops": tokens_per_second * flops_per_token / 1e12}
    print(f"{device} (bf16 autocast: {use_amp}, {torch.get_num_threads()} threads): "
          f"d={args.dim} L={args.layers} T={args.seq} batch={args.batch}, {model.num_parameters():,} params: "
          f"{median * 1e3:.1f} ms/step, {tokens_per_second:,.0f} tokens/s, {result['tflops']:.3f} TFLOP/s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()

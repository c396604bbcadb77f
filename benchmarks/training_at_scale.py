"""Chapter 22's trade-offs in time: a GPT training step with and without activation checkpointing, in float32
and in bf16 autocast, and the memory each keeps for backward.

    python benchmarks/training_at_scale.py                          # CPU, a small GPT (6 blocks, width 128)
    python benchmarks/training_at_scale.py --threads 1 --reps 30    # steadier numbers on a shared machine
    python benchmarks/training_at_scale.py --device cuda --batch 64

The four candidates share one configuration, initial weights and batch of byte tokens (vocabulary 256, 128
positions). A step is forward + next-token loss, backward, AdamW step; the candidates run in alternation in one
process (benchmarks/_timing.py), so load from other processes slows them alike. Reported: the median step of
each, the bytes autograd saved for backward (``mmtutorial.training.saved_tensor_bytes``; on CUDA also the peak
allocated memory), and the ratio checkpointed / plain (recomputing each block's forward costs about a third
more; expected <= 1.5).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from mmtutorial.models.gpt import GPT, GPTConfig
from mmtutorial.training import saved_tensor_bytes

from _timing import parse_args, print_header, print_ratio, print_steps, time_training_steps  # benchmarks/_timing.py


def main() -> None:
    args, device = parse_args(__doc__, batch=16, reps=10, warmup=2)
    tokens = torch.randint(0, 256, (args.batch, 128), generator=torch.Generator().manual_seed(0)).to(device)
    models, optimizers, losses, saved = {}, {}, {}, {}
    for checkpointing in (False, True):
        for amp in (False, True):
            name = ("checkpointed" if checkpointing else "plain") + (" bf16" if amp else "")
            torch.manual_seed(0)
            config = GPTConfig(vocab_size=256, max_seq_len=128, dim=128, num_layers=6, num_heads=4,
                               activation_checkpointing=checkpointing)
            model = models[name] = GPT(config).to(device).train()
            optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def loss(model=model, amp=amp):
                context = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
                with context:
                    return model(tokens, tokens)[1]

            losses[name] = loss
            saved[name], _ = saved_tensor_bytes(loss, model.parameters())
    medians = time_training_steps(losses, optimizers, args, device)
    print_header(args, device, " sequences of 128 bytes")
    print_steps(args, medians, {name: saved[name] // 1000 for name in medians}, what="kB saved for backward",
                unit="sequences")
    print_ratio(medians, "checkpointed", "plain", target=1.5)
    print_ratio(medians, "plain bf16", "plain", target=1.0)


if __name__ == "__main__":
    main()

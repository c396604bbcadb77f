"""Time one LoRA fine-tuning step of our LoRA-wrapped ViT against the same ViT wrapped by peft.

    python benchmarks/lora.py                          # CPU, the chapter's config
    python benchmarks/lora.py --threads 1 --reps 30    # steadier numbers on a shared machine
    python benchmarks/lora.py --device cuda --batch 1024

Both start from one copy of the chapter's classifier (chapter 11's tiny ViT shape: 7 px patches, 4 blocks of width
64, 4 heads, MLP 128, the class token read by a 10-class head), wrapped with the chapter's adapters (rank 1, alpha
4, on every ``qkv_proj`` and ``fc``) and a trainable head: ours by ``mmtutorial.nn.apply_lora``, peft's by
``get_peft_model`` with ``modules_to_save=["head"]``; peft's A and B are copied into ours so both compute the same
function. A step is: forward, cross-entropy, backward, AdamW step over the trainable parameters. The candidates run
in alternation (a, b, a, b, ...) in one process; the median of ``--reps`` steps after ``--warmup`` is reported with
the ratio ours / peft (target <= 1.05).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model

from mmtutorial.models.mae import mae_classifier
from mmtutorial.nn import apply_lora, trainable_parameter_count
from mmtutorial.zoo.fashion_mae import fashion_mae_config

from _timing import parse_args, print_header, print_ratio, print_steps, time_training_steps  # benchmarks/_timing.py


def build(device, rank: int = 1, alpha: float = 4.0, targets=("qkv_proj", "fc")):
    torch.manual_seed(0)
    base = mae_classifier(fashion_mae_config(), num_classes=10, pool="cls")
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                                            modules_to_save=["head"]))
    ours = apply_lora(copy.deepcopy(base), targets, rank=rank, alpha=alpha, trainable="head")
    with torch.no_grad():
        for name, module in theirs.base_model.model.named_modules():
            if name.endswith(targets):
                ours.get_submodule(name).lora_A.copy_(module.lora_A["default"].weight)
    return ours.to(device), theirs.to(device)


def main() -> None:
    args, device = parse_args(__doc__, batch=64, reps=30, warmup=3)
    ours, theirs = build(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, 28, 28, generator=generator).to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    models = {"ours": ours, "peft": theirs}
    optimizers = {name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
                  for name, model in models.items()}
    losses = {name: (lambda model=model: F.cross_entropy(model(images), labels)) for name, model in models.items()}
    medians = time_training_steps(losses, optimizers, args, device)
    print_header(args, device)
    trainable = {"ours": trainable_parameter_count(ours)[0], "peft": theirs.get_nb_trainable_parameters()[0]}
    print_steps(args, medians, trainable, what="trainable parameters")
    print_ratio(medians, "ours", "peft")


if __name__ == "__main__":
    main()

"""Tokens per second of a VLM training step (chapter 17): frozen ViT -> projector -> GPT, AdamW on the
projector and the language model, loss on the answer tokens only.

    python benchmarks/vlm.py                        # the chapter's sizes (CLIP-scenes tower: 17 image tokens)
    python benchmarks/vlm.py --threads 2 --steps 20 # the book's 2-core CPU budget
    python benchmarks/vlm.py --device cuda --dim 512 --layers 8 --heads 8 --batch 64

Three step kinds, alternating so that a busy machine slows them alike: ``features`` (image tokens read once
from the frozen encoder and cached, as the chapter trains), ``encoder`` (the frozen encoder runs in every
step) and ``finetune`` (the encoder is trained too).  Tokens per second count every position the language
model processes (image tokens + text).  On CUDA the step runs under bf16 autocast unless ``--amp off``.
Random weights and inputs: the speed does not depend on them.  ``--json PATH`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

import torch

import mmtutorial as mmt
from mmtutorial.models.vit import ViT, ViTConfig
from mmtutorial.models.vlm import IGNORE_INDEX, VLM, VLMConfig

from _timing import interleaved_medians   # benchmarks/_timing.py


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--vocab", type=int, default=77)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--text", type=int, default=140, help="text tokens per sequence (a scene's conversation)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", choices=("auto", "off"), default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = mmt.get_device(args.device)
    vit_config = ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=0, dim=64, num_layers=2,
                           num_heads=4, pool="cls")
    config = VLMConfig(vocab_size=args.vocab, max_seq_len=vit_config.num_tokens + args.text, dim=args.dim,
                       num_layers=args.layers, num_heads=args.heads, vision_dim=vit_config.dim,
                       num_image_tokens=vit_config.num_tokens)
    use_amp = args.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, 32, 32, generator=generator).to(device)
    tokens = torch.randint(0, args.vocab, (args.batch, args.text), generator=generator).to(device)
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, ::7] = tokens[:, ::7]                                  # about one answer token in seven

    models = {}
    for kind in ("features", "encoder", "finetune"):
        torch.manual_seed(0)
        model = VLM(config, ViT(vit_config), freeze_vision=kind != "finetune").to(device).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        with torch.no_grad():
            features = model.encode_images(images)                    # (batch, 17, 64)
        models[kind] = (model, optimizer, features)

    def step(kind: str) -> None:
        model, optimizer, features = models[kind]
        with autocast():
            if kind == "features":
                loss = model(tokens, image_features=features, targets=targets)[1]
            else:
                loss = model(tokens, images=images, targets=targets)[1]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    medians = interleaved_medians({kind: (lambda kind=kind: step(kind)) for kind in models}, args.steps, args.warmup,
                                  device)                             # the kinds alternate
    positions = args.batch * (config.num_image_tokens + args.text)
    result = {"device": str(device), "torch_threads": torch.get_num_threads(), "batch": args.batch,
              "positions_per_step": positions, "amp": use_amp}
    for kind, median in medians.items():
        result[kind] = {"seconds_per_step": median, "tokens_per_second": positions / median,
                        "images_per_second": args.batch / median}
        print(f"{kind:9s} {median * 1e3:8.1f} ms/step  {positions / median:12,.0f} tokens/s  "
              f"{args.batch / median:10,.1f} images/s  ({device}, {torch.get_num_threads()} threads)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()

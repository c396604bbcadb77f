"""Time forward + backward of our CLIP against open_clip's, same configuration, same weights, same inputs, one process.

    python benchmarks/clip.py                              # CPU, float32, a medium config (under a minute)
    python benchmarks/clip.py --threads 1 --reps 20        # steadier numbers on a shared machine
    python benchmarks/clip.py --device cuda --dtype bf16 --vit-b-32 --batch 64

Each step is: both towers forward on a batch of images and texts, the symmetric InfoNCE loss
(``mmtutorial.models.clip.clip_loss`` vs ``open_clip.loss.ClipLoss``), backward.  The two models hold the
same weights (loaded through ``mmtutorial.zoo.openclip.load_openclip_state_dict``) and the first step checks
that their losses agree.  The candidates run in alternation (a, b, a, b, ...) so that load from other
processes slows both alike; the median of ``--reps`` steps after ``--warmup`` is reported.
Target: ours / open_clip <= 1.05.
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext

import open_clip
import torch
from open_clip.loss import ClipLoss

from mmtutorial.models.clip import CLIP, clip_loss
from mmtutorial.zoo.openclip import clip_config_from_openclip, load_openclip_state_dict

from _timing import interleaved_medians   # benchmarks/_timing.py

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


def medium_config() -> dict:
    """An open_clip config dict: 64 px images in 8 px patches (65 tokens), 4 x 256 towers, 32-token texts."""
    return {"embed_dim": 256,
            "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 256, "layers": 4, "head_width": 64},
            "text_cfg": {"context_length": 32, "vocab_size": 4096, "width": 256, "heads": 4, "layers": 4}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES),
                        help="fp32/fp64: the models' dtype; bf16: float32 weights under bf16 autocast (CUDA)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vit-b-32", action="store_true", help="the real ViT-B-32 configuration (slow on a CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but CUDA is not available")
    autocast = args.dtype == "bf16"
    weight_dtype = torch.float32 if autocast else DTYPES[args.dtype]

    model_cfg = open_clip.get_model_config("ViT-B-32") if args.vit_b_32 else medium_config()
    torch.manual_seed(0)
    reference = open_clip.CLIP(model_cfg["embed_dim"], model_cfg["vision_cfg"], model_cfg["text_cfg"])
    reference = reference.to(device=device, dtype=weight_dtype).train()
    ours = CLIP(clip_config_from_openclip(model_cfg)).to(device=device, dtype=weight_dtype).train()
    load_openclip_state_dict(ours, reference.state_dict())
    config = ours.config

    generator = torch.Generator().manual_seed(1)
    size = config.vision.image_size
    images = torch.randn(args.batch, 3, size, size, generator=generator).to(device=device, dtype=weight_dtype)
    # open_clip's text tower always reads the full context (its causal mask has that size)
    tokens = torch.randint(1, config.text.vocab_size - 1, (args.batch, config.text.max_seq_len), generator=generator)
    lengths = torch.randint(4, config.text.max_seq_len + 1, (args.batch,), generator=generator)
    tokens[torch.arange(args.batch), lengths - 1] = config.text.vocab_size - 1           # EOT: the largest id
    tokens[torch.arange(config.text.max_seq_len)[None, :] >= lengths[:, None]] = 0        # padding
    tokens = tokens.to(device)
    reference_loss = ClipLoss()
    context = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast else nullcontext

    def step_ours() -> torch.Tensor:
        ours.zero_grad(set_to_none=True)
        with context():
            loss = clip_loss(*ours(images, tokens))
        loss.backward()
        return loss.detach()

    def step_reference() -> torch.Tensor:
        reference.zero_grad(set_to_none=True)
        with context():
            loss = reference_loss(*reference(images, tokens))
        loss.backward()
        return loss.detach()

    first_ours, first_reference = step_ours(), step_reference()
    tolerance = 1e-2 if autocast else 1e-4
    torch.testing.assert_close(first_ours.float(), first_reference.float(), rtol=tolerance, atol=tolerance)

    medians = interleaved_medians({"ours": step_ours, "open_clip": step_reference}, args.reps, args.warmup, device)
    ours_ms, reference_ms = medians["ours"] * 1e3, medians["open_clip"] * 1e3
    threads = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, open_clip {open_clip.__version__} on {device} ({threads}), {args.dtype}, "
          f"batch {args.batch}, {ours.num_parameters():,} parameters "
          f"({'ViT-B-32' if args.vit_b_32 else 'medium config'}); forward + loss + backward, median of {args.reps}")
    print(f"losses agree: ours {float(first_ours):.6f}, open_clip {float(first_reference):.6f}")
    print(f"{'ours ms':>9} {'open_clip ms':>13} {'ours/open_clip':>15}")
    print(f"{ours_ms:>9.1f} {reference_ms:>13.1f} {ours_ms / reference_ms:>15.3f}")


if __name__ == "__main__":
    main()

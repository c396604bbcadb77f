"""Time one MAE pretraining step of our MAE against transformers' ViTMAEForPreTraining.

    python benchmarks/mae.py                          # CPU, the chapter's config
    python benchmarks/mae.py --threads 1 --reps 30    # steadier numbers on a shared machine
    python benchmarks/mae.py --device cuda --batch 1024

Both models get the chapter's configuration, ``fashion_mae_config()`` (28 px grey images, 7 px patches, encoder 4
blocks of width 64 with 4 heads and MLP 128, a 1-block decoder of width 32, mask ratio 0.75, per-patch normalised
targets) and the same weights (ours loaded from theirs by ``mmtutorial.zoo.vitmae``), the same images and the same
``noise``, so both mask the same patches. A step is: forward, the masked-patch loss, backward, AdamW step. The
candidates run in alternation (a, b, a, b, ...) in one process, so load from other processes slows both alike; the
median of ``--reps`` steps after ``--warmup`` is reported with the ratio ours / transformers (target <= 1.05).
"""
from __future__ import annotations

import torch
from transformers import ViTMAEForPreTraining

from mmtutorial.models.mae import MAE, sincos_position_embedding_2d
from mmtutorial.zoo.fashion_mae import fashion_mae_config
from mmtutorial.zoo.vitmae import load_vitmae, vitmae_config

from _timing import parse_args, print_header, print_ratio, print_steps, time_training_steps  # benchmarks/_timing.py


def build(device):
    config = fashion_mae_config()
    torch.manual_seed(0)
    theirs = ViTMAEForPreTraining(vitmae_config(config))
    with torch.no_grad():   # a fresh transformers ViTMAE leaves its fixed position tables at zero
        grid = config.grid_size
        theirs.vit.embeddings.position_embeddings.copy_(sincos_position_embedding_2d(grid, config.dim)[None])
        theirs.decoder.decoder_pos_embed.copy_(sincos_position_embedding_2d(grid, config.decoder_dim)[None])
    ours = load_vitmae(MAE(config), theirs)
    return ours.to(device), theirs.to(device), config


def main() -> None:
    args, device = parse_args(__doc__, batch=256, reps=20, warmup=3)
    ours, theirs, config = build(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, 28, 28, generator=generator).to(device)   # standardised pixels
    noise = torch.rand(args.batch, config.num_patches, generator=generator).to(device)
    optimizers = {"ours": torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-4),
                  "transformers": torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-4)}
    steps = {"ours": lambda: ours(images, noise=noise).loss,
             "transformers": lambda: theirs(pixel_values=images, noise=noise).loss}
    medians = time_training_steps(steps, optimizers, args, device)
    parameters = {"ours": sum(p.numel() for p in ours.parameters()),
                  "transformers": sum(p.numel() for p in theirs.parameters())}
    print_header(args, device)
    print_steps(args, medians, parameters)
    print_ratio(medians, "ours", "transformers")


if __name__ == "__main__":
    main()

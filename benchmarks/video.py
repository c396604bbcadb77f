"""Time one training step of our (2+1)D network against the same network built from torchvision's Conv2Plus1D.

    python benchmarks/video.py                          # CPU, the chapter's config
    python benchmarks/video.py --threads 1 --reps 30    # steadier numbers on a shared machine
    python benchmarks/video.py --device cuda --batch 256

Ours is chapter 21's ``Conv2Plus1dNet`` (three (2+1)D blocks of widths 8, 16, 32 on 8 frames of 20 x 20 pixels);
the reference swaps each of its ``Conv2Plus1d`` blocks for ``torchvision.models.video.resnet.Conv2Plus1D`` with
the same weights (R(2+1)D's block), so both compute the same function (checked before timing). A step is
forward, cross-entropy, backward, AdamW step, on the same clips. The candidates run in alternation
(a, b, a, b, ...) in one process, so load from other processes slows both alike; the median of ``--reps``
steps after ``--warmup`` is reported with the ratio ours / torchvision (target <= 1.05).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torchvision.models.video.resnet import Conv2Plus1D

from mmtutorial.data import clips
from mmtutorial.models.video import Conv2Plus1d, Conv2Plus1dNet
from mmtutorial.zoo.scenes_video import conv2plus1d_config

from _timing import parse_args, print_header, print_ratio, print_steps, time_training_steps  # benchmarks/_timing.py

KEY_MAP = {"spatial.weight": "0.weight", "norm.weight": "1.weight", "norm.bias": "1.bias",
           "norm.running_mean": "1.running_mean", "norm.running_var": "1.running_var",
           "norm.num_batches_tracked": "1.num_batches_tracked", "temporal.weight": "3.weight"}


def torchvision_twin(ours: Conv2Plus1dNet) -> Conv2Plus1dNet:
    """A deep copy of ``ours`` whose (2+1)D blocks are torchvision's ``Conv2Plus1D`` with the same weights."""
    twin = copy.deepcopy(ours)
    for index, module in enumerate(twin.features):
        if isinstance(module, Conv2Plus1d):
            block = Conv2Plus1D(module.spatial.in_channels, module.temporal.out_channels, module.spatial.out_channels)
            block.load_state_dict({KEY_MAP[k]: v for k, v in module.state_dict().items()})
            twin.features[index] = block
    return twin


def main() -> None:
    args, device = parse_args(__doc__, batch=64, reps=20, warmup=3)
    torch.manual_seed(0)
    ours = Conv2Plus1dNet(conv2plus1d_config()).to(device)
    theirs = torchvision_twin(ours).to(device)
    videos, labels = clips.to_tensors(clips.direction_clips(args.batch, split="train", seed=0))
    videos, labels = videos.to(device), labels.to(device)               # (batch, T, 3, H, W), (batch,)
    ours.eval(); theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(videos), theirs(videos))        # the same function before timing
    ours.train(); theirs.train()
    models = {"ours": ours, "torchvision": theirs}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}
    losses = {name: (lambda model=model: F.cross_entropy(model(videos), labels)) for name, model in models.items()}
    medians = time_training_steps(losses, optimizers, args, device)
    print_header(args, device, " clips")
    print_steps(args, medians, {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()},
                unit="clips")
    print_ratio(medians, "ours", "torchvision")


if __name__ == "__main__":
    main()

"""Chapter 17's vision encoder: a small CNN whose tokens are *taught* what sits in each cell of the image.

Chapter 15's CLIP tower was trained to match whole captions, so its patch tokens keep colour well but
shape, counts and positions only blurred (a linear probe: colour ~99 %, shape ~71 %, counts ~83 %).  A
VLM can only answer from what its frozen encoder keeps.  The scenes give exact labels for free, so this
encoder is pretrained on a supervised *dense* task, then frozen (as LLaVA freezes its CLIP encoder):

* every cell token (a 4 x 4 grid of 8 x 8-pixel cells) predicts the colour, shape and size of the object
  centred in its cell, each with a "none" class (three softmaxes, cross-entropy): "what is here";
* the class token predicts how many objects there are in all, of each colour and of each shape (11
  ten-way softmaxes, cross-entropy): "how many".

The architecture is :class:`mmtutorial.models.vlm.GridCNN` (three of chapter 10's conv blocks, 32 px -> 4 x 4
cells); it gives the same token shape as the CLIP tower (17 tokens of width 64), so the VLM takes either one
unchanged.  Convolutions are the cheap choice here: three 3 x 3 conv blocks learn the small shapes in
seconds on a CPU, where a ViT embeds each 8 x 8 patch with one linear map.  ``load_or_train_scenes_grid_encoder()``
is "load if cached, else train, and say which" (cache name ``"grid-encoder-scenes"``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import get_device, scale
from ..data import scenes
from ..models.vlm import GridCNN, GridCNNConfig
from ..training import History, TrainConfig, fit, load_or_train

__all__ = ["GRID", "CELL_FIELDS", "GridEncoderRecipe", "grid_encoder_recipe", "grid_targets", "GridEncoder",
           "ScenesGridEncoder", "load_or_train_scenes_grid_encoder", "pretraining_accuracy"]

GRID = 4                                               # cells per side: 32 px / 8 px patches
CELL_FIELDS = {"color": ("none", *scenes.COLORS), "shape": ("none", *scenes.SHAPES),
               "size": ("none", *scenes.SIZES)}                           # what a cell holds, "none" if empty
_COUNT_GROUPS = 1 + len(scenes.COLORS) + len(scenes.SHAPES)                 # all, per colour, per shape
_COUNT_CLASSES = scenes.MAX_OBJECTS + 1                                      # 0 … 9


@dataclass
class GridEncoderRecipe:
    """Data size and training settings (QUICK: fewer scenes and epochs)."""
    train_count: int
    epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    seed: int = 0
    channels: tuple[int, ...] = (32, 64, 64)


def grid_encoder_recipe() -> GridEncoderRecipe:
    """Full: 6,000 scenes x 6 epochs; QUICK: 2,500 x 4."""
    return GridEncoderRecipe(train_count=scale(full=6_000, quick=2_500), epochs=scale(full=6, quick=4))


def grid_targets(scene_list: Sequence[scenes.Scene]) -> tuple[Tensor, Tensor]:
    """Exact labels: cells (n, 16, 3) long, the colour, shape and size index (0 = none) of the object
    centred in each cell (row-major cells; objects keep a gap, so two centres share a cell only rarely and
    the last one drawn is kept), counts (n, 11) long (objects in all, of each colour, of each shape)."""
    colors, shapes = list(scenes.COLORS), list(scenes.SHAPES)
    sizes = list(scenes.SIZES)
    cells = torch.zeros(len(scene_list), GRID * GRID, len(CELL_FIELDS), dtype=torch.long)
    counts = torch.zeros(len(scene_list), _COUNT_GROUPS, dtype=torch.long)
    for n, scene in enumerate(scene_list):
        cell_size = scene.image_size // GRID
        for obj in scene.objects:
            x, y = obj.center
            cell = min(y // cell_size, GRID - 1) * GRID + min(x // cell_size, GRID - 1)
            cells[n, cell] = torch.tensor([1 + colors.index(obj.color), 1 + shapes.index(obj.shape),
                                           1 + sizes.index(obj.size)])
            counts[n, 0] += 1
            counts[n, 1 + colors.index(obj.color)] += 1
            counts[n, 1 + len(colors) + shapes.index(obj.shape)] += 1
    return cells, counts


class GridEncoder(nn.Module):
    """The CNN tower plus the two training heads (unused after pretraining: the VLM takes ``tower``)."""

    def __init__(self, tower: GridCNN) -> None:
        super().__init__()
        self.tower = tower
        self.cell_heads = nn.ModuleList(nn.Linear(tower.config.dim, len(v)) for v in CELL_FIELDS.values())
        self.count_head = nn.Linear(tower.config.dim, _COUNT_GROUPS * _COUNT_CLASSES)

    def forward(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        tokens = self.tower.forward_tokens(images)                                   # (b, 17, d)
        cells = [head(tokens[:, 1:]) for head in self.cell_heads]                  # (b, 16, 7), (b, 16, 5), (b, 16, 3)
        counts = self.count_head(tokens[:, 0]).view(-1, _COUNT_GROUPS, _COUNT_CLASSES)   # (b, 11, 10)
        return cells, counts


def _loss(model: GridEncoder, batch) -> Tensor:
    images, cells, counts = batch
    cell_logits, count_logits = model(images)
    return (sum(F.cross_entropy(logits.flatten(0, 1), cells[..., k].flatten()) for k, logits in enumerate(cell_logits))
            + F.cross_entropy(count_logits.flatten(0, 1), counts.flatten()))


@dataclass
class ScenesGridEncoder:
    """The trained (eval-mode, frozen) encoder with its pixel standardisation and the caption vocabulary."""
    model: GridEncoder                 # the tower (``.tower``, what the VLM takes) and its two pretraining heads
    history: History | None
    pixel_mean: Tensor                 # (1, 3, 1, 1)
    pixel_std: Tensor                  # (1, 3, 1, 1)
    vocab: scenes.Vocabulary

    def pixels(self, scene_list: Sequence[scenes.Scene]) -> Tensor:
        """Scenes -> standardised images (n, 3, 32, 32), as the encoder was trained on them."""
        return (scenes.to_tensors(scene_list) - self.pixel_mean) / self.pixel_std

    @property
    def tower(self) -> GridCNN:
        return self.model.tower

    @torch.no_grad()
    def tokens(self, scene_list: Sequence[scenes.Scene]) -> Tensor:
        """Scenes -> the frozen encoder's token states (n, 17, 64)."""
        device = next(self.tower.parameters()).device
        return torch.cat([self.tower.forward_tokens(chunk.to(device)) for chunk in self.pixels(scene_list).split(512)])


def load_or_train_scenes_grid_encoder(device=None, progress: bool = True) -> ScenesGridEncoder:
    """The grid encoder, loaded from the cache or pretrained now on the exact cell and count labels."""
    recipe, device = grid_encoder_recipe(), torch.device(device) if device is not None else get_device()
    train_scenes = scenes.generate_scenes(recipe.train_count, split="train", seed=recipe.seed + 100)
    images, mean, std = scenes.standardize_images(scenes.to_tensors(train_scenes))    # (n, 3, 32, 32)
    torch.manual_seed(recipe.seed)
    tower = GridCNN(GridCNNConfig(image_size=32, in_channels=3, channels=recipe.channels, dim=64))
    model = GridEncoder(tower)

    def train(network: GridEncoder) -> History:
        cells, counts = grid_targets(train_scenes)
        config = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, schedule="onecycle",
                             weight_decay=recipe.weight_decay, seed=recipe.seed, progress=progress)
        return fit(network, (images, cells, counts), config=config, loss_fn=_loss, device=device)

    history = load_or_train("grid-encoder-scenes", model, train,
                            config={"recipe": asdict(recipe), "tower": asdict(tower.config), "cells": CELL_FIELDS})
    model = model.to(device).eval()
    model.requires_grad_(False)
    return ScenesGridEncoder(model, history, mean, std, scenes.caption_vocabulary())


@torch.no_grad()
def pretraining_accuracy(encoder: ScenesGridEncoder, scene_list: Sequence[scenes.Scene]) -> dict[str, float]:
    """The pretraining heads' accuracy on ``scene_list``: colour, shape and size of the object in each occupied
    cell, and the counts (all 11 count groups)."""
    cells, counts = grid_targets(scene_list)
    device = next(encoder.model.parameters()).device
    cell_logits, count_logits = encoder.model(encoder.pixels(scene_list).to(device))
    occupied = cells[..., 0] > 0                                                   # (n, 16)
    result = {name: float((logits.argmax(-1).cpu() == cells[..., k])[occupied].float().mean())
              for k, (name, logits) in enumerate(zip(CELL_FIELDS, cell_logits))}
    result["counts"] = float((count_logits.argmax(-1).cpu() == counts).float().mean())
    return result

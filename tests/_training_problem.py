"""A small seeded problem shared by the trainer tests and the torchrun worker."""
import torch
from torch import nn


def make_problem(num_items: int = 256, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(num_items, 10, generator=generator)                   # (items, features)
    targets = (inputs[:, :3].sum(dim=1) > 0).long() + (inputs[:, 3] > 1).long()  # (items,) 3 classes
    return inputs, targets


def make_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.Dropout(dropout), nn.Linear(32, 3))

"""The convolutional block every CNN of the book stacks: 3 x 3 convolution, (BatchNorm), ReLU, 2 x 2 max-pool.

One builder serves chapter 10's Fashion-MNIST CNN, chapter 12's spectrogram CNN and chapter 14's sentiment
model, so "the same conv block" is one piece of code.  With BatchNorm the convolution has no bias: the
BatchNorm's own shift would cancel it.  Each block keeps the spatial size through the convolution (padding
1) and halves it (rounded down) with the pooling.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["conv_block", "conv_stack"]


def conv_block(in_channels: int, out_channels: int, *, batch_norm: bool = True) -> nn.Sequential:
    """Conv2d(3 x 3, padding 1) -> [BatchNorm2d] -> ReLU -> MaxPool2d(2): (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers += [nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


def conv_stack(in_channels: int, channels: Sequence[int], *, batch_norm: bool = True) -> nn.Sequential:
    """One :func:`conv_block` per entry of ``channels``; ``stack[i]`` is block i (its output a feature map)."""
    channels = tuple(channels)
    if not channels:
        raise ValueError("channels must name at least one block, got an empty sequence")
    widths = (in_channels, *channels)
    return nn.Sequential(*(conv_block(widths[i], widths[i + 1], batch_norm=batch_norm) for i in range(len(channels))))

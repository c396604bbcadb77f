"""Checkers for chapter 10 (Convolutions and CNNs).

Each checker calls the learner's function on fixed cases, compares it with what PyTorch actually does
(running a layer, counting a layer's parameters, back-propagating to the input), raises
:class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._common import ExerciseError, passed, call_answer as _call


def _as_int(name: str, value, case) -> int:
    if value is None:
        raise ExerciseError(f"{name}{case}: got None. Did you forget to `return` the result?")
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise ExerciseError(f"{name}{case}: expected an int, got {value!r}") from error


def check_output_size(output_size: Callable) -> None:
    """``output_size(size, kernel, stride, padding, dilation) -> int``, checked by running ``nn.Conv2d``."""
    name = "output_size"
    cases = [(28, 3, 1, 0, 1), (28, 3, 1, 1, 1), (28, 5, 2, 2, 1), (224, 7, 2, 3, 1), (32, 3, 2, 0, 2),
             (13, 4, 3, 1, 3), (7, 7, 1, 0, 1)]
    for case in cases:
        size, kernel, stride, padding, dilation = case
        layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
        with torch.no_grad():
            expected = layer(torch.zeros(1, 1, size, size)).shape[-1]
        got = _as_int(name, _call(name, output_size, *case), case)
        if got != expected:
            raise ExerciseError(f"{name}{case}: nn.Conv2d gives {expected}, you gave {got}. A dilated kernel "
                                "spans d*(k-1)+1 pixels; out = floor((size + 2p - d*(k-1) - 1) / s) + 1.")
    passed(name)


def check_conv_parameters(conv_parameters: Callable) -> None:
    """``conv_parameters(in_channels, out_channels, kernel, groups, bias) -> int``, checked against nn.Conv2d."""
    name = "conv_parameters"
    cases = [(1, 32, 3, 1, True), (32, 64, 3, 1, False), (3, 64, 7, 1, False), (64, 64, 3, 64, False),
             (64, 128, 1, 4, True), (12, 6, 5, 3, True)]
    for case in cases:
        in_channels, out_channels, kernel, groups, bias = case
        layer = nn.Conv2d(in_channels, out_channels, kernel, groups=groups, bias=bias)
        expected = sum(p.numel() for p in layer.parameters())
        got = _as_int(name, _call(name, conv_parameters, *case), case)
        if got != expected:
            raise ExerciseError(f"{name}{case}: nn.Conv2d has {expected} parameters, you gave {got}. Each of "
                                "the out_channels filters sees in_channels / groups channels of k x k pixels, "
                                "plus one bias per output channel.")
    passed(name)


def _measured_receptive_field(kernels, strides) -> int:
    """Width of the input region that one output pixel depends on, found by back-propagation."""
    layers = [nn.Conv2d(1, 1, k, stride=s, bias=False) for k, s in zip(kernels, strides)]
    for layer in layers:
        nn.init.constant_(layer.weight, 1.0)                 # positive weights: no gradient cancels out
    size = 1
    for k, s in zip(reversed(kernels), reversed(strides)):
        size = (size - 1) * s + k                             # smallest input giving a 1x1 output
    size += 8
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    out = nn.Sequential(*layers)(x)
    out[0, 0, 0, 0].backward()
    touched = (x.grad[0, 0, 0] != 0).nonzero()
    return int(touched.max() - touched.min() + 1)


def check_receptive_field(receptive_field: Callable) -> None:
    """``receptive_field(kernels, strides) -> int`` for a stack of unpadded convolutions (or poolings),
    checked by back-propagating one output pixel to the input."""
    name = "receptive_field"
    cases = [([3], [1]), ([3, 3], [1, 1]), ([3, 3, 3], [1, 1, 1]), ([3, 2, 3, 2], [1, 2, 1, 2]),
             ([7, 3, 3, 3], [2, 2, 1, 1]), ([5, 3], [3, 1])]
    for kernels, strides in cases:
        expected = _measured_receptive_field(kernels, strides)
        got = _as_int(name, _call(name, receptive_field, list(kernels), list(strides)), (kernels, strides))
        if got != expected:
            raise ExerciseError(f"{name}(kernels={kernels}, strides={strides}): back-propagation says {expected}, "
                                f"you gave {got}. Layer l adds (k_l - 1) times the product of the strides "
                                "of the layers before it.")
    passed(name)

"""Checkers for chapter 21 (video: adding time).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.models.video``, itself tested against torchvision and ``nn.MultiheadAttention``) or with
``F.scaled_dot_product_attention``, raises :class:`ExerciseError` with a hint when it differs and prints a
confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._common import ExerciseError, as_float64 as _as_numpy, call_answer as _call, check_close, passed


def check_mid_channels(mid_channels: Callable) -> None:
    """``mid_channels(in_channels, out_channels, kernel_size, temporal_kernel_size) -> int``: Tran et al.'s M."""
    from ..models.video import mid_channels as reference

    name = "mid_channels"
    for args in ((3, 16, 3, 3), (64, 64, 3, 3), (64, 128, 3, 3), (32, 48, 5, 3), (16, 16, 3, 5)):
        got = _call(name, mid_channels, *args)
        expected = reference(*args)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the width?")
        if not isinstance(got, int) or isinstance(got, bool):
            raise ExerciseError(f"{name}{args}: return an int (a number of channels), got {type(got).__name__} {got!r}. "
                                "Round down with // .")
        if got != expected:
            raise ExerciseError(f"{name}{args}: got {got}, expected {expected}. Equate the weights of a full "
                                "t x k x k convolution, t k^2 N_in N_out, with those of the two factors, "
                                "M (k^2 N_in + t N_out), solve for M and round down.")
    passed(name)


def check_receptive_field(receptive_field: Callable) -> None:
    """``receptive_field(layers) -> int`` for a list of (kernel_size, stride) along one axis."""
    from ..models.video import receptive_field as reference

    name = "receptive_field"
    cases = ([(3, 1)], [(3, 1), (3, 1), (3, 1)], [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)],
             [(7, 2), (3, 2), (3, 1), (3, 1)], [(1, 1)], [(2, 2), (2, 2), (2, 2)])
    for layers in cases:
        got = _call(name, receptive_field, list(layers))
        expected = reference(layers)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the receptive field?")
        if got != expected:
            hint = ("Start from r = 1 and a jump j = 1; for each layer r += (k - 1) * j, then j *= s "
                    "(the stride multiplies the spacing of the NEXT layer's inputs).")
            raise ExerciseError(f"{name}({list(layers)}): got {got}, expected {expected}. {hint}")
    passed(name)


def check_temporal_attention(temporal_attention: Callable) -> None:
    """``temporal_attention(tokens (batch, T, d), w_query, w_key, w_value) -> (batch, T, d_head)``:
    single-head softmax(Q K^T / sqrt(d_head)) V across time, with Q = tokens @ w_query etc."""
    name = "temporal_attention"
    generator = torch.Generator().manual_seed(0)
    for batch, frames, dim, head_dim in ((2, 8, 16, 8), (3, 5, 12, 4)):
        tokens = torch.randn(batch, frames, dim, generator=generator, dtype=torch.float64)
        weights = [torch.randn(dim, head_dim, generator=generator, dtype=torch.float64) / dim ** 0.5 for _ in range(3)]
        q, k, v = (tokens @ w for w in weights)
        expected = F.scaled_dot_product_attention(q, k, v)                  # (batch, T, head_dim)
        got = _call(name, temporal_attention, tokens.clone(), *(w.clone() for w in weights))
        hint = ("Project the tokens (Q = tokens @ w_query, ...), score every pair of frames with Q K^T divided by "
                "sqrt(d_head) (the size of one query), softmax over the keys (the last axis), then mix the values.")
        if got is not None and _as_numpy(got).shape == tuple(expected.shape):
            unscaled = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
            if torch.allclose(torch.as_tensor(_as_numpy(got)), unscaled):
                hint = "You forgot the 1 / sqrt(d_head) scale. " + hint
        check_close(f"{name} ({batch} clips of {frames} frames)", got, expected.numpy(), rtol=1e-6, atol=1e-9,
                    hint=hint)
    passed(name)

"""Checkers for chapter 11 (Vision Transformers and pretrained image encoders).

Each checker calls the learner's function on fixed inputs, compares it with the package version (itself
tested against torchvision), raises :class:`ExerciseError` with a hint when it differs and prints a
confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import ExerciseError, check_close, passed, call_answer as _call, as_float64 as _as_numpy


def check_patchify(patchify: Callable) -> None:
    """``patchify(images, patch_size) -> (batch, N, C P^2)`` with reshape/permute, in ``F.unfold``'s order."""
    from ..models.vit import PatchEmbedding

    name = "patchify"
    generator = torch.Generator().manual_seed(11)
    for batch, channels, size, patch in ((2, 1, 28, 7), (3, 3, 32, 8), (1, 3, 12, 4)):
        images = torch.randn(batch, channels, size, size, generator=generator)
        expected = PatchEmbedding(size, patch, channels, 4).patchify(images)        # (batch, N, C P^2)
        got = _call(name, patchify, images, patch)
        check_close(f"{name}({tuple(images.shape)}, {patch})", _as_numpy(got), expected.numpy(), rtol=0, atol=0,
                    hint="Split H and W into (grid, P) each, permute to (batch, grid_y, grid_x, C, P_y, P_x) "
                         "and flatten: patches in raster order, each flattened channel first, then rows, then columns.")
    passed(name)


def check_vit_parameter_count(count_fn: Callable) -> None:
    """``count_fn(image_size, patch_size, in_channels, dim, num_layers, mlp_dim, num_classes) -> int``."""
    from ..models.vit import ViTConfig, vit_parameter_count

    name = "vit_parameter_count"
    cases = [(224, 16, 3, 768, 12, 3072, 1000), (224, 32, 3, 768, 12, 3072, 1000), (28, 7, 1, 64, 4, 128, 10),
             (224, 14, 3, 1024, 24, 4096, 1000)]
    for image_size, patch, channels, dim, layers, mlp_dim, classes in cases:
        config = ViTConfig(image_size=image_size, patch_size=patch, in_channels=channels, dim=dim,
                           num_layers=layers, num_heads=4, mlp_ratio=mlp_dim / dim, num_classes=classes)
        expected = vit_parameter_count(config)
        got = _call(name, count_fn, image_size, patch, channels, dim, layers, mlp_dim, classes)
        if got is None or int(got) != expected:
            raise ExerciseError(f"{name}{(image_size, patch, channels, dim, layers, mlp_dim, classes)}: expected "
                                f"{expected:,}, got {got!r}. Count the patch projection (with bias), the class "
                                "token, 1 + N position embeddings, per block Q/K/V/output projections, the MLP "
                                "and two LayerNorms, the final LayerNorm and the head.")
    passed(name)


def check_attention_rollout(rollout_fn: Callable) -> None:
    """``rollout_fn(attentions) -> (batch, seq, seq)`` with the residual 0.5 A + 0.5 I, rows renormalised."""
    from ..models.vit import attention_rollout

    name = "attention_rollout"
    generator = torch.Generator().manual_seed(3)
    attentions = [torch.randn(2, 3, 5, 5, generator=generator).softmax(dim=-1) for _ in range(4)]
    expected = attention_rollout(attentions)
    got = _call(name, rollout_fn, attentions)
    check_close(name, _as_numpy(got), expected.numpy(), rtol=1e-5, atol=1e-6,
                hint="Average over heads, mix with the identity (0.5 A + 0.5 I), renormalise the rows, and "
                     "multiply later layers on the LEFT: R = A'_L ... A'_1.")
    passed(name)

"""Checkers for chapter 19 (masked pretraining and LoRA).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.models.mae`` and ``mmtutorial.nn.lora``, themselves tested against transformers' ViTMAE and
peft), raises :class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import ExerciseError, as_float64 as _as_numpy, call_answer as _call, check_close, passed


def check_random_masking(random_masking: Callable) -> None:
    """``random_masking(tokens (B, N, D), mask_ratio, noise (B, N)) -> (visible, mask, ids_restore)``."""
    from ..models.mae import random_masking as reference

    name = "random_masking"
    for batch, patches, ratio, seed in ((2, 16, 0.75, 0), (3, 49, 0.6, 1), (1, 10, 0.5, 2)):
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randn(batch, patches, 8, generator=generator, dtype=torch.float64)
        noise = torch.rand(batch, patches, generator=generator, dtype=torch.float64)
        got = _call(name, random_masking, tokens.clone(), ratio, noise.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise ExerciseError(f"{name}: return the three tensors (visible, mask, ids_restore), got "
                                f"{type(got).__name__}")
        expected = reference(tokens, ratio, noise)
        hints = ("Keep the int(N * (1 - mask_ratio)) tokens with the SMALLEST noise: ids_shuffle = argsort(noise); "
                 "gather them in that order.",
                 "mask is 1 for hidden and 0 for visible patches, in the ORIGINAL order: build it in shuffled order "
                 "(zeros first) and gather it with ids_restore.",
                 "ids_restore = argsort(ids_shuffle): the inverse permutation.")
        for what, answer, truth, hint in zip(("visible", "mask", "ids_restore"), got, expected, hints):
            check_close(f"{name} ({what}, {patches} patches, ratio {ratio})", _as_numpy(answer), truth.numpy(),
                        rtol=1e-12, atol=1e-12, hint=hint)
    passed(name)


def check_masked_patch_loss(masked_patch_loss: Callable) -> None:
    """``masked_patch_loss(prediction (B, N, K), patches (B, N, K), mask (B, N)) -> scalar``: MAE's loss with
    per-patch normalised targets, averaged over the masked patches only."""
    from ..models.mae import masked_patch_loss as reference, normalize_patches

    name = "masked_patch_loss"
    for seed in (0, 1):
        generator = torch.Generator().manual_seed(seed)
        prediction = torch.randn(3, 16, 49, generator=generator, dtype=torch.float64)
        patches = torch.rand(3, 16, 49, generator=generator, dtype=torch.float64)
        mask = (torch.rand(3, 16, generator=generator) < 0.75).double()
        got = _call(name, masked_patch_loss, prediction.clone(), patches.clone(), mask.clone())
        expected = reference(prediction, normalize_patches(patches), mask)
        hint = ("Normalise each patch by its own mean and unbiased variance, (x - mean) / sqrt(var + 1e-6); "
                "take the mean squared error over a patch's pixels; then average over the MASKED patches only, "
                "sum(mask * error) / sum(mask).")
        everywhere = ((prediction - normalize_patches(patches)) ** 2).mean()
        if got is not None and abs(float(_as_numpy(got)) - float(everywhere)) < 1e-9:
            hint = "That is the error over every patch, visible ones included. " + hint
        check_close(name, got, expected.item(), rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)


def check_merged_weight(merged_weight: Callable) -> None:
    """``merged_weight(weight (out, in), lora_A (r, in), lora_B (out, r), alpha) -> (out, in)``: W + (alpha/r) B A."""
    from ..nn.lora import LoRALinear

    name = "merged_weight"
    for out_features, in_features, rank, alpha in ((6, 5, 2, 4.0), (8, 12, 3, 1.0)):
        torch.manual_seed(out_features)
        layer = LoRALinear(torch.nn.Linear(in_features, out_features).double(), rank, alpha)
        with torch.no_grad():
            layer.lora_B.normal_()
        weight = layer.weight.detach().clone()
        got = _call(name, merged_weight, weight.clone(), layer.lora_A.detach().clone(), layer.lora_B.detach().clone(),
                    alpha)
        layer.merge()
        hint = "The update is (alpha / r) * B @ A, of shape (out, in), where r = A.shape[0]; add it to W."
        check_close(f"{name} (rank {rank}, alpha {alpha})", _as_numpy(got), layer.weight.detach().numpy(),
                    rtol=1e-10, atol=1e-12, hint=hint)
    passed(name)

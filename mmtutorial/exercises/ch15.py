"""Checkers for chapter 15 (CLIP).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.models.clip``, itself tested against open_clip), raises :class:`ExerciseError` with a hint
when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._common import ExerciseError, check_close, passed, call_answer as _call, as_float64 as _as_numpy


def _unit_features(batch: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.normalize(torch.randn(batch, dim, generator=generator, dtype=torch.float64), dim=-1)
    # texts correlated with their images, so that the diagonal matters and a transposed answer is caught
    text = torch.nn.functional.normalize(image + 0.8 * torch.randn(batch, dim, generator=generator,
                                                                   dtype=torch.float64), dim=-1)
    return image, text


def check_symmetric_infonce(symmetric_infonce: Callable) -> None:
    """``symmetric_infonce(image_features, text_features, logit_scale) -> scalar``: CLIP's loss."""
    from ..models.clip import clip_loss

    name = "symmetric_infonce"
    for batch, dim, scale, seed in ((4, 8, 1.0, 0), (16, 32, 1 / 0.07, 1), (7, 5, 50.0, 2)):
        image, text = _unit_features(batch, dim, seed)
        # an asymmetric case: only the symmetric average gives the right number
        text = text.clone()
        text[0] = image[1]
        expected = clip_loss(image, text, scale)
        got = _call(name, symmetric_infonce, image, text, torch.tensor(scale, dtype=torch.float64))
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the loss?")
        got = _as_numpy(got)
        if got.shape != ():
            raise ExerciseError(f"{name}: return one number (the mean over the batch), got shape {got.shape}")
        one_way = torch.nn.functional.cross_entropy(scale * image @ text.T, torch.arange(batch))
        hint = "Average the cross-entropy over rows (image -> text) AND over columns (text -> image)."
        if np.isclose(got, float(one_way)) and not np.isclose(float(one_way), float(expected)):
            hint = "This is only the image -> text direction; " + hint
        check_close(f"{name} (batch {batch}, scale {scale:.3g})", got, float(expected), rtol=1e-6, atol=1e-8,
                    hint=hint + " The targets are the diagonal: arange(batch); logits = scale * F @ G^T.")
    passed(name)


def check_zero_shot_predict(zero_shot_predict: Callable) -> None:
    """``zero_shot_predict(image_embeddings, class_embeddings) -> (num_images,) class indices`` by cosine."""
    name = "zero_shot_predict"
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(50, 16, generator=generator, dtype=torch.float64)
    classes = torch.randn(6, 16, generator=generator, dtype=torch.float64)
    classes = classes * torch.linspace(0.2, 5.0, 6, dtype=torch.float64)[:, None]  # norms differ a lot
    images = images * torch.rand(50, 1, generator=generator, dtype=torch.float64).add(0.1)
    expected = (torch.nn.functional.normalize(images, dim=-1)
                @ torch.nn.functional.normalize(classes, dim=-1).T).argmax(dim=-1).numpy()
    got = _call(name, zero_shot_predict, images, classes)
    if got is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the predictions?")
    got = _as_numpy(got)
    if got.shape != expected.shape:
        raise ExerciseError(f"{name}: expected one class index per image, shape {expected.shape}, got {got.shape}")
    unnormalised = (images @ classes.T).argmax(dim=-1).numpy()
    if not np.array_equal(got, expected):
        hint = (" Normalise both sides: a class whose embedding is longer must not win for that reason alone."
                if np.array_equal(got, unnormalised) else " Predict argmax over classes of the cosine similarity.")
        raise ExerciseError(f"{name}: {int((got != expected).sum())} of {len(expected)} predictions are wrong.{hint}")
    passed(name)


def check_clip_parameter_count(clip_parameter_count: Callable) -> None:
    """``clip_parameter_count(config: CLIPConfig) -> int`` in closed form, checked against the built model."""
    from ..models.clip import CLIP, CLIPConfig, CLIPTextConfig, clip_image_config

    name = "clip_parameter_count"
    configs = [CLIPConfig.vit_b_32(), CLIPConfig.tiny(),
               CLIPConfig(embed_dim=256, vision=clip_image_config(image_size=96, patch_size=16, in_channels=1, dim=192,
                                                                  num_layers=3, num_heads=3, mlp_ratio=2.0),
                          text=CLIPTextConfig(vocab_size=1000, max_seq_len=40, dim=128, num_layers=5, num_heads=4))]
    for config in configs:
        with torch.device("meta"):  # shapes only: no memory, no time
            expected = sum(p.numel() for p in CLIP(config).parameters())
        got = _call(name, clip_parameter_count, config)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the count?")
        if int(got) != expected:
            raise ExerciseError(
                f"{name}: for {config.vision.dim}-wide vision / {config.text.dim}-wide text towers expected "
                f"{expected:,}, got {int(got):,} (off by {int(got) - expected:+,}). Count: patch conv (no bias), class "
                "token, (patches + 1) positions, ln_pre, L_v blocks, ln_post, the vision projection; token and "
                "position embeddings, L_t blocks, ln_final, the text projection; and logit_scale (one number).")
    passed(name)

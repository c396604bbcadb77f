"""Checkers for chapter 14 (Fusion).

Each checker calls the learner's function on fixed inputs, compares it with the package's fusion layers
(themselves tested against direct formulas and ``torch.nn.MultiheadAttention``), raises
:class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed, call_answer as _call


def _as_numpy(value, dtype=np.float64):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def check_weighted_fusion(weighted_fusion: Callable) -> None:
    """``weighted_fusion(features, weights) -> vector``: sum_m w_m f_m for a list of equal-size vectors."""
    import torch

    from ..nn.fusion import WeightedFusion

    name = "weighted_fusion"
    got = _as_numpy(_call(name, weighted_fusion, [np.array([1.0, 2.0]), np.array([3.0, 4.0])], [0.4, 0.6]))
    check_close(f"{name} (worked example)", got, [2.2, 3.2],
                hint="0.4 * [1, 2] = [0.4, 0.8] and 0.6 * [3, 4] = [1.8, 2.4]; add them.")
    rng = np.random.default_rng(14)
    for count, dim in ((2, 5), (3, 4), (4, 1)):
        features = [rng.normal(size=dim) for _ in range(count)]
        weights = rng.dirichlet(np.ones(count))
        layer = WeightedFusion([dim] * count, weights=weights.tolist(), learnable=False).double()
        expected = layer([torch.from_numpy(f)[None] for f in features])[0].numpy()
        check_close(f"{name} ({count} modalities of size {dim})", _as_numpy(_call(name, weighted_fusion,
                    features, weights)), expected, rtol=1e-6, atol=1e-6,
                    hint="Multiply each vector by its weight and sum the vectors (do not concatenate).")
    passed(name)


def check_gated_unit(gated_unit: Callable) -> None:
    """``gated_unit(x1, x2, w1, b1, w2, b2, wz, bz) -> (batch, d)``: the gated multimodal unit

    h1 = tanh(x1 W1^T + b1), h2 = tanh(x2 W2^T + b2), z = sigmoid([x1, x2] Wz^T + bz), out = z h1 + (1 - z) h2.
    """
    import torch

    from ..nn.fusion import GatedFusion

    name = "gated_unit"
    rng = np.random.default_rng(1414)
    for batch, d1, d2, out in ((4, 3, 5, 2), (2, 6, 6, 4)):
        x1, x2 = rng.normal(size=(batch, d1)), rng.normal(size=(batch, d2))
        w1, b1 = rng.normal(size=(out, d1)), rng.normal(size=out)
        w2, b2 = rng.normal(size=(out, d2)), rng.normal(size=out)
        wz, bz = rng.normal(size=(out, d1 + d2)), rng.normal(size=out)
        layer = GatedFusion([d1, d2], out).double()
        with torch.no_grad():   # softmax over (a, 0) is sigmoid(a): put the GMU gate in the first slot
            layer.projections[0].weight.copy_(torch.from_numpy(w1))
            layer.projections[0].bias.copy_(torch.from_numpy(b1))
            layer.projections[1].weight.copy_(torch.from_numpy(w2))
            layer.projections[1].bias.copy_(torch.from_numpy(b2))
            layer.gate.weight.copy_(torch.from_numpy(np.concatenate([wz, np.zeros_like(wz)])))
            layer.gate.bias.copy_(torch.from_numpy(np.concatenate([bz, np.zeros_like(bz)])))
            expected = layer([torch.from_numpy(x1), torch.from_numpy(x2)]).numpy()
        got = _as_numpy(_call(name, gated_unit, x1, x2, w1, b1, w2, b2, wz, bz))
        check_close(f"{name} (batch {batch}, sizes {d1}, {d2} -> {out})", got, expected, rtol=1e-9, atol=1e-9,
                    hint="The gate z = sigmoid(concat(x1, x2) @ wz.T + bz) sees BOTH inputs; "
                         "out = z * tanh(x1 @ w1.T + b1) + (1 - z) * tanh(x2 @ w2.T + b2).")
    passed(name)


def check_modality_dropout_mask(modality_dropout_mask: Callable) -> None:
    """``modality_dropout_mask(present, p, rng) -> keep``: a (batch, M) bool mask that drops each present
    modality with probability p, never adds a missing one and never empties a sample that had one."""
    name = "modality_dropout_mask"
    rng = np.random.default_rng(0)
    batch = 20000
    for count, p in ((2, 0.5), (3, 0.3)):
        present = rng.random((batch, count)) < 0.9
        present[:10] = False                                              # samples that have nothing
        present[10, :] = True
        keep = _as_numpy(_call(name, modality_dropout_mask, present.copy(), p, np.random.default_rng(1)),
                         dtype=bool)
        if keep.shape != present.shape:
            raise ExerciseError(f"{name}: expected a mask of shape {present.shape}, got {keep.shape}")
        if (keep & ~present).any():
            raise ExerciseError(f"{name}: the mask keeps a modality that was missing; use keep = present & ...")
        had_one = present.any(axis=1)
        if (had_one & ~keep.any(axis=1)).any():
            raise ExerciseError(f"{name}: some samples lost every modality; when that happens, keep one of "
                                "their present modalities (chosen at random)")
        if keep.all() or (keep == present).all():
            raise ExerciseError(f"{name}: nothing was dropped; drop each present modality with probability p")
        dropped = 1.0 - keep[present].mean()
        # Dropping independently with probability p and rescuing one modality of an emptied sample gives
        # a drop rate between p * (1 - p) (rescue everything) and p (no rescue needed).
        low, high = p * (1 - p) ** (count - 1) - 0.02, p + 0.02
        if not low <= dropped <= high:
            raise ExerciseError(f"{name}: with p={p} and {count} modalities about {p:.0%} of the present "
                                f"modalities should be dropped (a little less after the rescue), got {dropped:.1%}")
    passed(name)

"""Checkers for chapter 24 (trustworthy multimodal models).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(:mod:`mmtutorial.interpret`, :mod:`mmtutorial.privacy`, :mod:`mmtutorial.metrics`, themselves tested against
captum, pytorch-grad-cam, opacus and scikit-learn), raises :class:`ExerciseError` with a hint when it
differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._common import ExerciseError, as_float64 as _as_numpy, call_answer as _call, check_close, passed


def check_grad_cam_from_maps(grad_cam_from_maps: Callable) -> None:
    """``grad_cam_from_maps(activations (B, C, h, w), gradients (B, C, h, w)) -> (B, h, w)``: the Grad-CAM map,
    ReLU(sum_k alpha_k A_k) with alpha_k the gradient averaged over positions (no upsampling)."""
    name = "grad_cam_from_maps"
    for seed, shape in ((0, (2, 3, 4, 4)), (1, (1, 8, 5, 7))):
        generator = torch.Generator().manual_seed(seed)
        activations = torch.randn(shape, generator=generator, dtype=torch.float64).relu()
        gradients = torch.randn(shape, generator=generator, dtype=torch.float64)
        weights = gradients.mean(dim=(2, 3), keepdim=True)                          # (B, C, 1, 1)
        expected = (weights * activations).sum(dim=1).clamp(min=0)                  # (B, h, w)
        got = _call(name, grad_cam_from_maps, activations.clone(), gradients.clone())
        check_close(f"{name} (shape {shape})", _as_numpy(got), expected.numpy(), rtol=1e-6, atol=1e-9,
                    hint="Average the gradients over the two spatial axes to get one weight per channel, weight "
                         "the channels of the activations, sum over channels, then clamp negatives to 0.")
    passed(name)


def check_clip_gradients(clip_gradients: Callable) -> None:
    """``clip_gradients(per_sample (B, P), max_norm) -> (B, P)``: each row scaled to norm at most C (rows already
    shorter than C unchanged)."""
    name = "clip_gradients"
    for seed, max_norm in ((0, 1.0), (1, 0.25), (2, 10.0)):
        rows = torch.randn(6, 11, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        rows = rows * torch.linspace(0.05, 3.0, 6, dtype=torch.float64)[:, None]    # some rows short, some long
        norms = rows.norm(dim=1, keepdim=True)
        expected = rows * (max_norm / norms).clamp(max=1.0)
        got = _call(name, clip_gradients, rows.clone(), max_norm)
        check_close(f"{name} (C = {max_norm})", _as_numpy(got), expected.numpy(), rtol=1e-6, atol=1e-9,
                    hint="Scale each row by min(1, C / ||row||): long rows end with norm exactly C, short ones "
                         "stay as they are. Clip each example separately, not the batch as a whole.")
    passed(name)


def check_membership_auc(membership_auc: Callable) -> None:
    """``membership_auc(member_losses (n,), other_losses (m,)) -> float``: the ROC-AUC of the attack that
    calls an example a member when its loss is small (ties count one half)."""
    from ..metrics import roc_auc

    name = "membership_auc"
    rng = np.random.default_rng(0)
    cases = [(rng.exponential(0.2, 40), rng.exponential(0.6, 30)),
             (np.array([0.1, 0.2, 0.2, 0.5]), np.array([0.2, 0.4, 0.9])),               # a tie across groups
             (rng.exponential(1.0, 25), rng.exponential(1.0, 25))]
    for members, others in cases:
        expected = roc_auc(np.r_[np.ones(len(members), dtype=np.int64), np.zeros(len(others), dtype=np.int64)],
                           -np.r_[members, others])
        got = _call(name, membership_auc, members.copy(), others.copy())
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the AUC?")
        if abs(1.0 - float(got) - expected) < 1e-9 and abs(expected - 0.5) > 1e-6:
            raise ExerciseError(f"{name}: got {float(got):.4f}, expected {expected:.4f}: the score of membership "
                                "must be MINUS the loss (members have the smaller losses).")
        check_close(name, float(got), expected, rtol=1e-9, atol=1e-12,
                    hint="AUC = P(a random member's loss < a random non-member's loss) + 0.5 P(equal).")
    passed(name)

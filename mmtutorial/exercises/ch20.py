"""Checkers for chapter 20 (binding three modalities).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.models.clip.clip_loss``, itself tested against open_clip's ``ClipLoss``, and
``mmtutorial.retrieval.recall_at_k``, tested against scikit-learn), raises :class:`ExerciseError` with a hint
when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._common import ExerciseError, as_float64 as _as_numpy, call_answer as _call, check_close, passed


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator, dtype=torch.float64), dim=-1)


def check_info_nce(info_nce: Callable) -> None:
    """``info_nce(hub (B, d), other (B, d), scale) -> scalar``: the symmetric InfoNCE of one pair of modalities."""
    from ..models.clip import clip_loss

    name = "info_nce"
    for batch, dim, scale, seed in ((4, 8, 1.0, 0), (16, 32, 14.3, 1), (7, 5, 50.0, 2)):
        hub, other = _unit(batch, dim, seed), _unit(batch, dim, seed + 10)
        got = _call(name, info_nce, hub.clone(), other.clone(), scale)
        expected = clip_loss(hub, other, scale)
        hint = ("logits = scale * hub @ other.T; the targets are 0..B-1 (pair i matches i); average the "
                "cross-entropy over the rows (hub -> other) and over the columns (other -> hub).")
        if got is not None and np.isclose(float(_as_numpy(got)), float(F.cross_entropy(scale * hub @ other.T,
                                                                                        torch.arange(batch)))):
            hint = "That is only the hub -> other direction; " + hint
        check_close(f"{name} (batch {batch}, scale {scale})", _as_numpy(got), expected.item(), rtol=1e-6, atol=1e-9,
                    hint=hint)
    passed(name)


def _retrieval_case(seed: int, queries: int = 30, items: int = 40):
    generator = np.random.default_rng(seed)
    similarity = generator.standard_normal((queries, items))
    query_digits = generator.integers(0, 10, queries)
    item_digits = np.arange(items) % 10
    return similarity, query_digits, item_digits


def check_class_level_recall_at_1(class_level_recall_at_1: Callable) -> None:
    """``class_level_recall_at_1(similarity (Q, N), query_digits (Q,), item_digits (N,)) -> float``."""
    from ..retrieval import recall_at_k

    name = "class_level_recall_at_1"
    for seed in (0, 1, 2):
        similarity, query_digits, item_digits = _retrieval_case(seed)
        got = _call(name, class_level_recall_at_1, torch.tensor(similarity), torch.tensor(query_digits),
                    torch.tensor(item_digits))
        expected = recall_at_k(similarity, 1, positives=query_digits[:, None] == item_digits[None, :])
        hint = ("Take each query's highest-scoring item (argmax over the row) and count a hit when that item's "
                "digit equals the query's; return the fraction of hits.")
        if got is not None and np.isclose(float(_as_numpy(got)), recall_at_k(similarity, 1, positives=None)):
            hint = "That is instance-level recall (item i for query i); " + hint
        check_close(f"{name} (seed {seed})", _as_numpy(got), expected, rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)


def check_chance_recall(chance_recall: Callable) -> None:
    """``chance_recall(query_digits (Q,), item_digits (N,)) -> float``: class-level Recall@1 of a random ranking."""
    from ..retrieval import recall_at_k

    name = "chance_recall"
    generator = np.random.default_rng(3)
    for query_digits, item_digits in ((np.arange(50) % 10, np.arange(30) % 10),
                                      (generator.integers(0, 3, 60), np.array([0, 1, 2] * 6 + [0, 0])),
                                      (np.array([0, 0, 1]), np.array([0, 1, 1, 1]))):
        got = _call(name, chance_recall, torch.tensor(query_digits), torch.tensor(item_digits))
        # The expectation over random rankings, estimated the slow way: many random similarity matrices.
        same = query_digits[:, None] == item_digits[None, :]
        expected = float(np.mean(same.mean(axis=1)))
        estimate = np.mean([recall_at_k(generator.random(same.shape), 1, positives=same) for _ in range(400)])
        if not np.isclose(expected, estimate, atol=0.03):       # guards the checker itself
            raise AssertionError(f"checker: {expected} vs Monte Carlo {estimate}")
        check_close(name, _as_numpy(got), expected, rtol=1e-9, atol=1e-12,
                    hint="A random ranking puts a uniformly random item first: for each query, the chance is the "
                         "share of items with its digit; average over the queries.")
    passed(name)


__all__ = ["ExerciseError", "check_info_nce", "check_class_level_recall_at_1", "check_chance_recall"]

"""Checkers for chapter 13 (Similarity, embedding spaces and retrieval).

Each checker calls the learner's function on fixed problems, compares it with scikit-learn or torch,
raises :class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._common import ExerciseError, check_close, passed, call_answer as _call


def check_cosine(cosine: Callable) -> None:
    """``cosine(a, b) -> float``: the cosine similarity of two 1-D NumPy vectors."""
    from sklearn.metrics.pairwise import cosine_similarity

    name = "cosine"
    hint = "cos(a, b) = a.b / (||a|| ||b||), with ||a|| = sqrt(a.a)."
    check_close(f"{name}([1,2,3], [4,5,6])", _call(name, cosine, np.array([1.0, 2, 3]), np.array([4.0, 5, 6])),
                32 / np.sqrt(14 * 77), hint=hint + " The answer is 32 / sqrt(14 * 77) = 0.9746.")
    rng = np.random.default_rng(1313)
    for _ in range(5):
        a, b = rng.normal(size=8) * rng.uniform(0.1, 10), rng.normal(size=8) * rng.uniform(0.1, 10)
        check_close(f"{name} on random vectors", _call(name, cosine, a, b),
                    cosine_similarity(a[None], b[None])[0, 0], hint=hint)
    check_close(f"{name}(a, -3a)", _call(name, cosine, a, -3 * a), -1.0,
                hint="Opposite directions give -1 whatever the lengths.")
    passed(name)


def _ranking_problems(count: int = 4):
    """Fixed (similarity, relevant) pairs: distinct scores, 1 to 4 correct items per query."""
    rng = np.random.default_rng(13)
    for _ in range(count):
        num_queries, num_items = rng.integers(5, 15), rng.integers(10, 30)
        similarity = rng.normal(size=(num_queries, num_items))                 # (Q, N) distinct
        relevant = rng.random((num_queries, num_items)) < 0.1                  # (Q, N) bool
        relevant[np.arange(num_queries), rng.integers(0, num_items, num_queries)] = True
        yield similarity, relevant


def check_mean_average_precision(mean_average_precision: Callable) -> None:
    """``mean_average_precision(similarity, relevant) -> float`` over the whole ranking of every query.

    AP of one query = mean, over its correct items, of the precision of the list cut just after that item.
    """
    from sklearn.metrics import label_ranking_average_precision_score

    name = "mean_average_precision"
    hint = ("Sort each row by decreasing similarity; at each correct item compute (correct so far) / "
            "(position); average those over the row's correct items, then over rows.")
    for similarity, relevant in _ranking_problems():
        # Without ties, label-ranking average precision is exactly mean AP over the whole ranking.
        expected = label_ranking_average_precision_score(relevant, similarity)
        check_close(name, _call(name, mean_average_precision, similarity.copy(), relevant.copy()), expected,
                    hint=hint)
    one_hit = np.array([[0.1, 0.9, 0.5]]), np.array([[False, False, True]])
    check_close(f"{name} with one correct item at rank 2", _call(name, mean_average_precision, *one_hit), 0.5,
                hint="With one correct item AP is 1 / rank: here 1/2.")
    passed(name)


def check_chunked_top_k(chunked_top_k: Callable) -> None:
    """``chunked_top_k(queries, items, k, chunk_size) -> LongTensor (num_queries, k)``.

    The indices of the k items with the highest dot product for each query, best first, computed over
    blocks of ``chunk_size`` items so that the full (num_queries, num_items) matrix never exists.
    """
    name = "chunked_top_k"
    generator = torch.Generator().manual_seed(1313)
    for num_items, chunk_size, k in ((100, 32, 5), (64, 64, 1), (50, 7, 10), (30, 100, 30)):
        queries = torch.nn.functional.normalize(torch.randn(12, 16, generator=generator), dim=-1)   # (12, 16)
        items = torch.nn.functional.normalize(torch.randn(num_items, 16, generator=generator), dim=-1)
        expected = torch.topk(queries @ items.T, k, dim=1).indices                                 # (12, k)
        got = _call(name, chunked_top_k, queries, items, k, chunk_size)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the indices?")
        got = torch.as_tensor(got)
        if tuple(got.shape) != tuple(expected.shape):
            raise ExerciseError(f"{name}(k={k}, chunk_size={chunk_size}): expected shape {tuple(expected.shape)}, "
                                f"got {tuple(got.shape)}")
        if not torch.equal(got.long(), expected):
            raise ExerciseError(f"{name}(num_items={num_items}, k={k}, chunk_size={chunk_size}): indices differ "
                                "from torch.topk(queries @ items.T, k). Offset each chunk's indices by its start, "
                                "keep the running best k scores and indices, and return them best first.")
    passed(name)

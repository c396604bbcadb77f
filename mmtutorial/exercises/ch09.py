"""Checkers for chapter 9 (Text representations).

Each checker calls the learner's function on fixed problems, compares it with a direct computation,
raises :class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed, call_answer as _call


def check_subsample_keep_probability(keep_probability: Callable) -> None:
    """``keep_probability(counts, threshold) -> array``: Mikolov et al.'s probability of keeping each
    occurrence of a word, min(1, sqrt(t / f)) with f = count / total."""
    name = "keep_probability"
    rng = np.random.default_rng(9)
    for threshold in (1e-3, 1e-4):
        counts = np.r_[rng.integers(1, 50, 200), [80_000, 12_000, 500]].astype(np.int64)   # a few frequent words
        frequency = counts / counts.sum()
        expected = np.minimum(1.0, np.sqrt(threshold / frequency))
        got = _call(name, keep_probability, counts, threshold)
        if got is not None and np.any(np.asarray(got) > 1.0 + 1e-12):
            raise ExerciseError(f"{name}: some values exceed 1; a probability is at most 1 (clip with min(1, ...))")
        check_close(f"{name}(threshold={threshold})", got, expected,
                    hint="f is the relative frequency count/total (not the raw count); keep = min(1, sqrt(t/f)).")
    passed(name)


def check_glove_weight(glove_weight: Callable) -> None:
    """``glove_weight(x, x_max, alpha) -> array``: f(x) = (x / x_max)^alpha for x < x_max, else 1."""
    name = "glove_weight"
    x = np.array([0.5, 1.0, 3.0, 10.0, 50.0, 99.9, 100.0, 150.0, 1e4])
    for x_max, alpha in ((100.0, 0.75), (10.0, 0.5)):
        expected = np.where(x < x_max, (x / x_max) ** alpha, 1.0)
        got = _call(name, glove_weight, x, x_max, alpha)
        if got is not None and np.asarray(got, dtype=np.float64).max() > 1.0 + 1e-12:
            raise ExerciseError(f"{name}: values above 1 for x >= x_max; f must be capped at 1 there")
        check_close(f"{name}(x_max={x_max}, alpha={alpha})", got, expected,
                    hint="f is a weight on the pair (i, j) that depends only on the count X_ij, not a word frequency.")
    passed(name)


def _analogy_problem():
    """Vectors where the two classic slips give a different answer from 3CosAdd."""
    rng = np.random.default_rng(90)
    dim = 8
    base = rng.normal(size=(12, dim))                          # (12, dim) unrelated words 0..11
    base /= np.linalg.norm(base, axis=1, keepdims=True)        # unit rows, so the query is the same either way
    a, a_star, b = base[0], base[1], base[2]
    query = (a_star - a + b) / np.linalg.norm(a_star - a + b)  # (dim,)
    side = rng.normal(size=dim)
    side -= (side @ query) * query
    side /= np.linalg.norm(side)                               # a unit direction orthogonal to the query
    others = base[3:] - np.outer(base[3:] @ query, query)      # unrelated words: orthogonal to the query
    base[3:] = others / np.linalg.norm(others, axis=1, keepdims=True)
    cos_b = b @ query                                          # b is close to its own query: must be left out
    answer = 0.9 * cos_b * query + np.sqrt(1 - (0.9 * cos_b) ** 2) * side          # cosine 0.9·cos_b
    long_word = 6.0 * (0.5 * cos_b * query + np.sqrt(1 - (0.5 * cos_b) ** 2) * -side)  # wins without normalising
    vectors = np.vstack([base, answer, long_word])             # (14, dim); 12 is the answer
    return vectors, (0, 1, 2), 12


def check_analogy(analogy: Callable) -> None:
    """``analogy(vectors, a, a_star, b) -> int``: 3CosAdd, the index x (not a, a* or b) maximising
    cos(x, a* − a + b) with the rows of ``vectors`` normalised to length 1."""
    name = "analogy"
    vectors, (a, a_star, b), answer = _analogy_problem()
    got = _call(name, analogy, vectors.copy(), a, a_star, b)
    if got is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the index?")
    got = int(got)
    if got in (a, a_star, b):
        raise ExerciseError(f"{name}: returned one of the query words ({got}); leave a, a* and b out of the search")
    if got != answer:
        hint = (" Normalise every row to length 1 first: dot products favour long vectors."
                if got == 13 else "")
        raise ExerciseError(f"{name}: expected index {answer}, got {got}.{hint}")
    rng = np.random.default_rng(91)
    for _ in range(5):                                          # random problems against a direct computation
        vectors = rng.normal(size=(30, 6)) * rng.uniform(0.2, 3.0, size=(30, 1))
        a, a_star, b = rng.choice(30, 3, replace=False)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        query = unit[a_star] - unit[a] + unit[b]
        scores = unit @ (query / np.linalg.norm(query))
        scores[[a, a_star, b]] = -np.inf
        check_close(f"{name} (random problem)", int(_call(name, analogy, vectors.copy(), a, a_star, b)),
                    int(np.argmax(scores)), hint="Use the unit vectors in the query too: a* - a + b of unit rows.")
    passed(name)

"""Checkers for chapter 4 (Evaluating models).

Each checker calls the learner's function on fixed random problems, compares it with scikit-learn or a
direct computation, raises :class:`ExerciseError` with a hint when it differs and prints a confirmation
when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed, call_answer as _call


def _binary_problems(count: int = 5, size: int = 60):
    """Fixed (y_true, y_pred, scores) triples with a few ties in the scores."""
    rng = np.random.default_rng(404)
    for _ in range(count):
        y_true = rng.integers(0, 2, size)                                   # (n,)
        scores = np.round(np.clip(0.35 * y_true + rng.random(size) * 0.8, 0, 1), 2)  # (n,) some ties
        y_pred = (scores >= 0.5).astype(np.int64)                           # (n,)
        yield y_true, y_pred, scores


def check_fbeta(fbeta: Callable) -> None:
    """``fbeta(y_true, y_pred, beta) -> float``: the F-beta score of the positive class 1.

    F_beta = (1 + beta^2) P R / (beta^2 P + R), with 0.0 when P = R = 0.
    """
    from sklearn.metrics import fbeta_score

    name = "fbeta"
    for y_true, y_pred, _ in _binary_problems():
        for beta in (0.5, 1.0, 2.0):
            expected = fbeta_score(y_true, y_pred, beta=beta, zero_division=0.0)
            check_close(f"{name}(beta={beta})", _call(name, fbeta, y_true, y_pred, beta), expected,
                        hint="F_beta = (1 + beta**2) * P * R / (beta**2 * P + R); beta > 1 favours recall.")
    nothing_predicted = np.zeros(10, dtype=np.int64)
    check_close(f"{name} with no positive prediction", _call(name, fbeta, np.r_[1, np.zeros(9, int)],
                                                             nothing_predicted, 2.0), 0.0,
                hint="When P = R = 0 return 0.0 (scikit-learn's zero_division=0).")
    passed(name)


def check_precision_at_k(precision_at_k: Callable) -> None:
    """``precision_at_k(y_true, scores, k) -> float``: fraction of positives among the k highest scores."""
    name = "precision_at_k"
    rng = np.random.default_rng(7)
    for _ in range(5):
        y_true = rng.integers(0, 2, 50)                                     # (n,)
        scores = rng.permutation(50) + 0.5 * y_true                         # (n,) distinct scores
        for k in (1, 5, 10, 50):
            top_k = np.argsort(-scores)[:k]
            check_close(f"{name}(k={k})", _call(name, precision_at_k, y_true, scores, k),
                        float(y_true[top_k].mean()),
                        hint="Sort by decreasing score, keep the first k, count the positives, divide by k.")
    passed(name)


def check_best_f1_threshold(best_f1_threshold: Callable) -> None:
    """``best_f1_threshold(y_true, scores) -> (threshold, f1)``: the threshold ``t`` (one of the scores;
    predict 1 when ``score >= t``) that maximises F1, and that F1."""
    from sklearn.metrics import f1_score

    name = "best_f1_threshold"
    for y_true, _, scores in _binary_problems():
        result = _call(name, best_f1_threshold, y_true, scores)
        if not isinstance(result, tuple) or len(result) != 2:
            raise ExerciseError(f"{name}: expected a tuple (threshold, f1), got {result!r}")
        threshold, f1 = result
        best = max(f1_score(y_true, (scores >= t).astype(int)) for t in np.unique(scores))
        check_close(f"{name} (best F1)", f1, best,
                    hint="Try every distinct score as a threshold and keep the largest F1.")
        achieved = f1_score(y_true, (scores >= float(threshold)).astype(int))
        check_close(f"{name} (F1 reached by your threshold)", achieved, best,
                    hint="Return the threshold that produced the best F1, not only the F1.")
    passed(name)


def check_balanced_accuracy(balanced_accuracy: Callable) -> None:
    """``balanced_accuracy(y_true, y_pred) -> float``: the mean per-class recall."""
    from sklearn.metrics import balanced_accuracy_score

    name = "balanced_accuracy"
    rng = np.random.default_rng(11)
    for num_classes in (2, 3, 10):
        y_true = rng.choice(num_classes, 200, p=np.r_[0.6, np.full(num_classes - 1, 0.4 / (num_classes - 1))])
        y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, num_classes, 200))
        check_close(f"{name} ({num_classes} classes)", _call(name, balanced_accuracy, y_true, y_pred),
                    balanced_accuracy_score(y_true, y_pred),
                    hint="Average the recall TP_k / (TP_k + FN_k) over the classes present in y_true.")
    always_majority = np.zeros(100, dtype=np.int64)
    y_true = np.r_[np.zeros(90, int), np.ones(10, int)]
    check_close(f"{name} (majority-class classifier)", _call(name, balanced_accuracy, y_true, always_majority),
                0.5, hint="A classifier that always answers the majority class has balanced accuracy 1/K.")
    passed(name)

"""Checkers for chapter 17 (a small vision-language model).

Each checker calls the learner's function on fixed inputs, compares it with the package's answer, raises
:class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from ._common import ExerciseError, call_answer as _call, passed


def check_answer_mask(answer_mask: Callable) -> None:
    """``answer_mask(tokens, targets) -> (n, L) bool``: True exactly where the loss counts (the answers)."""
    from ..data.scenes import caption_vocabulary
    from ..models.vlm import IGNORE_INDEX, conversation_sequences

    name = "answer_mask"
    vocab = caption_vocabulary()
    conversations = [[("how many shapes are there?", "3")],
                     [("what color is the circle?", "red"), ("is there a blue square?", "no")],
                     [("", "a red circle and a blue square")]]
    tokens, targets, _ = conversation_sequences(vocab, conversations)
    expected = (targets != IGNORE_INDEX).numpy()
    got = _call(name, answer_mask, tokens.clone(), targets.clone())
    if got is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the mask?")
    got = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got).astype(bool)
    if got.shape != expected.shape:
        raise ExerciseError(f"{name}: expected a mask of shape {expected.shape} (one entry per position), got {got.shape}")
    if not np.array_equal(got, expected):
        not_pad = (tokens != vocab.pad_id).numpy()
        hint = ("This marks every real token, questions included: the loss must count only the answers."
                if np.array_equal(got, not_pad) else
                "A position counts when its *target* (the next token) is part of an answer or the <eos> after it; "
                "the targets already hold IGNORE_INDEX everywhere else.")
        raise ExerciseError(f"{name}: {int((got != expected).sum())} positions are wrong. {hint}")
    passed(name)


def check_per_kind_accuracy(per_kind_accuracy: Callable) -> None:
    """``per_kind_accuracy(kinds, predictions, answers) -> {kind: accuracy}`` over the questions of each kind."""
    name = "per_kind_accuracy"
    kinds = ["count", "color", "count", "shape", "color", "color", "existence", "count"]
    answers = ["2", "red", "0", "circle", "blue", "green", "yes", "1"]
    predictions = ["2", "red", "1", "square", "blue", "red", "yes", "1"]
    expected = {"color": 2 / 3, "count": 2 / 3, "existence": 1.0, "shape": 0.0}
    got = _call(name, per_kind_accuracy, list(kinds), list(predictions), list(answers))
    if not isinstance(got, dict):
        raise ExerciseError(f"{name}: return a dict {{kind: accuracy}}, got {type(got).__name__}")
    if set(got) != set(expected):
        raise ExerciseError(f"{name}: expected one entry per kind {sorted(expected)}, got {sorted(got)}")
    for kind, value in expected.items():
        if not np.isclose(float(got[kind]), value):
            overall = np.mean([p == a for p, a in zip(predictions, answers)])
            hint = (" That is the overall accuracy; divide by the number of questions *of this kind*."
                    if np.isclose(float(got[kind]), overall) else "")
            raise ExerciseError(f"{name}: accuracy of {kind!r} should be {value:.3f}, got {float(got[kind]):.3f}.{hint}")
    passed(name)


def check_majority_answer(majority_answer: Callable) -> None:
    """``majority_answer(train_answers, test_kinds) -> answers``: the most frequent training answer of each
    test question's kind (the simplest blind baseline: it knows the priors, never the image)."""
    name = "majority_answer"
    train = [("count", "0"), ("count", "0"), ("count", "1"), ("color", "red"), ("color", "blue"),
             ("color", "blue"), ("existence", "no"), ("existence", "no"), ("existence", "yes")]
    test_kinds = ["color", "count", "existence", "count"]
    counts: dict[str, Counter] = {}
    for kind, answer in train:
        counts.setdefault(kind, Counter())[answer] += 1
    expected = [counts[kind].most_common(1)[0][0] for kind in test_kinds]
    got = _call(name, majority_answer, list(train), list(test_kinds))
    if got is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the answers?")
    got = list(got)
    if got != expected:
        hint = (" Count answers separately for each kind: the most frequent colour is not the most frequent count."
                if len(set(got)) == 1 else "")
        raise ExerciseError(f"{name}: expected {expected}, got {got}.{hint}")
    passed(name)

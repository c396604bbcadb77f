"""Checkers for chapter 16 (image captioning).

Each checker calls the learner's function on fixed inputs, compares it with the package's version
(``mmtutorial.metrics.bleu_statistics``, itself tested against sacrebleu, and the teacher-forcing shift of
``mmtutorial.models.captioner.caption_loss``), raises :class:`ExerciseError` with a hint when it differs
and prints a confirmation when it agrees.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from ._common import ExerciseError, call_answer as _call, check_close, passed

_PRECISION_CASES = (
    # (hypothesis, references, n)
    ("the the the the the the the", ["the cat is on the mat", "there is a cat on the mat"], 1),   # Papineni's example
    ("a red circle and a red circle", ["a red circle and a blue square"], 1),
    ("a red circle and a red circle", ["a red circle and a blue square"], 2),
    ("a blue square", ["a red circle", "a blue circle"], 2),
    ("a red circle , a blue square and a green cross", ["a red circle , a blue square and a green cross"], 4),
)


def _reference_precision(hypothesis: str, references: list[str], n: int) -> tuple[int, int]:
    def grams(words):
        return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))

    hyp = grams(hypothesis.split())
    best = Counter()
    for ref in references:
        best |= grams(ref.split())
    return sum(min(count, best[g]) for g, count in hyp.items()), sum(hyp.values())


def check_clipped_precision(clipped_precision: Callable) -> None:
    """``clipped_precision(hypothesis, references, n) -> (matched, total)``: BLEU's modified n-gram counts."""
    name = "clipped_precision"
    for hypothesis, references, n in _PRECISION_CASES:
        expected = _reference_precision(hypothesis, references, n)
        got = _call(name, clipped_precision, hypothesis, list(references), n)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` (matched, total)?")
        try:
            matched, total = (int(value) for value in got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: return a pair (matched, total) of counts, got {got!r}") from None
        if total != expected[1]:
            raise ExerciseError(f"{name}({hypothesis!r}, n={n}): total should be the number of {n}-grams in the "
                                f"hypothesis, {expected[1]}, got {total}")
        if matched != expected[0]:
            words = hypothesis.split()
            hyp_grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            ref_grams = {tuple(r.split()[i:i + n]) for r in references for i in range(len(r.split()) - n + 1)}
            unclipped = sum(g in ref_grams for g in hyp_grams)
            hint = (" Clip each n-gram's count by the largest number of times it occurs in any ONE reference."
                    if matched >= unclipped > expected[0] else
                    " Count hypothesis n-grams that also occur in a reference, each at most as often as there.")
            raise ExerciseError(f"{name}({hypothesis!r}, n={n}): expected {expected[0]} matched {n}-grams, "
                                f"got {matched}.{hint}")
    passed(name)


def check_brevity_penalty(brevity_penalty: Callable) -> None:
    """``brevity_penalty(hyp_length, ref_length) -> float``: exp(1 - r/c) for c < r, else 1 (0 for c = 0)."""
    name = "brevity_penalty"
    for c, r in ((10, 10), (12, 10), (9, 10), (5, 10), (1, 7), (0, 4)):
        expected = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)
        got = _call(name, brevity_penalty, c, r)
        hint = "BP = 1 when the hypotheses are at least as long as the references, else exp(1 - r / c)."
        if c == 0:
            hint += " With no words at all (c = 0) the penalty is 0."
        if got is not None and c > r and not np.isclose(float(got), 1.0):
            hint = "Longer hypotheses are not penalised: BP = 1 for c >= r (clipped precision handles them)."
        check_close(f"{name}(c={c}, r={r})", got, expected, rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)


def check_teacher_forcing_pairs(teacher_forcing_pairs: Callable) -> None:
    """``teacher_forcing_pairs(captions, pad_id) -> (inputs, targets)``: inputs = captions[:, :-1], targets =
    captions[:, 1:] with padding replaced by -100."""
    name = "teacher_forcing_pairs"
    captions = torch.tensor([[1, 10, 11, 12, 2, 0, 0], [1, 13, 2, 0, 0, 0, 0], [1, 10, 14, 15, 16, 17, 2]])
    expected_inputs = captions[:, :-1]
    expected_targets = captions[:, 1:].masked_fill(captions[:, 1:] == 0, -100)
    got = _call(name, teacher_forcing_pairs, captions.clone(), 0)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise ExerciseError(f"{name}: return a pair (inputs, targets), got {type(got).__name__}")
    inputs, targets = (torch.as_tensor(value) for value in got)
    if tuple(inputs.shape) != tuple(expected_inputs.shape) or tuple(targets.shape) != tuple(expected_targets.shape):
        raise ExerciseError(f"{name}: inputs and targets should both have shape {tuple(expected_inputs.shape)} "
                            f"(one position shorter than the captions), got {tuple(inputs.shape)} and "
                            f"{tuple(targets.shape)}")
    if torch.equal(inputs, captions[:, 1:]) or torch.equal(targets.clamp(min=0), expected_inputs.clamp(min=0)):
        raise ExerciseError(f"{name}: inputs and targets are swapped: the decoder READS <bos> w1 .. wn and must "
                            "PREDICT w1 .. wn <eos>")
    if not torch.equal(inputs, expected_inputs):
        raise ExerciseError(f"{name}: inputs should be the captions without their last position, captions[:, :-1]")
    if torch.equal(targets, captions[:, 1:]):
        raise ExerciseError(f"{name}: padding positions must not be scored: set those targets to -100 "
                            "(F.cross_entropy's ignore_index)")
    if not torch.equal(targets, expected_targets):
        raise ExerciseError(f"{name}: targets should be captions[:, 1:] with every pad_id replaced by -100")
    passed(name)

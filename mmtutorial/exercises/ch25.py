"""Checkers for chapter 25 (the road to multimodal large models).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.data.timeline``, itself tested against the shipped file and ``torch.utils.flop_counter``),
raises :class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, call_answer as _call, check_close, passed


def check_doubling_time(doubling_time: Callable) -> None:
    """``doubling_time(decimal_years, values) -> months`` from a least-squares line through (year, log2 value)."""
    from ..data.timeline import doubling_time_months, load_timeline

    name = "doubling_time"
    with_parameters = [m for m in load_timeline() if m.parameters is not None]
    cases = [([2018.0, 2019.0, 2020.0], [1.0, 4.0, 16.0]),
             ([2017.0, 2018.5, 2019.0, 2021.25], [3.0, 50.0, 40.0, 9000.0]),
             ([m.decimal_year for m in with_parameters], [m.parameters for m in with_parameters])]
    for years, values in cases:
        got = _call(name, doubling_time, list(years), list(values))
        expected = doubling_time_months(years, values)
        hint = ("Fit log2(value) = a + b * year by least squares (np.polyfit(years, np.log2(values), 1)); "
                "b is doublings per year, so the doubling time is 12 / b months.")
        if got is not None and np.isclose(float(got), expected / 12):
            hint = "That is in years; the answer is in months. " + hint
        elif got is not None and np.isclose(float(got), expected * np.log2(np.e)):
            hint = "Use log2, not the natural log, for a doubling time. " + hint
        check_close(f"{name} ({len(years)} points)", got, expected, rtol=1e-6, hint=hint)
    passed(name)


def check_gpt_training_flops(gpt_training_flops: Callable) -> None:
    """``gpt_training_flops(num_layers, dim, vocab_size, seq_len) -> FLOPs`` of one forward+backward pass."""
    from ..data.timeline import gpt_training_flops as reference

    name = "gpt_training_flops"
    for args in ((2, 64, 100, 16), (12, 768, 50257, 1024), (1, 8, 10, 3)):
        got = _call(name, gpt_training_flops, *args)
        expected = reference(*args)
        hint = ("Forward: 2 FLOPs per weight per token (12 dim^2 per layer plus dim * vocab_size for the head) and "
                "4 * seq_len * dim per token per layer for QK^T and AV; backward costs twice the forward.")
        if got is not None and np.isclose(float(got), expected / 3):
            hint = "That is the forward pass only. " + hint
        elif got is not None and np.isclose(float(got), 6 * (12 * args[0] * args[1] ** 2 + args[1] * args[2]) * args[3]):
            hint = "That is 6ND without the attention term. " + hint
        check_close(f"{name}{args}", got, expected, rtol=1e-9, hint=hint)
    passed(name)


def check_multimodal_names(multimodal_names: Callable) -> None:
    """``multimodal_names(milestones) -> list of names`` of the rows reading or writing two modalities or more."""
    from ..data.timeline import load_timeline

    name = "multimodal_names"
    milestones = load_timeline()
    got = _call(name, multimodal_names, list(milestones))
    if got is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the list?")
    expected = [m.name for m in milestones if m.multimodal]
    got = list(got)
    if got != expected:
        hint = ("Collect each row's inputs and outputs, leave out 'embeddings' and 'class scores' (they are not "
                "modalities), and keep the rows with two or more kinds, in the file's date order.")
        if "GPT-3" in got:
            hint = "GPT-3 reads and writes text only. " + hint
        raise ExerciseError(f"{name}: got {got}, expected {expected}. {hint}")
    passed(name)

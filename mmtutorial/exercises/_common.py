"""Shared pieces of the exercise checkers."""
from __future__ import annotations

from typing import Callable

import numpy as np


class ExerciseError(AssertionError):
    """Raised by a checker when an answer is wrong; the message says what was expected."""


def check_close(name: str, got, expected, *, rtol: float = 1e-6, atol: float = 1e-8, hint: str = "") -> None:
    """Compare an answer with the expected value; raise ``ExerciseError`` naming both when they differ."""
    if got is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the result?")
    got_array = np.asarray(got, dtype=np.float64)
    expected_array = np.asarray(expected, dtype=np.float64)
    if got_array.shape != expected_array.shape:
        raise ExerciseError(f"{name}: expected shape {expected_array.shape}, got {got_array.shape}. {hint}".strip())
    if not np.allclose(got_array, expected_array, rtol=rtol, atol=atol):
        worst = np.max(np.abs(got_array - expected_array))
        raise ExerciseError(f"{name}: values differ from the reference (largest difference {worst:.3g}). "
                            f"{hint}".strip())


def passed(name: str) -> None:
    print(f"✓ {name}: correct")


def call_answer(name: str, fn: Callable, *args, **kwargs):
    """Call the learner's ``fn``; a non-function or a stub still raising NotImplementedError gets a clear message."""
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        raise ExerciseError(f"{name}: the function still raises NotImplementedError; write it first") from error


def as_float64(value) -> np.ndarray:
    """A learner's answer (NumPy, list or torch tensor on any device) as a float64 array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)

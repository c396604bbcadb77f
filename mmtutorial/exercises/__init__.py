"""Checkers for the chapters' exercises (one module per chapter: ``ch01``, ``ch02``, ...).

A checker takes the learner's function or value, raises ``AssertionError`` with a hint when it is
wrong and prints a short confirmation when it is right.  The autograder calls the same functions.
"""
from __future__ import annotations

import importlib
import re

from ._common import ExerciseError, check_close, passed


def __getattr__(name: str):
    if re.fullmatch(r"ch\d\d", name):
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mmtutorial.exercises' has no attribute {name!r}")


__all__ = ["ExerciseError", "check_close", "passed"]

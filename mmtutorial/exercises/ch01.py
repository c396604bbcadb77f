"""Checkers for chapter 1 (Neurons, layers and the forward pass).

Each checker calls the learner's function on fixed inputs (extreme values included), compares it with
PyTorch or a direct count, raises :class:`ExerciseError` with a hint when it differs and prints a
confirmation when it agrees.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed

# Moderate values plus the extremes where a naive formula overflows.
_INPUTS = np.array([-1000.0, -40.0, -5.0, -1.0, -0.1, 0.0, 0.1, 1.0, 5.0, 40.0, 1000.0])


def _call(name: str, fn: Callable, *args):
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # judge the values, not the warnings
            return fn(*args)
    except NotImplementedError as error:
        raise ExerciseError(f"{name}: the function still raises NotImplementedError; write it first") from error


def _finite(name: str, value, hint: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ExerciseError(f"{name}: returned inf or nan for inputs {_INPUTS[~np.isfinite(array)].tolist()}. "
                            f"{hint}")
    return array


def check_softplus(softplus: Callable, softplus_grad: Callable) -> None:
    """``softplus(x) = log(1 + e^x)`` and its derivative, element-wise on an array, stable for |x| = 1000."""
    import torch
    import torch.nn.functional as F

    x = torch.tensor(_INPUTS, dtype=torch.float64, requires_grad=True)
    expected = F.softplus(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    hint = "Use log(1 + e^x) = max(x, 0) + log1p(exp(-|x|)), which never exponentiates a large number."
    got = _finite("softplus", _call("softplus", softplus, _INPUTS.copy()), hint)
    check_close("softplus", got, expected.detach().numpy(), rtol=1e-9, atol=1e-12, hint=hint)
    hint_grad = "d/dx log(1 + e^x) = e^x / (1 + e^x): the sigmoid (computed stably)."
    got_grad = _finite("softplus_grad", _call("softplus_grad", softplus_grad, _INPUTS.copy()), hint_grad)
    check_close("softplus_grad", got_grad, expected_grad.numpy(), rtol=1e-9, atol=1e-12, hint=hint_grad)
    passed("softplus and softplus_grad")


def check_log_sigmoid(log_sigmoid: Callable) -> None:
    """``log_sigmoid(x) = log(1 / (1 + e^{-x}))`` element-wise, finite and exact for x = -1000 and 1000."""
    import torch
    import torch.nn.functional as F

    expected = F.logsigmoid(torch.tensor(_INPUTS, dtype=torch.float64)).numpy()
    hint = ("log sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)); log(sigmoid(x)) gives -inf "
            "at x = -1000 because sigmoid(-1000) rounds to 0.")
    got = _finite("log_sigmoid", _call("log_sigmoid", log_sigmoid, _INPUTS.copy()), hint)
    check_close("log_sigmoid", got, expected, rtol=1e-9, atol=1e-12, hint=hint)
    passed("log_sigmoid")


def _reference_count(sizes) -> int:
    return int(sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])))


def check_count_mlp_parameters(count_mlp_parameters: Callable) -> None:
    """``count_mlp_parameters(sizes) -> int``: weights and biases of an MLP with layer widths ``sizes``.

    ``sizes = [d_0, d_1, ..., d_L]`` lists the input size, the hidden widths and the number of outputs.
    """
    name = "count_mlp_parameters"
    cases = [[64, 10], [64, 32, 10], [784, 256, 128, 10], [3, 5, 5, 5, 1], [1024, 4096, 1024]]
    for sizes in cases:
        got = _call(name, count_mlp_parameters, list(sizes))
        expected = _reference_count(sizes)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the result?")
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise ExerciseError(f"{name}({sizes}): expected an int, got {type(got).__name__}")
        if got != expected:
            hint = ("a layer d_in -> d_out has d_in * d_out weights and d_out biases"
                    if got != _reference_count(sizes) - sum(sizes[1:]) else "did you forget the biases?")
            raise ExerciseError(f"{name}({sizes}): expected {expected:,}, got {got:,}; {hint}")
    passed(name)

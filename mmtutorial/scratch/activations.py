"""Activation functions and their derivatives, in NumPy (chapter 1).

Every function acts element by element on an array of any shape and returns a float64 array of the same
shape.  ``f_grad(x)`` is the derivative ``f'(x)`` with respect to the input, so that in backprop
``dL/dz = dL/da * f_grad(z)`` for ``a = f(z)``.  ``ACTIVATIONS`` maps a name to ``(f, f_grad)``.

    sigmoid(x) = 1 / (1 + e^{-x})                      sigmoid'(x) = sigmoid(x) (1 - sigmoid(x))
    tanh(x)    = (e^x - e^{-x}) / (e^x + e^{-x})       tanh'(x)    = 1 - tanh(x)^2
    relu(x)    = max(x, 0)                              relu'(x)    = 1 if x > 0 else 0
    gelu(x)    = x Phi(x) = x/2 (1 + erf(x / sqrt 2))   gelu'(x)    = Phi(x) + x phi(x)
    gelu(x, approximate="tanh") = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GPT-2's form)

Phi and phi are the standard normal CDF and density (Hendrycks & Gimpel, 2016).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import erf

__all__ = ["sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad", "gelu", "gelu_grad",
           "ACTIVATIONS", "get_activation"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_COEF = 0.044715
_APPROXIMATIONS = ("none", "tanh")


def _as_float_array(x, name: str = "x") -> np.ndarray:
    """``x`` as a float64 array; ``TypeError`` for anything that is not real numbers."""
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def sigmoid(x) -> np.ndarray:
    """Logistic sigmoid, computed without overflow: for x < 0 use e^x / (1 + e^x) instead."""
    x = _as_float_array(x)
    e = np.exp(-np.abs(x))                      # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(x) -> np.ndarray:
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x) -> np.ndarray:
    return np.tanh(_as_float_array(x))


def tanh_grad(x) -> np.ndarray:
    return 1.0 - np.tanh(_as_float_array(x)) ** 2


def relu(x) -> np.ndarray:
    return np.maximum(_as_float_array(x), 0.0)


def relu_grad(x) -> np.ndarray:
    """1 where x > 0, else 0 (the value at exactly 0 is a convention; PyTorch also uses 0)."""
    return (_as_float_array(x) > 0).astype(np.float64)


def _check_approximate(approximate: str) -> None:
    if approximate not in _APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {_APPROXIMATIONS}, got {approximate!r}")


def gelu(x, approximate: str = "none") -> np.ndarray:
    """GELU: x Phi(x) with the exact erf form, or GPT-2's tanh approximation (``approximate="tanh"``)."""
    _check_approximate(approximate)
    x = _as_float_array(x)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + _GELU_TANH_COEF * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_grad(x, approximate: str = "none") -> np.ndarray:
    """d gelu / dx.

    exact:  Phi(x) + x phi(x), with phi(x) = exp(-x^2/2) / sqrt(2 pi)
    tanh:   (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(sqrt(2/pi)(x + 0.044715 x^3))
    """
    _check_approximate(approximate)
    x = _as_float_array(x)
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_COEF * x**3))
        d_inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_COEF * x**2)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * d_inner
    cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def _gelu_tanh(x) -> np.ndarray:
    return gelu(x, approximate="tanh")


def _gelu_tanh_grad(x) -> np.ndarray:
    return gelu_grad(x, approximate="tanh")


Activation = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]

# name -> (f, f_grad); "gelu" is the exact erf form, "gelu_tanh" GPT-2's approximation.
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "relu": (relu, relu_grad),
    "gelu": (gelu, gelu_grad),
    "gelu_tanh": (_gelu_tanh, _gelu_tanh_grad),
}


def get_activation(name: str) -> Activation:
    """``(f, f_grad)`` for a name in :data:`ACTIVATIONS`; ``ValueError`` naming the choices otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"activation name must be a str, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]

"""Finite-difference gradient checking (chapter 2).

The central difference

    df/dθ_i ≈ (f(θ + ε e_i) - f(θ - ε e_i)) / (2ε)

has an error of order ε² (the ε¹ terms of the two Taylor expansions cancel), against ε for the one-sided
difference.  With float64 and ε = 1e-6 the truncation error (~1e-12) and the rounding error
(~1e-16 / 1e-6 = 1e-10) are both tiny, so a correct analytic gradient agrees to a relative error well
below 1e-6, while a wrong formula is typically off by 1e-2 or more.

Relative error of two gradient arrays (one number per array, robust to entries that are ~0):

    rel(a, b) = ||a - b|| / max(||a|| + ||b||, tiny)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["numerical_gradient", "relative_error", "gradient_check"]

_TINY = 1e-300


def numerical_gradient(f: Callable, params, eps: float = 1e-6):
    """Central-difference gradient of the scalar ``f(params)`` with respect to every entry of ``params``.

    ``params`` is one float array or a dict of them; entries are nudged **in place** and restored, so ``f``
    may also ignore its argument and read the arrays through a model.  Returns an array (or a dict with
    the same keys) of the same shape(s).
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if isinstance(params, Mapping):
        return {name: _numerical_gradient_array(f, params, array, name, eps) for name, array in params.items()}
    return _numerical_gradient_array(f, params, params, "params", eps)


def _numerical_gradient_array(f: Callable, params, array, name: str, eps: float) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        got = f"array of {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
        raise TypeError(f"{name} must be a float NumPy array (it is changed in place), got {got}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous so that it can be changed in place; pass np.ascontiguousarray")
    grad = np.zeros(array.shape, dtype=np.float64)
    flat, flat_grad = array.reshape(-1), grad.reshape(-1)            # views: writes reach `array`
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        f_plus = float(f(params))
        flat[i] = original - eps
        f_minus = float(f(params))
        flat[i] = original                                            # restore exactly
        flat_grad[i] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(a, b) -> float:
    """||a - b|| / (||a|| + ||b||): 0 for equal arrays, 1 when one is zero, about 2 for opposite signs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"relative_error needs arrays of one shape, got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), _TINY))


def gradient_check(model_or_fn, *args, params: dict[str, np.ndarray] | None = None, eps: float = 1e-6,
                   per_parameter: bool = False):
    """Largest relative error between analytic and central-difference gradients.

    Two ways to call it:

    - ``gradient_check(model, x, y)`` for any object with ``params`` and ``loss_and_grads(x, y)``
      (such as :class:`~mmtutorial.scratch.mlp.MLP`);
    - ``gradient_check(fn, params=params)`` where ``fn(params) -> (loss, grads)`` and ``grads`` has the
      keys of ``params``.

    With ``per_parameter=True`` returns ``{name: relative error}`` instead of the maximum.
    """
    if hasattr(model_or_fn, "loss_and_grads") and hasattr(model_or_fn, "params"):
        model = model_or_fn
        params = model.params
        loss_and_grads = lambda _params: model.loss_and_grads(*args)      # noqa: E731 (reads params in place)
    elif callable(model_or_fn):
        if params is None:
            raise ValueError("gradient_check(fn, params=...) needs the params dict that fn differentiates")
        if args:
            raise ValueError("extra positional arguments are only used with a model: pass them inside fn")
        loss_and_grads = model_or_fn
    else:
        raise TypeError(f"expected a model with loss_and_grads() or a function, got {type(model_or_fn).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")

    _, analytic = loss_and_grads(params)
    analytic = {name: np.array(g, dtype=np.float64) for name, g in analytic.items()}  # copy before nudging
    if set(analytic) != set(params):
        raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(analytic)}")
    numeric = numerical_gradient(lambda p: loss_and_grads(p)[0], params, eps=eps)
    errors = {name: relative_error(analytic[name], numeric[name]) for name in params}
    return errors if per_parameter else max(errors.values())

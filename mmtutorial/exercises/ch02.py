"""Checkers for chapter 2 (Backpropagation from scratch).

Each checker runs the learner's code on fixed random problems in float64 and compares its gradients with
``torch.autograd``; a wrong answer raises :class:`ExerciseError` with a hint.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed, call_answer as _call


def check_value_sin(sin: Callable) -> None:
    """``sin(v: Value) -> Value``: a new operation for the scalar autograd, with its ``_backward``.

    Checked on f(x, y) = sin(x * y) * sin(x) + x at several points, against ``torch.autograd``.
    """
    import torch

    from ..scratch.autograd import Value

    name = "sin"
    for x0, y0 in [(0.3, -1.2), (2.0, 0.5), (-1.7, 3.1), (0.0, 1.0)]:
        x, y = Value(x0), Value(y0)
        s_xy = _call(name, sin, x * y)
        if not isinstance(s_xy, Value):
            raise ExerciseError(f"{name}: expected a Value, got {type(s_xy).__name__}")
        out = s_xy * _call(name, sin, x) + x
        out.backward()
        xt = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        yt = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
        expected = torch.sin(xt * yt) * torch.sin(xt) + xt
        expected.backward()
        hint = "out = Value(math.sin(v.data), (v,), 'sin'); its _backward adds math.cos(v.data) * out.grad to v.grad."
        check_close(f"{name}: forward value at ({x0}, {y0})", out.data, expected.item(), rtol=1e-12, hint=hint)
        check_close(f"{name}: d/dx at ({x0}, {y0})", x.grad, xt.grad.item(), rtol=1e-10, atol=1e-12, hint=hint)
        check_close(f"{name}: d/dy at ({x0}, {y0})", y.grad, yt.grad.item(), rtol=1e-10, atol=1e-12, hint=hint)
    passed(name)


def check_linear_regression_grads(linear_regression_grads: Callable) -> None:
    """``linear_regression_grads(X, y, w, b) -> (dw, db)`` for L = mean((X w + b - y)^2).

    Shapes: X (n, d), y (n,), w (d,), b a float; dw (d,), db a float.
    """
    import torch

    name = "linear_regression_grads"
    rng = np.random.default_rng(2)
    for n, d in [(20, 3), (7, 1), (50, 10)]:
        X, y, w = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)
        b = float(rng.normal())
        result = _call(name, linear_regression_grads, X.copy(), y.copy(), w.copy(), b)
        if not isinstance(result, tuple) or len(result) != 2:
            raise ExerciseError(f"{name}: expected a tuple (dw, db), got {type(result).__name__}")
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
        torch.mean((torch.tensor(X) @ wt + bt - torch.tensor(y)) ** 2).backward()
        hint = "With r = X w + b - y (n,): dw = 2 X^T r / n, of shape (d,), and db = 2 sum(r) / n."
        check_close(f"{name}: dw", result[0], wt.grad.numpy(), rtol=1e-9, atol=1e-12, hint=hint)
        check_close(f"{name}: db", result[1], bt.grad.item(), rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)


def _three_layer_problem(seed: int):
    rng = np.random.default_rng(seed)
    sizes = (6, 5, 4, 3)
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = rng.normal(0, 1 / np.sqrt(fan_in), size=(fan_in, fan_out))
        params[f"b{l}"] = rng.normal(0, 0.1, size=fan_out)
    x = rng.normal(size=(8, sizes[0]))                                    # (batch, 6)
    y = rng.integers(0, sizes[-1], size=8)                                 # (batch,)
    return x, y, params


def check_backprop_3layer(backprop_3layer: Callable) -> None:
    """``backprop_3layer(x, y, params) -> grads``: gradients of the mean softmax cross-entropy of a
    3-layer tanh MLP, logits = tanh(tanh(x W1 + b1) W2 + b2) W3 + b3, for every key of ``params``."""
    import torch
    import torch.nn.functional as F

    name = "backprop_3layer"
    for seed in range(3):
        x, y, params = _three_layer_problem(seed)
        grads = _call(name, backprop_3layer, x.copy(), y.copy(), {k: v.copy() for k, v in params.items()})
        if not isinstance(grads, dict) or set(grads) != set(params):
            got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise ExerciseError(f"{name}: expected a dict with keys {sorted(params)}, got {got}")
        t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        a1 = torch.tanh(torch.tensor(x) @ t["W1"] + t["b1"])
        a2 = torch.tanh(a1 @ t["W2"] + t["b2"])
        F.cross_entropy(a2 @ t["W3"] + t["b3"], torch.tensor(y)).backward()
        for k in ("W3", "b3", "W2", "b2", "W1", "b1"):
            hint = (f"expected shape {params[k].shape}: dW = A_prev^T delta, db = delta.sum(0), "
                    "delta_prev = (delta W^T) * (1 - A_prev^2) with tanh, delta3 = (softmax - Y) / batch")
            check_close(f"{name}: {k}", grads[k], t[k].grad.numpy(), rtol=1e-8, atol=1e-12, hint=hint)
    passed(name)

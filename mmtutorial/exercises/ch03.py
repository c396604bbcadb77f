"""Checkers for chapter 3 (Optimisation).

Each checker runs the learner's function on fixed problems, compares it with ``torch.optim`` (in
float64) or with a direct computation, raises :class:`ExerciseError` with a hint when it differs and
prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import ExerciseError, check_close, passed, call_answer as _call


def _pair(name: str, result, what: str):
    if not isinstance(result, tuple) or len(result) != 2:
        raise ExerciseError(f"{name}: expected a tuple {what}, got {type(result).__name__}")
    return result


def _quadratic_problem(seed: int = 3):
    """An ill-conditioned least-squares problem: L(p) = ½‖Ap − b‖²; gradient Aᵀ(Ap − b)."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(12, 5)) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])    # (12, 5)
    target = rng.normal(size=12)                                                  # (12,)
    start = rng.normal(size=5)                                                    # (5,)

    def gradient(p: np.ndarray) -> np.ndarray:
        return matrix.T @ (matrix @ p - target)                                   # (5,)
    return start, gradient


def _torch_trajectory(make_optimizer, start: np.ndarray, gradient, steps: int) -> list[np.ndarray]:
    """Parameters after each of ``steps`` torch optimizer steps (gradients given, float64)."""
    import torch

    param = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([param])
    trajectory = []
    for _ in range(steps):
        param.grad = torch.from_numpy(gradient(param.detach().numpy().copy()))
        optimizer.step()
        trajectory.append(param.detach().numpy().copy())
    return trajectory


def check_rmsprop_step(rmsprop_step: Callable) -> None:
    """``rmsprop_step(param, grad, square_avg, lr, alpha, eps) -> (new_param, new_square_avg)``.

    PyTorch's RMSprop (no momentum, not centred): s = αs + (1−α)g², p = p − lr·g/(√s + ε), with s
    starting at 0.  Checked over 20 steps against ``torch.optim.RMSprop``.
    """
    import torch

    name = "rmsprop_step"
    start, gradient = _quadratic_problem()
    for lr, alpha in ((0.01, 0.99), (0.05, 0.9)):
        eps = 1e-8
        expected = _torch_trajectory(
            lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=alpha, eps=eps), start, gradient, 20)
        param, square_avg = start.copy(), np.zeros_like(start)
        for step, want in enumerate(expected, start=1):
            result = _pair(name, _call(name, rmsprop_step, param.copy(), gradient(param), square_avg.copy(),
                                       lr, alpha, eps), "(new_param, new_square_avg)")
            param, square_avg = (np.asarray(r, dtype=np.float64) for r in result)
            check_close(f"{name} (lr={lr}, alpha={alpha}) after step {step}", param, want, rtol=1e-9,
                        atol=1e-12, hint="s = alpha*s + (1-alpha)*g**2, then p - lr*g/(sqrt(s) + eps): the "
                                         "eps goes outside the square root and s starts at 0 (no bias correction).")
    passed(name)


def check_nesterov_step(nesterov_step: Callable) -> None:
    """``nesterov_step(param, grad, velocity, lr, momentum) -> (new_param, new_velocity)``.

    PyTorch's convention: v = μv + g (v = g at the first step, which is what v = 0 gives too), then
    p = p − lr·(g + μv).  Checked over 20 steps against ``torch.optim.SGD(nesterov=True)``.
    """
    import torch

    name = "nesterov_step"
    start, gradient = _quadratic_problem(seed=5)
    for lr, momentum in ((0.01, 0.9), (0.02, 0.5)):
        expected = _torch_trajectory(
            lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, nesterov=True), start, gradient, 20)
        param, velocity = start.copy(), np.zeros_like(start)
        for step, want in enumerate(expected, start=1):
            result = _pair(name, _call(name, nesterov_step, param.copy(), gradient(param), velocity.copy(),
                                       lr, momentum), "(new_param, new_velocity)")
            param, velocity = (np.asarray(r, dtype=np.float64) for r in result)
            check_close(f"{name} (lr={lr}, momentum={momentum}) after step {step}", param, want, rtol=1e-9,
                        atol=1e-12, hint="Update the velocity first (v = momentum*v + g), then step along "
                                         "g + momentum*v (the gradient plus a look-ahead), not along v alone.")
    passed(name)


def check_step_decay(step_decay: Callable) -> None:
    """``step_decay(step, base_lr, gamma, step_size) -> lr``: the learning rate is multiplied by
    ``gamma`` every ``step_size`` steps (0-based ``step``), like ``torch.optim.lr_scheduler.StepLR``."""
    import torch

    name = "step_decay"
    for base_lr, gamma, step_size in ((0.1, 0.5, 10), (0.3, 0.1, 7), (1.0, 0.9, 1)):
        param = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.SGD([param], lr=base_lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
        for step in range(40):
            expected = optimizer.param_groups[0]["lr"]
            got = _call(name, step_decay, step, base_lr, gamma, step_size)
            check_close(f"{name}(step={step}, base_lr={base_lr}, gamma={gamma}, step_size={step_size})",
                        got, expected, rtol=1e-9,
                        hint="lr = base_lr * gamma ** (step // step_size): integer division, so the rate "
                             "stays flat within each block of step_size steps.")
            optimizer.step()
            scheduler.step()
    passed(name)


def check_first_step_decay(first_step_decay: Callable) -> None:
    """``first_step_decay(p, lr, weight_decay) -> (adam_l2, adamw)``: a weight ``p`` whose loss gradient
    is 0 takes one step of Adam with L2 (``torch.optim.Adam(weight_decay=...)``) and one of AdamW; return
    both new values (default betas, eps = 1e-8)."""
    import torch

    name = "first_step_decay"
    for p, lr, weight_decay in ((2.0, 0.1, 0.01), (-0.5, 0.01, 0.1), (3.0, 1e-3, 1e-4)):
        expected = []
        for optimizer_class in (torch.optim.Adam, torch.optim.AdamW):
            param = torch.tensor([p], dtype=torch.float64, requires_grad=True)
            optimizer = optimizer_class([param], lr=lr, weight_decay=weight_decay, eps=1e-8)
            param.grad = torch.zeros_like(param)
            optimizer.step()
            expected.append(float(param.detach()))
        result = _pair(name, _call(name, first_step_decay, p, lr, weight_decay), "(adam_l2, adamw)")
        check_close(f"{name}(p={p}, lr={lr}, weight_decay={weight_decay}) for Adam with L2", result[0],
                    expected[0], rtol=1e-9,
                    hint="With L2 the gradient is weight_decay*p; Adam divides m_hat by sqrt(v_hat), so the "
                         "first step is lr * g / (|g| + eps), about lr * sign(p) whatever weight_decay is.")
        check_close(f"{name}(p={p}, lr={lr}, weight_decay={weight_decay}) for AdamW", result[1], expected[1],
                    rtol=1e-9, hint="AdamW multiplies p by (1 - lr*weight_decay); a zero gradient adds nothing.")
    passed(name)


__all__ = ["check_rmsprop_step", "check_nesterov_step", "check_step_decay", "check_first_step_decay"]

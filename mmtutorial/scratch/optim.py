"""Optimisers, a learning-rate schedule, gradient clipping and dropout in NumPy (chapter 3).

Parameters and gradients are ``dict[str, np.ndarray]`` with the same keys and shapes, the format of
:mod:`mmtutorial.scratch.mlp`.  Every optimiser follows PyTorch's update rule exactly, so that its
trajectory equals ``torch.optim``'s parameter for parameter (tested in float64 in
``tests/test_scratch_optim.py``):

======================  =================================================================
``SGD``                 g = ∇L + λp;  v = μv + g (v = g at the first step);  p -= lr·v
                        (Nesterov: p -= lr·(g + μv));  torch.optim.SGD
``Adam``                g = ∇L + λp (L2 in the gradient);  bias-corrected moments;  torch.optim.Adam
``AdamW``               p -= lr·λ·p (decoupled decay), then Adam on ∇L;  torch.optim.AdamW
======================  =================================================================
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

Params = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------------
# Input checks shared by the optimisers
# --------------------------------------------------------------------------------------------------
def _check_params(params) -> None:
    if not isinstance(params, Mapping) or not params:
        raise TypeError(f"params must be a non-empty dict of NumPy arrays, got {type(params).__name__}")
    for name, value in params.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(f"params[{name!r}] must be a np.ndarray, got {type(value).__name__}")
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"params[{name!r}] must be a floating-point array (updated in place), "
                            f"got dtype {value.dtype}")


def _check_grads(params: Params, grads) -> None:
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a dict of NumPy arrays, got {type(grads).__name__}")
    if set(grads) != set(params):
        raise ValueError(f"grads must have the keys of params: expected {sorted(params)}, "
                         f"got {sorted(grads)}")
    for name, param in params.items():
        grad = np.asarray(grads[name])
        if grad.dtype.kind not in "biuf":
            raise TypeError(f"grads[{name!r}] must hold real numbers, got dtype {grad.dtype}")
        if grad.shape != param.shape:
            raise ValueError(f"grads[{name!r}] must have the shape of params[{name!r}]: expected "
                             f"{param.shape}, got {grad.shape}")


def _check_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
            raise ValueError(f"betas[{index}] must be in [0, 1), got {beta}")
    return float(betas[0]), float(betas[1])


class Optimizer:
    """Base class: holds ``params`` (updated in place), ``lr`` and a per-parameter ``state``."""

    def __init__(self, params: Params, lr: float):
        _check_params(params)
        _check_non_negative("lr", lr)
        self.params = params
        self.lr = float(lr)                       # may be changed between steps by a schedule
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {name: {} for name in params}

    def step(self, grads: Params) -> None:
        """Update every parameter in place from its gradient ``grads[name]`` (same shape)."""
        _check_grads(self.params, grads)
        self.step_count += 1
        for name, param in self.params.items():
            self._update(name, param, np.asarray(grads[name], dtype=param.dtype))

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr}

    def state_dict(self) -> dict:
        """Hyperparameters, step count and copies of the per-parameter buffers (momentum, moments)."""
        return {"hyperparameters": self.hyperparameters(), "step_count": self.step_count,
                "state": {name: {key: value.copy() for key, value in buffers.items()}
                          for name, buffers in self.state.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        missing = [key for key in ("hyperparameters", "step_count", "state")
                   if not isinstance(state_dict, Mapping) or key not in state_dict]
        if missing:
            raise ValueError(f"state_dict must come from Optimizer.state_dict(): it lacks {missing}")
        if set(state_dict["state"]) != set(self.params):
            raise ValueError(f"state_dict is for parameters {sorted(state_dict['state'])}, "
                             f"expected {sorted(self.params)}")
        self.step_count = int(state_dict["step_count"])
        self.lr = float(state_dict["hyperparameters"]["lr"])
        self.state = {name: {key: value.copy() for key, value in buffers.items()}
                      for name, buffers in state_dict["state"].items()}


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    PyTorch's convention, with gradient $g_t = \nabla L(p_{t-1}) + \lambda p_{t-1}$:

    $$v_t = \mu v_{t-1} + g_t \quad (v_1 = g_1), \qquad
      p_t = p_{t-1} - \eta\, v_t \quad\text{or, with Nesterov,}\quad p_t = p_{t-1} - \eta\,(g_t + \mu v_t).$$
    """

    def __init__(self, params: Params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        _check_non_negative("momentum", momentum)
        _check_non_negative("weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError(f"nesterov=True needs momentum > 0, got momentum={momentum}")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * param              # L2 penalty (λ/2)‖p‖² in the gradient
        if self.momentum:
            state = self.state[name]
            if "velocity" not in state:
                state["velocity"] = grad.copy()                  # first step: v = g (no zero start)
            else:
                state["velocity"] *= self.momentum
                state["velocity"] += grad
            velocity = state["velocity"]
            grad = grad + self.momentum * velocity if self.nesterov else velocity
        param -= self.lr * grad

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient, like ``torch.optim.Adam``.

    $$g_t = \nabla L + \lambda p,\quad m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$
    $$\hat m_t = \frac{m_t}{1-\beta_1^t},\quad \hat v_t = \frac{v_t}{1-\beta_2^t},\quad
      p_t = p_{t-1} - \eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.$$
    """

    decoupled = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = _check_betas(betas)
        _check_non_negative("eps", eps)
        _check_non_negative("weight_decay", weight_decay)
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        if self.weight_decay:
            if self.decoupled:
                param *= 1.0 - self.lr * self.weight_decay       # AdamW: shrink p, outside the moments
            else:
                grad = grad + self.weight_decay * param          # Adam: L2 goes through the moments
        state = self.state[name]
        if not state:
            state["exp_avg"] = np.zeros_like(param)              # m: running mean of g
            state["exp_avg_sq"] = np.zeros_like(param)           # v: running mean of g²
        t = self.step_count
        state["exp_avg"] *= self.beta1
        state["exp_avg"] += (1.0 - self.beta1) * grad
        state["exp_avg_sq"] *= self.beta2
        state["exp_avg_sq"] += (1.0 - self.beta2) * grad * grad
        m_hat = state["exp_avg"] / (1.0 - self.beta1 ** t)      # bias correction: m starts at 0
        v_hat = state["exp_avg_sq"] / (1.0 - self.beta2 ** t)
        param -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "betas": (self.beta1, self.beta2), "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), like ``torch.optim.AdamW``.

    $$p \leftarrow p\,(1 - \eta\lambda), \qquad \text{then the Adam step on } \nabla L \text{ alone.}$$
    """

    decoupled = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


# --------------------------------------------------------------------------------------------------
# Schedule, clipping, dropout
# --------------------------------------------------------------------------------------------------
def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  min_lr: float = 0.0) -> float:
    r"""Learning rate at optimizer step ``step`` (0-based): linear warm-up, then cosine decay.

    $$\eta_s = \eta_{\max}\frac{s+1}{W} \;\; (s < W), \qquad
      \eta_s = \eta_{\min} + \tfrac12(\eta_{\max}-\eta_{\min})\Bigl(1+\cos\frac{\pi (s-W)}{T-W}\Bigr)
      \;\; (W \le s \le T),$$
    and $\eta_{\min}$ after $T$ = ``total_steps``.  The warm-up ends at the peak (step $W-1$) so no step
    is taken with a learning rate of 0.
    """
    for name, value in (("step", step), ("total_steps", total_steps), ("warmup_steps", warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
    _check_non_negative("base_lr", base_lr)
    _check_non_negative("min_lr", min_lr)
    if min_lr > base_lr:
        raise ValueError(f"min_lr must be <= base_lr={base_lr}, got {min_lr}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(grads: Params, max_norm: float, eps: float = 1e-6) -> float:
    r"""Rescale all gradients together (in place) so that their global L2 norm is at most ``max_norm``.

    $$\|g\| = \sqrt{\textstyle\sum_k \|g_k\|^2}, \qquad g_k \leftarrow g_k \cdot
      \min\Bigl(1, \frac{c}{\|g\| + \epsilon}\Bigr).$$
    Returns the norm *before* clipping, like ``torch.nn.utils.clip_grad_norm_``.  The direction of the
    whole update is kept, unlike clipping each value on its own.
    """
    if not isinstance(grads, Mapping) or not grads:
        raise TypeError(f"grads must be a non-empty dict of NumPy arrays, got {type(grads).__name__}")
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    for name, grad in grads.items():
        if not isinstance(grad, np.ndarray) or not np.issubdtype(grad.dtype, np.floating):
            raise TypeError(f"grads[{name!r}] must be a floating-point np.ndarray (clipped in place), "
                            f"got {type(grad).__name__}")
    total_norm = math.sqrt(sum(float(np.sum(grad * grad)) for grad in grads.values()))
    coefficient = max_norm / (total_norm + eps)
    if coefficient < 1.0:
        for grad in grads.values():
            grad *= coefficient
    return total_norm


def dropout(x: np.ndarray, p: float, rng: np.random.Generator,
            training: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r"""Inverted dropout: zero each value with probability ``p`` and scale the survivors by $1/(1-p)$.

    $$y = \frac{m \odot x}{1-p}, \quad m_i \sim \text{Bernoulli}(1-p) \quad\Rightarrow\quad
      \mathbb{E}[y] = x,$$
    so nothing changes at evaluation time: there (``training=False``) ``y = x``.
    Returns ``(out, mask)`` with ``mask`` the 0/1 array (all ones when not training), for the backward
    pass ``dx = dy * mask / (1 - p)``.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a np.ndarray, got {type(x).__name__}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"p must be a probability in [0, 1), got {p!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if not training or p == 0.0:
        return x.copy(), np.ones_like(x)
    mask = (rng.random(x.shape) >= p).astype(x.dtype)                   # same shape as x
    return x * mask / (1.0 - p), mask


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "warmup_cosine", "clip_grad_norm", "dropout"]

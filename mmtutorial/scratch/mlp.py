"""A multi-layer perceptron in NumPy with hand-written backpropagation (chapters 1 and 2).

Rows are examples (see the book's notation page).  Layer l = 1..L computes

    Z[l] = A[l-1] W[l] + b[l]        A[l-1]: (batch, d_{l-1}),  W[l]: (d_{l-1}, d_l),  b[l]: (d_l,)
    A[l] = sigma(Z[l])               for the hidden layers; the last layer's Z[L] are the logits

and backpropagation, given delta[L] = dL/dZ[L] (the ``dlogits``), runs for l = L..1:

    dW[l] = A[l-1]^T delta[l]                    (d_{l-1}, d_l), the shape of W[l]
    db[l] = sum over the batch of delta[l]       (d_l,)
    delta[l-1] = (delta[l] W[l]^T) * sigma'(Z[l-1])   (batch, d_{l-1}); sigma' applied once

Parameters and gradients are ``dict[str, np.ndarray]`` with the same keys (``W1, b1, W2, b2, ...``), so an
optimiser can update ``params[k]`` with ``grads[k]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .activations import ACTIVATIONS
from .losses import softmax, softmax_cross_entropy, softmax_cross_entropy_grad

__all__ = ["MLPConfig", "MLP", "INITS"]

INITS = ("he", "glorot", "lecun", "zeros")


@dataclass
class MLPConfig:
    in_features: int                        # input size d_0 (64 for the 8x8 digits)
    hidden_sizes: tuple[int, ...] = (64,)   # one entry per hidden layer; () gives a linear model
    out_features: int = 10                  # number of classes (size of the logits)
    activation: str = "relu"                # a key of scratch.activations.ACTIVATIONS
    init: str = "he"                        # "he": N(0, 2/fan_in), "glorot": N(0, 2/(fan_in+fan_out)),
                                            # "lecun": N(0, 1/fan_in), "zeros" (to show why not); biases 0
    seed: int = 0                           # seed of the weight initialisation
    dtype: type = field(default=np.float64)  # float64 makes gradient checks exact to ~1e-9

    def __post_init__(self):
        if isinstance(self.hidden_sizes, (str, bytes)) or not hasattr(self.hidden_sizes, "__iter__"):
            raise TypeError(f"hidden_sizes must be a sequence of ints, one per hidden layer (e.g. (64,) or ()), "
                            f"got {type(self.hidden_sizes).__name__} {self.hidden_sizes!r}")
        self.hidden_sizes = tuple(self.hidden_sizes)
        for name in ("in_features", "out_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for size in self.hidden_sizes:
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
                raise ValueError(f"hidden_sizes must be positive ints, got {self.hidden_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        try:
            floating = np.issubdtype(np.dtype(self.dtype), np.floating)
        except TypeError:
            floating = False
        if not floating:                       # int weights would make every update round to nothing
            raise TypeError(f"dtype must be a floating-point NumPy dtype (np.float64 or np.float32), "
                            f"got {self.dtype!r}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """(d_0, d_1, ..., d_L): the width of every layer, input and logits included."""
        return (self.in_features, *self.hidden_sizes, self.out_features)


def _init_weight(rng: np.random.Generator, fan_in: int, fan_out: int, init: str) -> np.ndarray:
    if init == "zeros":
        return np.zeros((fan_in, fan_out))
    variance = {"he": 2.0 / fan_in, "glorot": 2.0 / (fan_in + fan_out), "lecun": 1.0 / fan_in}[init]
    return rng.normal(0.0, np.sqrt(variance), size=(fan_in, fan_out))


class MLP:
    """An MLP whose ``forward`` caches what ``backward`` needs; see the module docstring for the maths."""

    def __init__(self, config: MLPConfig):
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLP wants an MLPConfig, got {type(config).__name__}")
        self.config = config
        self.act, self.act_grad = ACTIVATIONS[config.activation]
        rng = np.random.default_rng(config.seed)
        self.params: dict[str, np.ndarray] = {}
        for l, (fan_in, fan_out) in enumerate(zip(config.sizes[:-1], config.sizes[1:]), start=1):
            self.params[f"W{l}"] = _init_weight(rng, fan_in, fan_out, config.init).astype(config.dtype)
            self.params[f"b{l}"] = np.zeros(fan_out, dtype=config.dtype)
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.config.sizes) - 1

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.config.in_features:
            raise ValueError(f"x must have shape (batch, {self.config.in_features}), got {x.shape}")
        return x.astype(self.config.dtype, copy=False)

    def forward(self, x) -> np.ndarray:
        """(batch, in_features) -> logits (batch, out_features); caches (A[l-1], Z[l]) of every layer."""
        a = self._check_input(x)                                      # (batch, d_0)
        cache = []
        for l in range(1, self.num_layers + 1):
            z = a @ self.params[f"W{l}"] + self.params[f"b{l}"]       # (batch, d_l)
            cache.append((a, z))
            a = self.act(z) if l < self.num_layers else z             # no activation on the logits
        self._cache = cache
        return a

    __call__ = forward

    def backward(self, dlogits) -> dict[str, np.ndarray]:
        """Gradients of the loss w.r.t. every parameter, given dlogits = dL/dZ[L] of the last forward."""
        if self._cache is None:
            raise RuntimeError("call forward(x) before backward(dlogits)")
        dlogits = np.asarray(dlogits, dtype=self.config.dtype)
        expected = self._cache[-1][1].shape
        if dlogits.shape != expected:
            raise ValueError(f"dlogits must have the logits' shape {expected}, got {dlogits.shape}")
        grads: dict[str, np.ndarray] = {}
        delta = dlogits                                               # (batch, d_L)
        for l in range(self.num_layers, 0, -1):
            a_prev, _ = self._cache[l - 1]                            # (batch, d_{l-1})
            grads[f"W{l}"] = a_prev.T @ delta                         # (d_{l-1}, d_l)
            grads[f"b{l}"] = delta.sum(axis=0)                        # (d_l,)
            if l > 1:
                z_prev = self._cache[l - 2][1]                        # (batch, d_{l-1})
                delta = (delta @ self.params[f"W{l}"].T) * self.act_grad(z_prev)  # (batch, d_{l-1})
        return {k: grads[k] for k in self.params}                     # same key order as params

    def loss_and_grads(self, x, y) -> tuple[float, dict[str, np.ndarray]]:
        """Mean softmax cross-entropy on (x, y) and its gradients w.r.t. every parameter."""
        logits = self.forward(x)                                      # (batch, classes)
        loss = softmax_cross_entropy(logits, y)
        return loss, self.backward(softmax_cross_entropy_grad(logits, y))

    def predict_proba(self, x) -> np.ndarray:
        return softmax(self.forward(x))                               # (batch, classes)

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.forward(x), axis=1)                     # (batch,)

    def to_torch(self, dtype=None):
        """An equal ``torch.nn.Sequential`` (Linear, activation, ..., Linear), float64 by default.

        ``nn.Linear`` stores its weight as (out, in) and computes x @ weight.T + bias, so it receives W.T.
        """
        import torch
        from torch import nn

        dtype = dtype or torch.float64
        modules = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                   "gelu": lambda: nn.GELU(approximate="none"), "gelu_tanh": lambda: nn.GELU(approximate="tanh")}
        layers: list[nn.Module] = []
        for l in range(1, self.num_layers + 1):
            W, b = self.params[f"W{l}"], self.params[f"b{l}"]
            linear = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.as_tensor(W.T, dtype=dtype))
                linear.bias.copy_(torch.as_tensor(b, dtype=dtype))
            layers.append(linear)
            if l < self.num_layers:
                layers.append(modules[self.config.activation]())
        return nn.Sequential(*layers)

    def __repr__(self) -> str:
        arrows = " -> ".join(str(s) for s in self.config.sizes)
        return f"MLP({arrows}, activation={self.config.activation}, {self.num_parameters:,} parameters)"

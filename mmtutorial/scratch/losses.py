"""Loss functions and their gradients, in NumPy, computed stably (chapter 1).

All losses are the **mean** over the examples (PyTorch's default ``reduction="mean"``), and each
``*_grad`` returns the gradient of that mean with respect to the predictions or logits.

    mse(pred, target)                       = mean((pred - target)^2)
    binary_cross_entropy_with_logits(z, y)  = mean(max(z, 0) - z y + log(1 + e^{-|z|}))
    softmax(z)_k                            = e^{z_k - m} / sum_j e^{z_j - m},   m = max_j z_j
    log_softmax(z)_k                        = z_k - logsumexp(z)
    softmax_cross_entropy(z, labels)        = mean_i(-log_softmax(z_i)[labels_i])

The stable forms never exponentiate a large positive number, so logits of +-1000 give finite, exact
results where the textbook formulas return inf or nan.
"""
from __future__ import annotations

import numpy as np

from .activations import _as_float_array as _float_array, sigmoid

__all__ = ["mse", "mse_grad", "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_grad",
           "logsumexp", "softmax", "log_softmax", "one_hot", "softmax_cross_entropy",
           "softmax_cross_entropy_grad"]


def _same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError(f"{names[0]} is empty (shape {a.shape}); a mean over no examples is undefined")


def _check_probabilities(values: np.ndarray, name: str) -> None:
    """Binary targets are probabilities: a target of 2 (or NaN) gives a number that is no loss at all."""
    if not (np.all(values >= 0.0) and np.all(values <= 1.0)):              # NaN fails both
        raise ValueError(f"{name} must be probabilities in [0, 1] (0/1 labels or soft labels), got values in "
                         f"[{np.nanmin(values):.4g}, {np.nanmax(values):.4g}]"
                         + (" and NaN" if np.isnan(values).any() else ""))


def _logits_and_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``logits`` of shape (batch, classes) and integer ``labels`` of shape (batch,)."""
    logits = _float_array(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, classes), got shape {logits.shape}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape (batch,) = ({logits.shape[0]},), got {labels.shape}")
    if logits.shape[0] == 0:
        raise ValueError("logits is empty (batch of 0); a mean over no examples is undefined")
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes - 1}] for {num_classes} classes, "
                         f"got values from {labels.min()} to {labels.max()}")
    return logits, labels


# -- regression ----------------------------------------------------------------------------------------
def mse(pred, target) -> float:
    """Mean squared error over every element."""
    pred, target = _float_array(pred, "pred"), _float_array(target, "target")
    _same_shape(pred, target, ("pred", "target"))
    return float(np.mean((pred - target) ** 2))


def mse_grad(pred, target) -> np.ndarray:
    """d mse / d pred = 2 (pred - target) / n, n = number of elements."""
    pred, target = _float_array(pred, "pred"), _float_array(target, "target")
    _same_shape(pred, target, ("pred", "target"))
    return 2.0 * (pred - target) / pred.size


# -- binary classification -----------------------------------------------------------------------------
def binary_cross_entropy_with_logits(logits, targets) -> float:
    """Mean of -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))], from the logits z.

    Rewritten as max(z, 0) - z y + log(1 + e^{-|z|}): the exponent is never positive, so nothing overflows,
    and ``log1p`` keeps precision when e^{-|z|} is tiny.  ``targets`` may be soft labels in [0, 1].
    """
    z, y = _float_array(logits, "logits"), _float_array(targets, "targets")
    _same_shape(z, y, ("logits", "targets"))
    _check_probabilities(y, "targets")
    return float(np.mean(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def binary_cross_entropy_with_logits_grad(logits, targets) -> np.ndarray:
    """d BCE / d z = (sigmoid(z) - y) / n."""
    z, y = _float_array(logits, "logits"), _float_array(targets, "targets")
    _same_shape(z, y, ("logits", "targets"))
    _check_probabilities(y, "targets")
    return (sigmoid(z) - y) / z.size


# -- multi-class classification ------------------------------------------------------------------------
def logsumexp(z, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """log sum_j e^{z_j} = m + log sum_j e^{z_j - m} with m = max_j z_j (every exponent is <= 0)."""
    z = _float_array(z, "z")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -z.ndim <= axis < z.ndim:
        raise ValueError(f"axis must be an int in [-{z.ndim}, {z.ndim}) for z of shape {z.shape}, got {axis!r}")
    if z.shape[axis] == 0:
        raise ValueError(f"logsumexp needs at least one value along axis {axis}, got shape {z.shape}")
    m = np.max(z, axis=axis, keepdims=True)                        # (..., 1)
    out = m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(z, axis: int = -1) -> np.ndarray:
    z = _float_array(z, "z")
    return z - logsumexp(z, axis=axis, keepdims=True)


def softmax(z, axis: int = -1) -> np.ndarray:
    """Probabilities along ``axis``; shifting by the max changes nothing mathematically but avoids overflow."""
    z = _float_array(z, "z")
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))            # largest entry is exp(0) = 1
    return e / np.sum(e, axis=axis, keepdims=True)


def one_hot(labels, num_classes: int) -> np.ndarray:
    """(batch,) integer labels -> (batch, num_classes) float64 one-hot matrix Y."""
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (batch,), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes - 1}], got values from {labels.min()} "
                         f"to {labels.max()}")
    out = np.zeros((labels.shape[0], num_classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def softmax_cross_entropy(logits, labels) -> float:
    """Mean over the batch of -log softmax(z_i)[y_i]; logits (batch, classes), labels (batch,) integers."""
    logits, labels = _logits_and_labels(logits, labels)
    log_probs = log_softmax(logits)                                 # (batch, classes)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def softmax_cross_entropy_grad(logits, labels) -> np.ndarray:
    """d loss / d logits = (softmax(z) - Y) / batch, shape (batch, classes)."""
    logits, labels = _logits_and_labels(logits, labels)
    return (softmax(logits) - one_hot(labels, logits.shape[1])) / logits.shape[0]

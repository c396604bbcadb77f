"""Static figures shared by the chapters (matplotlib; every function takes ``ax=None`` and returns the axes).

The interactive explorers in ``mmtutorial.widgets`` build on these; this module never imports them, so the
static figures work without ipywidgets.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .nn.attention import scaled_dot_product_attention


def _axes(ax=None, figsize=(5.5, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_history(history, metrics: Sequence[str] = ("train_loss", "val_loss"), ax=None, label: str = "",
                 per_step: bool = False):
    """Training curves from a :class:`mmtutorial.training.History`.

    ``per_step=True`` plots the loss of every optimizer step instead of per-epoch metrics.
    """
    ax = _axes(ax)
    prefix = f"{label} " if label else ""
    if per_step:
        ax.plot([row["step"] for row in history.steps], [row["loss"] for row in history.steps],
                label=f"{prefix}train loss".strip())
        ax.set_xlabel("optimizer step")
    else:
        plotted = 0
        for metric in metrics:
            if metric in history.keys():
                epochs = [row["epoch"] + 1 for row in history.epochs if metric in row]
                ax.plot(epochs, history[metric], marker="o", label=f"{prefix}{metric.replace('_', ' ')}")
                plotted += 1
        if not plotted:
            raise ValueError(f"none of {list(metrics)} was recorded; recorded: {sorted(history.keys())}")
        ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def show_images(images, labels: Sequence[str] | None = None, ncols: int = 8, cmap: str = "gray",
                figsize_per_image: float = 1.2):
    """A grid of images ``(n, H, W)`` or ``(n, H, W, 3)`` with optional titles; returns the figure."""
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"show_images wants (n, H, W) or (n, H, W, 3) images, got shape {images.shape}")
    count = len(images)
    nrows = max(1, int(np.ceil(count / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * figsize_per_image, nrows * figsize_per_image))
    for index, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if index < count:
            ax.imshow(images[index], cmap=cmap if images.ndim == 3 else None)
            if labels is not None:
                ax.set_title(str(labels[index]), fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Evaluation plots (chapter 4): confusion matrix, ROC curve, reliability diagram
# --------------------------------------------------------------------------------------------------
def plot_confusion_matrix(matrix, class_names: Sequence[str] | None = None, normalize: bool = False,
                          ax=None, cmap: str = "Blues"):
    """Heat map of a confusion matrix ``(K, K)`` (rows: true class, columns: predicted class).

    ``normalize=True`` divides each row by its total, so the diagonal shows per-class recall.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"plot_confusion_matrix wants a square (K, K) matrix, got shape {matrix.shape}")
    num_classes = matrix.shape[0]
    names = [str(k) for k in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for a {num_classes}-class matrix")
    values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    ax = _axes(ax, figsize=(0.45 * num_classes + 2.5, 0.45 * num_classes + 2))
    image = ax.imshow(values, cmap=cmap)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = values.max() / 2 if values.size else 0
    for row in range(num_classes):
        for col in range(num_classes):
            text = f"{values[row, col]:.2f}" if normalize else f"{int(values[row, col])}"
            if normalize or values[row, col]:
                ax.text(col, row, text, ha="center", va="center", fontsize=7,
                        color="white" if values[row, col] > threshold else "black")
    ax.set_xticks(range(num_classes), names)
    ax.set_yticks(range(num_classes), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return ax


def plot_roc_curve(fpr, tpr, auc: float | None = None, label: str = "", ax=None):
    """ROC curve (false-positive rate against true-positive rate) with the chance diagonal."""
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    if fpr.shape != tpr.shape or fpr.ndim != 1:
        raise ValueError(f"fpr and tpr must be 1-D of one shape, got {fpr.shape} and {tpr.shape}")
    ax = _axes(ax, figsize=(4.2, 4))
    name = label or "model"
    if auc is not None:
        name = f"{name} (AUC = {auc:.3f})"
    ax.plot(fpr, tpr, drawstyle="default", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="chance (AUC = 0.5)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (recall)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return ax


def plot_reliability_diagram(prob_true, prob_pred, counts=None, label: str = "", ax=None):
    """Reliability (calibration) diagram: observed frequency against mean predicted probability per bin.

    Points on the diagonal are calibrated; below it the model is over-confident.  With ``counts`` the
    marker areas are proportional to the number of samples in each bin.
    """
    prob_true, prob_pred = np.asarray(prob_true), np.asarray(prob_pred)
    if prob_true.shape != prob_pred.shape or prob_true.ndim != 1:
        raise ValueError(f"prob_true and prob_pred must be 1-D of one shape, got {prob_true.shape} "
                         f"and {prob_pred.shape}")
    ax = _axes(ax, figsize=(4.2, 4))
    if not any(line.get_gid() == "calibration-diagonal" for line in ax.get_lines()):  # once per axes
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfectly calibrated",
                gid="calibration-diagonal")
    line, = ax.plot(prob_pred, prob_true, marker="o" if counts is None else None, label=label or "model")
    if counts is not None:
        counts = np.asarray(counts, dtype=float)
        if counts.shape != prob_true.shape:
            raise ValueError(f"counts must have shape {prob_true.shape}, got {counts.shape}")
        sizes = 15 + 250 * np.sqrt(counts / max(counts.max(), 1))
        ax.scatter(prob_pred, prob_true, s=sizes, color=line.get_color(), alpha=0.5, zorder=3)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("mean predicted probability (confidence)")
    ax.set_ylabel("observed frequency (accuracy)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return ax


# --------------------------------------------------------------------------------------------------
# Attention maps (chapters 5, 6, 11): one map, and a grid of maps at several temperatures
# --------------------------------------------------------------------------------------------------
def _as_heads(name: str, tensor) -> torch.Tensor:
    """numpy array or tensor (seq, d) or (heads, seq, d) -> float64 tensor (heads, seq, d)."""
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(tensor).__name__}")
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold numbers (float or int), got dtype {tensor.dtype}")
    if tensor.dim() not in (2, 3):
        raise ValueError(f"{name} must have shape (seq, dim) or (heads, seq, dim), got {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.float64)
    return tensor[None] if tensor.dim() == 2 else tensor  # (heads, seq, dim)


def _check_pair(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor | None = None) -> None:
    if query.size(0) != key.size(0):
        raise ValueError(f"query and key must have the same number of heads, got {query.size(0)} and {key.size(0)}")
    if query.size(-1) != key.size(-1):
        raise ValueError(f"query and key must share d_k, got {query.size(-1)} and {key.size(-1)}")
    if value is not None and (value.size(0) != key.size(0) or value.size(1) != key.size(1)):
        raise ValueError(f"value must be (heads={key.size(0)}, seq_k={key.size(1)}, d_v), got {tuple(value.shape)}")


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor | None, temperature: float,
            causal: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All heads at once: weights (heads, seq_q, seq_k) and, with ``value``, outputs (heads, seq_q, d_v)."""
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    scale = 1.0 / (math.sqrt(query.size(-1)) * temperature)  # T multiplies the usual sqrt(d_k)
    values = key[..., :1] if value is None else value  # placeholder when only the weights are wanted
    output, weights = scaled_dot_product_attention(query, key, values, is_causal=causal, scale=scale,
                                                   return_weights=True)
    return weights, (None if value is None else output)


def _select_head(weights: torch.Tensor, head: int) -> np.ndarray:
    if not isinstance(head, int) or not 0 <= head < weights.size(0):
        raise ValueError(f"head must be an int in [0, {weights.size(0)}), got {head!r}")
    return weights[head].numpy()


def attention_weights(query, key, temperature: float = 1.0, head: int = 0, causal: bool = False) -> np.ndarray:
    """Attention weights softmax(q k^T / (sqrt(d_k) T)) of one head, as a float64 array (seq_q, seq_k).

    ``query`` (seq_q, d_k) or (heads, seq_q, d_k); ``key`` (seq_k, d_k) or (heads, seq_k, d_k).
    ``causal=True`` lets query i see keys j <= i only.  Low T sharpens the rows towards one-hot (T -> 0 is
    an arg-max), high T flattens them towards uniform (T -> inf).
    """
    query, key = _as_heads("query", query), _as_heads("key", key)
    _check_pair(query, key)
    weights, _ = _attend(query, key, None, temperature, causal)
    return _select_head(weights, head)


def attention_output(query, key, value, temperature: float = 1.0, head: int = 0,
                     causal: bool = False) -> np.ndarray:
    """The attention output (weights @ value) of one head, float64 (seq_q, d_v)."""
    query, key, value = _as_heads("query", query), _as_heads("key", key), _as_heads("value", value)
    _check_pair(query, key, value)
    _, output = _attend(query, key, value, temperature, causal)
    return _select_head(output, head)


def _entropy(weights: np.ndarray) -> float:
    """Mean entropy (nats) of the rows of a weight matrix; 0 for one-hot rows, log(seq_k) for uniform."""
    return float(-(weights * np.log(np.clip(weights, 1e-300, None))).sum(-1).mean())


def plot_attention_map(weights, query_tokens: Sequence[str] | None = None,
                       key_tokens: Sequence[str] | None = None, ax=None, title: str = "",
                       cmap: str = "viridis", annotate: bool = False, colorbar: bool = True):
    """Heat map of attention weights ``(seq_q, seq_k)``: row i is how query i spreads over the keys.

    ``key_tokens`` defaults to ``query_tokens`` (self-attention).  ``annotate=True`` writes each weight.
    The colour scale is fixed to [0, 1] so that maps drawn side by side are comparable.
    """
    weights = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=float)
    if weights.ndim != 2:
        raise ValueError(f"plot_attention_map wants weights of shape (seq_q, seq_k), got {weights.shape}")
    key_tokens = query_tokens if key_tokens is None else key_tokens
    for name, tokens, size in (("query_tokens", query_tokens, weights.shape[0]),
                               ("key_tokens", key_tokens, weights.shape[1])):
        if tokens is not None and len(tokens) != size:
            raise ValueError(f"{name} has {len(tokens)} tokens for {size} rows/columns of weights")
    ax = _axes(ax, figsize=(0.35 * weights.shape[1] + 2.5, 0.35 * weights.shape[0] + 1.5))
    image = ax.imshow(weights, cmap=cmap, vmin=0.0, vmax=1.0)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if annotate:
        for row in range(weights.shape[0]):
            for col in range(weights.shape[1]):
                ax.text(col, row, f"{weights[row, col]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if weights[row, col] > 0.6 else "white")
    if key_tokens is not None:
        ax.set_xticks(range(weights.shape[1]), [str(t) for t in key_tokens], rotation=90, fontsize=8)
    if query_tokens is not None:
        ax.set_yticks(range(weights.shape[0]), [str(t) for t in query_tokens], fontsize=8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def attention_grid(query, key, temperatures: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
                   tokens: Sequence[str] | None = None, head: int = 0, causal: bool = False,
                   figsize_per_map: float = 2.8, title: str = ""):
    """Static companion of ``mmt.widgets.attention_explorer``: one attention map per temperature.

    ``query`` (seq_q, d_k) or (heads, seq_q, d_k), ``key`` likewise; the weights are
    softmax(q k^T / (sqrt(d_k) T)) for each temperature T (T = 1 is ordinary scaled attention), computed
    by :func:`attention_weights`; ``title`` goes above the row.  Returns the figure.
    """
    if len(temperatures) == 0:
        raise ValueError("attention_grid needs at least one temperature")
    fig, axes = plt.subplots(1, len(temperatures), figsize=(figsize_per_map * len(temperatures),
                                                             figsize_per_map + 0.4), squeeze=False)
    for ax, temperature in zip(axes[0], temperatures):
        weights = attention_weights(query, key, temperature=temperature, head=head, causal=causal)
        entropy = _entropy(weights)
        plot_attention_map(weights, tokens, ax=ax, colorbar=False,
                           title=f"T = {temperature:g}\nmean entropy {entropy:.2f} nats")
        if ax is not axes[0][0]:
            ax.set_ylabel("")
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.9) if title else None)  # leave room for the title
    return fig

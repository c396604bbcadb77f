"""Plotting helpers shared by the chapters (matplotlib; every function takes ``ax=None`` and returns the axes)."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


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

"""Interactive explorers (ipywidgets) for the chapters, each with a static twin for the website.

Widgets need a live Jupyter kernel; the static book shows the figure of the twin instead:

- :func:`attention_explorer` (widget) and :func:`mmtutorial.viz.attention_grid` (static figure): attention
  maps ``softmax(q k^T / (sqrt(d_k) T))`` under a temperature ``T``, one head at a time.

The numbers come from :func:`mmtutorial.viz.attention_weights` (itself
:func:`mmtutorial.nn.scaled_dot_product_attention`, one source of truth); a temperature ``T`` only changes
its ``scale`` from ``1/sqrt(d_k)`` to ``1/(sqrt(d_k) T)``.  The static figures never import this module.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch

try:
    import ipywidgets as widgets
except ImportError as error:  # pragma: no cover - ipywidgets ships with Jupyter and Colab
    raise ImportError("mmtutorial.widgets needs ipywidgets: pip install ipywidgets") from error

from .viz import (_as_heads, _attend, _check_pair, _entropy, _select_head, attention_grid, attention_output,
                  attention_weights, plot_attention_map)

__all__ = ["attention_weights", "attention_output", "attention_explorer", "AttentionExplorer", "attention_grid"]


class AttentionExplorer(widgets.VBox):
    """The widget returned by :func:`attention_explorer` (see there): an ipywidgets ``VBox``.

    Its children are the controls (``temperature_slider`` and, for several heads, ``head_selector``), a
    one-line ``summary`` and the ``image`` of the map.  After every change ``weights`` (seq_q, seq_k) and
    ``output`` (seq_q, d_v, or None without ``value``) hold what the picture shows.
    """

    def __init__(self, query, key, value=None, tokens: Sequence[str] | None = None,
                 key_tokens: Sequence[str] | None = None, temperature: float = 1.0, causal: bool = False,
                 min_temperature: float = 0.05, max_temperature: float = 10.0) -> None:
        self._query, self._key = _as_heads("query", query), _as_heads("key", key)  # (heads, seq, d_k)
        self._value = None if value is None else _as_heads("value", value)         # (heads, seq_k, d_v)
        _check_pair(self._query, self._key, self._value)
        key_tokens = tokens if key_tokens is None and self._key.size(1) == self._query.size(1) else key_tokens
        for name, names, size in (("tokens", tokens, self._query.size(1)),
                                  ("key_tokens", key_tokens, self._key.size(1))):
            if names is not None and len(names) != size:
                raise ValueError(f"{name} has {len(names)} entries for a sequence of length {size}")
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError(f"need 0 < min_temperature <= temperature <= max_temperature, got "
                             f"{min_temperature}, {temperature}, {max_temperature}")
        self.tokens, self.key_tokens, self.causal = tokens, key_tokens, causal
        self.weights: np.ndarray | None = None
        self.output: np.ndarray | None = None

        self.temperature_slider = widgets.FloatLogSlider(
            value=temperature, base=10, min=math.log10(min_temperature), max=math.log10(max_temperature),
            step=0.05, description="temperature T", readout_format=".2f", continuous_update=False,
            style={"description_width": "initial"})
        num_heads = self._query.size(0)
        self.head_selector = (widgets.Dropdown(options=[(f"head {h}", h) for h in range(num_heads)], value=0,
                                               description="head") if num_heads > 1 else None)
        self.summary = widgets.HTML()
        self.image = widgets.Image(format="png")
        controls = [self.temperature_slider] + ([self.head_selector] if self.head_selector else [])
        super().__init__([widgets.HBox(controls), self.summary, self.image])
        for control in controls:
            control.observe(self.redraw, names="value")
        self.redraw()

    @property
    def temperature(self) -> float:
        return float(self.temperature_slider.value)

    @property
    def head(self) -> int:
        return 0 if self.head_selector is None else int(self.head_selector.value)

    def redraw(self, *_) -> None:
        """Recompute the weights for the current temperature and head, and redraw the picture."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        weights, output = _attend(self._query, self._key, self._value, self.temperature, self.causal)
        self.weights = _select_head(weights, self.head)                                    # (seq_q, seq_k)
        self.output = None if output is None else _select_head(output, self.head)         # (seq_q, d_v)
        max_entropy = math.log(self._key.size(1))
        self.summary.value = (f"T = {self.temperature:.2f}, head {self.head}: mean row entropy "
                              f"{_entropy(self.weights):.2f} nats (uniform: {max_entropy:.2f}), "
                              f"mean largest weight {self.weights.max(-1).mean():.2f}")
        panels = 1 if self.output is None else 2
        seq_q, seq_k = self.weights.shape
        figure = Figure(figsize=(panels * (0.35 * seq_k + 2.5), 0.35 * seq_q + 1.8))
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, panels, squeeze=False)[0]
        plot_attention_map(self.weights, self.tokens, self.key_tokens, ax=axes[0],
                           title=f"attention weights (T = {self.temperature:.2f})")
        if self.output is not None:
            scale = np.abs(self.output).max() or 1.0
            image = axes[1].imshow(self.output, cmap="coolwarm", vmin=-scale, vmax=scale, aspect="auto")
            figure.colorbar(image, ax=axes[1], fraction=0.046, pad=0.04)
            axes[1].set_title("output = weights @ V", fontsize=9)
            axes[1].set_xlabel("value feature")
            if self.tokens is not None:
                axes[1].set_yticks(range(seq_q), [str(t) for t in self.tokens], fontsize=8)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        self.image.value = buffer.getvalue()


def attention_explorer(query, key, value=None, tokens: Sequence[str] | None = None, *,
                       key_tokens: Sequence[str] | None = None, temperature: float = 1.0,
                       causal: bool = False) -> AttentionExplorer:
    """An ipywidgets explorer of attention maps with a temperature slider (and a head selector).

    Args:
        query: (seq_q, d_k) or (heads, seq_q, d_k) tensor or array.
        key: (seq_k, d_k) or (heads, seq_k, d_k).
        value: optional (seq_k, d_v) or (heads, seq_k, d_v); then the output weights @ V is drawn too.
        tokens: labels of the queries (and of the keys for self-attention); ``key_tokens`` for other keys.
        temperature: initial T; the map shows softmax(q k^T / (sqrt(d_k) T)).
        causal: hide keys after each query.

    Returns an :class:`AttentionExplorer` (an ipywidgets ``VBox``; display it as the last line of a cell).
    Widgets need a live kernel: draw :func:`mmtutorial.viz.attention_grid` beside it for the static book.
    """
    return AttentionExplorer(query, key, value, tokens, key_tokens=key_tokens, temperature=temperature,
                             causal=causal)

"""Interactive explorers (ipywidgets) for the chapters, each with a static twin for the website.

Widgets need a live Jupyter kernel; the static book shows the figure of the twin instead:

- :func:`attention_explorer` (widget) and :func:`mmtutorial.viz.attention_grid` (static figure): attention
  maps ``softmax(q k^T / (sqrt(d_k) T))`` under a temperature ``T``, one head at a time.

The numbers come from :func:`mmtutorial.nn.scaled_dot_product_attention` (one source of truth); a
temperature ``T`` only changes its ``scale`` from ``1/sqrt(d_k)`` to ``1/(sqrt(d_k) T)``.
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

from .nn.attention import scaled_dot_product_attention
from .viz import attention_grid, plot_attention_map

__all__ = ["attention_weights", "attention_output", "attention_explorer", "AttentionExplorer", "attention_grid"]


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

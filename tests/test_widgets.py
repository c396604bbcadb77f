"""mmtutorial.widgets (attention explorer) and the attention plots of mmtutorial.viz, driven programmatically."""
import math

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ipywidgets = pytest.importorskip("ipywidgets")
from mmtutorial import viz, widgets  # noqa: E402


def qkv(heads=2, seq=5, d_k=8, d_v=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(heads, seq, d_k, generator=g, dtype=torch.float64),
            torch.randn(heads, seq, d_k, generator=g, dtype=torch.float64),
            torch.randn(heads, seq, d_v, generator=g, dtype=torch.float64))


def entropy(weights):
    return float(-(weights * np.log(np.clip(weights, 1e-300, None))).sum(-1).mean())


def test_attention_weights_match_sdpa_with_temperature():
    q, k, v = qkv()
    for temperature in (0.3, 1.0, 2.5):
        scale = 1 / (math.sqrt(q.size(-1)) * temperature)
        expected = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)                   # (heads, seq, seq)
        for head in range(2):
            assert_close(torch.from_numpy(widgets.attention_weights(q, k, temperature, head=head)), expected[head])
        out = widgets.attention_output(q, k, v, temperature, head=1)
        assert_close(torch.from_numpy(out), F.scaled_dot_product_attention(q, k, v, scale=scale)[1])
    causal = widgets.attention_weights(q[0].numpy(), k[0].numpy(), causal=True)             # numpy in, 2-D
    assert np.allclose(np.triu(causal, 1), 0) and np.allclose(causal.sum(-1), 1)


def test_attention_weights_reject_bad_input():
    q, k, _ = qkv()
    with pytest.raises(ValueError, match="share d_k"):
        widgets.attention_weights(q, k[..., :4])
    with pytest.raises(ValueError, match="positive"):
        widgets.attention_weights(q, k, temperature=0.0)
    with pytest.raises(ValueError, match=r"head must be an int in \[0, 2\)"):
        widgets.attention_weights(q, k, head=2)
    with pytest.raises(TypeError, match="torch.Tensor or numpy array, got list"):
        widgets.attention_weights([[1.0]], k)
    with pytest.raises(ValueError, match=r"\(seq, dim\) or \(heads, seq, dim\)"):
        widgets.attention_weights(q[None], k)


def test_explorer_is_a_widget_whose_slider_changes_the_weights():
    q, k, v = qkv()
    explorer = widgets.attention_explorer(q, k, v, tokens=list("abcde"))
    assert isinstance(explorer, ipywidgets.VBox)
    controls, summary, image = explorer.children
    slider, head_selector = controls.children
    assert isinstance(slider, ipywidgets.FloatLogSlider) and isinstance(head_selector, ipywidgets.Dropdown)
    assert bytes(image.value).startswith(b"\x89PNG") and "T = 1.00" in summary.value
    at_one = explorer.weights.copy()
    np.testing.assert_allclose(at_one, widgets.attention_weights(q, k, 1.0, head=0))

    slider.value = 0.1                                  # colder: sharper rows, lower entropy
    sharp = explorer.weights.copy()
    np.testing.assert_allclose(sharp, widgets.attention_weights(q, k, 0.1, head=0), rtol=1e-6)
    assert entropy(sharp) < entropy(at_one) and sharp.max(-1).mean() > at_one.max(-1).mean()
    assert "T = 0.10" in summary.value

    slider.value = 10.0                                 # hotter: towards uniform 1/seq_k
    assert entropy(explorer.weights) > entropy(at_one)
    assert np.abs(explorer.weights - 1 / 5).max() < 0.1

    head_selector.value = 1                             # the other head
    np.testing.assert_allclose(explorer.weights, widgets.attention_weights(q, k, 10.0, head=1), rtol=1e-6)
    np.testing.assert_allclose(explorer.output, widgets.attention_output(q, k, v, 10.0, head=1), rtol=1e-6)
    assert "head 1" in summary.value


def test_single_head_explorer_has_no_head_selector_and_no_output_without_values():
    q, k, _ = qkv(heads=1)
    explorer = widgets.attention_explorer(q[0], k[0], causal=True)
    assert len(explorer.children[0].children) == 1 and explorer.head_selector is None
    assert explorer.output is None
    assert np.allclose(np.triu(explorer.weights, 1), 0)


def test_explorer_rejects_bad_input():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="tokens has 3 entries for a sequence of length 5"):
        widgets.attention_explorer(q, k, tokens=["a", "b", "c"])
    with pytest.raises(ValueError, match="same number of heads"):
        widgets.attention_explorer(q, k[:1])
    with pytest.raises(ValueError, match="value must be"):
        widgets.attention_explorer(q, k, v[:, :3])
    with pytest.raises(ValueError, match="min_temperature <= temperature"):
        widgets.attention_explorer(q, k, temperature=100.0)


def test_attention_grid_and_map():
    q, k, _ = qkv()
    fig = viz.attention_grid(q, k, temperatures=(0.5, 1.0, 2.0), tokens=list("abcde"), head=1, title="grid")
    assert len(fig.axes) == 3 and fig.axes[0].get_title().startswith("T = 0.5")
    assert fig.get_suptitle() == "grid"
    plt.close(fig)
    ax = viz.plot_attention_map(np.full((2, 3), 1 / 3), ["q1", "q2"], ["k1", "k2", "k3"], annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["k1", "k2", "k3"]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"\(seq_q, seq_k\)"):
        viz.plot_attention_map(np.ones(3))
    with pytest.raises(ValueError, match="query_tokens has 1 tokens for 2"):
        viz.plot_attention_map(np.ones((2, 2)), ["a"])
    with pytest.raises(ValueError, match="at least one temperature"):
        viz.attention_grid(q, k, temperatures=())

"""Checkers for chapter 6 (Multi-head attention and the Transformer block).

Each checker calls the learner's function on fixed problems in float64, compares it with PyTorch
(``nn.MultiheadAttention``) or the package (``mmtutorial.nn``), raises :class:`ExerciseError` with a hint
when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..nn import SinusoidalPositionalEncoding, transformer_parameter_count
from ._common import ExerciseError, check_close, passed, call_answer as _call


def _tensor(name: str, value) -> torch.Tensor:
    if value is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the result?")
    if not isinstance(value, torch.Tensor):
        raise ExerciseError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def check_split_heads(split_heads: Callable, merge_heads: Callable) -> None:
    """``split_heads(x, num_heads)``: (batch, seq, dim) -> (batch, num_heads, seq, dim // num_heads), head h
    holding features h*head_dim .. (h+1)*head_dim - 1; ``merge_heads(x)`` is its inverse."""
    generator = torch.Generator().manual_seed(6)
    for batch, seq, dim, num_heads in [(2, 5, 12, 3), (1, 7, 8, 1), (3, 4, 16, 8)]:
        x = torch.randn(batch, seq, dim, generator=generator, dtype=torch.float64)  # (batch, seq, dim)
        head_dim = dim // num_heads
        expected = torch.stack([x[..., h * head_dim:(h + 1) * head_dim] for h in range(num_heads)], dim=1)
        split = _tensor("split_heads", _call("split_heads", split_heads, x, num_heads))
        if tuple(split.shape) != tuple(expected.shape):
            raise ExerciseError(f"split_heads: expected shape {tuple(expected.shape)} (batch, heads, seq, "
                                f"head_dim), got {tuple(split.shape)}")
        if not torch.equal(split, expected):
            raise ExerciseError("split_heads: right shape, wrong contents. view(batch, seq, heads, head_dim) "
                                "first, then transpose(1, 2); a direct view(batch, heads, seq, head_dim) mixes "
                                "positions.")
        merged = _tensor("merge_heads", _call("merge_heads", merge_heads, expected))
        if tuple(merged.shape) != tuple(x.shape) or not torch.equal(merged, x):
            raise ExerciseError("merge_heads(split_heads(x)) must give x back: transpose(1, 2) then "
                                "reshape(batch, seq, dim).")
    passed("split_heads / merge_heads")


def check_multi_head_attention(multi_head_attention: Callable) -> None:
    """``multi_head_attention(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads)``.

    Self-attention of x (batch, seq, dim) with torch's packed weights: ``in_proj_weight`` (3 dim, dim)
    holds W_Q, W_K, W_V one above the other.  Compared with ``nn.MultiheadAttention(batch_first=True)``.
    """
    name = "multi_head_attention"
    torch.manual_seed(6)
    for dim, num_heads, seq in [(8, 2, 5), (12, 3, 4), (16, 1, 6)]:
        reference = nn.MultiheadAttention(dim, num_heads, batch_first=True, dtype=torch.float64).eval()
        nn.init.normal_(reference.in_proj_bias, std=0.5)
        x = torch.randn(2, seq, dim, dtype=torch.float64)                   # (batch, seq, dim)
        with torch.no_grad():
            expected, _ = reference(x, x, x, need_weights=False)
            got = _call(name, multi_head_attention, x, reference.in_proj_weight.detach().clone(),
                        reference.in_proj_bias.detach().clone(), reference.out_proj.weight.detach().clone(),
                        reference.out_proj.bias.detach().clone(), num_heads)
        got = _tensor(name, got)
        check_close(f"{name}(dim={dim}, heads={num_heads})", got.detach(), expected, rtol=1e-7, atol=1e-9,
                    hint="Project with x @ W.T + b, split Q, K, V (chunk(3) of the projection), split heads, "
                         "attend per head with scale 1/sqrt(head_dim), merge heads, then the output projection.")
    passed(name)


def check_sinusoidal_encoding(sinusoidal_encoding: Callable) -> None:
    """``sinusoidal_encoding(max_len, dim) -> tensor (max_len, dim)``:
    PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(pos / 10000^(2i/dim))."""
    name = "sinusoidal_encoding"
    for max_len, dim in [(10, 4), (50, 16), (128, 64)]:
        got = _tensor(name, _call(name, sinusoidal_encoding, max_len, dim))
        expected = SinusoidalPositionalEncoding(dim, max_len=max_len).pe.double()
        if tuple(got.shape) == (dim, max_len):
            raise ExerciseError(f"{name}: got shape {(dim, max_len)}; rows are positions: expected {(max_len, dim)}")
        check_close(f"{name}({max_len}, {dim})", got.double(), expected, rtol=1e-5, atol=1e-6,
                    hint="Even channels 2i get sin, odd channels 2i+1 get cos, both of pos / 10000^(2i/dim) "
                         "(the exponent uses the even index 2i, shared by the pair).")
    passed(name)


def check_gpt_parameter_count(gpt_parameter_count: Callable) -> None:
    """``gpt_parameter_count(vocab_size, context_length, dim, num_layers) -> int`` for a GPT-2-style model:
    learned positions, pre-LN blocks with biases, MLP width 4 dim, a final LayerNorm, LM head tied to the
    token embedding."""
    name = "gpt_parameter_count"
    configs = [(50257, 1024, 768, 12), (50257, 1024, 1024, 24), (65, 256, 64, 2), (1000, 32, 48, 3)]
    for vocab_size, context, dim, num_layers in configs:
        got = _call(name, gpt_parameter_count, vocab_size, context, dim, num_layers)
        expected = transformer_parameter_count(vocab_size, context, dim, num_layers)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the result?")
        if int(got) != got:
            raise ExerciseError(f"{name}: a parameter count is a whole number, got {got!r}")
        if int(got) != expected:
            hint = ""
            if int(got) == expected + vocab_size * dim:
                hint = " The LM head is tied to the token embedding: do not count V*d twice."
            elif int(got) == expected - (2 * dim):
                hint = " Do not forget the final LayerNorm (2 d)."
            raise ExerciseError(f"{name}{(vocab_size, context, dim, num_layers)}: expected {expected:,}, "
                                f"got {int(got):,}.{hint} Per block: attention 4d^2 + 4d, MLP 8d^2 + 5d, "
                                f"two LayerNorms 4d.")
    passed(name)

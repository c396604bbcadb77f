"""Checkers for chapter 5 (Attention).

Each checker calls the learner's function on fixed random problems in float64, compares it with
``torch.nn.functional.scaled_dot_product_attention`` or a closed form, raises :class:`ExerciseError` with a
hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._common import ExerciseError, check_close, passed, call_answer as _call


def _as_array(name: str, value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    if value is None:
        raise ExerciseError(f"{name}: got None. Did you forget to `return` the result?")
    return value


def check_attention(attention: Callable) -> None:
    """``attention(query, key, value, mask=None) -> output``: softmax(Q K^T / sqrt(d_k)) V.

    query (..., seq_q, d_k), key (..., seq_k, d_k), value (..., seq_k, d_v); ``mask`` is bool,
    broadcastable to (..., seq_q, seq_k), True = this query may attend to this key (SDPA's convention).
    """
    name = "attention"
    generator = torch.Generator().manual_seed(5)
    for shape_q, shape_k, d_v in [((4, 3), (4, 3), 2), ((2, 5, 8), (2, 7, 8), 4), ((2, 3, 6, 16), (2, 3, 6, 16), 16)]:
        query = torch.randn(*shape_q, generator=generator, dtype=torch.float64)         # (..., seq_q, d_k)
        key = torch.randn(*shape_k, generator=generator, dtype=torch.float64)           # (..., seq_k, d_k)
        value = torch.randn(*shape_k[:-1], d_v, generator=generator, dtype=torch.float64)  # (..., seq_k, d_v)
        expected = F.scaled_dot_product_attention(query, key, value)
        check_close(f"{name} for query {tuple(shape_q)}", _as_array(name, _call(name, attention, query, key, value)),
                    expected.numpy(), rtol=1e-7, atol=1e-9,
                    hint="Scores Q @ K^T (transpose the last two axes of K), divide by sqrt(d_k), softmax over "
                         "the keys (the last axis), then multiply by V.")
        seq_q, seq_k = shape_q[-2], shape_k[-2]
        mask = torch.rand(seq_q, seq_k, generator=generator) < 0.6                     # (seq_q, seq_k)
        mask[:, 0] = True                                                              # every query sees a key
        expected = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        check_close(f"{name} with a mask", _as_array(name, _call(name, attention, query, key, value, mask=mask)),
                    expected.numpy(), rtol=1e-7, atol=1e-9,
                    hint="Where the mask is False, set the score to -inf *before* the softmax "
                         "(scores.masked_fill(~mask, float('-inf'))).")
    passed(name)


def check_causal_mask(causal_mask: Callable) -> None:
    """``causal_mask(seq_q, seq_k) -> bool tensor (seq_q, seq_k)``, True = may attend.

    The queries are the *last* seq_q of the seq_k positions (decoding with a cache of seq_k - seq_q
    earlier positions), so query i (absolute position seq_k - seq_q + i) may see keys j <= seq_k - seq_q + i.
    """
    name = "causal_mask"
    for seq_q, seq_k in [(1, 1), (4, 4), (6, 6), (1, 5), (3, 8)]:
        mask = _call(name, causal_mask, seq_q, seq_k)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ExerciseError(f"{name}: expected a bool tensor, got "
                                f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
        if tuple(mask.shape) != (seq_q, seq_k):
            raise ExerciseError(f"{name}({seq_q}, {seq_k}): expected shape {(seq_q, seq_k)}, got {tuple(mask.shape)}")
        past = seq_k - seq_q
        expected = torch.arange(seq_k)[None, :] <= torch.arange(seq_q)[:, None] + past  # (seq_q, seq_k)
        if not torch.equal(mask, expected):
            hint = ("True must mean 'may attend' (on and below the diagonal), not 'blocked'."
                    if torch.equal(mask, ~expected) else
                    "Align the diagonal at the bottom right: the last query sees every key "
                    "(torch.tril(ones, diagonal=seq_k - seq_q)).")
            raise ExerciseError(f"{name}({seq_q}, {seq_k}) is wrong. {hint}")
    passed(name)


def check_score_variance(score_variance: Callable) -> None:
    """``score_variance(d_k, sigma_q, sigma_k) -> float``: Var(q . k) for independent zero-mean entries.

    q_i ~ (0, sigma_q^2), k_i ~ (0, sigma_k^2), all independent: Var(q . k) = d_k sigma_q^2 sigma_k^2.
    """
    name = "score_variance"
    for d_k, sigma_q, sigma_k in [(1, 1.0, 1.0), (64, 1.0, 1.0), (64, 2.0, 1.0), (16, 0.5, 3.0), (512, 0.1, 0.2)]:
        got = _call(name, score_variance, d_k, sigma_q, sigma_k)
        check_close(f"{name}({d_k}, {sigma_q}, {sigma_k})", got, d_k * sigma_q**2 * sigma_k**2, rtol=1e-9,
                    hint="Each product q_i k_i has mean 0 and variance sigma_q^2 sigma_k^2; the d_k terms are "
                         "independent, so their variances add.")
    passed(name)


# The chapter's second worked example (the first is in the text): two queries, three keys.
WORKED_QUERY = [[0.0, 2.0], [1.0, 1.0]]
WORKED_KEYS = [[1.0, 1.0], [0.0, 2.0], [2.0, 0.0]]
WORKED_VALUES = [[1.0, 0.0, 2.0], [0.0, 3.0, 1.0], [4.0, 1.0, 0.0]]


def check_worked_example(weights, output) -> None:
    """The attention weights (2, 3) and output (2, 3) of ``WORKED_QUERY`` on ``WORKED_KEYS``/``WORKED_VALUES``."""
    query = torch.tensor(WORKED_QUERY, dtype=torch.float64)
    key = torch.tensor(WORKED_KEYS, dtype=torch.float64)
    value = torch.tensor(WORKED_VALUES, dtype=torch.float64)
    expected_weights = torch.softmax(query @ key.T / math.sqrt(2), dim=-1)
    expected_output = F.scaled_dot_product_attention(query, key, value)
    unscaled = torch.softmax(query @ key.T, dim=-1)
    got_weights = torch.as_tensor(_as_array("weights", weights), dtype=torch.float64)
    if got_weights.shape == unscaled.shape and torch.allclose(got_weights, unscaled, atol=1e-3):
        raise ExerciseError("weights: you forgot the 1/sqrt(d_k) scaling (d_k = 2 here).")
    check_close("weights", got_weights, expected_weights, rtol=0, atol=1e-3,
                hint="weights = softmax(Q K^T / sqrt(2)) row by row; each row sums to 1.")
    got_output = torch.as_tensor(_as_array("output", output), dtype=torch.float64)
    if got_output.shape == expected_weights.shape and torch.allclose(got_output, expected_weights, atol=1e-3):
        raise ExerciseError("output: these are the weights; the output is weights @ V.")
    check_close("output", got_output, expected_output, rtol=0, atol=1e-3,
                hint="output = weights @ V: each output row is a weighted average of the value rows.")
    passed("worked example")

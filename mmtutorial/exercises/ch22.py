"""Checkers for chapter 22 (training at scale, and making models small).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.compression``, ``mmtutorial.models.gpt.training_flops``, or one big batch's gradients), raises
:class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._common import ExerciseError, as_float64 as _as_numpy, call_answer as _call, check_close, passed


def check_per_channel_scale(per_channel_scale: Callable) -> None:
    """``per_channel_scale(weight (out, in)) -> (out,)``: the symmetric int8 scale of each output row."""
    from ..compression import quantization_params

    name = "per_channel_scale"
    generator = torch.Generator().manual_seed(0)
    for rows, columns in ((4, 6), (16, 9)):
        weight = torch.randn(rows, columns, generator=generator) * torch.rand(rows, 1, generator=generator) * 3
        expected, _ = quantization_params(weight, bits=8, symmetric=True, axis=0)
        got = _call(name, per_channel_scale, weight.clone())
        hint = ("Symmetric int8 maps [-max|w|, max|w|] of each row onto the 255 steps from -128 to 127: "
                "scale = max|w_row| / ((127 - (-128)) / 2) = max|w_row| / 127.5, one value per row (dim=1).")
        shape = None if got is None else _as_numpy(got).shape
        if shape in ((), (1,)):
            hint = "One scale per output row, not one for the whole matrix. " + hint
        elif shape == (columns,):
            hint = "One scale per output row (reduce over dim=1), not per column. " + hint
        check_close(f"{name} ({rows} x {columns})", got, expected.numpy(), rtol=1e-6, atol=1e-9, hint=hint)
    passed(name)


def check_training_flops_6nd(training_flops_6nd: Callable) -> None:
    """``training_flops_6nd(config, num_tokens) -> int``: 6 N D with N the GPT's matrix-product weights."""
    from ..models.gpt import GPTConfig, training_flops

    name = "training_flops_6nd"
    for config, tokens in ((GPTConfig(vocab_size=256, max_seq_len=32, dim=32, num_layers=2, num_heads=4), 10_000),
                           (GPTConfig(vocab_size=1000, max_seq_len=64, dim=48, num_layers=3, num_heads=4,
                                      mlp_ratio=2.0), 123_456)):
        got = _call(name, training_flops_6nd, config, tokens)
        expected = training_flops(config, tokens, attention=False)
        hint = ("N counts the weights every token is multiplied by: per block 4 d^2 (query, key, value, output) "
                "+ 2 d h (the MLP's two matrices, h = mlp_ratio * d), times num_layers, plus V d for the LM head; "
                "then 6 N D (2 forward + 4 backward FLOPs per weight and token).")
        check_close(f"{name} (d={config.dim}, L={config.num_layers}, V={config.vocab_size})", got, expected,
                    rtol=1e-9, atol=0.5, hint=hint)
    passed(name)


def check_accumulate_gradients(accumulate_gradients: Callable) -> None:
    """``accumulate_gradients(model, micro_batches)`` fills ``p.grad`` with the gradient of the mean cross-entropy
    over all examples of the equal-sized micro-batches ``[(inputs, targets), ...]``, as one big batch would."""
    name = "accumulate_gradients"
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    inputs = torch.randn(24, 5, generator=generator)                               # (24, 5)
    targets = torch.randint(0, 3, (24,), generator=generator)                      # (24,)
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(inputs), targets).backward()
    for num_micro in (4, 3):
        learner = copy.deepcopy(model)
        micro_batches = list(zip(inputs.chunk(num_micro), targets.chunk(num_micro)))
        _call(name, accumulate_gradients, learner, micro_batches)
        for (parameter_name, mine), theirs in zip(learner.named_parameters(), reference.parameters()):
            if mine.grad is None:
                raise ExerciseError(f"{name}: {parameter_name}.grad is None; call backward() on each micro-batch")
            ratio = float(mine.grad.norm() / theirs.grad.norm())
            hint = "Divide each micro-batch's mean loss by the number of micro-batches before backward()."
            if abs(ratio - num_micro) < 1e-3:
                hint = (f"Your gradients are {num_micro} times too large: you summed the micro-batch losses "
                        "instead of averaging them. " + hint)
            check_close(f"{name} ({num_micro} micro-batches, {parameter_name})", mine.grad.numpy(),
                        theirs.grad.numpy(), rtol=1e-5, atol=1e-7, hint=hint)
    passed(name)

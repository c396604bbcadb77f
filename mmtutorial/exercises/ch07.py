"""Checkers for chapter 7 (A GPT from scratch).

Each checker calls the learner's function on fixed problems, compares it with the package, PyTorch or
Hugging Face ``transformers``, raises :class:`ExerciseError` with a hint when it differs and prints a
confirmation when it agrees.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._common import ExerciseError, check_close, passed, call_answer as _call


def check_merge(merge: Callable) -> None:
    """``merge(ids, pair, new_id) -> list[int]``: replace each occurrence of ``pair`` (left to right, no
    overlaps) by ``new_id``, as one BPE merge step does."""
    from ..tokenizers import _merge

    name = "merge"
    cases = [([1, 2, 3, 1, 2], (1, 2), 9), ([5, 5, 5], (5, 5), 7), ([5, 5, 5, 5], (5, 5), 7),
             ([], (1, 2), 3), ([1], (1, 2), 3), ([2, 1, 2, 1], (1, 2), 4), ([3, 3, 4, 3, 3, 4], (3, 4), 0)]
    for ids, pair, new_id in cases:
        got = _call(name, merge, list(ids), pair, new_id)
        expected = _merge(list(ids), pair, new_id)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the new list?")
        if list(got) != expected:
            raise ExerciseError(f"{name}({ids}, {pair}, {new_id}): expected {expected}, got {list(got)}. "
                                "Scan left to right; after a merge skip both tokens of the pair, so [5, 5, 5] "
                                "with (5, 5) gives [7, 5].")
    passed(name)


def check_perplexity(perplexity: Callable) -> None:
    """``perplexity(logits, targets) -> float``: exp of the mean next-token cross-entropy (nats), for logits
    (batch, seq, vocab) and targets (batch, seq)."""
    name = "perplexity"
    generator = torch.Generator().manual_seed(7)
    for vocab in (5, 50):
        logits = torch.randn(3, 11, vocab, generator=generator, dtype=torch.float64) * 2   # (batch, seq, vocab)
        targets = torch.randint(0, vocab, (3, 11), generator=generator)                     # (batch, seq)
        expected = math.exp(F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1)).item())
        check_close(name, float(_call(name, perplexity, logits, targets)), expected, rtol=1e-6,
                    hint="perplexity = exp(mean over all positions of -log softmax(logits)[target]).")
    uniform = torch.zeros(1, 4, 50, dtype=torch.float64)
    check_close(f"{name} of a uniform model", float(_call(name, perplexity, uniform, torch.zeros(1, 4, dtype=torch.long))),
                50.0, rtol=1e-6, hint="A uniform model over V tokens has perplexity V.")
    passed(name)


def check_repetition_penalty(repetition_penalty: Callable) -> None:
    """``repetition_penalty(logits, previous_ids, penalty) -> logits``: CTRL's penalty (Keskar et al., 2019)
    as in ``transformers.RepetitionPenaltyLogitsProcessor``: for every token already generated, divide a
    positive logit by ``penalty`` and multiply a negative one by it.  logits (batch, vocab), previous_ids
    (batch, seq)."""
    from transformers import RepetitionPenaltyLogitsProcessor

    name = "repetition_penalty"
    generator = torch.Generator().manual_seed(3)
    for penalty in (1.3, 2.0):
        logits = torch.randn(2, 20, generator=generator, dtype=torch.float64)   # (batch, vocab)
        previous = torch.tensor([[1, 4, 4, 7, 19], [0, 2, 2, 2, 3]])            # (batch, seq), repeats
        expected = RepetitionPenaltyLogitsProcessor(penalty)(previous, logits.clone())
        got = _call(name, repetition_penalty, logits.clone(), previous, penalty)
        check_close(f"{name}(penalty={penalty})", torch.as_tensor(got).numpy(), expected.numpy(), rtol=1e-6,
                    hint="Penalise each seen token once (not once per occurrence); positive logits are divided, "
                         "negative ones multiplied, so both become less likely.")
    passed(name)


def check_gpt_parameter_count(gpt_parameter_count: Callable) -> None:
    """``gpt_parameter_count(vocab_size, max_seq_len, dim, num_layers) -> int``: parameters of our GPT
    (biases everywhere, MLP width 4 d, tied LM head)."""
    from ..models.gpt import GPT, GPTConfig

    name = "gpt_parameter_count"
    for vocab, seq, dim, layers in ((512, 64, 128, 4), (100, 16, 32, 1), (50257, 1024, 768, 12)):
        with torch.device("meta"):
            expected = GPT(GPTConfig(vocab_size=vocab, max_seq_len=seq, dim=dim, num_layers=layers,
                                     num_heads=4)).num_parameters()
        got = _call(name, gpt_parameter_count, vocab, seq, dim, layers)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the count?")
        if int(got) != expected:
            raise ExerciseError(f"{name}(V={vocab}, P={seq}, d={dim}, L={layers}): expected {expected:,}, got "
                                f"{int(got):,}. Per block: attention 4d^2+4d, MLP 8d^2+5d, two LayerNorms 4d; plus "
                                "V d + P d embeddings and a final LayerNorm 2d; the tied head adds nothing.")
    passed(name)

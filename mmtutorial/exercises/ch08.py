"""Checkers for chapter 8 (BERT, masked language modelling and sentence embeddings).

Each checker calls the learner's function on fixed random problems, compares it with the package's
tested version (or PyTorch), raises :class:`ExerciseError` with a hint when it differs and prints a
confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._common import ExerciseError, check_close, passed, call_answer as _call


def _as_numpy(name: str, value):
    if not isinstance(value, torch.Tensor):
        raise ExerciseError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value.detach().double().numpy()


def check_mean_pool(mean_pool: Callable) -> None:
    """``mean_pool(hidden, attention_mask) -> (batch, dim)``: the mean of the real tokens' vectors."""
    from ..models.bert import mean_pool as reference

    generator = torch.Generator().manual_seed(808)
    hidden = torch.randn(4, 7, 5, generator=generator, dtype=torch.float64)  # (batch, seq, dim)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2, [1] + [0] * 6])
    got = _as_numpy("mean_pool", _call("mean_pool", mean_pool, hidden, mask))
    hint = ("Multiply by the mask (unsqueezed to (batch, seq, 1)), sum over the sequence and divide by the "
            "number of real tokens, not by seq.")
    check_close("mean_pool", got, reference(hidden, mask).numpy(), rtol=1e-9, atol=1e-12, hint=hint)
    passed("mean_pool")


def check_masked_lm_loss(masked_lm_loss: Callable) -> None:
    """``masked_lm_loss(logits, labels) -> scalar``: mean -log p(x_j) over positions whose label is not -100."""
    generator = torch.Generator().manual_seed(809)
    for vocab, selected_fraction in ((11, 0.15), (40, 0.5)):
        logits = torch.randn(3, 8, vocab, generator=generator, dtype=torch.float64)  # (batch, seq, vocab)
        labels = torch.randint(vocab, (3, 8), generator=generator)
        labels[torch.rand(3, 8, generator=generator) > selected_fraction] = -100
        labels[0, 0] = 1  # at least one selected position
        expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        got = _as_numpy("masked_lm_loss", _call("masked_lm_loss", masked_lm_loss, logits, labels))
        hint = ("Average -log softmax(logits)[label] over the selected positions only (label != -100): the "
                "other ~85 % of positions do not count, neither in the sum nor in the count.")
        check_close("masked_lm_loss", got, expected.numpy(), rtol=1e-9, atol=1e-12, hint=hint)
    passed("masked_lm_loss")


def check_bert_parameter_count(bert_parameter_count: Callable) -> None:
    """``bert_parameter_count(vocab_size, max_seq_len, type_vocab_size, dim, num_layers, mlp_hidden_dim)``:
    the parameters of a BERT encoder with its pooler (no MLM head); ``mlp_hidden_dim`` is the width of each
    block's MLP (``mlp_ratio * dim``, Hugging Face's ``intermediate_size``)."""
    cases = {(30522, 512, 2, 768, 12, 3072): 109_482_240,   # BERT-base, as transformers builds it
             (30522, 512, 2, 384, 6, 1536): 22_713_216,     # all-MiniLM-L6-v2
             (1000, 64, 2, 32, 3, 48): None}                # a tiny one, counted on a built model
    for args, expected in cases.items():
        if expected is None:
            from ..models.bert import BertConfig, BertModel
            config = BertConfig(vocab_size=args[0], max_seq_len=args[1], type_vocab_size=args[2], dim=args[3],
                                num_layers=args[4], num_heads=4, mlp_ratio=args[5] / args[3])
            expected = sum(p.numel() for p in BertModel(config).parameters())
        got = _call("bert_parameter_count", bert_parameter_count, *args)
        if got != expected:
            raise ExerciseError(
                f"bert_parameter_count{args}: expected {expected:,}, got {got!r}. Count the three embedding "
                "tables and their LayerNorm, per layer Q, K, V and output projections (weights and biases), "
                "the MLP's two linear layers, two LayerNorms, then the pooler (dim x dim + dim).")
    passed("bert_parameter_count")


def check_cosine_similarity_matrix(cosine_similarity_matrix: Callable) -> None:
    """``cosine_similarity_matrix(a, b) -> (n, m)``: cos(a_i, b_j) for rows of a (n, d) and b (m, d)."""
    generator = torch.Generator().manual_seed(810)
    a = torch.randn(5, 6, generator=generator, dtype=torch.float64) * torch.rand(5, 1, generator=generator) * 3
    b = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    expected = F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)
    got = _as_numpy("cosine_similarity_matrix", _call("cosine_similarity_matrix", cosine_similarity_matrix, a, b))
    check_close("cosine_similarity_matrix", got, expected.numpy(), rtol=1e-9, atol=1e-12,
                hint="Normalise every row to unit length first, then one matrix product a_n @ b_n.T.")
    passed("cosine_similarity_matrix")

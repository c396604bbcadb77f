"""GPT: a decoder-only Transformer language model (Radford et al., 2018, 2019), in one readable file.

Given tokens x_1..x_T the model outputs, at every position t, a distribution over the next token:

    h_0 = E[x_t] + P[t]                          token embedding + learned position embedding
    h_l = Block_l(h_{l-1})   l = 1..L            pre-LN blocks with *causal* self-attention
    logits_t = LN(h_L)_t  E^T                    LM head tied to the token embedding

and is trained to minimise the mean next-token cross-entropy  -1/(T-1) sum_{t=1}^{T-1} log p(x_{t+1} | x_1..x_t)
(in nats per token; perplexity = exp of it; a sequence of T tokens holds T - 1 next-token predictions).
Causal masking lets one forward pass train all of them at once without any position seeing its own answer.
``beats_bigram`` is chapter 7's result bound, written once for the chapter and its unit test.

The blocks are ``mmtutorial.nn.TransformerEncoder`` with ``causal=True`` (one implementation of
attention in the package).  Generation reuses keys and values through a ``KVCache`` per block.
``mmtutorial.zoo.gpt2`` loads Hugging Face GPT-2 weights into this class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_token_ids, describe
from ..config import scale
from ..nn import KVCache, LearnedPositionalEmbedding, TransformerConfig, TransformerEncoder

__all__ = ["GPTConfig", "GPT", "top_k_filter", "top_p_filter", "sample_next_token", "generation_flops",
           "matmul_parameters", "training_flops",
           "IGNORE_INDEX", "BIGRAM_MARGIN", "required_margin_over_bigram", "beats_bigram"]

IGNORE_INDEX = -100  # a target that does not count in the loss (F.cross_entropy's default ignore_index)


@dataclass
class GPTConfig:
    vocab_size: int = 1024      # number of token ids (tokeniser vocabulary incl. special tokens)
    max_seq_len: int = 128      # context length: positions with a learned embedding
    dim: int = 128              # model width d
    num_layers: int = 4         # Transformer blocks
    num_heads: int = 4          # attention heads per block (head_dim = dim / num_heads)
    mlp_ratio: float = 4.0      # each block's MLP is mlp_ratio * dim wide (GPT-2: 4)
    dropout: float = 0.0        # dropout on embeddings, attention weights and residual branches
    bias: bool = True           # biases in linear layers and LayerNorms (GPT-2: True)
    activation_checkpointing: bool = False  # training: recompute each block's activations in backward
                                            # instead of storing them (less memory, one more block forward)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if (not isinstance(self.mlp_ratio, (int, float)) or isinstance(self.mlp_ratio, bool)
                or not self.mlp_ratio > 0 or int(self.mlp_ratio * self.dim) < 1):
            raise ValueError(f"GPTConfig.mlp_ratio must be a number > 0 with int(mlp_ratio * dim) >= 1, got "
                             f"{self.mlp_ratio!r} (dim={self.dim})")
        if self.dim % self.num_heads:
            raise ValueError(f"GPTConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("bias", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def gpt2_small(cls) -> "GPTConfig":
        """GPT-2 small (124 M parameters): 12 layers, 12 heads, d = 768, 1024 positions, 50,257 tokens."""
        return cls(vocab_size=50257, max_seq_len=1024, dim=768, num_layers=12, num_heads=12, dropout=0.1)

    @property
    def mlp_hidden_dim(self) -> int:
        """Width of each block's MLP (Hugging Face GPT-2's ``n_inner``, 4 * dim by default)."""
        return int(self.mlp_ratio * self.dim)

    def transformer_config(self) -> TransformerConfig:
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=self.mlp_ratio, dropout=self.dropout, causal=True, norm="pre",
                                 activation="gelu_tanh", bias=self.bias,
                                 activation_checkpointing=self.activation_checkpointing)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT wants a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.position_embedding = LearnedPositionalEmbedding(config.max_seq_len, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = TransformerEncoder(config.transformer_config())  # blocks + final LayerNorm
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf, 2017): the output layer scores token v by h . E[v], reusing the
        # input embedding; it saves V*d parameters (38.6 M of GPT-2 small's 124 M).
        self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        # GPT-2: each residual branch's output projection gets std 0.02 / sqrt(2 L), so that the variance
        # added to the residual stream by 2 L branches stays O(1) at initialisation.
        residual_std = 0.02 / math.sqrt(2 * config.num_layers)
        for block in self.transformer.blocks:
            nn.init.normal_(block.attn.out_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- forward ---------------------------------------------------------------------------------------

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                kv_caches: list[KVCache] | None = None) -> tuple[Tensor, Tensor | None]:
        """idx: (batch, seq) token ids -> (logits (batch, seq, vocab), loss or None).

        ``targets`` (batch, seq): the next tokens; the loss is their mean cross-entropy in nats (ids of -100
        are ignored, and at least one must count).  ``kv_caches`` (from ``new_kv_caches()``): process only
        the new tokens ``idx`` after the cached ones, whose keys/values are reused.
        """
        start = 0 if kv_caches is None else len(kv_caches[0])
        # generate() crops to the last max_seq_len tokens itself; a caller of forward must do the same.
        check_token_ids(idx, self.config.vocab_size, name="idx", max_len=self.config.max_seq_len, start=start,
                        allow_empty=True)
        if targets is not None:
            _check_targets(targets, idx, self.config.vocab_size)
        x = self.token_embedding(idx)                          # (batch, seq, dim)
        x = self.dropout(self.position_embedding(x, start=start))
        x = self.transformer(x, kv_caches=kv_caches)           # (batch, seq, dim), final LayerNorm included
        logits = self.lm_head(x)                               # (batch, seq, vocab)
        loss = None
        if targets is not None:
            flat = logits.flatten(0, 1)                        # (batch * seq, vocab)
            if flat.dtype in (torch.float16, torch.bfloat16):  # the softmax of a mixed-precision run in float32
                flat = flat.float()
            loss = F.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    def new_kv_caches(self) -> list[KVCache]:
        return self.transformer.new_kv_caches()

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters, the tied embedding counted once; ``non_embedding`` leaves out both embeddings."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.token_embedding.weight.numel() + self.position_embedding.embedding.weight.numel()
        return total

    # -- generation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (batch, seq); returns (batch, seq + new).

        Each step samples from softmax(logits / temperature), optionally restricted to the ``top_k`` most
        probable tokens and/or the smallest set whose probability reaches ``top_p`` (nucleus sampling).
        ``temperature=0`` is greedy decoding (argmax).  With ``use_cache`` the keys/values of earlier tokens
        are kept in a ``KVCache`` and each step runs the model on one new token; once the context is full
        the window slides and is recomputed, exactly as without the cache.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if not isinstance(temperature, (int, float)) or temperature < 0 or math.isnan(temperature):
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        if top_p is not None and not (0.0 < top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        # A prompt of any length: the loop below keeps only the last max_seq_len tokens as context.
        check_token_ids(idx, self.config.vocab_size, name="idx")
        was_training = self.training
        self.eval()
        max_len = self.config.max_seq_len
        caches: list[KVCache] | None = None
        for _ in range(max_new_tokens):
            if use_cache and caches is not None and len(caches[0]) < max_len:
                logits, _ = self(idx[:, -1:], kv_caches=caches)           # one new token: (batch, 1, vocab)
            else:
                window = idx[:, -max_len:]                                # (batch, <= max_len)
                caches = self.new_kv_caches() if use_cache else None
                logits, _ = self(window, kv_caches=caches)                # (batch, window, vocab)
            next_token = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)  # (batch, 1)
            idx = torch.cat([idx, next_token], dim=1)
        self.train(was_training)
        return idx


def _check_targets(targets: Tensor, idx: Tensor, vocab_size: int) -> Tensor:
    """Next-token targets must be integer ids of idx's shape, each in [0, vocab_size) or -100 (ignored),
    with at least one that counts: otherwise the mean loss is 0 / 0 = NaN.

    Values are checked on the CPU (a ``ValueError``); on an accelerator the checks are queued with
    ``torch._assert_async`` so that no forward pass waits for a read-back.  Returns ``targets``.
    """
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor of next-token ids (batch, seq), got {describe(targets)}")
    if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must hold integer token ids (torch.long, -100 = ignored), got dtype {targets.dtype}")
    if targets.shape != idx.shape:
        raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
    if targets.numel() == 0:
        raise ValueError(f"no target position counts: targets of shape {tuple(targets.shape)} are empty, so the "
                         "mean next-token loss is undefined (0 / 0)")
    counts = targets != IGNORE_INDEX                                           # (batch, seq)
    valid = ~counts | ((targets >= 0) & (targets < vocab_size))              # (batch, seq)
    if targets.device.type == "cpu":
        if not bool(valid.all()):
            wrong = targets[~valid]
            raise ValueError(f"targets must be token ids in [0, vocab_size={vocab_size}) or {IGNORE_INDEX} "
                             f"(ignored), got {wrong.numel()} other values in [{int(wrong.min())}, {int(wrong.max())}]")
        if not bool(counts.any()):
            raise ValueError(f"no target position counts: every target is {IGNORE_INDEX} (ignored), so the mean "
                             "next-token loss is undefined (0 / 0)")
    else:  # queued on the device: no read-back, so no synchronisation on every forward pass
        torch._assert_async(valid.all(), f"targets must be in [0, vocab_size={vocab_size}) or {IGNORE_INDEX}")
        torch._assert_async(counts.any(), f"no target position counts: every target is {IGNORE_INDEX}")
    return targets


# ---------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------

def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row (ties at the k-th value are kept), set the rest to -inf."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = min(k, logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter (Holtzman et al., 2020): keep the smallest set of most probable tokens whose total
    probability is >= ``p`` (always at least the top token), set the rest to -inf."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)    # (..., vocab)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs                             # probability of the better tokens
    remove_sorted = mass_before >= p                                       # already reached p without it
    remove_sorted[..., 0] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)               # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def sample_next_token(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """logits (batch, vocab) -> next token ids (batch, 1); temperature 0 = argmax.

    On the CPU, NaN logits (a diverged model, or NaN in its input) and rows with no finite logit raise a
    ``ValueError`` here instead of an obscure error inside ``torch.multinomial``; on an accelerator they
    are not checked, since reading the values back would wait for the device at every generated token.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor (batch, vocab), got {describe(logits)}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")
    on_cpu = logits.device.type == "cpu"
    if on_cpu and bool(torch.isnan(logits).any()):
        rows = torch.isnan(logits).any(dim=-1).nonzero().flatten().tolist()
        raise ValueError(f"logits hold NaN (in rows {rows[:8]}{' ...' if len(rows) > 8 else ''} of "
                         f"{logits.size(0)}): there is no distribution to sample from. The model has probably "
                         "diverged (check the training loss) or received NaN inputs.")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if on_cpu and not bool(torch.isfinite(logits).any(dim=-1).all()):
        rows = (~torch.isfinite(logits).any(dim=-1)).nonzero().flatten().tolist()
        raise ValueError(f"logits of rows {rows[:8]} have no finite value (all -inf or inf): there is no "
                         "distribution to sample from")
    probs = logits.softmax(dim=-1)                                         # (batch, vocab)
    return torch.multinomial(probs, num_samples=1, generator=generator)    # (batch, 1)


# ---------------------------------------------------------------------------------------------------
# Cost of generation, with and without a KV cache
# ---------------------------------------------------------------------------------------------------

def generation_flops(config: GPTConfig, prompt_len: int, new_tokens: int, use_cache: bool) -> int:
    """Multiply-add FLOPs (2 per multiply-accumulate) of the matrix products of generating ``new_tokens``
    after a ``prompt_len`` prompt (contexts within ``max_seq_len``).

    A token at context length c costs 2 N_w (its matmuls with the N_w = L (4 d^2 + 2 d h) block weights,
    h = mlp_ratio * d, so 12 L d^2 for GPT-2's h = 4 d, plus the V d LM head) + 4 L d c (scores q.k and the
    weighted sum of values over c keys).  Without a cache, step t recomputes every position 1..c; with it,
    only the new one.
    """
    d, L, V = config.dim, config.num_layers, config.vocab_size
    if prompt_len < 1 or new_tokens < 0 or prompt_len + new_tokens > config.max_seq_len + 1:
        raise ValueError(f"need prompt_len >= 1, new_tokens >= 0 and prompt_len + new_tokens <= max_seq_len + 1 "
                         f"= {config.max_seq_len + 1}, got {prompt_len} and {new_tokens}")
    per_token_weights = 2 * (L * (4 * d * d + 2 * d * config.mlp_hidden_dim) + V * d)

    def token_cost(c: int) -> int:  # one position that attends over c keys
        return per_token_weights + 4 * L * d * c

    total = 0
    for step in range(new_tokens):
        context = prompt_len + step                       # tokens the model reads at this step
        if use_cache and step > 0:
            total += token_cost(context)                  # only the newest token
        else:
            total += sum(token_cost(c) for c in range(1, context + 1))
    return total


def matmul_parameters(config: GPTConfig) -> int:
    """N of the "6 N D" rule: the weights every token is multiplied by, L (4 d^2 + 2 d h) in the blocks plus
    the V d of the (tied) LM head.  Biases, LayerNorms and the embedding look-ups do no matrix product."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"matmul_parameters wants a GPTConfig, got {describe(config)}")
    d, L = config.dim, config.num_layers
    return L * (4 * d * d + 2 * d * config.mlp_hidden_dim) + config.vocab_size * d


def training_flops(config: GPTConfig, num_tokens: int, seq_len: int | None = None, attention: bool = True) -> int:
    """FLOPs (2 per multiply-accumulate) of training on ``num_tokens`` tokens in sequences of ``seq_len``
    (default ``max_seq_len``): forward plus backward of every matrix product.

    A weight matrix costs 2 FLOPs per weight and token forward, and 4 backward (the gradient with respect
    to its input and the one with respect to itself), hence 6 N D (Kaplan et al., 2020).  Attention adds
    2 T d for the scores q.k and 2 T d for the weighted sum of values per token and layer forward, three
    times that in training: 12 L T d D (computed in full even though the causal mask discards half).  The
    arithmetic is chapter 25's ``data.timeline.transformer_training_flops``, with N = :func:`matmul_parameters`.
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    seq_len = config.max_seq_len if seq_len is None else seq_len
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 1 <= seq_len <= config.max_seq_len:
        raise ValueError(f"seq_len must be an int in [1, max_seq_len={config.max_seq_len}], got {seq_len!r}")
    from ..data.timeline import transformer_training_flops
    return transformer_training_flops(matmul_parameters(config), config.num_layers, config.dim, seq_len, num_tokens,
                                      attention)


# ---------------------------------------------------------------------------------------------------
# Chapter 7's result: the bound the trained GPT must meet (one place for the chapter and its unit test)
# ---------------------------------------------------------------------------------------------------

# How far (nats per token) the GPT's validation loss must lie below the bigram baseline's, per mode.
# A model that ignores the context predicts the next token from the current one alone, so it is at best
# a bigram model.  On chapter 7's QUICK data the tuned count-based bigram has margin 0 by definition, a
# trained table of next-token logits -0.03 (tests/test_quick_bounds.py), and a GPT whose attention sees
# only the current token, trained with the chapter's QUICK recipe, -0.11 (measured once: too slow for
# the tests).  An untrained GPT sits near log V, about 3 nats above the bigram.  Any margin well above 0
# therefore needs the context.  The chapter's GPT (1 CPU thread): QUICK 0.37, full 0.69.
BIGRAM_MARGIN = {"full": 0.3, "quick": 0.2}


def required_margin_over_bigram() -> float:
    """The margin of ``BIGRAM_MARGIN`` for the current mode (``MMTUTORIAL_QUICK``)."""
    return scale(full=BIGRAM_MARGIN["full"], quick=BIGRAM_MARGIN["quick"])


def beats_bigram(model_loss: float, bigram_loss: float) -> bool:
    """Chapter 7's claim: the validation loss (nats per token) lies below the bigram baseline's by more than
    ``required_margin_over_bigram()``, which no context-blind or untrained model achieves."""
    for name, value in (("model_loss", model_loss), ("bigram_loss", bigram_loss)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of nats per token (a float), got {describe(value)}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of nats per token, got {value!r}")
    return model_loss < bigram_loss - required_margin_over_bigram()

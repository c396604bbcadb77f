"""BERT (Devlin et al., 2019): a bidirectional Transformer encoder and its masked-language-model objective.

The whole model in one file, built on the package's Transformer core (``mmtutorial.nn``)::

    input_ids, token_type_ids
        -> BertEmbeddings:   LN(E_word[x_i] + E_pos[i] + E_type[s_i]),  then dropout
        -> TransformerEncoder of post-LN blocks:
               x = LN(x + Attn(x));   x = LN(x + MLP(x))      (GELU, no causal mask: every token sees all)
        -> hidden states (batch, seq, dim)
        -> pooler (optional):  tanh(W h_[CLS] + b)
        -> MLM head (BertForMaskedLM):  logits = LN(GELU(W h + b)) E_word^T + bias   (decoder tied to E_word)

Masked language modelling: choose a set M of about 15 % of the (non-special) positions; of those, 80 %
become [MASK], 10 % a random token and 10 % stay as they are (``mlm_mask_tokens``).  The loss is the
mean negative log-likelihood of the original tokens at the chosen positions only::

    L = -(1 / |M|) * sum_{j in M} log p(x_j | x~)

(``mlm_loss``; labels are -100 elsewhere, the ``ignore_index`` of ``F.cross_entropy``).

``mmtutorial.zoo.bert`` loads Hugging Face BERT weights (e.g. all-MiniLM-L6-v2) into these classes.
The end of the file holds chapter 8's result bounds on a tiny pretrained BERT (``mlm_beats_unigram``,
``mlm_uses_context``, ``mlm_wrong_loss_flatters``), written once for the chapter and its unit test, with the
two baselines they are measured against (``context_free_mlm_loss``, ``mlm_context_gap``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_token_ids, describe
from ..config import scale
from ..nn import TransformerConfig, TransformerEncoder

__all__ = ["init_bert_weights", "BertConfig", "BertEmbeddings", "BertModel", "BertMLMHead", "BertForMaskedLM", "mean_pool",
           "mlm_mask_tokens", "mlm_loss", "IGNORE_INDEX", "context_free_mlm_loss", "swap_context",
           "mlm_context_gap", "MLM_BOUNDS", "mlm_bound", "mlm_beats_unigram", "mlm_uses_context",
           "mlm_wrong_loss_flatters"]

IGNORE_INDEX = -100  # label of positions that do not count in the MLM loss (F.cross_entropy's default)


@dataclass
class BertConfig:
    vocab_size: int = 30522        # WordPiece vocabulary size (bert-base-uncased: 30,522)
    max_seq_len: int = 512         # longest input; one learned position embedding per position
    type_vocab_size: int = 2       # segment (token type) ids: 0 = sentence A, 1 = sentence B
    dim: int = 768                 # hidden size d of every token vector
    num_layers: int = 12           # post-LN Transformer blocks
    num_heads: int = 12            # attention heads; head_dim = dim // num_heads
    mlp_ratio: float = 4.0         # each block's MLP is mlp_ratio * dim wide (BERT: 4, i.e. 3,072 for d = 768)
    dropout: float = 0.1           # on embeddings, attention weights and residual branches (training only)
    bias: bool = True              # biases in linear layers and LayerNorms (every BERT checkpoint has them)
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (BERT's 1e-12, not torch's default 1e-5)
    activation: str = "gelu"       # exact erf GELU, as Hugging Face's "gelu"
    pad_token_id: int = 0          # id of [PAD]; its word embedding is not special, masks handle padding
    pooler: bool = True            # add the tanh pooler over [CLS] (BertModel's pooled output)
    initializer_range: float = 0.02  # std of the N(0, std^2) initial weights (BERT: 0.02, tuned for d = 768)
    use_fused: bool = True         # attention via F.scaled_dot_product_attention (False: from scratch)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "type_vocab_size", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}")
        if (not isinstance(self.mlp_ratio, (int, float)) or isinstance(self.mlp_ratio, bool)
                or not self.mlp_ratio > 0 or int(self.mlp_ratio * self.dim) < 1):
            raise ValueError(f"BertConfig.mlp_ratio must be a number > 0 with int(mlp_ratio * dim) >= 1, got "
                             f"{self.mlp_ratio!r} (dim={self.dim})")
        if not isinstance(self.bias, bool):
            raise ValueError(f"BertConfig.bias must be True or False, got {self.bias!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"BertConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig.pad_token_id must be in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_token_id}")
        if not self.initializer_range > 0:
            raise ValueError(f"BertConfig.initializer_range must be > 0, got {self.initializer_range}")
        self.transformer_config()  # validates dropout, activation and layer_norm_eps

    @classmethod
    def base(cls, **overrides) -> "BertConfig":
        """BERT-base (uncased): 12 layers, 768 wide, 12 heads: 109,482,240 parameters with the pooler."""
        return cls(**overrides)

    @classmethod
    def minilm_l6(cls, **overrides) -> "BertConfig":
        """all-MiniLM-L6-v2 (sentence-transformers): 6 layers, 384 wide, 12 heads of 32, MLP 1536 = 4 * 384."""
        return cls(**{"dim": 384, "num_layers": 6, "num_heads": 12, "mlp_ratio": 4.0, **overrides})

    @classmethod
    def from_hf_config(cls, hf: dict, **overrides) -> "BertConfig":
        """From a Hugging Face ``config.json`` dictionary of a BERT model."""
        if hf.get("model_type", "bert") != "bert":
            raise ValueError(f"expected a BERT config (model_type 'bert'), got model_type={hf.get('model_type')!r}")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute (learned) position embeddings are supported, got "
                             f"{hf['position_embedding_type']!r}")
        if hf.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only the exact GELU is supported, got hidden_act={hf['hidden_act']!r}")
        dim, intermediate_size = hf["hidden_size"], hf["intermediate_size"]
        mlp_ratio = intermediate_size / dim
        if int(mlp_ratio * dim) != intermediate_size:  # the blocks build int(mlp_ratio * dim) hidden units
            raise ValueError(f"intermediate_size={intermediate_size} is not reproduced by int(mlp_ratio * "
                             f"hidden_size) for hidden_size={dim} (mlp_ratio = {mlp_ratio!r} gives "
                             f"{int(mlp_ratio * dim)}): this MLP width cannot be configured")
        return cls(**{"vocab_size": hf["vocab_size"], "max_seq_len": hf["max_position_embeddings"],
                      "type_vocab_size": hf["type_vocab_size"], "dim": dim,
                      "num_layers": hf["num_hidden_layers"], "num_heads": hf["num_attention_heads"],
                      "mlp_ratio": mlp_ratio, "dropout": hf.get("hidden_dropout_prob", 0.1),
                      "layer_norm_eps": hf.get("layer_norm_eps", 1e-12), "pad_token_id": hf.get("pad_token_id", 0),
                      "initializer_range": hf.get("initializer_range", 0.02), **overrides})

    @property
    def mlp_hidden_dim(self) -> int:
        """Width of each block's MLP (Hugging Face's ``intermediate_size``)."""
        return int(self.mlp_ratio * self.dim)

    def transformer_config(self) -> TransformerConfig:
        """The encoder's configuration for ``mmtutorial.nn``: post-LN, bidirectional."""
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=self.mlp_ratio, dropout=self.dropout, causal=False, norm="post",
                                 activation=self.activation, bias=self.bias, layer_norm_eps=self.layer_norm_eps,
                                 use_fused=self.use_fused)

    def to_dict(self) -> dict:
        return asdict(self)


class BertEmbeddings(nn.Module):
    """e_i = LayerNorm(E_word[x_i] + E_pos[i] + E_type[s_i]), then dropout.  (batch, seq) -> (batch, seq, dim)"""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.position_embeddings = nn.Embedding(config.max_seq_len, config.dim)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.dim)
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        config = self.config
        # On a GPU the value checks are queued, not read back: no synchronisation on every forward pass.
        check_token_ids(input_ids, config.vocab_size, name="input_ids", max_len=config.max_seq_len)
        batch, seq = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # a single segment
        check_token_ids(token_type_ids, config.type_vocab_size, name="token_type_ids")
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(token_type_ids.shape)}")
        positions = torch.arange(seq, device=input_ids.device)  # (seq,)
        x = (self.word_embeddings(input_ids)                     # (batch, seq, dim)
             + self.position_embeddings(positions)[None]        # (1, seq, dim), the same for every sequence
             + self.token_type_embeddings(token_type_ids))      # (batch, seq, dim)
        return self.dropout(self.norm(x))


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: N(0, std^2) for linear weights and embeddings, zero biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _key_padding_mask(attention_mask: Tensor | None, input_ids: Tensor) -> Tensor | None:
    """Hugging Face's attention_mask (1 = real token, 0 = padding) -> torch's key_padding_mask (True = padding)."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)} "
                         f"(1 = token, 0 = padding), got {tuple(attention_mask.shape)}")
    return attention_mask == 0  # (batch, seq)


class BertModel(nn.Module):
    """BERT encoder: embeddings -> post-LN Transformer blocks -> hidden states (+ tanh pooler on [CLS])."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = TransformerEncoder(config.transformer_config())  # post-LN: no final norm
        if config.pooler:
            self.pooler = nn.Sequential()  # named children so the state dict reads pooler.dense.*
            self.pooler.add_module("dense", nn.Linear(config.dim, config.dim, bias=config.bias))
            self.pooler.add_module("activation", nn.Tanh())
        else:
            self.pooler = None
        self.apply(lambda module: init_bert_weights(module, config.initializer_range))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, return_pooled: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """input_ids (batch, seq) -> last hidden states (batch, seq, dim).

        ``attention_mask``: (batch, seq), 1 for real tokens and 0 for padding (Hugging Face's convention);
        padded keys get no attention.  ``return_pooled=True`` also returns tanh(W h_[CLS] + b) (batch, dim).
        """
        padding = _key_padding_mask(attention_mask, input_ids)
        x = self.embeddings(input_ids, token_type_ids)      # (batch, seq, dim)
        hidden = self.encoder(x, key_padding_mask=padding)  # (batch, seq, dim)
        if not return_pooled:
            return hidden
        if self.pooler is None:
            raise ValueError("this BertModel has no pooler (BertConfig.pooler=False)")
        return hidden, self.pooler(hidden[:, 0])             # (batch, dim): the [CLS] position


def mean_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Average the token vectors of each sequence over its real tokens (sentence-transformers' pooling).

        s_b = sum_i m_bi h_bi / max(sum_i m_bi, 1e-9)      hidden (batch, seq, dim), mask (batch, seq) -> (batch, dim)
    """
    if not isinstance(hidden, Tensor) or hidden.dim() != 3:
        got = tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__
        raise ValueError(f"hidden must be a (batch, seq, dim) tensor, got {got}")
    if attention_mask is None:
        return hidden.mean(dim=1)
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != hidden.shape[:2]:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have shape (batch, seq) = {tuple(hidden.shape[:2])}, got {got}")
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)             # (batch, seq, 1)
    summed = (hidden * weights).sum(dim=1)                               # (batch, dim)
    return summed / weights.sum(dim=1).clamp(min=1e-9)                   # (batch, dim)


class BertMLMHead(nn.Module):
    """logits = LN(GELU(W h + b)) E_word^T + bias: a transform, then a decoder that reuses the word embeddings.

    Tying the decoder to the input embedding matrix E_word (vocab, dim) saves vocab * dim parameters and is
    what BERT does; only the per-token ``bias`` (vocab,) is new (none with ``config.bias=False``).
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Linear(config.dim, config.dim, bias=config.bias)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.bias)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size)) if config.bias else None
        self.word_embeddings = [word_embeddings]  # a list, so the shared matrix is not registered twice

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.norm(self.activation(self.transform(hidden)))         # (batch, seq, dim)
        return F.linear(h, self.word_embeddings[0].weight, self.bias)  # (batch, seq, vocab)


class BertForMaskedLM(nn.Module):
    """BERT with the masked-language-model head: input_ids (batch, seq) -> logits (batch, seq, vocab)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.mlm_head = BertMLMHead(config, self.bert.embeddings.word_embeddings)
        self.mlm_head.apply(lambda module: init_bert_weights(module, config.initializer_range))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Logits (batch, seq, vocab); with ``labels`` (batch, seq, -100 where not scored) the MLM loss.

        With labels, the head (the costly vocab-wide product) runs on the selected positions only.
        """
        hidden = self.bert(input_ids, attention_mask, token_type_ids)  # (batch, seq, dim)
        if labels is None:
            return self.mlm_head(hidden)                               # (batch, seq, vocab)
        if not isinstance(labels, Tensor) or labels.shape != input_ids.shape:
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {got}")
        selected = labels != IGNORE_INDEX                              # (batch, seq): the set M
        return mlm_loss(self.mlm_head(hidden[selected]), labels[selected])  # logits (|M|, vocab)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """L = -(1/|M|) sum_{j in M} log softmax(logits_j)[x_j], M = positions whose label is not -100.

    logits (..., vocab), labels (...) with the same leading shape, e.g. (batch, seq, vocab) and
    (batch, seq).  Written out (log-softmax, gather, mean over M); equal to
    ``F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=-100)``.
    """
    if not isinstance(logits, Tensor) or logits.dim() < 2 or not logits.is_floating_point():
        got = (f"{tuple(logits.shape)} {logits.dtype}" if isinstance(logits, Tensor) else type(logits).__name__)
        raise ValueError(f"logits must be a float tensor (..., vocab), got {got}")
    if not isinstance(labels, Tensor) or labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:-1])} (the logits' without vocab), got "
                         f"{tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")
    selected = labels != IGNORE_INDEX                                   # the set M
    if not bool(selected.any()):
        raise ValueError("no position is selected (every label is -100): the MLM loss is undefined")
    scored = logits[selected]                                           # (|M|, vocab)
    if scored.dtype in (torch.float16, torch.bfloat16):
        scored = scored.float()                                         # log-softmax in float32 under AMP
    log_probs = torch.log_softmax(scored, dim=-1)                       # (|M|, vocab)
    return -log_probs.gather(1, labels[selected].unsqueeze(1)).mean()   # mean over M of -log p(x_j | x~)


def mlm_mask_tokens(input_ids: Tensor, mask_token_id: int, vocab_size: int, special_ids: Iterable[int] = (),
                    mask_prob: float = 0.15, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking: returns ``(corrupted_ids, labels)``, both (batch, seq).

    Every non-special position is selected independently with probability ``mask_prob``.  A selected
    token becomes ``mask_token_id`` with probability 0.8, a uniformly random id in [0, vocab_size) with
    0.1, and stays unchanged with 0.1 (so the model cannot rely on seeing [MASK] and must keep a good
    representation of every token).  ``labels`` holds the original id at selected positions and -100
    (ignored by the loss) elsewhere.  Special tokens ([CLS], [SEP], [PAD]) are never selected.
    """
    if not isinstance(input_ids, Tensor) or input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        got = input_ids.dtype if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise TypeError(f"input_ids must be an integer tensor, got {got}")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be in [0, vocab_size={vocab_size}), got {mask_token_id}")
    device = input_ids.device

    def uniform() -> Tensor:  # one U(0, 1) draw per position, from the optional generator
        return torch.rand(input_ids.shape, generator=generator, device=device)

    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype, device=device))
    selected = (uniform() < mask_prob) & ~special                         # (batch, seq): the set M
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    to_mask = selected & (uniform() < 0.8)                               # 80 % of M -> [MASK]
    to_random = selected & ~to_mask & (uniform() < 0.5)                  # half of the other 20 % -> random
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device,
                               dtype=input_ids.dtype)
    corrupted = input_ids.masked_fill(to_mask, mask_token_id)
    corrupted = torch.where(to_random, random_ids, corrupted)           # the last 10 % keep their token
    return corrupted, labels


# ---------------------------------------------------------------------------------------------------
# Chapter 8's result: what a model that ignores the context can reach, and the bounds the tiny BERT
# must meet (one place for the chapter and tests/test_quick_bounds.py)
# ---------------------------------------------------------------------------------------------------

def context_free_mlm_loss(unigram: Tensor, corrupted: Tensor, labels: Tensor, mask_token_id: int) -> float:
    """The MLM loss (nats per position of M) of the best model that ignores the context: it sees only the
    (corrupted) token at its own position and knows the unigram frequencies ``unigram`` (vocab,).

    With ``mlm_mask_tokens``' rule a selected token w shows [MASK] with probability 0.8 (+ 0.1 / V when the
    random id is [MASK]), a random id v with 0.1 / V each, and itself with 0.1.  By Bayes' rule:

        p(w | [MASK]) = q(w),        p(w | v) = q(w) ([w = v] + 1/V) / (q(v) + 1/V)   for v != [MASK],

    so at the 10 % of M that show their own token the answer is visible, and this model beats the unigram
    baseline -mean log q(w) without any context.  ``corrupted`` and ``labels`` (batch, seq) come from
    ``mlm_mask_tokens`` with ``vocab_size = len(unigram)``.
    """
    if not isinstance(unigram, Tensor) or unigram.dim() != 1 or not unigram.is_floating_point():
        raise TypeError(f"unigram must be a 1-d float tensor of token frequencies (vocab,), got {describe(unigram)}")
    if not bool((unigram > 0).all()) or abs(float(unigram.sum()) - 1.0) > 1e-6:
        raise ValueError(f"unigram must be positive frequencies that sum to 1 (smooth the counts), got values "
                         f"in [{float(unigram.min()):.3g}, {float(unigram.max()):.3g}] summing to "
                         f"{float(unigram.sum()):.6g}")
    vocab_size = unigram.numel()
    check_token_ids(corrupted, vocab_size, name="corrupted")
    if not isinstance(labels, Tensor) or labels.shape != corrupted.shape:
        raise ValueError(f"labels must have the shape of corrupted {tuple(corrupted.shape)}, got {describe(labels)}")
    selected = labels != IGNORE_INDEX                                         # (batch, seq): the set M
    if not bool(selected.any()):
        raise ValueError("no position is selected (every label is -100): the MLM loss is undefined")
    q = unigram.double().cpu()
    targets, shown = labels[selected].cpu(), corrupted[selected].cpu()        # (|M|,) each
    q_target, q_shown = q[targets], q[shown]                                  # (|M|,) each
    copy = (shown == targets).double()                                        # 1 where the token is unchanged
    posterior = torch.where(shown == mask_token_id, q_target,
                            q_target * (copy + 1 / vocab_size) / (q_shown + 1 / vocab_size))
    return -posterior.log().mean().item()


def swap_context(corrupted: Tensor, labels: Tensor, other_context: Tensor) -> Tensor:
    """The inputs with their context replaced: positions of M (labels != -100) keep their corrupted token,
    every other position takes the token of ``other_context`` (batch, seq), e.g. other passages.

    A model whose predictions on M ignore the other positions scores exactly the same on both inputs.
    """
    for name, tensor in (("labels", labels), ("other_context", other_context)):
        if not isinstance(tensor, Tensor) or tensor.shape != corrupted.shape:
            raise ValueError(f"{name} must have the shape of corrupted {tuple(corrupted.shape)}, "
                             f"got {describe(tensor)}")
    return torch.where(labels != IGNORE_INDEX, corrupted, other_context)       # (batch, seq)


@torch.no_grad()
def mlm_context_gap(model: nn.Module, corrupted: Tensor, labels: Tensor, other_context: Tensor) -> float:
    """How much the context is worth to ``model`` (a ``BertForMaskedLM``, in eval mode), in nats per position
    of M: its MLM loss with the context swapped for ``other_context`` (``swap_context``) minus its loss on
    ``corrupted`` itself.  0 for any model that ignores the context; > 0 when the right context helps."""
    device = next(model.parameters()).device
    swapped = swap_context(corrupted, labels, other_context)
    labels = labels.to(device)
    intact = model(corrupted.to(device), labels=labels).item()
    return model(swapped.to(device), labels=labels).item() - intact


# Bounds on chapter 8's tiny BERT, per mode.  Each one fails for an untrained model (loss near log V, no
# context gap, the same loss on every token); the context gap also fails, exactly, for every model that
# ignores the context.  The unigram margin alone would not: a model that copies the token it sees reaches
# context_free_mlm_loss, 0.56 nats below the unigram baseline (QUICK data).  Measured (1 CPU thread):
# QUICK margin 0.44, gap 0.12, ratio 0.43; full margin 0.60, gap 0.37, ratio 0.31.
MLM_BOUNDS = {
    "unigram_margin": {"full": 0.3, "quick": 0.2},   # validation MLM loss below the unigram baseline by more (nats)
    "context_gap": {"full": 0.2, "quick": 0.05},     # the loss rises by more when the context is swapped (nats)
    "wrong_loss_ratio": {"full": 0.6, "quick": 0.6},  # 'loss' over every ordinary token < ratio * loss over M
}


def mlm_bound(name: str) -> float:
    """The bound ``MLM_BOUNDS[name]`` for the current mode (``MMTUTORIAL_QUICK``)."""
    if name not in MLM_BOUNDS:
        raise ValueError(f"unknown bound {name!r}; expected one of {sorted(MLM_BOUNDS)}")
    return scale(full=MLM_BOUNDS[name]["full"], quick=MLM_BOUNDS[name]["quick"])


def _check_nats(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of nats (a float), got {describe(value)}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of nats, got {value!r}")


def mlm_beats_unigram(val_loss: float, unigram_loss: float) -> bool:
    """The validation MLM loss lies below the unigram baseline by more than ``mlm_bound("unigram_margin")``."""
    _check_nats(val_loss=val_loss, unigram_loss=unigram_loss)
    return val_loss < unigram_loss - mlm_bound("unigram_margin")


def mlm_uses_context(context_gap: float) -> bool:
    """The context is worth more than ``mlm_bound("context_gap")`` nats (``mlm_context_gap``)."""
    _check_nats(context_gap=context_gap)
    return context_gap > mlm_bound("context_gap")


def mlm_wrong_loss_flatters(loss_everywhere: float, loss_on_m: float) -> bool:
    """The wrong 'loss' over every ordinary token is below ``mlm_bound("wrong_loss_ratio")`` times the real
    loss over M: most of its terms are visible tokens that a trained model copies."""
    _check_nats(loss_everywhere=loss_everywhere, loss_on_m=loss_on_m)
    if loss_on_m <= 0:
        raise ValueError(f"loss_on_m must be > 0 nats, got {loss_on_m!r}")
    return loss_everywhere < mlm_bound("wrong_loss_ratio") * loss_on_m

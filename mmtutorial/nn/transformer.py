"""The Transformer block and encoder stack, and a closed-form parameter count.

A block alternates two sub-layers, each wrapped in a residual connection and a LayerNorm:

    pre-LN  (GPT-2, ViT, most modern models):   x = x + Attn(LN(x));   x = x + MLP(LN(x))
    post-LN (the original Transformer, BERT):   x = LN(x + Attn(x));   x = LN(x + MLP(x))

Pre-LN keeps an un-normalised residual stream from input to output, which is why it trains stably
without warm-up tricks; it then needs one final LayerNorm after the last block.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import KVCache, MultiHeadAttention
from .positional import RotaryEmbedding

__all__ = ["TransformerConfig", "QuickGELU", "MLP", "TransformerBlock", "TransformerEncoder",
           "transformer_parameter_count"]


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI's cheap approximation of GELU, which their released CLIPs were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS = {
    "gelu": nn.GELU,                                         # exact (erf) GELU: BERT, ViT, torch's "gelu"
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),        # GPT-2's tanh approximation
    "quick_gelu": QuickGELU,                                 # OpenAI's CLIP weights (open_clip's quick_gelu)
    "relu": nn.ReLU,                                         # the original Transformer
    "silu": nn.SiLU,
}


@dataclass
class TransformerConfig:
    dim: int                      # model width d (embedding size of every token)
    num_heads: int                # attention heads; head_dim = dim // num_heads
    num_layers: int = 1           # blocks in a TransformerEncoder
    mlp_ratio: float = 4.0        # MLP hidden size = mlp_ratio * dim (4 in GPT-2, BERT, ViT)
    dropout: float = 0.0          # on attention weights, inside the MLP and on each residual branch
    causal: bool = False          # True: token i attends only to tokens <= i (decoders, GPT)
    norm: str = "pre"             # "pre" (LN inside the residual branch) or "post" (LN after the sum, BERT)
    activation: str = "gelu"      # "gelu" (erf), "gelu_tanh" (GPT-2), "quick_gelu" (OpenAI CLIP), "relu", "silu"
    bias: bool = True             # biases in linear layers and LayerNorms
    layer_norm_eps: float = 1e-5  # LayerNorm epsilon (BERT uses 1e-12)
    use_fused: bool = True        # attention via F.scaled_dot_product_attention (False: from scratch)
    rope: bool = False            # rotate queries/keys by position (RoPE, LLaMA-style) in every block
    rope_base: float = 10000.0    # RoPE wavelength base
    activation_checkpointing: bool = False  # training: keep only each block's input, recompute the rest in
                                            # backward (torch.utils.checkpoint): less memory, one more forward

    def __post_init__(self) -> None:
        for name in ("dim", "num_heads", "num_layers"):
            value = getattr(self, name)
            # bool is an int subclass, but num_heads=True is a mistake, not one head
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"TransformerConfig.{name} must be a positive int, got {type(value).__name__} "
                                f"{value!r}")
            if value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
            setattr(self, name, int(value))
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if not isinstance(self.norm, str) or self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if not isinstance(self.activation, str) or self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        for name in ("mlp_ratio", "dropout", "layer_norm_eps", "rope_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"TransformerConfig.{name} must be a number, got {type(value).__name__} {value!r}")
        if not 0.0 <= self.dropout < 1.0:                # also refuses NaN
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.mlp_ratio > 0 and math.isfinite(self.mlp_ratio)):
            raise ValueError(f"mlp_ratio must be a finite number > 0, got {self.mlp_ratio}")
        if self.mlp_hidden_dim < 1:
            raise ValueError(f"mlp_ratio * dim = {self.mlp_ratio} * {self.dim} gives an MLP of width "
                             f"{self.mlp_hidden_dim}; the MLP hidden size int(mlp_ratio * dim) must be >= 1")
        if not (self.layer_norm_eps > 0 and math.isfinite(self.layer_norm_eps)):
            raise ValueError(f"layer_norm_eps must be a finite number > 0, got {self.layer_norm_eps}")
        if not (self.rope_base > 1 and math.isfinite(self.rope_base)):
            raise ValueError(f"rope_base must be a finite number > 1, got {self.rope_base}")
        for name in ("causal", "bias", "use_fused", "rope", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TransformerConfig.{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.mlp_ratio * self.dim)


class MLP(nn.Module):
    """Position-wise feed-forward network: proj(dropout(act(fc(x)))), dim -> hidden_dim -> dim."""

    def __init__(self, dim: int, hidden_dim: int, activation: str = "gelu", dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.fc = nn.Linear(dim, hidden_dim, bias=bias)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.dropout(self.activation(self.fc(x))))  # (batch, seq, dim)


class TransformerBlock(nn.Module):
    """One Transformer layer: self-attention then MLP, each with a residual connection and LayerNorm.

    ``config.norm == "pre"``:  x = x + drop(Attn(LN1(x)));  x = x + drop(MLP(LN2(x)))
    ``config.norm == "post"``: x = LN1(x + drop(Attn(x)));  x = LN2(x + drop(MLP(x)))

    Same computation as ``nn.TransformerEncoderLayer(batch_first=True, norm_first=(norm == "pre"))``;
    ``mmtutorial.zoo.torch_nn.load_torch_encoder_layer`` copies such a layer's weights.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.norm1 = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.bias)
        rotary = RotaryEmbedding(config.dim // config.num_heads, base=config.rope_base) if config.rope else None
        self.attn = MultiHeadAttention(config.dim, config.num_heads, dropout=config.dropout, bias=config.bias,
                                       use_fused=config.use_fused, rotary=rotary)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.norm2 = nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config.dim, config.mlp_hidden_dim, config.activation, config.dropout, config.bias)
        self.mlp_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
                kv_cache: KVCache | None = None, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x: (batch, seq, dim).  Masks follow ``MultiHeadAttention`` (attn_mask True = may attend;
        key_padding_mask True = padding).  ``config.causal`` adds the causal mask.

        ``need_weights=True`` returns ``(x, weights)``: the attention weights (batch, heads, seq_q, seq_k)
        of this block (computed by the from-scratch attention path, so slower than the fused one).
        """
        weights = None

        def attend(h: Tensor) -> Tensor:
            nonlocal weights
            out = self.attn(h, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                            is_causal=self.config.causal, kv_cache=kv_cache, need_weights=need_weights)
            if need_weights:
                out, weights = out                                  # weights (batch, heads, seq_q, seq_k)
            return self.attn_dropout(out)

        if self.config.norm == "pre":
            x = x + attend(self.norm1(x))                           # (batch, seq, dim)
            x = x + self.mlp_dropout(self.mlp(self.norm2(x)))
        else:
            x = self.norm1(x + attend(x))
            x = self.norm2(x + self.mlp_dropout(self.mlp(x)))
        return (x, weights) if need_weights else x


class TransformerEncoder(nn.Module):
    """``config.num_layers`` blocks, then a final LayerNorm for pre-LN stacks.

    Post-LN blocks already end with a LayerNorm, so a post-LN stack (BERT) has no final norm.  With
    ``config.activation_checkpointing`` a training forward keeps only each block's input for backward and
    recomputes the block's activations there (same gradients, less memory).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_layers))
        self.norm = (nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.bias)
                     if config.norm == "pre" else nn.Identity())

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
                kv_caches: list[KVCache] | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """x: (batch, seq, dim) -> (batch, seq, dim).  ``kv_caches``: one ``KVCache`` per block.

        ``need_weights=True`` returns ``(x, weights)``, ``weights`` a list with each block's attention
        weights (batch, heads, seq_q, seq_k), first block first.
        """
        if kv_caches is not None and len(kv_caches) != len(self.blocks):
            raise ValueError(f"kv_caches must hold one KVCache per block: expected {len(self.blocks)}, "
                             f"got {len(kv_caches)}")
        weights = []
        # Checkpointing only pays when a backward pass will follow: in training, with gradients on.
        recompute = (self.config.activation_checkpointing and self.training and torch.is_grad_enabled()
                     and kv_caches is None and not need_weights)
        for i, block in enumerate(self.blocks):
            if recompute:
                # Non-reentrant checkpointing (use_reentrant=False): keyword arguments, inputs that need no
                # grad and nested autograd all work; the RNG state is replayed, so dropout masks agree.
                x = checkpoint(block, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                               use_reentrant=False)
                continue
            x = block(x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                      kv_cache=None if kv_caches is None else kv_caches[i], need_weights=need_weights)
            if need_weights:
                x, block_weights = x
                weights.append(block_weights)
        x = self.norm(x)
        return (x, weights) if need_weights else x

    def new_kv_caches(self) -> list[KVCache]:
        """Empty caches, one per block, for incremental decoding."""
        return [KVCache() for _ in self.blocks]


def transformer_parameter_count(vocab_size: int, max_seq_len: int, dim: int, num_layers: int,
                                mlp_ratio: float = 4.0, tied: bool = True, *, bias: bool = True,
                                final_norm: bool = True, num_token_types: int = 0, embedding_norm: bool = False,
                                pooler: bool = False, lm_head: bool = True, lm_head_bias: bool = False) -> int:
    """Parameters of a Transformer language model / encoder, in closed form.

    With h = mlp_ratio * d and b = 1 if ``bias`` else 0:

        embeddings   V d + P d (learned positions; pass max_seq_len=0 for sinusoidal/rotary)
                     + T d (token types, BERT) + (1 + b) d (embedding LayerNorm, BERT)
        per block    attention 4 d^2 + 4 b d,  MLP 2 d h + b (h + d),  two LayerNorms 2 (1 + b) d
        final norm   (1 + b) d (pre-LN stacks)
        pooler       d^2 + d (BERT's [CLS] pooler)
        LM head      0 if tied to the token embedding, else V d (+ V with lm_head_bias)

    GPT-2 small (V=50257, P=1024, d=768, 12 layers, tied) -> 124,439,808; BERT-base (V=30522, P=512,
    T=2, embedding norm, post-LN so no final norm, pooler, no LM head) -> 109,482,240.
    """
    for name, value in (("vocab_size", vocab_size), ("max_seq_len", max_seq_len), ("dim", dim),
                        ("num_layers", num_layers), ("num_token_types", num_token_types)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    b = int(bias)
    hidden = int(mlp_ratio * dim)
    embeddings = (vocab_size + max_seq_len + num_token_types) * dim + ((1 + b) * dim if embedding_norm else 0)
    attention = 4 * dim * dim + 4 * b * dim
    mlp = 2 * dim * hidden + b * (hidden + dim)
    norms = 2 * (1 + b) * dim
    total = embeddings + num_layers * (attention + mlp + norms)
    total += (1 + b) * dim if final_norm else 0
    total += dim * dim + dim if pooler else 0
    if lm_head and not tied:
        total += vocab_size * dim + (vocab_size if lm_head_bias else 0)
    return total

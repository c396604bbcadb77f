"""GPT: a decoder-only Transformer language model (Radford et al., 2018, 2019), in one readable file.

Given tokens x_1..x_T the model outputs, at every position t, a distribution over the next token:

    h_0 = E[x_t] + P[t]                          token embedding + learned position embedding
    h_l = Block_l(h_{l-1})   l = 1..L            pre-LN blocks with *causal* self-attention
    logits_t = LN(h_L)_t  E^T                    LM head tied to the token embedding

and is trained to minimise the mean next-token cross-entropy  -1/T sum_t log p(x_{t+1} | x_1..x_t)
(in nats per token; perplexity = exp of it).  Causal masking lets one forward pass train all T
predictions at once without any position seeing its own answer.

The blocks are ``mmtutorial.nn.TransformerEncoder`` with ``causal=True`` (one implementation of
attention in the package).  Generation reuses keys and values through a ``KVCache`` per block.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_converted_state_dict
from ..nn import KVCache, LearnedPositionalEmbedding, TransformerConfig, TransformerEncoder

__all__ = ["GPTConfig", "GPT", "top_k_filter", "top_p_filter", "sample_next_token", "generation_flops",
           "HF_GPT2_KEY_MAP", "config_from_hf_gpt2", "load_hf_gpt2"]


@dataclass
class GPTConfig:
    vocab_size: int = 1024      # number of token ids (tokeniser vocabulary incl. special tokens)
    max_seq_len: int = 128      # context length: positions with a learned embedding
    dim: int = 128              # model width d
    num_layers: int = 4         # Transformer blocks
    num_heads: int = 4          # attention heads per block (head_dim = dim / num_heads)
    dropout: float = 0.0        # dropout on embeddings, attention weights and residual branches
    bias: bool = True           # biases in linear layers and LayerNorms (GPT-2: True)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"GPTConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def gpt2_small(cls) -> "GPTConfig":
        """GPT-2 small (124 M parameters): 12 layers, 12 heads, d = 768, 1024 positions, 50,257 tokens."""
        return cls(vocab_size=50257, max_seq_len=1024, dim=768, num_layers=12, num_heads=12, dropout=0.1)

    def transformer_config(self) -> TransformerConfig:
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=4.0, dropout=self.dropout, causal=True, norm="pre",
                                 activation="gelu_tanh", bias=self.bias)


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

    def _check_ids(self, idx: Tensor, start: int = 0) -> None:
        if not isinstance(idx, Tensor):
            raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype in (torch.bool,) or idx.is_floating_point() or idx.is_complex():
            raise TypeError(f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, seq), got {tuple(idx.shape)}")
        if start + idx.size(1) > self.config.max_seq_len:
            raise ValueError(f"sequence of length {start + idx.size(1)} is longer than max_seq_len="
                             f"{self.config.max_seq_len}; crop it (generate does so itself)")
        if idx.device.type == "cpu" and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must be in [0, vocab_size={self.config.vocab_size}), got values in "
                             f"[{int(idx.min())}, {int(idx.max())}]")

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                kv_caches: list[KVCache] | None = None) -> tuple[Tensor, Tensor | None]:
        """idx: (batch, seq) token ids -> (logits (batch, seq, vocab), loss or None).

        ``targets`` (batch, seq): the next tokens; the loss is their mean cross-entropy in nats (ids of -100
        are ignored).  ``kv_caches`` (from ``new_kv_caches()``): process only the new tokens ``idx`` after
        the cached ones, whose keys/values are reused.
        """
        start = 0 if kv_caches is None else len(kv_caches[0])
        self._check_ids(idx, start)
        x = self.token_embedding(idx)                          # (batch, seq, dim)
        x = self.dropout(self.position_embedding(x, start=start))
        x = self.transformer(x, kv_caches=kv_caches)           # (batch, seq, dim), final LayerNorm included
        logits = self.lm_head(x)                               # (batch, seq, vocab)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
            flat = logits.flatten(0, 1)                        # (batch * seq, vocab)
            if flat.dtype in (torch.float16, torch.bfloat16):  # the softmax of a mixed-precision run in float32
                flat = flat.float()
            loss = F.cross_entropy(flat, targets.flatten(), ignore_index=-100)
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
        self._check_ids(idx[:, -self.config.max_seq_len:] if isinstance(idx, Tensor) and idx.dim() == 2 else idx)
        if idx.size(1) == 0:
            raise ValueError("idx must hold at least one token to condition on, got seq = 0")
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
    """logits (batch, vocab) -> next token ids (batch, 1); temperature 0 = argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)                                         # (batch, vocab)
    return torch.multinomial(probs, num_samples=1, generator=generator)    # (batch, 1)


# ---------------------------------------------------------------------------------------------------
# Cost of generation, with and without a KV cache
# ---------------------------------------------------------------------------------------------------

def generation_flops(config: GPTConfig, prompt_len: int, new_tokens: int, use_cache: bool) -> int:
    """Multiply-add FLOPs (2 per multiply-accumulate) of the matrix products of generating ``new_tokens``
    after a ``prompt_len`` prompt (contexts within ``max_seq_len``).

    A token at context length c costs 2 N_w (its matmuls with the N_w = L (12 d^2) block weights plus the
    V d LM head) + 4 L d c (scores q.k and the weighted sum of values over c keys).  Without a cache,
    step t recomputes every position 1..c; with it, only the new one.
    """
    d, L, V = config.dim, config.num_layers, config.vocab_size
    if prompt_len < 1 or new_tokens < 0 or prompt_len + new_tokens > config.max_seq_len + 1:
        raise ValueError(f"need prompt_len >= 1, new_tokens >= 0 and prompt_len + new_tokens <= max_seq_len + 1 "
                         f"= {config.max_seq_len + 1}, got {prompt_len} and {new_tokens}")
    per_token_weights = 2 * (L * 12 * d * d + V * d)

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


# ---------------------------------------------------------------------------------------------------
# Hugging Face GPT-2 weights -> ours
# ---------------------------------------------------------------------------------------------------

# Hugging Face GPT2LMHeadModel key -> our key ({i} = block index).  HF's Conv1D stores weights as
# (in, out), the transpose of nn.Linear's (out, in): those keys are transposed on the way in.
HF_GPT2_KEY_MAP = {
    "transformer.wte.weight": "token_embedding.weight",
    "transformer.wpe.weight": "position_embedding.embedding.weight",
    "transformer.ln_f.weight": "transformer.norm.weight",
    "transformer.ln_f.bias": "transformer.norm.bias",
    "transformer.h.{i}.ln_1.weight": "transformer.blocks.{i}.norm1.weight",
    "transformer.h.{i}.ln_1.bias": "transformer.blocks.{i}.norm1.bias",
    "transformer.h.{i}.attn.c_attn.weight": "transformer.blocks.{i}.attn.qkv_proj.weight",
    "transformer.h.{i}.attn.c_attn.bias": "transformer.blocks.{i}.attn.qkv_proj.bias",
    "transformer.h.{i}.attn.c_proj.weight": "transformer.blocks.{i}.attn.out_proj.weight",
    "transformer.h.{i}.attn.c_proj.bias": "transformer.blocks.{i}.attn.out_proj.bias",
    "transformer.h.{i}.ln_2.weight": "transformer.blocks.{i}.norm2.weight",
    "transformer.h.{i}.ln_2.bias": "transformer.blocks.{i}.norm2.bias",
    "transformer.h.{i}.mlp.c_fc.weight": "transformer.blocks.{i}.mlp.fc.weight",
    "transformer.h.{i}.mlp.c_fc.bias": "transformer.blocks.{i}.mlp.fc.bias",
    "transformer.h.{i}.mlp.c_proj.weight": "transformer.blocks.{i}.mlp.proj.weight",
    "transformer.h.{i}.mlp.c_proj.bias": "transformer.blocks.{i}.mlp.proj.bias",
}
_HF_CONV1D = ("c_attn.weight", "c_proj.weight", "c_fc.weight")


def config_from_hf_gpt2(hf_config) -> GPTConfig:
    return GPTConfig(vocab_size=hf_config.vocab_size, max_seq_len=hf_config.n_positions, dim=hf_config.n_embd,
                     num_layers=hf_config.n_layer, num_heads=hf_config.n_head, dropout=0.0, bias=True)


@torch.no_grad()
def load_hf_gpt2(hf_model, model: GPT | None = None) -> GPT:
    """Copy the weights of a ``transformers.GPT2LMHeadModel`` into a ``GPT`` (built from its config if
    ``model`` is None); the two then give the same logits."""
    config = config_from_hf_gpt2(hf_model.config)
    if getattr(hf_model.config, "activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"our GPT uses GPT-2's tanh GELU, the model uses {hf_model.config.activation_function!r}")
    if model is None:
        weight = hf_model.transformer.wte.weight
        model = GPT(config).to(device=weight.device, dtype=weight.dtype)
    elif asdict(model.config) | {"dropout": 0.0} != asdict(config):
        raise ValueError(f"config mismatch: ours {model.config}, Hugging Face's {config}")
    hf_state = hf_model.state_dict()
    converted = {}
    for i in range(config.num_layers):                    # the map's non-layer keys repeat; same result each time
        for hf_key, our_key in HF_GPT2_KEY_MAP.items():
            hf_key, our_key = hf_key.format(i=i), our_key.format(i=i)
            converted[our_key] = hf_state[hf_key].t() if hf_key.endswith(_HF_CONV1D) else hf_state[hf_key]
    converted["lm_head.weight"] = converted["token_embedding.weight"]     # tied to the token embedding
    load_converted_state_dict(model, converted, source="Hugging Face model", config_name="GPTConfig")
    return model

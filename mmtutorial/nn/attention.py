"""Scaled dot-product attention, masks, multi-head attention and a KV cache.

Attention (Vaswani et al., 2017) reads values ``V`` with weights given by how well each query matches
each key::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

with ``Q`` of shape (..., seq_q, d_k), ``K`` of shape (..., seq_k, d_k), ``V`` of shape (..., seq_k, d_v)
and ``M`` a mask that is 0 where a query may look at a key and -inf where it may not.

Boolean masks: ONE convention in this package
--------------------------------------------
Every boolean ``attn_mask`` in ``mmtutorial`` follows ``torch.nn.functional.scaled_dot_product_attention``:
**True = this query MAY attend to this key.**  ``causal_mask`` and ``padding_mask`` return masks in that
convention.  ``torch.nn.MultiheadAttention`` uses the opposite one for its ``attn_mask`` (True = NOT
allowed); its ``key_padding_mask`` says True = padding (ignore this key).  ``MultiHeadAttention.forward``
below keeps SDPA's meaning for ``attn_mask`` and torch's meaning for ``key_padding_mask`` (the name says
"padding"), and converts internally.  To reproduce ``nn.MultiheadAttention(x, x, x, attn_mask=blocked)``
call ours with ``attn_mask=~blocked``; float (additive) masks mean the same thing in both.

Fully masked rows: a query that may attend to no key at all gets an output of zeros (and attention
weights of zeros), which is what ``F.scaled_dot_product_attention`` returns; the plain formula would give
NaN (softmax of a row of -inf).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positional import RotaryEmbedding

__all__ = ["scaled_dot_product_attention", "causal_mask", "padding_mask", "combine_masks", "KVCache",
           "MultiHeadAttention"]


# ---------------------------------------------------------------------------------------------------
# Input checks shared by the function and the module
# ---------------------------------------------------------------------------------------------------

def _check_float(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def _check_mask(name: str, mask: Tensor, target_shape: tuple[int, ...],
                device: torch.device | None = None) -> None:
    """A mask must be bool or float, broadcast to ``target_shape`` (..., seq_q, seq_k) and, when ``device`` is
    given, live there."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool (True = may attend) or float (added to the scores), "
                        f"got dtype {mask.dtype}")
    if device is not None and mask.device != device:
        raise ValueError(f"{name} is on {mask.device} but the query is on {device}; move it with .to(query.device)")
    ok = mask.dim() <= len(target_shape) and all(
        m in (1, t) for m, t in zip(reversed(mask.shape), reversed(target_shape)))
    if not ok:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to the attention scores "
                         f"of shape {tuple(target_shape)} (expected (..., seq_q={target_shape[-2]}, "
                         f"seq_k={target_shape[-1]}) with 1s allowed for broadcasting)")


def _to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Bool mask (True = may attend) -> float mask with 0 where allowed and -inf where not."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


# ---------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------

def causal_mask(seq_len: int, device: torch.device | str | None = None, *, seq_k: int | None = None) -> Tensor:
    """Bool mask of shape (seq_len, seq_k) with True on and below the diagonal: query i sees keys j <= i.

    ``seq_k`` (default ``seq_len``) allows more keys than queries; the diagonal is then aligned at the
    bottom right, which is what incremental decoding needs: the last query is the newest position and may
    see every key.  (``F.scaled_dot_product_attention(is_causal=True)`` aligns at the top left instead;
    the two agree when seq_q == seq_k.)
    """
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    seq_k = seq_len if seq_k is None else seq_k
    if not isinstance(seq_k, int) or seq_k < seq_len:
        raise ValueError(f"seq_k must be an int >= seq_len={seq_len}, got {seq_k!r}")
    ones = torch.ones(seq_len, seq_k, dtype=torch.bool, device=device)
    return torch.tril(ones, diagonal=seq_k - seq_len)  # (seq_len, seq_k)


def padding_mask(lengths: Tensor | list[int], max_len: int | None = None) -> Tensor:
    """Bool mask of shape (batch, 1, 1, max_len): True where the key is a real token (may attend).

    ``lengths[b]`` is the number of real tokens of sequence ``b`` (right padding).  The two singleton
    dimensions broadcast over heads and queries, so the result can be passed as ``attn_mask`` to
    ``scaled_dot_product_attention`` or combined with a causal mask by ``combine_masks``.
    Note the convention: this is SDPA's "may attend" mask, the *opposite* of torch's
    ``key_padding_mask`` (True = padding); ``~padding_mask(lengths)[:, 0, 0]`` gives the latter.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.dtype in (torch.bool,) or lengths.is_floating_point():
        raise TypeError(f"lengths must be a 1-D integer tensor or list, got dtype {lengths.dtype} and "
                        f"shape {tuple(lengths.shape)}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    max_len = longest if max_len is None else max_len
    if max_len < longest:
        raise ValueError(f"max_len={max_len} is shorter than the longest sequence ({longest})")
    positions = torch.arange(max_len, device=lengths.device)  # (max_len,)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]  # (batch, 1, 1, max_len)


def combine_masks(*masks: Tensor | None, dtype: torch.dtype | None = None) -> Tensor | None:
    """Combine attention masks into one that allows a key only if every mask allows it.

    ``None`` entries are skipped (all ``None`` -> ``None``).  Bool masks (True = may attend) are combined
    with logical AND and stay bool.  If any mask is float (additive), the result is float: bool masks are
    turned into 0/-inf and everything is summed.  Shapes broadcast, e.g. a causal (seq, seq) mask with a
    padding (batch, 1, 1, seq) mask gives (batch, 1, seq, seq).
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    for i, mask in enumerate(present):
        if not isinstance(mask, Tensor) or (mask.dtype != torch.bool and not mask.is_floating_point()):
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise TypeError(f"combine_masks wants bool or float tensors, got {got} for mask {i}")
    if all(m.dtype == torch.bool for m in present):
        combined = present[0]
        for mask in present[1:]:
            combined = combined & mask
        return combined
    float_dtype = dtype or next(m.dtype for m in present if m.is_floating_point())
    combined = _to_additive(present[0], float_dtype)
    for mask in present[1:]:
        combined = combined + _to_additive(mask, float_dtype)
    return combined


# ---------------------------------------------------------------------------------------------------
# Scaled dot-product attention, from the definition
# ---------------------------------------------------------------------------------------------------

def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
                                 return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(Q K^T * scale + M) V, written out so that every step can be read (and printed).

    Args:
        query: (..., seq_q, d_k).  key: (..., seq_k, d_k).  value: (..., seq_k, d_v).
        attn_mask: bool (True = may attend, as in ``F.scaled_dot_product_attention``) or float (added to
            the scores, use -inf to forbid) tensor broadcastable to (..., seq_q, seq_k).
        is_causal: also forbid keys after the query, aligned at the top left like SDPA
            (query i sees keys 0..i).  Unlike SDPA it may be combined with ``attn_mask``.
        dropout_p: dropout on the attention weights (applied whenever > 0, like SDPA; pass 0 in eval).
        scale: multiplies the scores; default 1/sqrt(d_k).
        return_weights: also return the attention weights (..., seq_q, seq_k).

    A query whose keys are all masked gets zeros (output and weights), as SDPA returns.
    """
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        _check_float(name, tensor)
        if tensor.dim() < 2:
            raise ValueError(f"{name} must have shape (..., seq, dim), got {tuple(tensor.shape)}")
    if not query.dtype == key.dtype == value.dtype:
        raise TypeError(f"query, key and value must have one dtype, got {query.dtype}, {key.dtype} and "
                        f"{value.dtype}; convert them with .to(query.dtype)")
    if not query.device == key.device == value.device:
        raise ValueError(f"query, key and value must be on one device, got {query.device}, {key.device} and "
                         f"{value.device}")
    # The leading (batch, heads, ...) dimensions must agree exactly: matmul would broadcast a batch of 1
    # silently, and mismatched batches fail deep inside torch.
    leading = [tuple(t.shape[:-2]) for t in (query, key, value)]
    if not leading[0] == leading[1] == leading[2]:
        raise ValueError(f"query, key and value must share their leading (batch, heads, ...) dimensions, got "
                         f"query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
                         f"(leading {leading[0]}, {leading[1]} and {leading[2]})")
    if key.size(-1) != query.size(-1):
        raise ValueError(f"query and key must share d_k: query has last dim {query.size(-1)}, "
                         f"key has {key.size(-1)}")
    if value.size(-2) != key.size(-2):
        raise ValueError(f"key and value must have the same number of positions: key has seq_k="
                         f"{key.size(-2)}, value has {value.size(-2)}")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1) (a probability), got {dropout_p!r}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be True or False, got {is_causal!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number or None (1/sqrt(d_k)), got {scale!r}")
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale

    scores = (query @ key.transpose(-2, -1)) * scale  # (..., seq_q, seq_k)
    seq_q, seq_k = scores.shape[-2:]
    if is_causal:
        allowed = torch.ones(seq_q, seq_k, dtype=torch.bool, device=scores.device).tril()  # top-left aligned
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        _check_mask("attn_mask", attn_mask, tuple(scores.shape), device=scores.device)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(scores.dtype)

    if attn_mask is None:  # a causal mask alone always leaves key 0 to every query
        weights = torch.softmax(scores, dim=-1)  # (..., seq_q, seq_k)
    else:
        # Rows with no allowed key would be softmax([-inf, ..., -inf]) = NaN; give them zero weights.
        fully_masked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., seq_q, 1)
        scores = scores.masked_fill(fully_masked, 0.0)
        weights = torch.softmax(scores, dim=-1).masked_fill(fully_masked, 0.0)  # (..., seq_q, seq_k)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    output = weights @ value  # (..., seq_q, d_v)
    return (output, weights) if return_weights else output


# ---------------------------------------------------------------------------------------------------
# KV cache for incremental (token-by-token) decoding
# ---------------------------------------------------------------------------------------------------

@dataclass
class KVCache:
    """Keys and values of the positions already processed, per layer, for incremental decoding.

    Without a cache, generating token t recomputes the keys and values of tokens 0..t-1 every step.
    ``MultiHeadAttention.forward(x_new, kv_cache=cache)`` projects only the new tokens, appends their
    keys/values here and attends over everything stored.  Use one ``KVCache`` per attention layer.
    """
    keys: Tensor | None = None    # (batch, num_heads, seq_so_far, head_dim)
    values: Tensor | None = None  # (batch, num_heads, seq_so_far, head_dim)

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.size(-2)

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys/values (batch, heads, new, head_dim); return all of them so far."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            if keys.shape[:2] != self.keys.shape[:2] or keys.size(-1) != self.keys.size(-1):
                raise ValueError(f"new keys of shape {tuple(keys.shape)} do not fit the cache of shape "
                                 f"{tuple(self.keys.shape)} (expected the same batch, heads and head_dim)")
            self.keys = torch.cat([self.keys, keys], dim=-2)
            self.values = torch.cat([self.values, values], dim=-2)
        return self.keys, self.values

    def reset(self) -> None:
        self.keys = self.values = None


# ---------------------------------------------------------------------------------------------------
# Multi-head attention
# ---------------------------------------------------------------------------------------------------

class MultiHeadAttention(nn.Module):
    """Multi-head attention: h heads attend in parallel in subspaces of size head_dim = embed_dim / h.

        head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V),   MHA(Q, K, V) = concat(head_1..head_h) W^O

    The h query projections are stored as one (embed_dim, embed_dim) matrix (likewise keys, values), and
    when key and value dimensions equal ``embed_dim`` the three live in a single ``qkv_proj`` of shape
    (3 * embed_dim, embed_dim), so self-attention does one matrix product for Q, K and V (as
    ``nn.MultiheadAttention``'s ``in_proj_weight`` and nanoGPT's ``c_attn``).

    Args:
        embed_dim: model width; must be divisible by ``num_heads``.
        num_heads: number of heads.
        dropout: dropout on the attention weights, in training mode only.
        bias: biases in the input and output projections.
        kdim, vdim: feature sizes of ``key`` and ``value`` if they differ from ``embed_dim``
            (cross-attention to another modality); then Q, K, V get separate projections.
        batch_first: only True is supported: inputs are (batch, seq, feature).
        use_fused: True calls ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels
            where available); False calls this module's from-scratch ``scaled_dot_product_attention``
            (same numbers, slower, easy to inspect).
        rotary: optional ``RotaryEmbedding`` (head_dim) that rotates queries and keys by their positions
            (0, 1, ... or, with a ``KVCache``, continuing after the cached positions); self-attention only.

    Masks (see the module docstring): ``attn_mask`` bool True = may attend (SDPA's convention, the
    opposite of ``nn.MultiheadAttention``'s), or float additive, broadcastable to
    (batch, num_heads, seq_q, seq_k); ``key_padding_mask`` (batch, seq_k) bool True = padding (torch's
    convention) or float additive.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = True,
                 use_fused: bool = True, rotary: RotaryEmbedding | None = None, device=None,
                 dtype=None) -> None:
        super().__init__()
        if not isinstance(embed_dim, int) or not isinstance(num_heads, int) or embed_dim < 1 or num_heads < 1:
            raise ValueError(f"embed_dim and num_heads must be positive ints, got {embed_dim!r} and {num_heads!r}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if not batch_first:
            raise ValueError("only batch_first=True is supported: inputs are (batch, seq, feature)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = dropout
        self.batch_first = batch_first
        self.use_fused = use_fused
        if rotary is not None and (not isinstance(rotary, RotaryEmbedding) or rotary.head_dim != self.head_dim):
            got = f"head_dim={rotary.head_dim}" if isinstance(rotary, RotaryEmbedding) else type(rotary).__name__
            raise ValueError(f"rotary must be a RotaryEmbedding with head_dim={self.head_dim}, got {got}")
        self.rotary = rotary
        self.packed = self.kdim == embed_dim and self.vdim == embed_dim
        if self.packed:
            self.qkv_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias, **factory)
        else:
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
            self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias, **factory)
            self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    # -- projections -----------------------------------------------------------------------------

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)

    def _project(self, query: Tensor, key: Tensor, value: Tensor,
                 self_attention: bool) -> tuple[Tensor, Tensor, Tensor]:
        batch, seq_q, _ = query.shape
        if self.packed and self_attention:
            qkv = self.qkv_proj(query)  # (batch, seq, 3 * embed_dim): one matmul for Q, K and V
            qkv = qkv.view(batch, seq_q, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_dim)
            return q, k, v
        if self.packed:
            w_q, w_k, w_v = self.qkv_proj.weight.chunk(3)  # views, no copy
            b_q, b_k, b_v = self.qkv_proj.bias.chunk(3) if self.qkv_proj.bias is not None else (None,) * 3
            q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        else:
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None,
                is_causal: bool = False, need_weights: bool = False,
                kv_cache: KVCache | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``query`` (batch, seq_q, embed_dim) to ``key``/``value`` (batch, seq_k, kdim/vdim).

        ``key`` and ``value`` default to ``query`` (self-attention).  Returns (batch, seq_q, embed_dim);
        with ``need_weights=True`` returns ``(output, weights)`` with per-head weights
        (batch, num_heads, seq_q, seq_k), computed by the from-scratch path.

        ``is_causal``: query i may attend to keys j <= i + (seq_k - seq_q) (aligned at the bottom right;
        the usual j <= i when seq_q == seq_k).  With a ``kv_cache`` holding ``past`` positions,
        the new queries are positions past..past+seq_q-1 and see every cached key plus the new keys up to
        themselves (bottom-right aligned), so decoding token by token equals one causal pass.
        ``kv_cache`` is for self-attention (leave ``key``/``value`` as None); ``key_padding_mask`` and
        ``attn_mask`` must then cover all seq_k = past + seq_q keys.
        """
        _check_float("query", query)
        if query.dim() != 3 or query.size(-1) != self.embed_dim:
            raise ValueError(f"query must be (batch, seq, embed_dim={self.embed_dim}), got {tuple(query.shape)}")
        if kv_cache is not None and (key is not None or value is not None):
            raise ValueError("kv_cache is for self-attention: pass only the new tokens as query and leave "
                             "key and value as None")
        self_attention = (key is None or key is query) and (value is None or value is query)
        key = query if key is None else key
        value = key if value is None else value
        for name, tensor, dim in (("key", key, self.kdim), ("value", value, self.vdim)):
            _check_float(name, tensor)
            if tensor.dim() != 3 or tensor.size(-1) != dim or tensor.size(0) != query.size(0):
                raise ValueError(f"{name} must be (batch={query.size(0)}, seq_k, {dim}), got {tuple(tensor.shape)}")
        if key.size(1) != value.size(1):
            raise ValueError(f"key and value must have the same length, got {key.size(1)} and {value.size(1)}")

        q, k, v = self._project(query, key, value, self_attention)  # (batch, heads, seq, head_dim)
        if self.rotary is not None:
            if not self_attention:
                raise ValueError("rotary position embedding is applied in self-attention only; "
                                 "call with key=None and value=None")
            past = 0 if kv_cache is None else len(kv_cache)
            positions = torch.arange(past, past + q.size(-2), device=q.device)  # absolute positions
            q, k = self.rotary.apply_rotary(q, k, positions)  # keys are cached already rotated
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (batch, heads, past + seq_q, head_dim)
        batch, _, seq_q, _ = q.shape
        seq_k = k.size(-2)

        mask, causal_flag = self._build_mask(attn_mask, key_padding_mask, is_causal, batch, seq_q, seq_k, q)
        dropout_p = self.dropout if self.training else 0.0

        if need_weights or not self.use_fused:
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal_flag,
                                               dropout_p=dropout_p, return_weights=need_weights)
            out, weights = out if need_weights else (out, None)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal_flag,
                                                 dropout_p=dropout_p)
            weights = None
        out = out.transpose(1, 2).reshape(batch, seq_q, self.embed_dim)  # (batch, seq_q, embed_dim)
        out = self.out_proj(out)
        return (out, weights) if need_weights else out

    def _build_mask(self, attn_mask, key_padding_mask, is_causal, batch, seq_q, seq_k,
                    q) -> tuple[Tensor | None, bool]:
        """All masks as one SDPA-convention mask broadcastable to (batch, heads, seq_q, seq_k).

        Returns ``(mask, causal_flag)``: when causality is the only constraint and seq_q == seq_k, the
        mask is None and ``causal_flag`` True, so SDPA can pick its fast causal kernels.
        """
        scores_shape = (batch, self.num_heads, seq_q, seq_k)
        if attn_mask is not None:
            _check_mask("attn_mask", attn_mask, scores_shape)
        padding = None
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor) or (
                    key_padding_mask.dtype != torch.bool and not key_padding_mask.is_floating_point()):
                got = (key_padding_mask.dtype if isinstance(key_padding_mask, Tensor)
                       else type(key_padding_mask).__name__)
                raise TypeError(f"key_padding_mask must be bool (True = padding) or float, got {got}")
            if tuple(key_padding_mask.shape) != (batch, seq_k):
                raise ValueError(f"key_padding_mask must have shape (batch, seq_k) = {(batch, seq_k)}, "
                                 f"got {tuple(key_padding_mask.shape)}")
            # torch's convention (True = padding) -> SDPA's (True = may attend)
            padding = ~key_padding_mask if key_padding_mask.dtype == torch.bool else key_padding_mask.to(q.dtype)
            padding = padding[:, None, None, :]  # (batch, 1, 1, seq_k)
        causal = None
        causal_flag = False
        # Bottom-right alignment: a single (newest) query sees every key and needs no causal mask.
        if is_causal and seq_q > 1:
            if attn_mask is None and padding is None and seq_q == seq_k:
                causal_flag = True
            else:
                causal = causal_mask(seq_q, device=q.device, seq_k=seq_k)  # bottom-right aligned
        float_dtype = q.dtype if any(m is not None and m.is_floating_point() for m in (attn_mask, padding)) else None
        return combine_masks(attn_mask, padding, causal, dtype=float_dtype), causal_flag

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
                f"dropout={self.dropout}, use_fused={self.use_fused}")

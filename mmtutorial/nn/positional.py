"""Position information for attention, which by itself is blind to order.

Attention is permutation-equivariant: shuffle the tokens and the outputs shuffle the same way.  Three
standard ways to tell the model where each token is:

- ``SinusoidalPositionalEncoding``: fixed sines and cosines added to the embeddings (Vaswani et al., 2017),
      PE(pos, 2i) = sin(pos / 10000^{2i/d}),   PE(pos, 2i+1) = cos(pos / 10000^{2i/d}).
- ``LearnedPositionalEmbedding``: one trained vector per position, added to the embeddings (BERT, GPT-2).
- ``RotaryEmbedding``: rotate queries and keys by position-dependent angles (RoFormer, Su et al., 2021),
  so that the score q_m . k_n depends on the positions only through the offset m - n (LLaMA, GPT-NeoX).
- ``sincos_position_embedding_2d``: the fixed 2-D sine-cosine table of a grid of image patches (MAE, He et
  al., 2022): the 1-D encoding of the column and of the row, side by side.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding", "rotate_half",
           "apply_rotary_pos_emb", "sincos_position_embedding_2d"]


def sincos_position_embedding_2d(grid_size: int, dim: int, class_token: bool = True) -> Tensor:
    """MAE's fixed 2-D sine-cosine positions: (N [+ 1], dim), N = grid_size**2, a zero row first for the class
    token.

    Patch (row h, column w) gets [sin(w w_k), cos(w w_k), sin(h w_k), cos(h w_k)] for k = 0..dim/4 - 1 with
    frequencies w_k = 10000^(-k / (dim / 4)): the 1-D Transformer encoding of the column in the first half and of
    the row in the second (the order of MAE's released weights).  Computed in float64, returned as float32.
    """
    if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int, got {grid_size!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 4 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4 for a 2-D sin-cos embedding, got {dim!r}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)   # (dim/4,)
    rows, cols = torch.meshgrid(torch.arange(grid_size, dtype=torch.float64),
                                torch.arange(grid_size, dtype=torch.float64), indexing="ij")
    angle_w = cols.flatten()[:, None] * omega                    # (N, dim/4)
    angle_h = rows.flatten()[:, None] * omega                    # (N, dim/4)
    table = torch.cat([angle_w.sin(), angle_w.cos(), angle_h.sin(), angle_h.cos()], dim=1)   # (N, dim)
    if class_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table])               # (1 + N, dim)
    return table.float()


def _check_sequence(x: Tensor, dim: int, start: int, max_len: int, who: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{who} wants a floating-point tensor (batch, seq, {dim}), got {got}")
    if x.dim() < 2 or x.size(-1) != dim:
        raise ValueError(f"{who} wants input of shape (..., seq, dim={dim}), got {tuple(x.shape)}")
    if not isinstance(start, int) or isinstance(start, bool):
        raise TypeError(f"{who}: start must be an int position, got {type(start).__name__} {start!r}")
    if start < 0 or start + x.size(-2) > max_len:
        raise ValueError(f"{who}: positions {start}..{start + x.size(-2) - 1} exceed max_len={max_len}; "
                         f"build it with a larger max_len")


def _check_base(base) -> None:
    """The wavelength base must be a finite number > 1 (10,000 in the Transformer and RoPE)."""
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not math.isfinite(base) or base <= 1:
        raise ValueError(f"base must be a finite number > 1 (e.g. 10000.0), got {base!r}")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding of Vaswani et al. (2017) to (..., seq, dim) inputs.

    Channel pair (2i, 2i+1) is a sine/cosine of frequency 1 / 10000^{2i/d}: wavelengths go geometrically
    from 2*pi to 10000*2*pi, and PE(pos + k) is a fixed rotation of PE(pos) in every pair.  The table is
    a buffer: it follows the module's ``.to(device/dtype)``, is never trained and is not in the state dict.
    """

    def __init__(self, dim: int, max_len: int = 5000, base: float = 10000.0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be a positive even int (sine/cosine pairs), got {dim!r}")
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int, got {max_len!r}")
        _check_base(base)
        self.dim, self.max_len, self.base = dim, max_len, base
        position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,) = 1/base^{2i/d}
        table = torch.empty(max_len, dim, dtype=torch.float64)
        table[:, 0::2] = torch.sin(position * frequency)  # even channels
        table[:, 1::2] = torch.cos(position * frequency)  # odd channels
        self.register_buffer("pe", table.to(torch.get_default_dtype()), persistent=False)  # (max_len, dim)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """x + PE[start : start + seq] for x of shape (..., seq, dim)."""
        _check_sequence(x, self.dim, start, self.max_len, "SinusoidalPositionalEncoding")
        return x + self.pe[start:start + x.size(-2)].to(x.dtype)  # (..., seq, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (BERT, GPT-2), added to (..., seq, dim) inputs."""

    def __init__(self, max_len: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        if not isinstance(max_len, int) or max_len < 1 or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"max_len and dim must be positive ints, got {max_len!r} and {dim!r}")
        self.max_len, self.dim = max_len, dim
        self.embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)  # GPT-2's initialisation

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """x + P[start : start + seq] for x of shape (..., seq, dim)."""
        _check_sequence(x, self.dim, start, self.max_len, "LearnedPositionalEmbedding")
        return x + self.embedding.weight[start:start + x.size(-2)]  # (..., seq, dim)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension (GPT-NeoX / LLaMA layout).

    Channel i is paired with channel i + d/2 (not with its neighbour as in the RoFormer paper); the two
    layouts are the same rotation up to a fixed permutation of the channels.
    """
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary_pos_emb(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate every channel pair (i, i + d/2) of x by its angle: x * cos + rotate_half(x) * sin."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE; Su et al., RoFormer) for queries and keys of size ``head_dim``.

    Pair i of a vector at position m is rotated by the angle m * theta_i, theta_i = base^{-2i/d}.  Since
    rotations compose, <R_m q, R_n k> = <q, R_{n-m} k>: attention scores see only the relative offset.
    The module has no parameters; cos/sin are computed on the fly in float32 (float64 for float64
    inputs), as Hugging Face's ``LlamaRotaryEmbedding`` does.

    Args:
        head_dim: size of each head's query/key vectors (even).
        base: the wavelength base (10,000 in RoFormer and LLaMA-1/2).
        max_len: optional limit on positions (e.g. the training context); None = no limit.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, max_len: int | None = None) -> None:
        super().__init__()
        if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even int (channels rotate in pairs), got {head_dim!r}")
        _check_base(base)
        if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len must be a positive int or None, got {max_len!r}")
        self.head_dim, self.base, self.max_len = head_dim, float(base), max_len

    def inverse_frequencies(self, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """theta_i = 1 / base^{2i/d} for i = 0 .. d/2 - 1, shape (head_dim/2,)."""
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).to(dtype) / self.head_dim
        return 1.0 / (self.base ** exponents)

    def cos_sin(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """cos and sin of the angles m * theta_i, each of shape (*positions.shape, head_dim).

        Each angle appears twice (channels i and i + d/2), matching ``rotate_half``.
        """
        if not isinstance(positions, Tensor) or positions.is_floating_point() or positions.dtype == torch.bool:
            got = positions.dtype if isinstance(positions, Tensor) else type(positions).__name__
            raise TypeError(f"positions must be an integer tensor, got {got}")
        if positions.numel() and int(positions.min()) < 0:
            raise ValueError(f"positions must be >= 0, got minimum {int(positions.min())}")
        if self.max_len is not None and positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(f"position {int(positions.max())} is beyond max_len={self.max_len} "
                             f"(positions must be < max_len)")
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        angles = positions.to(compute)[..., None] * self.inverse_frequencies(compute, positions.device)  # (..., d/2)
        angles = torch.cat((angles, angles), dim=-1)  # (..., head_dim)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.apply_rotary(q, k, positions)

    def apply_rotary(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys (..., seq, head_dim) by their positions.

        ``positions``: (seq,) shared by the batch, or (batch, seq) for q/k of shape
        (batch, heads, seq, head_dim); default ``arange(seq)``.  q and k may differ in length only when
        ``positions`` is None (then each uses arange of its own length).
        """
        for name, tensor in (("q", q), ("k", k)):
            if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
                got = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
                raise TypeError(f"{name} must be a floating-point tensor, got {got}")
            if tensor.dim() < 2 or tensor.size(-1) != self.head_dim:
                raise ValueError(f"{name} must have shape (..., seq, head_dim={self.head_dim}), "
                                 f"got {tuple(tensor.shape)}")
        if positions is None:
            return self._rotate(q, torch.arange(q.size(-2), device=q.device)), \
                self._rotate(k, torch.arange(k.size(-2), device=k.device))
        return self._rotate(q, positions), self._rotate(k, positions)

    def _rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        if positions.dim() == 1:
            if positions.size(0) != x.size(-2):
                raise ValueError(f"positions has {positions.size(0)} entries but the input has seq={x.size(-2)}")
            cos, sin = self.cos_sin(positions.to(x.device), x.dtype)  # (seq, head_dim)
        elif positions.dim() == 2:
            if x.dim() != 4 or tuple(positions.shape) != (x.size(0), x.size(2)):
                raise ValueError(f"positions of shape (batch, seq) = {tuple(positions.shape)} need an input "
                                 f"(batch, heads, seq, head_dim) with the same batch and seq, got {tuple(x.shape)}")
            cos, sin = self.cos_sin(positions.to(x.device), x.dtype)  # (batch, seq, head_dim)
            cos, sin = cos[:, None], sin[:, None]  # (batch, 1, seq, head_dim): broadcast over heads
        else:
            raise ValueError(f"positions must be (seq,) or (batch, seq), got shape {tuple(positions.shape)}")
        return apply_rotary_pos_emb(x, cos, sin)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}, max_len={self.max_len}"

"""Fusion layers: how two or more modalities' features become one representation.

Every module here takes the same input: the per-modality features as a list (or a dict keyed by the
modality names given at construction), where an entry may be ``None`` (that modality is missing for the
whole batch), plus an optional ``present`` mask of shape (batch, num_modalities), True where a sample
has that modality.  A missing modality never contributes: its features are ignored (not merely whatever
numbers happened to be in the tensor).  Bad input raises ``ValueError``/``TypeError`` naming what was
expected and what came.

==========================  ==================================================  ====================
module                      output                                              interaction
==========================  ==================================================  ====================
``ConcatFusion``            [h_1; ...; h_M] (missing -> zeros)                   left to the head
``WeightedFusion``          sum_m w_m h_m, w = softmax(a) over present m          left to the head
``LateFusion``              mean over present m of per-modality logits/probs    none (additive)
``GatedFusion``             sum_m alpha_m tanh(W_m h_m), alpha = softmax(gates)   gates see all modalities
``FiLM``                    (1 + gamma(c)) * h_target + beta(c)                  multiplicative
``CrossAttentionFusion``    each modality's tokens attend to the others'        attention
==========================  ==================================================  ====================

``ModalityDropout`` drops whole modalities per sample during training (never all of a sample's), so a
model learns to predict from any subset and does not collapse when a sensor is missing at test time.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiHeadAttention

__all__ = ["presence_mask", "ConcatFusion", "WeightedFusion", "LateFusion", "GatedFusion", "FiLM",
           "CrossAttentionFusion", "ModalityDropout", "FUSION_MODULES"]

Features = Sequence["Tensor | None"] | Mapping[str, "Tensor | None"]


# --------------------------------------------------------------------------------------------------
# Input handling shared by every fusion module
# --------------------------------------------------------------------------------------------------
def _as_list(features: Features, names: Sequence[str] | None, count: int | None) -> list[Tensor | None]:
    """Per-modality features as a list in the module's modality order."""
    if isinstance(features, Tensor):
        raise TypeError("fusion modules take a list (or dict) of per-modality tensors, got one tensor; "
                        "wrap it: [image_features, audio_features]")
    if isinstance(features, Mapping):
        if names is None:
            raise TypeError("this module was built without modality names, so pass a list, not a dict")
        unknown = set(features) - set(names)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected keys among {list(names)}")
        return [features.get(name) for name in names]          # an absent key is a missing modality
    if not isinstance(features, Sequence):
        raise TypeError(f"features must be a list or dict of tensors, got {type(features).__name__}")
    features = list(features)
    if count is not None and len(features) != count:
        raise ValueError(f"expected {count} modalities, got {len(features)}")
    return features


def presence_mask(features: Features, present: Tensor | None = None, names: Sequence[str] | None = None,
                  count: int | None = None) -> tuple[list[Tensor | None], Tensor]:
    """Validate per-modality features and return them with a (batch, M) bool mask, True = present.

    A ``None`` entry is missing for every sample.  ``present`` (optional) marks per-sample missingness;
    it is combined with the ``None`` entries.  All given tensors must share the batch size, dtype and
    device.  At least one modality must be given.
    """
    features = _as_list(features, names, count)
    given = [f for f in features if f is not None]
    if not given:
        raise ValueError("every modality is missing (all entries are None): nothing to fuse")
    for index, f in enumerate(features):
        if f is not None and not isinstance(f, Tensor):
            raise TypeError(f"modality {index} must be a tensor or None, got {type(f).__name__}")
        if f is not None and not f.is_floating_point():
            raise TypeError(f"modality {index} must be a floating-point tensor, got dtype {f.dtype}")
    if any(f.dim() == 0 for f in given):
        raise ValueError("each modality needs a batch dimension first, got a 0-d tensor")
    batch = given[0].shape[0]
    if any(f.shape[0] != batch for f in given):
        raise ValueError(f"all modalities must have the same batch size (first dimension); got shapes "
                         f"{[None if f is None else tuple(f.shape) for f in features]}")
    if len({f.dtype for f in given}) > 1 or len({f.device for f in given}) > 1:
        raise TypeError(f"modalities must share dtype and device, got {[(f.dtype, str(f.device)) for f in given]}")
    mask = torch.tensor([f is not None for f in features], device=given[0].device).expand(batch, -1)
    if present is not None:
        if not isinstance(present, Tensor) or present.dtype != torch.bool:
            raise TypeError(f"present must be a bool tensor (batch, {len(features)}), got "
                            f"{present.dtype if isinstance(present, Tensor) else type(present).__name__}")
        if tuple(present.shape) != (batch, len(features)):
            raise ValueError(f"present must have shape (batch, modalities) = {(batch, len(features))}, "
                             f"got {tuple(present.shape)}")
        mask = mask & present.to(mask.device)
    return features, mask.contiguous()


def _check_dims(dims, what: str = "input_dims") -> tuple[tuple[int, ...], tuple[str, ...] | None]:
    """``input_dims`` as a tuple of ints plus the modality names when a dict was given."""
    names = None
    if isinstance(dims, Mapping):
        names, dims = tuple(dims), tuple(dims.values())
    dims = tuple(dims)
    if len(dims) < 1 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"{what} must be positive ints, one per modality, got {dims}")
    return dims, names


class _Fusion(nn.Module):
    """Shared bookkeeping: modality dims and names, and input validation."""

    def __init__(self, input_dims) -> None:
        super().__init__()
        self.input_dims, self.modality_names = _check_dims(input_dims)
        self.num_modalities = len(self.input_dims)

    def _prepare(self, features: Features, present: Tensor | None, tokens: bool = False):
        """Validated features with missing entries replaced by zeros, and the presence mask.

        Vector modules want (batch, dim_m) per modality; ``tokens=True`` also accepts (batch, tokens, dim_m).
        Features of a missing sample are zeroed, so stale numbers never leak into the fusion.
        """
        features, mask = presence_mask(features, present, self.modality_names, self.num_modalities)
        reference = next(f for f in features if f is not None)
        batch = reference.shape[0]
        filled = []
        for index, (f, dim) in enumerate(zip(features, self.input_dims)):
            name = self.modality_names[index] if self.modality_names else f"modality {index}"
            if f is None:
                shape = (batch, 1, dim) if tokens else (batch, dim)
                filled.append(reference.new_zeros(shape))
                continue
            ok = (f.dim() == 2 or (tokens and f.dim() == 3)) and f.shape[-1] == dim
            if not ok:
                want = f"(batch, {dim})" + (f" or (batch, tokens, {dim})" if tokens else "")
                raise ValueError(f"{name} must have shape {want}, got {tuple(f.shape)}")
            keep = mask[:, index].to(f.dtype).view(batch, *([1] * (f.dim() - 1)))
            filled.append(f * keep)
        return filled, mask

    def extra_repr(self) -> str:
        names = f", names={list(self.modality_names)}" if self.modality_names else ""
        return f"input_dims={list(self.input_dims)}{names}, output_dim={self.output_dim}"


# --------------------------------------------------------------------------------------------------
# Early fusion: concatenation
# --------------------------------------------------------------------------------------------------
class ConcatFusion(_Fusion):
    """Early fusion: z = [h_1; h_2; ...; h_M], with zeros for a missing modality.

    The output size is the sum of the input sizes (100 + 9216 + 1280 = 10,596).  Concatenation itself
    mixes nothing; whatever follows (a hidden layer) must model the interactions.
    """

    def __init__(self, input_dims) -> None:
        super().__init__(input_dims)
        self.output_dim = sum(self.input_dims)

    def forward(self, features: Features, present: Tensor | None = None) -> Tensor:
        filled, _ = self._prepare(features, present)
        return torch.cat(filled, dim=-1)                              # (batch, sum of dims)


# --------------------------------------------------------------------------------------------------
# Weighted fusion: a convex combination with learned weights
# --------------------------------------------------------------------------------------------------
class WeightedFusion(_Fusion):
    """z = sum_m w_m h_m with w = softmax(a): learned, positive weights that sum to one.

    Adding vectors needs ONE size: 100-, 9216- and 1280-d features cannot be summed (project them first).
    With a modality missing the softmax runs over the present ones only, so the weights still sum to 1.

    Args:
        input_dims: the size of each modality's features (all equal), or a dict name -> size.
        weights: initial weights (positive, summing to 1); default uniform.
        learnable: False keeps the weights fixed (a buffer), e.g. to reproduce a worked example.
    """

    def __init__(self, input_dims, weights: Sequence[float] | None = None, learnable: bool = True) -> None:
        super().__init__(input_dims)
        if len(set(self.input_dims)) != 1:
            raise ValueError(f"weighted fusion adds vectors, so every modality needs the same size; got sizes "
                             f"{list(self.input_dims)}. Project them to one size first (e.g. nn.Linear).")
        self.output_dim = self.input_dims[0]
        if weights is None:
            logits = torch.zeros(self.num_modalities)
        else:
            weights = torch.as_tensor(weights, dtype=torch.float32)
            if weights.shape != (self.num_modalities,) or (weights <= 0).any() or \
                    abs(float(weights.sum()) - 1.0) > 1e-6:
                raise ValueError(f"weights must be {self.num_modalities} positive numbers summing to 1, got "
                                 f"{weights.tolist()}")
            logits = weights.log()                                     # softmax(log w) = w
        if learnable:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    @property
    def weights(self) -> Tensor:
        """The current weights w = softmax(a), shape (num_modalities,)."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, features: Features, present: Tensor | None = None) -> Tensor:
        filled, mask = self._prepare(features, present)
        stacked = torch.stack(filled, dim=1)                           # (batch, M, dim)
        logits = self.logits.to(stacked.dtype).expand(mask.shape).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1)                         # (batch, M), renormalised over present
        weights = torch.nan_to_num(weights, nan=0.0)                   # a sample with nothing present -> 0
        return (weights.unsqueeze(-1) * stacked).sum(dim=1)            # (batch, dim)


# --------------------------------------------------------------------------------------------------
# Late fusion: one classifier per modality, predictions averaged
# --------------------------------------------------------------------------------------------------
class LateFusion(_Fusion):
    """Late (decision-level) fusion: each modality gets its own linear classifier; their predictions are
    averaged over the present modalities.

    ``combine="logits"`` averages logits; ``combine="probs"`` averages probabilities and returns their log
    (log-probabilities are valid logits for ``F.cross_entropy``).  Either way the score is a sum of one
    function of each modality: late fusion cannot represent interactions such as "do these two match?".

    With ``num_classes=None`` the inputs already are per-modality logits (all of one size) and are only
    averaged (e.g. to combine separately trained models).
    """

    def __init__(self, input_dims, num_classes: int | None, combine: str = "logits") -> None:
        super().__init__(input_dims)
        if combine not in ("logits", "probs"):
            raise ValueError(f"combine must be 'logits' or 'probs', got {combine!r}")
        self.combine = combine
        if num_classes is None:
            if len(set(self.input_dims)) != 1:
                raise ValueError(f"without heads the inputs are logits and need one size, got {list(self.input_dims)}")
            self.heads = None
            self.output_dim = self.input_dims[0]
        else:
            if not isinstance(num_classes, int) or num_classes < 2:
                raise ValueError(f"num_classes must be an int >= 2 or None, got {num_classes!r}")
            self.heads = nn.ModuleList(nn.Linear(dim, num_classes) for dim in self.input_dims)
            self.output_dim = num_classes

    def modality_logits(self, features: Features, present: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Each modality's own logits (batch, M, classes) and the presence mask (batch, M)."""
        filled, mask = self._prepare(features, present)
        if self.heads is None:
            return torch.stack(filled, dim=1), mask
        return torch.stack([head(f) for head, f in zip(self.heads, filled)], dim=1), mask

    def forward(self, features: Features, present: Tensor | None = None) -> Tensor:
        logits, mask = self.modality_logits(features, present)        # (batch, M, classes), (batch, M)
        weight = mask.to(logits.dtype).unsqueeze(-1)                   # (batch, M, 1)
        count = weight.sum(dim=1).clamp_min(1.0)                       # (batch, 1)
        if self.combine == "logits":
            return (weight * logits).sum(dim=1) / count                # (batch, classes)
        probs = (weight * torch.softmax(logits, dim=-1)).sum(dim=1) / count
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()    # (batch, classes) log-probabilities


# --------------------------------------------------------------------------------------------------
# Gated fusion (gated multimodal unit)
# --------------------------------------------------------------------------------------------------
class GatedFusion(_Fusion):
    """Gated multimodal unit (Arevalo et al., 2017), generalised to M modalities.

        h_m = tanh(W_m x_m),   alpha = softmax_m(G [x_1; ...; x_M]),   z = sum_m alpha_m * h_m

    The gates are per output dimension and depend on every modality, so the model decides, sample by
    sample and feature by feature, which modality to trust.  For two modalities the softmax over two
    gate logits is sigma(g_1 - g_2): exactly the GMU's z * h_1 + (1 - z) * h_2.  A missing modality gets
    gate 0 (its logit is masked to -inf) and zeros in the gate input.
    """

    def __init__(self, input_dims, output_dim: int) -> None:
        super().__init__(input_dims)
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"output_dim must be a positive int, got {output_dim!r}")
        self.output_dim = output_dim
        self.projections = nn.ModuleList(nn.Linear(dim, output_dim) for dim in self.input_dims)
        self.gate = nn.Linear(sum(self.input_dims), self.num_modalities * output_dim)

    def gates(self, features: Features, present: Tensor | None = None) -> Tensor:
        """The gate values alpha (batch, M, output_dim); they sum to 1 over the present modalities."""
        filled, mask = self._prepare(features, present)
        return self._gates(filled, mask)

    def _gates(self, filled: list[Tensor], mask: Tensor) -> Tensor:
        batch = mask.shape[0]
        logits = self.gate(torch.cat(filled, dim=-1)).view(batch, self.num_modalities, self.output_dim)
        logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return torch.nan_to_num(torch.softmax(logits, dim=1), nan=0.0)    # (batch, M, output_dim)

    def forward(self, features: Features, present: Tensor | None = None) -> Tensor:
        filled, mask = self._prepare(features, present)
        hidden = torch.stack([torch.tanh(proj(f)) for proj, f in zip(self.projections, filled)], dim=1)
        return (self._gates(filled, mask) * hidden).sum(dim=1)             # (batch, output_dim)


# --------------------------------------------------------------------------------------------------
# FiLM: feature-wise linear modulation
# --------------------------------------------------------------------------------------------------
class FiLM(_Fusion):
    """Feature-wise linear modulation (Perez et al., 2018): the other modalities scale and shift the
    features of one ``target`` modality,

        z = (1 + gamma(c)) * h_target + beta(c),    [gamma; beta] = W c + b,   c = [the other modalities]

    Writing the scale as 1 + gamma makes the layer start near the identity when W is small.  The
    interaction is multiplicative: the conditioning modality changes how the target's features count.
    If no conditioning modality is present, gamma = beta = 0 (identity); if the target is missing its
    features are zeros and z = beta(c).
    """

    def __init__(self, input_dims, target: int | str = 0) -> None:
        super().__init__(input_dims)
        if self.num_modalities < 2:
            raise ValueError("FiLM needs a target modality and at least one conditioning modality")
        if isinstance(target, str):
            if not self.modality_names or target not in self.modality_names:
                raise ValueError(f"target {target!r} is not one of the modality names {self.modality_names}")
            target = self.modality_names.index(target)
        if not isinstance(target, int) or not 0 <= target < self.num_modalities:
            raise ValueError(f"target must be a modality index in [0, {self.num_modalities}), got {target!r}")
        self.target = target
        self.output_dim = self.input_dims[target]
        condition_dim = sum(d for i, d in enumerate(self.input_dims) if i != target)
        self.to_gamma_beta = nn.Linear(condition_dim, 2 * self.output_dim)

    def gamma_beta(self, features: Features, present: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """gamma and beta (batch, output_dim) each, zero for a sample with no conditioning modality."""
        filled, mask = self._prepare(features, present)
        return self._gamma_beta(filled, mask)

    def _gamma_beta(self, filled: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        condition = torch.cat([f for i, f in enumerate(filled) if i != self.target], dim=-1)   # (batch, cond)
        has_condition = torch.cat([mask[:, :self.target], mask[:, self.target + 1:]], dim=1).any(dim=1)
        gamma, beta = self.to_gamma_beta(condition).chunk(2, dim=-1)       # (batch, output_dim) each
        keep = has_condition.to(gamma.dtype).unsqueeze(-1)                  # (batch, 1)
        return gamma * keep, beta * keep

    def forward(self, features: Features, present: Tensor | None = None) -> Tensor:
        filled, mask = self._prepare(features, present)
        gamma, beta = self._gamma_beta(filled, mask)
        return (1.0 + gamma) * filled[self.target] + beta                   # (batch, output_dim)


# --------------------------------------------------------------------------------------------------
# Cross-attention fusion
# --------------------------------------------------------------------------------------------------
class CrossAttentionFusion(_Fusion):
    """Each modality's tokens attend to the tokens of the other modalities (co-attention, as in ViLBERT
    and the Multimodal Transformer):

        t_m = W_m x_m + e_m                                (batch, tokens_m, embed_dim)
        u_m = LayerNorm(t_m + MHA(query=t_m, key=value=[t_k for k != m]))
        z   = [mean_tokens(u_1); ...; mean_tokens(u_M)]     (batch, M * embed_dim)

    ``e_m`` is a learned modality embedding (so keys from different modalities are distinguishable).
    Inputs may be token sequences (batch, tokens, dim_m) or vectors (batch, dim_m), read as one token;
    with a single key token the attention weight is exactly 1, so give at least one modality several
    tokens.  Missing samples are key padding; a query with nothing to attend to keeps its own tokens,
    and a missing modality's pooled slot is zero.  The attention is the package's ``MultiHeadAttention``.
    """

    def __init__(self, input_dims, embed_dim: int = 64, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__(input_dims)
        if self.num_modalities < 2:
            raise ValueError("cross-attention needs at least two modalities")
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        self.embed_dim = embed_dim
        self.output_dim = self.num_modalities * embed_dim
        self.projections = nn.ModuleList(nn.Linear(dim, embed_dim) for dim in self.input_dims)
        self.modality_embedding = nn.Parameter(torch.randn(self.num_modalities, embed_dim) * 0.02)
        self.attentions = nn.ModuleList(MultiHeadAttention(embed_dim, num_heads, dropout=dropout)
                                        for _ in range(self.num_modalities))
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(self.num_modalities))

    def forward(self, features: Features, present: Tensor | None = None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor | None]]:
        """Fused (batch, M * embed_dim); with ``return_attention`` also each modality's attention
        weights (batch, heads, tokens_m, keys) over the concatenated other modalities' tokens."""
        filled, mask = self._prepare(features, present, tokens=True)
        tokens = [proj(f if f.dim() == 3 else f.unsqueeze(1)) + self.modality_embedding[i]
                  for i, (proj, f) in enumerate(zip(self.projections, filled))]   # (batch, T_m, embed)
        pooled, weights = [], []
        for m in range(self.num_modalities):
            others = [k for k in range(self.num_modalities) if k != m]
            context = torch.cat([tokens[k] for k in others], dim=1)              # (batch, T_other, embed)
            padding = torch.cat([(~mask[:, k]).unsqueeze(1).expand(-1, tokens[k].shape[1]) for k in others],
                                dim=1)                                             # (batch, T_other) True = pad
            has_context = (~padding).any(dim=1)                                    # (batch,)
            # A sample with no key at all would give NaN weights: let it attend to padding, then discard.
            padding = padding & has_context.unsqueeze(1)
            out = self.attentions[m](tokens[m], context, context, key_padding_mask=padding,
                                     need_weights=return_attention)
            if return_attention:
                out, attention = out
                weights.append(attention * has_context.view(-1, 1, 1, 1).to(attention.dtype))
            out = out * has_context.view(-1, 1, 1).to(out.dtype)                   # (batch, T_m, embed)
            updated = self.norms[m](tokens[m] + out)
            pooled.append(updated.mean(dim=1) * mask[:, m].unsqueeze(-1).to(out.dtype))   # (batch, embed)
        fused = torch.cat(pooled, dim=-1)                                          # (batch, M * embed)
        return (fused, weights) if return_attention else fused


# --------------------------------------------------------------------------------------------------
# Modality dropout
# --------------------------------------------------------------------------------------------------
class ModalityDropout(nn.Module):
    """Drop whole modalities at random during training (ModDrop, Neverova et al., 2016).

    In training mode each present modality of each sample is dropped with probability ``p`` (one number,
    or one per modality); if that would leave a sample with nothing, one of its present modalities,
    chosen uniformly, is kept.  Dropped features are zeroed and marked absent in the returned mask.  In
    eval mode nothing is dropped.  Unlike ordinary dropout there is no 1/(1-p) rescaling: at test time a
    modality is either there or missing, and the model must cope with both.

    ``forward(features, present=None) -> (features, present)``, to be passed on to a fusion module.
    """

    def __init__(self, p: float | Sequence[float] = 0.5, num_modalities: int | None = None) -> None:
        super().__init__()
        probabilities = [p] if isinstance(p, (int, float)) else list(p)
        if not probabilities or not all(isinstance(q, (int, float)) and 0.0 <= q < 1.0 for q in probabilities):
            raise ValueError(f"p must be a probability in [0, 1) or one per modality, got {p!r}")
        if num_modalities is not None and len(probabilities) not in (1, num_modalities):
            raise ValueError(f"got {len(probabilities)} probabilities for {num_modalities} modalities")
        self.num_modalities = num_modalities if num_modalities is not None else (
            len(probabilities) if len(probabilities) > 1 else None)
        self.register_buffer("p", torch.tensor(probabilities, dtype=torch.float32), persistent=False)

    def forward(self, features: Features, present: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[list[Tensor | None], Tensor]:
        features, present = presence_mask(features, present, count=self.num_modalities)
        if not self.training or not bool((self.p > 0).any()):
            return [None if f is None else f * present[:, i].view(-1, *([1] * (f.dim() - 1))).to(f.dtype)
                    for i, f in enumerate(features)], present
        batch, count = present.shape
        p = self.p.to(present.device).expand(count) if self.p.numel() == 1 else self.p.to(present.device)
        if p.numel() != count:
            raise ValueError(f"this ModalityDropout has {p.numel()} probabilities, got {count} modalities")
        device = present.device
        uniform = torch.rand(batch, count, generator=generator).to(device)   # CPU draws: same on any device
        keep = present & (uniform >= p)                                      # (batch, M)
        emptied = present.any(dim=1) & ~keep.any(dim=1)                      # samples that lost everything
        # Keep one present modality, chosen uniformly: argmax of random scores over the present ones.
        scores = torch.rand(batch, count, generator=generator).to(device).masked_fill(~present, -1.0)
        rescue = F.one_hot(scores.argmax(dim=1), count).bool()               # (batch, M)
        keep = torch.where(emptied.unsqueeze(1), rescue & present, keep)
        dropped = [None if f is None else f * keep[:, i].view(-1, *([1] * (f.dim() - 1))).to(f.dtype)
                   for i, f in enumerate(features)]
        return dropped, keep

    def extra_repr(self) -> str:
        return f"p={[round(float(q), 4) for q in self.p]}"


FUSION_MODULES = {"concat": ConcatFusion, "weighted": WeightedFusion, "late": LateFusion,
                  "gated": GatedFusion, "film": FiLM, "cross_attention": CrossAttentionFusion}

"""LoRA: low-rank adaptation (Hu et al., ICLR 2022) of a frozen linear layer.

A pretrained layer y = W x + b (W: out x in) is frozen, and a trainable low-rank update is added beside it:

    y = W x + b + (alpha / r) B A x        A: r x in,   B: out x r,   r << min(in, out)

A starts random (Kaiming-uniform, as ``nn.Linear``) and B at zero, so at step 0 the adapted model *is* the
pretrained one and the first gradients reach B (dL/dB = (alpha/r) g (A x)^T is non-zero) while A gets none
(dL/dA = (alpha/r) B^T g x^T = 0); dividing by r keeps the update's size comparable when r changes.
Training touches r (in + out) numbers per layer instead of in x out.  After training, ``merge()`` folds the
update into the weight, W' = W + (alpha / r) B A, so inference costs nothing extra; ``unmerge()`` subtracts it
again.  Same computation and initialisation as ``peft``'s ``LoraLayer`` for ``nn.Linear`` (tested against it).

``apply_lora(model, targets, rank, alpha)`` wraps the named ``nn.Linear`` layers of any model and freezes
everything else except the modules named in ``trainable`` (a new classifier head, peft's ``modules_to_save``);
``trainable_parameter_count`` says how many numbers are trained.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["LoRALinear", "apply_lora", "lora_layers", "merge_lora", "unmerge_lora", "trainable_parameter_count"]


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * B(A(dropout(x)))`` around a frozen ``nn.Linear`` ``base``.

    Parameters ``lora_A`` (rank, in_features) and ``lora_B`` (out_features, rank) are the only trainable ones;
    ``weight`` and ``bias`` are the base layer's (merged or not), so code that reads ``layer.weight`` still works.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        limit = min(base.in_features, base.out_features)
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
            raise TypeError(f"rank must be an int in [1, {limit}], got {type(rank).__name__} {rank!r}")
        if not 1 <= rank <= limit:
            raise ValueError(f"rank must be in [1, min(in_features, out_features)] = [1, {limit}] for a "
                             f"{base.in_features} -> {base.out_features} layer, got {rank}: a rank of 0 adapts "
                             "nothing, and a rank above the layer's smaller side is no longer low-rank")
        alpha = float(rank if alpha is None else alpha)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.rank, self.alpha, self.scaling = int(rank), alpha, alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))     # nn.Linear's (and peft's) initialisation of A
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def weight(self) -> Tensor:
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> Tensor:
        """(alpha / r) B A: the update as a full (out_features, in_features) matrix."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)                                                     # (..., out): W x + b
        if self.merged:
            return out                                                         # W already holds the update
        low_rank = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.t()    # (..., r)
        return out + self.scaling * (low_rank @ self.lora_B.t()).to(out.dtype)   # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A: the adapter's output without its extra matmuls (dropout is then skipped)."""
        if self.merged:
            raise RuntimeError("this LoRALinear is already merged")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: back to the frozen base weight and the separate adapter."""
        if not self.merged:
            raise RuntimeError("this LoRALinear is not merged")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}, merged={self.merged}"


def _matches(name: str, targets: Iterable[str]) -> bool:
    """peft's rule: a module matches a target if its full name equals it or ends with '.' + target."""
    return any(name == target or name.endswith("." + target) for target in targets)


def apply_lora(model: nn.Module, targets: str | Iterable[str], rank: int, alpha: float | None = None,
               dropout: float = 0.0, trainable: str | Iterable[str] = ()) -> nn.Module:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name matches ``targets`` in a :class:`LoRALinear`
    (in place; returns ``model``).  Modules matching ``trainable`` (e.g. a new head) stay fully trainable.

    Names match as in peft's ``target_modules``: "qkv_proj" picks every ``*.qkv_proj``.  A target that picks
    no Linear layer is an error (a typo would otherwise train nothing but the head).
    """
    targets = [targets] if isinstance(targets, str) else list(targets)
    trainable = [trainable] if isinstance(trainable, str) else list(trainable)
    if not targets:
        raise ValueError("apply_lora needs at least one target layer name, e.g. targets=['qkv_proj']")
    chosen = [(name, module) for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and _matches(name, targets)]
    if not chosen:
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear layer of the model matches targets {targets}; its Linear layers are "
                         f"named {linear}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, rank, alpha, dropout))
    kept = [module for name, module in model.named_modules() if trainable and _matches(name, trainable)]
    if trainable and not kept:
        raise ValueError(f"no module of the model matches trainable={trainable}")
    for module in kept:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [module for module in model.modules() if isinstance(module, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every adapter of ``model`` into its base weight (in place)."""
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (in place)."""
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def trainable_parameter_count(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters) of ``model``: peft's ``get_nb_trainable_parameters`` numbers for a
    model without peft's duplicated ``modules_to_save`` copies."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())

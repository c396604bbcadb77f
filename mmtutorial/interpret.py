"""Explaining an image classifier's decision, and testing the explanation: chapter 24.

**Grad-CAM** (Selvaraju et al., 2017).  Take a layer whose output keeps a spatial layout, activations
A (batch, C, h, w), and the logit y_c of class c.  Each channel gets the weight

    alpha_k = 1/(h w) sum_ij d y_c / d A_kij                 (the gradient, averaged over positions)

and the map is  L = ReLU(sum_k alpha_k A_k)  (h, w), upsampled bilinearly to the input's size.  A Vision
Transformer's blocks output tokens (batch, prefix + N, D) instead: the prefix (the class token) is dropped
and the N = g x g patch tokens are laid back on their g x g grid, giving (batch, D, g, g).

**Sanity check** (Adebayo et al., 2018).  An explanation of *this model* must change when the model's
weights are destroyed.  :func:`cascading_randomization` re-initialises layers one after another from the
output down and measures the rank (Spearman) correlation of each map with the map of the trained model; a
method whose maps stay correlated with the originals explains the image, not the model.

**Deletion and insertion** (Petsiuk et al., 2018).  Remove the pixels in the order a map ranks them (most
important first) and follow the class probability: a faithful map makes it fall fast (small area under the
deletion curve).  Inserting pixels into a blank image in the same order should make it rise fast (large
area under the insertion curve).

Attention rollout lives with the ViT (:func:`mmtutorial.models.vit.attention_rollout`).
"""
from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["tokens_to_grid", "grad_cam", "input_gradient", "input_x_gradient", "spearman_correlation",
           "randomize_layer_", "cascading_randomization", "deletion_insertion_curves", "curve_area"]


# --------------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------------
def _check_images(inputs) -> Tensor:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a tensor (batch, channels, height, width), got {type(inputs).__name__}")
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be 4-D images (batch, channels, height, width), got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be floating point, got {inputs.dtype}")
    return inputs


def tokens_to_grid(tokens: Tensor, prefix_tokens: int | None = None) -> Tensor:
    """ViT tokens (batch, prefix + N, D) -> feature maps (batch, D, g, g) with N = g * g.

    The prefix (a class token, registers) has no position on the image and is dropped.  ``prefix_tokens=None``
    infers it: 0 when the sequence length is a perfect square, 1 when it is one more than a square.  Also
    usable as pytorch-grad-cam's ``reshape_transform``.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be (batch, tokens, dim), got {got}")
    length = tokens.size(1)
    if prefix_tokens is None:
        prefix_tokens = 0 if math.isqrt(length) ** 2 == length else 1
    if not 0 <= prefix_tokens < length:
        raise ValueError(f"prefix_tokens must be in [0, {length}), got {prefix_tokens}")
    patches = tokens[:, prefix_tokens:]                                       # (batch, N, D)
    grid = math.isqrt(patches.size(1))
    if grid * grid != patches.size(1):
        raise ValueError(f"{patches.size(1)} patch tokens (after dropping {prefix_tokens} prefix tokens) do not "
                         f"form a square grid; pass prefix_tokens explicitly")
    return patches.transpose(1, 2).reshape(tokens.size(0), tokens.size(2), grid, grid)   # (batch, D, g, g)


def _targets(target, logits: Tensor) -> Tensor:
    """Class indices (batch,) from None (the predicted class), an int or a sequence/tensor, range-checked."""
    batch, num_classes = logits.shape
    if target is None:
        return logits.argmax(dim=-1)
    if isinstance(target, (bool, str)) or not isinstance(target, (numbers.Integral, Sequence, Tensor, np.ndarray)):
        raise TypeError(f"target must be None, an int or a sequence of class indices, got {type(target).__name__}")
    target = torch.as_tensor(np.asarray(target) if isinstance(target, (Sequence, np.ndarray)) else target,
                             device=logits.device)
    if target.is_floating_point():
        raise TypeError(f"target must hold integer class indices, got {target.dtype}")
    target = target.long().expand(batch) if target.dim() == 0 else target.long()
    if target.shape != (batch,):
        raise ValueError(f"target must be one class index or one per image ({batch}), got shape {tuple(target.shape)}")
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError(f"target class indices must be in [0, {num_classes}), got {target.tolist()}")
    return target


def _layer_activations_and_gradients(model: nn.Module, layer: nn.Module, inputs: Tensor, target):
    """Run ``model`` with a hook on ``layer``; return its output, d(sum of target logits)/d(output), logits."""
    if not isinstance(layer, nn.Module) or not any(module is layer for module in model.modules()):
        raise ValueError(f"layer must be a sub-module of the model, got {type(layer).__name__} that is not in it")
    captured = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.enable_grad():
            logits = model(inputs)                                            # (batch, classes)
            if not captured:
                raise ValueError("the layer was not used in the model's forward pass")
            activations = captured[-1]
            if isinstance(activations, (tuple, list)):
                activations = activations[0]
            if logits.dim() != 2:
                raise ValueError(f"the model must return logits (batch, classes), got shape {tuple(logits.shape)}")
            classes = _targets(target, logits)
            score = logits.gather(1, classes[:, None]).sum()                  # images are independent
            gradients, = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    return activations.detach(), gradients.detach(), logits.detach()


def grad_cam(model: nn.Module, layer: nn.Module, inputs: Tensor, target=None, *, prefix_tokens: int | None = None,
             upsample: bool = True, normalize: bool = False) -> Tensor:
    """Grad-CAM maps (batch, H, W) of ``target`` (None: the predicted class) at ``layer``'s output.

    ``layer``'s output may be feature maps (batch, C, h, w) or ViT tokens (batch, prefix + N, D)
    (see :func:`tokens_to_grid`).  ``normalize`` rescales each map to [0, 1] (min-max, after upsampling: what
    pytorch-grad-cam returns); ``upsample`` resizes to the input's (H, W) bilinearly (as captum's
    ``LayerAttribution.interpolate`` and OpenCV's ``resize``); otherwise the map is (batch, h, w).
    """
    inputs = _check_images(inputs)
    activations, gradients, _ = _layer_activations_and_gradients(model, layer, inputs, target)
    if activations.dim() == 3:                                                # ViT tokens
        activations = tokens_to_grid(activations, prefix_tokens)              # (batch, D, g, g)
        gradients = tokens_to_grid(gradients, prefix_tokens)
    elif activations.dim() != 4:
        raise ValueError(f"the layer's output must be (batch, C, h, w) maps or (batch, tokens, dim) tokens, got "
                         f"shape {tuple(activations.shape)}")
    weights = gradients.mean(dim=(2, 3), keepdim=True)                        # (batch, C, 1, 1): alpha_k
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))            # (batch, 1, h, w)
    if upsample:
        cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)  # (batch, 1, H, W)
    if normalize:
        cam = cam - cam.amin(dim=(2, 3), keepdim=True)
        cam = cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-7)
    return cam[:, 0]


# --------------------------------------------------------------------------------------------------
# Gradient maps (the ones that fail the sanity check)
# --------------------------------------------------------------------------------------------------
def input_gradient(model: nn.Module, inputs: Tensor, target=None) -> Tensor:
    """d y_target / d x, summed over channels: (batch, H, W) ("vanilla gradient" saliency)."""
    inputs = _check_images(inputs).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)                                                # (batch, classes)
        score = logits.gather(1, _targets(target, logits)[:, None]).sum()
        gradients, = torch.autograd.grad(score, inputs)                       # (batch, C, H, W)
    return gradients.sum(dim=1)


def input_x_gradient(model: nn.Module, inputs: Tensor, target=None) -> Tensor:
    """x * d y_target / d x, summed over channels: (batch, H, W).  Zero wherever the pixel is zero, whatever
    the model: the map inherits the image's own structure (see the sanity check)."""
    inputs = _check_images(inputs).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        score = logits.gather(1, _targets(target, logits)[:, None]).sum()
        gradients, = torch.autograd.grad(score, inputs)
    return (inputs.detach() * gradients).sum(dim=1)


# --------------------------------------------------------------------------------------------------
# The model-randomisation sanity check
# --------------------------------------------------------------------------------------------------
def _average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..n of a 1-D tensor, ties sharing their average rank (as scipy.stats.rankdata)."""
    sorted_values, order = torch.sort(values)
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()                                   # last rank of each tie group
    average = ends - (counts.double() - 1) / 2
    ranks = torch.empty(values.numel(), dtype=torch.float64, device=values.device)
    ranks[order] = average[inverse]
    return ranks


def spearman_correlation(first: Tensor, second: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of maps: (batch, ...) x (batch, ...) -> (batch,) float64.

    The Pearson correlation of the (tie-averaged) ranks, as ``scipy.stats.spearmanr``; a constant map has no
    ranking and gives NaN.
    """
    if not isinstance(first, Tensor) or not isinstance(second, Tensor) or first.shape != second.shape:
        raise ValueError(f"need two tensors of one shape (batch, ...), got "
                         f"{getattr(first, 'shape', type(first).__name__)} and {getattr(second, 'shape', type(second).__name__)}")
    if first.dim() < 2:
        raise ValueError(f"maps must be (batch, ...) with at least one value per map, got shape {tuple(first.shape)}")
    out = []
    for a, b in zip(first.detach().flatten(1), second.detach().flatten(1)):
        ra, rb = _average_ranks(a) - (a.numel() + 1) / 2, _average_ranks(b) - (b.numel() + 1) / 2
        out.append((ra * rb).sum() / torch.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return torch.stack(out)


def randomize_layer_(module: nn.Module, generator_seed: int = 0) -> nn.Module:
    """Re-initialise, in place, every sub-module of ``module`` that has ``reset_parameters`` (Linear, Conv,
    LayerNorm, BatchNorm, ...), with a seeded generator; return ``module``."""
    resettable = [m for m in module.modules() if callable(getattr(m, "reset_parameters", None))]
    if not resettable:
        raise ValueError(f"{type(module).__name__} has no sub-module with reset_parameters(): nothing to randomise")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        for m in resettable:
            m.reset_parameters()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                # reset_parameters sets weight 1, bias 0, running mean 0 and var 1; draw the affine part
                # at random too, so the layer is really destroyed rather than set to the identity
                nn.init.normal_(m.weight, 1.0, 0.5), nn.init.normal_(m.bias, 0.0, 0.5)
    return module


def cascading_randomization(model: nn.Module, layer_names: Sequence[str],
                            explain: Callable[[nn.Module, Tensor], Tensor], inputs: Tensor, *,
                            absolute: bool = True, seed: int = 0) -> list[tuple[str, Tensor]]:
    """Adebayo et al.'s cascading model-parameter randomisation.

    ``layer_names`` are names of ``model``'s sub-modules (``model.get_submodule``), ordered **from the output
    down**.  A copy of the model has them re-initialised one after another, cumulatively; after each, the maps
    ``explain(copy, inputs)`` (batch, H, W) are compared with those of the trained model by Spearman rank
    correlation (of absolute values if ``absolute``).  Returns [(layer name, correlations (batch,)), ...];
    the trained model itself is not changed.
    """
    _check_images(inputs)
    if isinstance(layer_names, str) or not layer_names:
        raise ValueError(f"layer_names must be a non-empty sequence of sub-module names, got {layer_names!r}")
    names = dict(model.named_modules())
    unknown = [name for name in layer_names if name not in names]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; the model has e.g. {[n for n in names if n][:8]}")
    prepare = (lambda maps: maps.abs()) if absolute else (lambda maps: maps)
    reference = prepare(explain(model, inputs))
    randomized = copy.deepcopy(model)
    results = []
    for index, name in enumerate(layer_names):
        randomize_layer_(randomized.get_submodule(name), seed + index)
        maps = prepare(explain(randomized, inputs))
        if maps.shape != reference.shape:
            raise ValueError(f"explain returned maps of shape {tuple(maps.shape)}, expected {tuple(reference.shape)}")
        results.append((name, spearman_correlation(reference, maps)))
    return results


# --------------------------------------------------------------------------------------------------
# Deletion and insertion
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def deletion_insertion_curves(model: nn.Module, inputs: Tensor, saliency: Tensor, target, *, steps: int = 16,
                              baseline: float | Tensor = 0.0, insertion: bool = False) -> Tensor:
    """The class probability as pixels are removed (or inserted) in the order ``saliency`` ranks them.

    ``inputs`` (batch, C, H, W), ``saliency`` (batch, H, W), ``target`` class indices.  Step k of ``steps``
    replaces the top k/steps of the pixels (all channels) by ``baseline`` (deletion), or starts from
    ``baseline`` everywhere and puts back the top k/steps of the pixels (insertion).  Returns the softmax
    probability of the target class, (batch, steps + 1), from 0 % to 100 % of the pixels.
    """
    inputs = _check_images(inputs)
    batch, channels, height, width = inputs.shape
    if not isinstance(saliency, Tensor) or saliency.shape != (batch, height, width):
        raise ValueError(f"saliency must be (batch, H, W) = {(batch, height, width)}, got "
                         f"{tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    logits = model(inputs)
    classes = _targets(target, logits)
    pixels = height * width
    order = saliency.flatten(1).argsort(dim=1, descending=True)               # (batch, H*W), most important first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=order.device).expand(batch, -1))   # rank of each pixel
    background = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
    probabilities = []
    for step in range(steps + 1):
        chosen = (rank < round(step * pixels / steps)).view(batch, 1, height, width)   # top pixels so far
        if insertion:
            images = torch.where(chosen, inputs, background)
        else:
            images = torch.where(chosen, background, inputs)
        probabilities.append(model(images).softmax(dim=-1).gather(1, classes[:, None])[:, 0])
    return torch.stack(probabilities, dim=1)                                  # (batch, steps + 1)


def curve_area(curve: Tensor) -> Tensor:
    """Area under curves sampled at equally spaced fractions 0..1 of the pixels (trapezoid rule): (..., steps + 1)
    -> (...)."""
    if not isinstance(curve, Tensor) or curve.dim() < 1 or curve.size(-1) < 2:
        raise ValueError(f"curve must be a tensor (..., points >= 2), got "
                         f"{tuple(curve.shape) if isinstance(curve, Tensor) else type(curve).__name__}")
    return torch.trapezoid(curve, dx=1.0 / (curve.size(-1) - 1), dim=-1)

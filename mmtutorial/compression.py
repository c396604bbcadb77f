"""Making a trained model small: int8 affine quantisation and magnitude pruning, from scratch.

Affine (asymmetric) quantisation maps a real interval [lo, hi] (always containing 0, so that 0 is stored
exactly) onto the integers [q_min, q_max] of a b-bit signed type (q_min = -2^(b-1), q_max = 2^(b-1) - 1):

    scale      s = (hi - lo) / (q_max - q_min)
    zero point z = clamp(q_min - round(lo / s), q_min, q_max)
    quantise   q = clamp(round(x / s) + z, q_min, q_max)          (round half to even, as torch does)
    dequantise x' = s (q - z)                                      |x - x'| <= s / 2 inside [lo, hi]

Symmetric quantisation fixes z = 0 and s = max|x| / ((q_max - q_min) / 2), which wastes half a level but
makes the integer matmul simpler.  *Per-channel* quantisation gives every output channel (row of a weight
matrix, filter of a conv kernel) its own s and z: one outlier row no longer coarsens every other row.
These are the formulas of PyTorch's ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` and of
``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``; ``tests/test_compression.py`` checks each.

Magnitude pruning (Han et al., 2015) sets the fraction ``amount`` of weights with the smallest |w| to zero,
per layer or over all layers at once ("global": layers compete for the surviving weights).  The masks are
attached with ``torch.nn.utils.prune.custom_from_mask`` so fine-tuning keeps the zeros, and
:func:`make_pruning_permanent` folds them into the weights.

Sizes are measured, never estimated: :func:`serialized_size` is the number of bytes ``torch.save`` writes.
"""
from __future__ import annotations

import io
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from .checks import describe

__all__ = ["quantization_range", "quantization_params", "quantize", "dequantize", "QuantizedTensor",
           "quantize_tensor", "quantize_state_dict", "dequantize_state_dict", "l1_unstructured_mask",
           "prunable_parameters", "magnitude_prune", "make_pruning_permanent", "sparsity", "serialized_size",
           "sparse_state_dict", "dense_state_dict"]

_EPS = torch.finfo(torch.float32).eps      # the smallest scale, as in torch's observers (a constant tensor
                                           # would otherwise get scale 0 and divide by zero)


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------
def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"bits must be an int in [2, 8], got {describe(bits)}")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8] (the values are stored as int8), got {bits}")
    return int(bits)


def _check_float_tensor(tensor, name: str = "tensor") -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(tensor)}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor to quantise or prune, got dtype {tensor.dtype}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}): there is nothing to quantise")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} holds NaN or infinite values: no finite range can be quantised")
    return tensor


def _check_axis(axis, tensor: Tensor) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int or None (per-tensor), got {describe(axis)}")
    if not -tensor.dim() <= axis < tensor.dim():
        raise ValueError(f"axis {axis} is out of range for a tensor of shape {tuple(tensor.shape)} "
                         f"(expected -{tensor.dim()} <= axis < {tensor.dim()})")
    return int(axis) % tensor.dim()


def _check_amount(amount) -> float:
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"amount must be a fraction in [0, 1), got {describe(amount)}")
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be a fraction in [0, 1) of the weights to remove, got {amount!r}")
    return float(amount)


def _channel_view(values: Tensor, axis: int | None, ndim: int) -> Tensor:
    """Per-channel scales (C,) shaped to broadcast along ``axis`` of an ``ndim``-dimensional tensor."""
    if axis is None:
        return values
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


# --------------------------------------------------------------------------------------------------
# Affine quantisation
# --------------------------------------------------------------------------------------------------
def quantization_range(bits: int = 8) -> tuple[int, int]:
    """(q_min, q_max) of a signed ``bits``-bit integer: (-128, 127) for 8 bits."""
    bits = _check_bits(bits)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def quantization_params(tensor: Tensor, bits: int = 8, symmetric: bool = True,
                        axis: int | None = None) -> tuple[Tensor, Tensor]:
    """Scale (float32) and zero point (int64) from the tensor's min and max: shape () per tensor, or (C,)
    for ``axis`` = the channel axis (C = tensor.shape[axis]).  The same values as torch's
    ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` (qint8, ``per_*_symmetric`` or ``per_*_affine``)."""
    tensor = _check_float_tensor(tensor).detach().float()
    axis = _check_axis(axis, tensor)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric must be True or False, got {describe(symmetric)}")
    q_min, q_max = quantization_range(bits)
    if axis is None:
        lo, hi = tensor.min(), tensor.max()                                  # () each
    else:
        rows = tensor.movedim(axis, 0).flatten(1)                            # (C, rest)
        lo, hi = rows.min(dim=1).values, rows.max(dim=1).values              # (C,) each
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)          # the range always holds 0, so 0 is exact
    if symmetric:
        scale = torch.maximum(-lo, hi) / ((q_max - q_min) / 2)
        scale = scale.clamp(min=_EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = ((hi - lo) / (q_max - q_min)).clamp(min=_EPS)
        zero_point = (q_min - torch.round(lo / scale)).to(torch.int64).clamp(q_min, q_max)
    return scale, zero_point


def quantize(tensor: Tensor, scale: Tensor, zero_point: Tensor, bits: int = 8,
             axis: int | None = None) -> Tensor:
    """q = clamp(round(x / s) + z, q_min, q_max) as int8; ``scale``/``zero_point`` of shape () or (C,) along
    ``axis``.  Equals ``torch.quantize_per_tensor(...).int_repr()`` / ``quantize_per_channel``."""
    tensor = _check_float_tensor(tensor)
    axis = _check_axis(axis, tensor)
    q_min, q_max = quantization_range(bits)
    scale, zero_point = torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(zero_point)
    expected = () if axis is None else (tensor.shape[axis],)
    if tuple(scale.shape) not in (expected, (1,) if axis is None else expected) or scale.shape != zero_point.shape:
        raise ValueError(f"scale and zero_point must both have shape {expected} "
                         f"({'per tensor' if axis is None else f'one per channel along axis {axis}'}), got "
                         f"{tuple(scale.shape)} and {tuple(zero_point.shape)}")
    if bool((scale <= 0).any()):
        raise ValueError("every scale must be > 0")
    scale = _channel_view(scale.reshape(expected), axis, tensor.dim())
    zero_point = _channel_view(zero_point.reshape(expected), axis, tensor.dim())
    # x * (1 / s), as torch's kernels compute it, so that round() sees the same float32 value
    q = torch.round(tensor.float() * (1.0 / scale)) + zero_point
    return q.clamp(q_min, q_max).to(torch.int8)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, axis: int | None = None) -> Tensor:
    """x' = s (q - z) in float32; ``axis`` as in :func:`quantize`."""
    if not isinstance(q, Tensor) or q.dtype not in (torch.int8, torch.uint8, torch.int32, torch.int64):
        raise TypeError(f"q must be an integer tensor (int8), got {describe(q)}")
    axis = _check_axis(axis, q)
    expected = () if axis is None else (q.shape[axis],)
    scale = _channel_view(torch.as_tensor(scale, dtype=torch.float32).reshape(expected), axis, q.dim())
    zero_point = _channel_view(torch.as_tensor(zero_point).reshape(expected), axis, q.dim())
    return (q.to(torch.int32) - zero_point).float() * scale


@dataclass
class QuantizedTensor:
    """An int8 tensor with the scale and zero point that map it back to real numbers."""
    values: Tensor          # int8, the shape of the original tensor
    scale: Tensor           # float32, () per tensor or (C,) per channel
    zero_point: Tensor      # int64, the shape of scale
    axis: int | None        # channel axis of a per-channel tensor, None per tensor

    def dequantize(self) -> Tensor:
        return dequantize(self.values, self.scale, self.zero_point, self.axis)

    def state(self) -> dict[str, Tensor]:
        """Plain tensors for ``torch.save`` (what the size on disk counts)."""
        return {"values": self.values, "scale": self.scale, "zero_point": self.zero_point,
                "axis": torch.tensor(-1 if self.axis is None else self.axis)}


def quantize_tensor(tensor: Tensor, bits: int = 8, symmetric: bool = True,
                    axis: int | None = None) -> QuantizedTensor:
    """Quantise ``tensor`` with parameters from its own range (post-training, no calibration data needed
    for weights)."""
    scale, zero_point = quantization_params(tensor, bits, symmetric, axis)
    axis = _check_axis(axis, tensor)
    return QuantizedTensor(quantize(tensor, scale, zero_point, bits, axis), scale, zero_point, axis)


def quantize_state_dict(model_or_state, bits: int = 8, symmetric: bool = True,
                        per_channel: bool = True) -> dict[str, object]:
    """Every weight matrix and conv kernel (floating tensors with >= 2 dimensions) of a model or state dict
    as int8 + scales (per output channel, axis 0, when ``per_channel``); biases, norms and buffers kept.

    The result is what a compressed checkpoint stores: ``{name: {"values", "scale", "zero_point", "axis"}}``
    for the quantised tensors, ``{name: tensor}`` for the rest.  :func:`dequantize_state_dict` undoes it.
    """
    state = _state_dict_of(model_or_state)
    compressed: dict[str, object] = {}
    for name, tensor in state.items():
        if isinstance(tensor, Tensor) and tensor.is_floating_point() and tensor.dim() >= 2:
            compressed[name] = quantize_tensor(tensor, bits, symmetric, 0 if per_channel else None).state()
        else:
            compressed[name] = tensor
    return compressed


def dequantize_state_dict(compressed: dict[str, object]) -> dict[str, Tensor]:
    """Float32 state dict from :func:`quantize_state_dict`'s output (to load into the float model)."""
    if not isinstance(compressed, dict):
        raise TypeError(f"expected the dict that quantize_state_dict returns, got {describe(compressed)}")
    state = {}
    for name, value in compressed.items():
        if isinstance(value, dict):
            axis = int(value["axis"])
            state[name] = dequantize(value["values"], value["scale"], value["zero_point"],
                                     None if axis < 0 else axis)
        else:
            state[name] = value
    return state


# --------------------------------------------------------------------------------------------------
# Magnitude pruning
# --------------------------------------------------------------------------------------------------
def l1_unstructured_mask(tensor: Tensor, amount: float) -> Tensor:
    """Mask (same shape, float 0/1) that zeroes the round(amount * numel) entries of smallest |w|.

    The count rounds as ``torch.nn.utils.prune.l1_unstructured`` does, and the same entries go."""
    tensor = _check_float_tensor(tensor).detach()
    amount = _check_amount(amount)
    num_pruned = round(amount * tensor.numel())
    mask = torch.ones_like(tensor)
    if num_pruned:
        smallest = torch.topk(tensor.abs().flatten(), k=num_pruned, largest=False).indices   # (num_pruned,)
        mask.view(-1)[smallest] = 0.0
    return mask


def prunable_parameters(model: nn.Module, types: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
                        ) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every layer of the given types: what magnitude pruning usually prunes
    (biases and norms are few and matter)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {describe(model)}")
    pairs = [(module, "weight") for module in model.modules() if isinstance(module, types)]
    if not pairs:
        raise ValueError(f"the model has no layers of types {[t.__name__ for t in types]} to prune")
    return pairs


def magnitude_prune(model: nn.Module, amount: float, scope: str = "global",
                    types: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)) -> dict[str, Tensor]:
    """Zero the ``amount`` of weights with the smallest |w|, per layer (``scope="layer"``) or across all
    layers at once (``"global"``), and keep them zero during fine-tuning (masks via
    ``prune.custom_from_mask``).  Returns ``{module_name.weight: mask}``.

    ``global`` matches ``prune.global_unstructured(..., prune.L1Unstructured, amount)``; ``layer`` matches
    ``prune.l1_unstructured`` applied to each layer."""
    amount = _check_amount(amount)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    pairs = prunable_parameters(model, types)
    names = {id(module): name for name, module in model.named_modules()}
    weights = [getattr(module, attribute).detach() for module, attribute in pairs]
    if scope == "layer":
        masks = [l1_unstructured_mask(weight, amount) for weight in weights]
    else:
        flat = torch.cat([weight.flatten() for weight in weights])            # (all weights,)
        flat_mask = l1_unstructured_mask(flat, amount)
        masks = [chunk.view_as(weight) for chunk, weight in
                 zip(flat_mask.split([w.numel() for w in weights]), weights)]
    result = {}
    for (module, attribute), mask in zip(pairs, masks):
        prune.custom_from_mask(module, attribute, mask)
        result[f"{names[id(module)]}.{attribute}"] = mask
    return result


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (``prune.remove``): plain parameters with zeros remain."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def sparsity(model_or_state) -> float:
    """Fraction of zeros among the weight matrices and conv kernels (tensors with >= 2 dimensions).

    Measured on the effective weights: call :func:`make_pruning_permanent` first on a model that still
    carries pruning masks (its state dict holds ``weight_orig`` and ``weight_mask`` instead of ``weight``)."""
    state = _state_dict_of(model_or_state)
    if any(name.endswith("_mask") for name in state):
        raise ValueError("the model still carries pruning masks (weight_orig/weight_mask); call "
                         "make_pruning_permanent(model) first, then measure its sparsity")
    tensors = [t for t in state.values() if isinstance(t, Tensor) and t.is_floating_point() and t.dim() >= 2]
    if not tensors:
        raise ValueError("no weight matrices or kernels (tensors with >= 2 dimensions) to measure")
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return zeros / sum(t.numel() for t in tensors)


# --------------------------------------------------------------------------------------------------
# Size on disk
# --------------------------------------------------------------------------------------------------
def _state_dict_of(model_or_state) -> dict:
    if isinstance(model_or_state, nn.Module):
        return model_or_state.state_dict()
    if isinstance(model_or_state, dict):
        return model_or_state
    raise TypeError(f"expected an nn.Module or a state dict, got {describe(model_or_state)}")


def serialized_size(model_or_state) -> int:
    """Bytes that ``torch.save`` writes for a model's state dict (or any state dict): the size on disk."""
    buffer = io.BytesIO()
    state = _state_dict_of(model_or_state)
    # A state dict's tensors may be views into larger storages; torch.save would write the whole storage.
    torch.save({k: (v.clone() if isinstance(v, Tensor) and not v.is_quantized and v.layout == torch.strided
                    else v) for k, v in state.items()}, buffer)
    return buffer.getbuffer().nbytes


def sparse_state_dict(model_or_state, min_sparsity: float = 0.5) -> dict[str, object]:
    """Weights with at least ``min_sparsity`` zeros stored in compressed sparse row form (CSR: the kept
    values, their int32 column indices and the row offsets of the weight's (rows, rest) view), the rest
    dense.  CSR costs 8 bytes per kept float32 weight against 4 for every weight dense, so it pays only
    beyond 1/2 sparsity: measured, not assumed."""
    min_sparsity = _check_amount(min_sparsity)
    sparse = {}
    for name, tensor in _state_dict_of(model_or_state).items():
        if (isinstance(tensor, Tensor) and tensor.is_floating_point() and tensor.dim() >= 2
                and float((tensor == 0).float().mean()) >= min_sparsity):
            rows = tensor.detach().reshape(tensor.shape[0], -1)                 # (out channels, rest)
            kept = rows != 0
            sparse[name] = {"values": rows[kept],                                # (kept,) in row-major order
                            "columns": kept.nonzero()[:, 1].to(torch.int32),     # (kept,)
                            "row_offsets": torch.cat([torch.zeros(1, dtype=torch.int32),
                                                      kept.sum(dim=1).cumsum(0).to(torch.int32)]),  # (rows + 1,)
                            "shape": torch.tensor(tensor.shape)}
        else:
            sparse[name] = tensor
    return sparse


def dense_state_dict(sparse: dict[str, object]) -> dict[str, Tensor]:
    """Undo :func:`sparse_state_dict`."""
    if not isinstance(sparse, dict):
        raise TypeError(f"expected the dict that sparse_state_dict returns, got {describe(sparse)}")
    dense = {}
    for name, value in sparse.items():
        if isinstance(value, dict):
            shape = value["shape"].tolist()
            rows = torch.zeros(shape[0], value["shape"][1:].prod().item() if len(shape) > 1 else 1,
                               dtype=value["values"].dtype)                    # (out channels, rest)
            row_ids = torch.repeat_interleave(torch.arange(shape[0]), value["row_offsets"].diff())  # (kept,)
            rows[row_ids, value["columns"].long()] = value["values"]
            dense[name] = rows.reshape(shape)
        else:
            dense[name] = value
    return dense


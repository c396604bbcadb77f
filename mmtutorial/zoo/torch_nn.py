"""Weights from PyTorch's own layers into ours: ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, ``nn.LSTM``.

Chapters 6 and 9 check their from-scratch layers by loading the weights of the PyTorch layer they imitate and
comparing outputs.  Each correspondence is an explicit key map (PyTorch's name -> ours) and every load goes
through the package's one checked loader, ``checkpoint.load_converted_state_dict`` (missing, unexpected or
mis-shaped tensors are named in the error).

- ``nn.MultiheadAttention`` keeps Q, K and V stacked in ``in_proj_weight`` (3 d, d) in the order q, k, v when
  ``kdim = vdim = embed_dim``: exactly our ``qkv_proj``.  Otherwise it has ``q_proj_weight``, ``k_proj_weight``,
  ``v_proj_weight`` and still one stacked ``in_proj_bias``, which is cut into three.
- ``nn.TransformerEncoderLayer`` is ``self_attn`` + ``linear1``/``linear2`` (our ``mlp.fc``/``mlp.proj``) +
  ``norm1``/``norm2``.
- ``nn.LSTM`` names its tensors ``weight_ih_l{layer}`` ...; ours are ``cells.{layer}.weight_ih`` ...
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checkpoint import load_converted_state_dict
from ..encoders.text import LSTM
from ..nn import MultiHeadAttention, TransformerBlock

__all__ = ["mha_key_map", "load_torch_mha", "mha_from_torch", "encoder_layer_key_map", "load_torch_encoder_layer",
           "lstm_key_map", "lstm_from_torch"]


def _require(module, kind: type, what: str) -> None:
    if not isinstance(module, kind):
        raise TypeError(f"{what} must be a torch.nn.{kind.__name__}, got {type(module).__name__}")


# --------------------------------------------------------------------------------------------------
# nn.MultiheadAttention
# --------------------------------------------------------------------------------------------------
def mha_key_map(packed: bool, bias: bool = True, prefix: str = "", our_prefix: str = "") -> dict[str, str]:
    """``nn.MultiheadAttention`` name -> ours.  Unpacked projections share one stacked ``in_proj_bias``:
    it maps to the three biases ``q_proj.bias``, ``k_proj.bias``, ``v_proj.bias`` (cut in that order)."""
    if packed:
        mapping = {"in_proj_weight": "qkv_proj.weight"}
        if bias:
            mapping["in_proj_bias"] = "qkv_proj.bias"
    else:
        mapping = {f"{name}_proj_weight": f"{name}_proj.weight" for name in "qkv"}
        if bias:
            mapping["in_proj_bias"] = "q_proj.bias k_proj.bias v_proj.bias"
    mapping["out_proj.weight"] = "out_proj.weight"
    if bias:
        mapping["out_proj.bias"] = "out_proj.bias"
    return {prefix + theirs: " ".join(our_prefix + name for name in ours.split()) for theirs, ours in mapping.items()}


def _convert(state: dict[str, Tensor], mapping: dict[str, str]) -> dict[str, Tensor]:
    """Rename ``state`` by ``mapping``; a target of several names (space-separated) gets the tensor cut in as many."""
    missing = [key for key in mapping if key not in state]
    if missing:
        raise ValueError(f"the PyTorch state dict lacks {missing[:5]} (does the module's configuration match?)")
    converted = {}
    for theirs, ours in mapping.items():
        names = ours.split()
        pieces = state[theirs].chunk(len(names)) if len(names) > 1 else (state[theirs],)
        converted.update(zip(names, pieces))
    return converted


@torch.no_grad()
def load_torch_mha(module: MultiHeadAttention, torch_mha: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy an ``nn.MultiheadAttention``'s weights into our ``module`` so that both give the same output.

    Remember the mask conventions when comparing outputs: torch's bool ``attn_mask`` True = blocked, ours
    True = allowed (pass ``~mask`` to one of them).
    """
    if not isinstance(module, MultiHeadAttention):
        raise TypeError(f"module must be an mmtutorial MultiHeadAttention, got {type(module).__name__}")
    _require(torch_mha, nn.MultiheadAttention, "torch_mha")
    ours = (module.embed_dim, module.num_heads, module.kdim, module.vdim, module.out_proj.bias is not None)
    theirs = (torch_mha.embed_dim, torch_mha.num_heads, torch_mha.kdim, torch_mha.vdim,
              torch_mha.in_proj_bias is not None)
    if ours != theirs:
        raise ValueError(f"shape mismatch: ours (embed_dim, num_heads, kdim, vdim, bias) = {ours}, torch's = {theirs}")
    if torch_mha.bias_k is not None or torch_mha.add_zero_attn:
        raise ValueError("add_bias_kv and add_zero_attn are not supported")
    converted = _convert(torch_mha.state_dict(), mha_key_map(module.packed, theirs[-1]))
    load_converted_state_dict(module, converted, source="nn.MultiheadAttention", config_name="MultiHeadAttention")
    return module


def mha_from_torch(torch_mha: nn.MultiheadAttention, use_fused: bool = True) -> MultiHeadAttention:
    """A new ``MultiHeadAttention`` with the configuration and weights of ``torch_mha``.

    The weights do not depend on torch's ``batch_first``; ours always takes (batch, seq, feature).
    """
    _require(torch_mha, nn.MultiheadAttention, "torch_mha")
    weight = torch_mha.out_proj.weight
    module = MultiHeadAttention(torch_mha.embed_dim, torch_mha.num_heads, dropout=torch_mha.dropout,
                                bias=torch_mha.in_proj_bias is not None, kdim=torch_mha.kdim, vdim=torch_mha.vdim,
                                use_fused=use_fused, device=weight.device, dtype=weight.dtype)
    return load_torch_mha(module, torch_mha)


# --------------------------------------------------------------------------------------------------
# nn.TransformerEncoderLayer
# --------------------------------------------------------------------------------------------------
def encoder_layer_key_map(bias: bool = True) -> dict[str, str]:
    """``nn.TransformerEncoderLayer`` name -> our ``TransformerBlock`` name."""
    mapping = mha_key_map(packed=True, bias=bias, prefix="self_attn.", our_prefix="attn.")
    kinds = ("weight", "bias") if bias else ("weight",)
    for theirs, ours in (("linear1", "mlp.fc"), ("linear2", "mlp.proj"), ("norm1", "norm1"), ("norm2", "norm2")):
        mapping.update({f"{theirs}.{kind}": f"{ours}.{kind}" for kind in kinds})
    return mapping


@torch.no_grad()
def load_torch_encoder_layer(block: TransformerBlock, layer: nn.TransformerEncoderLayer) -> TransformerBlock:
    """Copy an ``nn.TransformerEncoderLayer``'s weights into ``block`` (its ``norm_first`` must match
    ``block.config.norm``, its activation ``block.config.activation``); both then compute the same function."""
    if not isinstance(block, TransformerBlock):
        raise TypeError(f"block must be an mmtutorial TransformerBlock, got {type(block).__name__}")
    _require(layer, nn.TransformerEncoderLayer, "layer")
    config = block.config
    if layer.norm_first != (config.norm == "pre"):
        raise ValueError(f"norm mismatch: torch layer has norm_first={layer.norm_first}, "
                         f"this block has norm={config.norm!r}")
    torch_activation = {1: "relu", 2: "gelu"}.get(getattr(layer, "activation_relu_or_gelu", 0))
    if torch_activation != config.activation:
        raise ValueError(f"activation mismatch: torch layer uses {torch_activation or layer.activation!r}, "
                         f"this block {config.activation!r}")
    if layer.linear1.out_features != config.mlp_hidden_dim:
        raise ValueError(f"MLP size mismatch: torch dim_feedforward={layer.linear1.out_features}, "
                         f"ours {config.mlp_hidden_dim}")
    converted = _convert(layer.state_dict(), encoder_layer_key_map(bias=layer.linear1.bias is not None))
    # Buffers of ours that torch has no counterpart for (e.g. a rotary table) are kept as they are.
    converted.update({name: value for name, value in block.state_dict().items() if name not in converted})
    load_converted_state_dict(block, converted, source="nn.TransformerEncoderLayer", config_name="TransformerConfig")
    return block


# --------------------------------------------------------------------------------------------------
# nn.LSTM
# --------------------------------------------------------------------------------------------------
def lstm_key_map(num_layers: int, bias: bool = True) -> dict[str, str]:
    """``nn.LSTM`` name -> ours, e.g. ``weight_ih_l0`` -> ``cells.0.weight_ih``."""
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ())
    return {f"{name}_l{layer}": f"cells.{layer}.{name}" for layer in range(num_layers) for name in names}


def lstm_from_torch(reference: nn.LSTM) -> LSTM:
    """Our from-scratch ``LSTM`` with the configuration and weights of ``reference`` (same outputs and states)."""
    _require(reference, nn.LSTM, "reference")
    if reference.bidirectional or reference.proj_size or reference.dropout:
        raise ValueError("only unidirectional nn.LSTM without projection or dropout is supported, got "
                         f"bidirectional={reference.bidirectional}, proj_size={reference.proj_size}, "
                         f"dropout={reference.dropout}")
    model = LSTM(reference.input_size, reference.hidden_size, reference.num_layers, reference.bias,
                 reference.batch_first, dtype=reference.weight_ih_l0.dtype)
    converted = _convert(reference.state_dict(), lstm_key_map(reference.num_layers, reference.bias))
    load_converted_state_dict(model, converted, source="nn.LSTM", config_name="LSTM")
    return model

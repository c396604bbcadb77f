"""torchvision's ViT and ResNet weights in our models, each through the one checked loader.

ViT
---
``torchvision_vit_key_map`` names, for every parameter of a torchvision ``VisionTransformer``, the
parameter of our ``mmtutorial.models.vit.ViT`` that holds it.  torchvision packs Q, K and V in
``in_proj_weight`` (3d, d) in the order Q, K, V, which is exactly the layout of our ``qkv_proj``; its
position embedding is (1, 1 + N, d), ours an ``nn.Embedding`` table (1 + N, d) (the same numbers).
``config_from_torchvision_vit`` reads a torchvision ViT's configuration off the module.

ResNet
------
``mmtutorial.encoders.vision.ResNet`` was written with torchvision's parameter names, so the key map of
``torchvision.models.resnet18`` is the identity; ``load_torchvision_resnet`` still checks every name and
shape (a ResNet-50 state dict, with its bottleneck blocks, is refused with the keys at fault).

Both loaders go through ``mmtutorial.checkpoint.load_converted_state_dict``: strict, shapes checked.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checkpoint import describe_keys, load_converted_state_dict
from ..encoders.vision import ResNet
from ..models.vit import ViT, ViTConfig

__all__ = ["torchvision_vit_key_map", "config_from_torchvision_vit", "load_torchvision_vit",
           "torchvision_resnet_key_map", "load_torchvision_resnet"]

_POSITIONS = "encoder.pos_embedding"   # (1, 1 + N, d) in torchvision, (1 + N, d) in ours


def _check_names(theirs: dict[str, Tensor], mapping: dict[str, str], what: str) -> None:
    """Every key of ``theirs`` has a mapping and every mapped key is present; else name them."""
    unknown = [key for key in theirs if key not in mapping]
    missing = [key for key in mapping if key not in theirs]
    if unknown or missing:
        raise ValueError(f"the torchvision state dict does not fit this {what}: names without a mapping "
                         f"[{describe_keys(unknown)}]; mapped names it lacks [{describe_keys(missing)}]")


# --------------------------------------------------------------------------------------------------
# ViT
# --------------------------------------------------------------------------------------------------
def torchvision_vit_key_map(num_layers: int, head: bool = True) -> dict[str, str]:
    """torchvision ``VisionTransformer`` parameter name -> ours, for every parameter, in order."""
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    mapping = {"class_token": "class_token",
               "conv_proj.weight": "patch_embedding.proj.weight",
               "conv_proj.bias": "patch_embedding.proj.bias",
               _POSITIONS: "position_embedding.embedding.weight"}
    for i in range(num_layers):
        theirs, ours = f"encoder.layers.encoder_layer_{i}", f"encoder.blocks.{i}"
        mapping.update({
            f"{theirs}.ln_1.weight": f"{ours}.norm1.weight",
            f"{theirs}.ln_1.bias": f"{ours}.norm1.bias",
            f"{theirs}.self_attention.in_proj_weight": f"{ours}.attn.qkv_proj.weight",
            f"{theirs}.self_attention.in_proj_bias": f"{ours}.attn.qkv_proj.bias",
            f"{theirs}.self_attention.out_proj.weight": f"{ours}.attn.out_proj.weight",
            f"{theirs}.self_attention.out_proj.bias": f"{ours}.attn.out_proj.bias",
            f"{theirs}.ln_2.weight": f"{ours}.norm2.weight",
            f"{theirs}.ln_2.bias": f"{ours}.norm2.bias",
            f"{theirs}.mlp.0.weight": f"{ours}.mlp.fc.weight",     # MLPBlock = Linear, GELU, Dropout, Linear, Dropout
            f"{theirs}.mlp.0.bias": f"{ours}.mlp.fc.bias",
            f"{theirs}.mlp.3.weight": f"{ours}.mlp.proj.weight",
            f"{theirs}.mlp.3.bias": f"{ours}.mlp.proj.bias",
        })
    mapping.update({"encoder.ln.weight": "encoder.norm.weight", "encoder.ln.bias": "encoder.norm.bias"})
    if head:
        mapping.update({"heads.head.weight": "head.weight", "heads.head.bias": "head.bias"})
    return mapping


def _check_torchvision_vit(tv_model) -> None:
    from torchvision.models.vision_transformer import VisionTransformer

    if not isinstance(tv_model, VisionTransformer):
        raise TypeError(f"expected torchvision.models.VisionTransformer, got {type(tv_model).__name__}")
    if tv_model.representation_size is not None or not isinstance(tv_model.conv_proj, nn.Conv2d):
        raise ValueError("only torchvision ViTs with a single-Linear head and a patch convolution are supported")


def config_from_torchvision_vit(tv_model: nn.Module) -> ViTConfig:
    """The ``ViTConfig`` of a torchvision ``VisionTransformer`` (class token, exact GELU, LayerNorm eps 1e-6)."""
    _check_torchvision_vit(tv_model)
    first_layer = tv_model.encoder.layers[0]
    return ViTConfig(image_size=tv_model.image_size, patch_size=tv_model.patch_size,
                     in_channels=tv_model.conv_proj.in_channels, num_classes=tv_model.num_classes,
                     dim=tv_model.hidden_dim, num_layers=len(tv_model.encoder.layers),
                     num_heads=first_layer.num_heads, mlp_ratio=tv_model.mlp_dim / tv_model.hidden_dim,
                     dropout=tv_model.dropout, layer_norm_eps=first_layer.ln_1.eps)


@torch.no_grad()
def load_torchvision_vit(model: ViT, tv_model: nn.Module) -> ViT:
    """Copy a torchvision ``VisionTransformer``'s weights into ``model`` by ``torchvision_vit_key_map``.

    Every name and every tensor's shape is checked and the load is ``strict``.
    """
    if not isinstance(model, ViT):
        raise TypeError(f"expected an mmtutorial ViT, got {type(model).__name__}")
    _check_torchvision_vit(tv_model)
    theirs = tv_model.state_dict()
    mapping = torchvision_vit_key_map(model.config.num_layers, head=model.config.num_classes > 0)
    _check_names(theirs, mapping, f"{model.config.num_layers}-layer ViT")
    converted = {ours: theirs[name] for name, ours in mapping.items()}
    converted[mapping[_POSITIONS]] = theirs[_POSITIONS].squeeze(0)          # (1, 1 + N, d) -> (1 + N, d)
    load_converted_state_dict(model, converted, source="torchvision", config_name="ViTConfig")
    return model


# --------------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------------
def torchvision_resnet_key_map(model: ResNet) -> dict[str, str]:
    """torchvision ResNet name -> ours: the identity on every name of ``model``'s state dict (our ResNet was
    written with torchvision's names: ``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``)."""
    if not isinstance(model, ResNet):
        raise TypeError(f"expected an mmtutorial.encoders.vision.ResNet, got {type(model).__name__}")
    return {name: name for name in model.state_dict()}


@torch.no_grad()
def load_torchvision_resnet(model: ResNet, weights: nn.Module | dict[str, Tensor]) -> ResNet:
    """Copy the weights of a torchvision ResNet with basic blocks (``torchvision.models.resnet18``, a module
    or its state dict, BatchNorm statistics included) into our ``ResNet``: every name and shape checked."""
    theirs = weights.state_dict() if isinstance(weights, nn.Module) else weights
    if not isinstance(theirs, dict):
        raise TypeError(f"weights must be a torchvision ResNet or its state dict, got {type(weights).__name__}")
    mapping = torchvision_resnet_key_map(model)
    _check_names(theirs, mapping, f"ResNet with layers={model.config.layers}")
    converted = {ours: theirs[name] for name, ours in mapping.items()}
    load_converted_state_dict(model, converted, source="torchvision", config_name="ResNetConfig")
    return model

"""transformers' ``ViTMAEForPreTraining`` weights in our :class:`~mmtutorial.models.mae.MAE`.

``vitmae_key_map`` names, for every tensor of their state dict, the tensor of ours that holds it.  Two layouts
differ: they keep Q, K and V in three ``nn.Linear`` (``q_proj``, ``k_proj``, ``v_proj``), we in one packed
``qkv_proj`` (3d, d) in the order Q, K, V, so the three are concatenated; their position tables are
(1, 1 + N, d), ours (1 + N, d).  ``vitmae_config`` builds their config from ours (for checks and benchmarks:
a tiny random model needs no download) and ``config_from_vitmae`` reads ours off theirs.
``load_vitmae`` goes through ``mmtutorial.checkpoint.load_converted_state_dict`` (strict, shapes checked).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checkpoint import describe_keys, load_converted_state_dict
from ..models.mae import MAE, MAEConfig

__all__ = ["vitmae_key_map", "vitmae_config", "config_from_vitmae", "convert_vitmae_state_dict", "load_vitmae"]

_QKV = ("q_proj", "k_proj", "v_proj")


def _layer_map(theirs: str, ours: str) -> dict[str, str]:
    """One ``ViTMAELayer`` -> one ``TransformerBlock`` (Q, K, V map to the packed qkv, see ``_packed``)."""
    mapping = {}
    for kind in ("weight", "bias"):
        mapping.update({
            f"{theirs}.layernorm_before.{kind}": f"{ours}.norm1.{kind}",
            f"{theirs}.attention.o_proj.{kind}": f"{ours}.attn.out_proj.{kind}",
            f"{theirs}.layernorm_after.{kind}": f"{ours}.norm2.{kind}",
            f"{theirs}.mlp.fc1.{kind}": f"{ours}.mlp.fc.{kind}",
            f"{theirs}.mlp.fc2.{kind}": f"{ours}.mlp.proj.{kind}",
        })
        for name in _QKV:
            mapping[f"{theirs}.attention.{name}.{kind}"] = f"{ours}.attn.qkv_proj.{kind}"
    return mapping


def vitmae_key_map(num_layers: int, decoder_num_layers: int) -> dict[str, str]:
    """transformers ``ViTMAEForPreTraining`` name -> ours, for every tensor; the three of Q, K, V of a layer
    all map to that block's ``qkv_proj`` (stacked in the order q, k, v)."""
    for name, value in (("num_layers", num_layers), ("decoder_num_layers", decoder_num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    mapping = {"vit.embeddings.cls_token": "encoder.class_token",
               "vit.embeddings.position_embeddings": "encoder.position_embedding.embedding.weight",
               "vit.embeddings.patch_embeddings.projection.weight": "encoder.patch_embedding.proj.weight",
               "vit.embeddings.patch_embeddings.projection.bias": "encoder.patch_embedding.proj.bias"}
    for i in range(num_layers):
        mapping.update(_layer_map(f"vit.layers.{i}", f"encoder.encoder.blocks.{i}"))
    mapping.update({"vit.layernorm.weight": "encoder.encoder.norm.weight",
                    "vit.layernorm.bias": "encoder.encoder.norm.bias",
                    "decoder.mask_token": "mask_token",
                    "decoder.decoder_pos_embed": "decoder_position_embedding",
                    "decoder.decoder_embed.weight": "decoder_embed.weight",
                    "decoder.decoder_embed.bias": "decoder_embed.bias"})
    for i in range(decoder_num_layers):
        mapping.update(_layer_map(f"decoder.decoder_layers.{i}", f"decoder.blocks.{i}"))
    mapping.update({"decoder.decoder_norm.weight": "decoder.norm.weight",
                    "decoder.decoder_norm.bias": "decoder.norm.bias",
                    "decoder.decoder_pred.weight": "decoder_pred.weight",
                    "decoder.decoder_pred.bias": "decoder_pred.bias"})
    return mapping


def vitmae_config(config: MAEConfig):
    """The ``transformers.ViTMAEConfig`` of our ``config`` (no dropout mismatch, same epsilon, exact GELU)."""
    from transformers import ViTMAEConfig

    if not isinstance(config, MAEConfig):
        raise TypeError(f"expected an MAEConfig, got {type(config).__name__}")
    if not config.bias:
        raise ValueError("transformers' ViTMAE always has biases: use MAEConfig(bias=True)")
    return ViTMAEConfig(hidden_size=config.dim, num_hidden_layers=config.num_layers,
                        num_attention_heads=config.num_heads, intermediate_size=int(config.mlp_ratio * config.dim),
                        hidden_act="gelu", hidden_dropout_prob=config.dropout,
                        attention_probs_dropout_prob=config.dropout, layer_norm_eps=config.layer_norm_eps,
                        image_size=config.image_size, patch_size=config.patch_size, num_channels=config.in_channels,
                        qkv_bias=True, decoder_hidden_size=config.decoder_dim,
                        decoder_num_hidden_layers=config.decoder_num_layers,
                        decoder_num_attention_heads=config.decoder_num_heads,
                        decoder_intermediate_size=int(config.decoder_mlp_ratio * config.decoder_dim),
                        mask_ratio=config.mask_ratio, norm_pix_loss=config.norm_pix_loss)


def config_from_vitmae(hf_config) -> MAEConfig:
    """Our :class:`MAEConfig` of a ``transformers.ViTMAEConfig``."""
    if hf_config.hidden_act != "gelu" or not hf_config.qkv_bias:
        raise ValueError(f"only ViTMAE configs with exact GELU and Q/K/V biases are supported, got "
                         f"hidden_act={hf_config.hidden_act!r}, qkv_bias={hf_config.qkv_bias}")
    if hf_config.hidden_dropout_prob != hf_config.attention_probs_dropout_prob:
        raise ValueError("our MAE has one dropout rate; this config has two different ones")
    return MAEConfig(image_size=hf_config.image_size, patch_size=hf_config.patch_size,
                     in_channels=hf_config.num_channels, dim=hf_config.hidden_size,
                     num_layers=hf_config.num_hidden_layers, num_heads=hf_config.num_attention_heads,
                     mlp_ratio=hf_config.intermediate_size / hf_config.hidden_size,
                     decoder_dim=hf_config.decoder_hidden_size, decoder_num_layers=hf_config.decoder_num_hidden_layers,
                     decoder_num_heads=hf_config.decoder_num_attention_heads,
                     decoder_mlp_ratio=hf_config.decoder_intermediate_size / hf_config.decoder_hidden_size,
                     mask_ratio=hf_config.mask_ratio, norm_pix_loss=bool(hf_config.norm_pix_loss),
                     dropout=hf_config.hidden_dropout_prob, layer_norm_eps=hf_config.layer_norm_eps)


def convert_vitmae_state_dict(theirs: dict[str, Tensor], num_layers: int, decoder_num_layers: int) -> dict[str, Tensor]:
    """Their state dict -> ours: renamed by ``vitmae_key_map``, Q/K/V stacked, position tables squeezed."""
    mapping = vitmae_key_map(num_layers, decoder_num_layers)
    unknown = [key for key in theirs if key not in mapping]
    missing = [key for key in mapping if key not in theirs]
    if unknown or missing:
        raise ValueError(f"the ViTMAEForPreTraining state dict does not fit a {num_layers}-layer encoder and "
                         f"{decoder_num_layers}-layer decoder: names without a mapping [{describe_keys(unknown)}]; "
                         f"mapped names it lacks [{describe_keys(missing)}]")
    converted: dict[str, Tensor] = {}
    packed: dict[str, list[Tensor]] = {}
    for name, ours in mapping.items():
        if ".attention." in name and name.split(".")[-2] in _QKV:
            packed.setdefault(ours, []).append(theirs[name])                     # q, k, v in the map's order
        else:
            converted[ours] = theirs[name]
    converted.update({ours: torch.cat(parts, dim=0) for ours, parts in packed.items()})   # (3d, d) / (3d,)
    for ours in ("encoder.position_embedding.embedding.weight", "decoder_position_embedding"):
        converted[ours] = converted[ours].squeeze(0)                             # (1, 1 + N, d) -> (1 + N, d)
    return converted


@torch.no_grad()
def load_vitmae(model: MAE, hf_model: nn.Module) -> MAE:
    """Copy a ``transformers.ViTMAEForPreTraining``'s weights into ``model`` (strict; names and shapes checked)."""
    from transformers import ViTMAEForPreTraining

    if not isinstance(model, MAE):
        raise TypeError(f"expected an mmtutorial MAE, got {type(model).__name__}")
    if not isinstance(hf_model, ViTMAEForPreTraining):
        raise TypeError(f"expected transformers.ViTMAEForPreTraining, got {type(hf_model).__name__}")
    converted = convert_vitmae_state_dict(hf_model.state_dict(), model.config.num_layers,
                                          model.config.decoder_num_layers)
    load_converted_state_dict(model, converted, source="transformers ViTMAE", config_name="MAEConfig")
    return model

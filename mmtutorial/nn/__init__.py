"""Torch building blocks of the Transformer, each tested against PyTorch / Hugging Face.

- ``attention``: scaled dot-product attention from the definition, masks, ``MultiHeadAttention``, ``KVCache``
- ``positional``: sinusoidal, learned and rotary position encodings
- ``conv``: the conv block (3 x 3 conv, BatchNorm, ReLU, max-pool) every CNN of the book stacks
- ``lora``: ``LoRALinear`` (low-rank adaptation of a frozen Linear), ``apply_lora``, merge/unmerge, counts
- ``transformer``: ``TransformerConfig``, ``MLP``, ``TransformerBlock``, ``TransformerEncoder`` and
  ``transformer_parameter_count``

Boolean attention masks mean True = may attend everywhere in this package (as in
``F.scaled_dot_product_attention``); only ``key_padding_mask`` keeps torch's True = padding.
"""
from .attention import (KVCache, MultiHeadAttention, causal_mask, combine_masks, padding_mask,
                        scaled_dot_product_attention)
from .conv import conv_block, conv_stack
from .lora import LoRALinear, apply_lora, lora_layers, merge_lora, trainable_parameter_count, unmerge_lora
from .positional import (LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding,
                         apply_rotary_pos_emb, rotate_half)
from .transformer import MLP, TransformerBlock, TransformerConfig, TransformerEncoder, transformer_parameter_count

__all__ = ["conv_block", "conv_stack", "KVCache", "MultiHeadAttention", "causal_mask", "combine_masks", "padding_mask",
           "scaled_dot_product_attention", "LearnedPositionalEmbedding", "RotaryEmbedding",
           "SinusoidalPositionalEncoding", "apply_rotary_pos_emb", "rotate_half", "MLP", "TransformerBlock",
           "TransformerConfig", "TransformerEncoder", "transformer_parameter_count", "LoRALinear", "apply_lora",
           "lora_layers", "merge_lora", "unmerge_lora", "trainable_parameter_count"]

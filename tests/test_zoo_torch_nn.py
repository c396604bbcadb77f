"""Weights of PyTorch's own layers load into ours through explicit key maps (mmtutorial.zoo.torch_nn)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mmtutorial.zoo import torch_nn


def test_mha_from_torch_matches_nn_multihead_attention():
    torch.manual_seed(0)
    torch_mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ours = torch_nn.mha_from_torch(torch_mha).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert_close(ours(x), torch_mha(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="torch_mha must be a torch.nn.MultiheadAttention, got Linear"):
        torch_nn.mha_from_torch(nn.Linear(2, 2))


def test_unpacked_projections_cut_the_stacked_bias_in_three():
    torch.manual_seed(1)
    torch_mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        torch_mha.in_proj_bias.normal_()
    ours = torch_nn.mha_from_torch(torch_mha).eval()
    b_q, b_k, b_v = torch_mha.in_proj_bias.chunk(3)
    assert torch.equal(ours.q_proj.bias, b_q) and torch.equal(ours.k_proj.bias, b_k) and torch.equal(ours.v_proj.bias, b_v)
    query, key, value = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 4, 6, dtype=torch.float64), \
        torch.randn(2, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        assert_close(ours(query, key, value), torch_mha(query, key, value, need_weights=False)[0])


def test_key_maps_name_every_tensor():
    assert torch_nn.mha_key_map(packed=True) == {"in_proj_weight": "qkv_proj.weight", "in_proj_bias": "qkv_proj.bias",
                                                 "out_proj.weight": "out_proj.weight", "out_proj.bias": "out_proj.bias"}
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    assert set(torch_nn.encoder_layer_key_map()) == set(layer.state_dict())
    lstm = nn.LSTM(3, 4, num_layers=2)
    assert set(torch_nn.lstm_key_map(2)) == set(lstm.state_dict())
    assert torch_nn.lstm_key_map(1)["weight_ih_l0"] == "cells.0.weight_ih"
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        torch_nn.lstm_key_map(0)

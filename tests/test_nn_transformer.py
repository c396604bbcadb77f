"""mmtutorial.nn.positional and .transformer against closed forms, torch and Hugging Face (float64)."""
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mmtutorial.zoo import torch_nn
import mmtutorial as mmt
from mmtutorial.nn import (KVCache, LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding,
                           TransformerBlock, TransformerConfig, TransformerEncoder, transformer_parameter_count)

DT = torch.float64


# --- position encodings --------------------------------------------------------------------------------

def test_sinusoidal_encoding_matches_the_closed_form():
    dim, max_len = 16, 50
    encoding = SinusoidalPositionalEncoding(dim, max_len).double()
    assert not list(encoding.parameters()) and "pe" not in encoding.state_dict()  # a buffer, not trained
    for pos in (0, 1, 7, 49):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert math.isclose(encoding.pe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(encoding.pe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    x = torch.randn(2, 10, dim, dtype=DT)
    assert_close(encoding(x), x + encoding.pe[:10])
    assert_close(encoding(x[:, 3:4], start=3), x[:, 3:4] + encoding.pe[3])
    # PE(pos + k) is a fixed rotation of PE(pos) in every (sin, cos) pair: dot products depend on k only
    pe = encoding.pe
    assert_close(pe[3] @ pe[8], pe[20] @ pe[25])


def test_learned_positions():
    embedding = LearnedPositionalEmbedding(max_len=12, dim=8)
    assert mmt.count_parameters(embedding) == 12 * 8
    x = torch.zeros(2, 5, 8)
    assert_close(embedding(x, start=2), embedding.embedding.weight[2:7].expand(2, 5, 8))


def test_position_encoding_errors():
    with pytest.raises(ValueError, match="dim must be a positive even int .* got 7"):
        SinusoidalPositionalEncoding(7, 10)
    with pytest.raises(ValueError, match="positions 8..11 exceed max_len=10"):
        SinusoidalPositionalEncoding(8, 10)(torch.zeros(1, 4, 8), start=8)
    with pytest.raises(ValueError, match="positions 0..12 exceed max_len=12"):
        LearnedPositionalEmbedding(12, 8)(torch.zeros(1, 13, 8))
    with pytest.raises(ValueError, match=r"shape \(..., seq, dim=8\), got \(1, 4, 6\)"):
        LearnedPositionalEmbedding(12, 8)(torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="head_dim must be a positive even int .* got 5"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match="position 16 is beyond max_len=16"):
        RotaryEmbedding(8, max_len=16).apply_rotary(torch.zeros(1, 17, 8), torch.zeros(1, 17, 8))
    with pytest.raises(TypeError, match="positions must be an integer tensor, got torch.float32"):
        RotaryEmbedding(8).cos_sin(torch.arange(3.0))
    with pytest.raises(ValueError, match=r"q must have shape \(..., seq, head_dim=8\), got \(2, 6\)"):
        RotaryEmbedding(8).apply_rotary(torch.zeros(2, 6), torch.zeros(2, 8))


def test_rotary_scores_depend_only_on_the_relative_offset():
    rotary = RotaryEmbedding(head_dim=16)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g, dtype=DT), torch.randn(16, generator=g, dtype=DT)

    def score(m: int, n: int) -> torch.Tensor:
        q_rot, _ = rotary.apply_rotary(q[None], q[None], torch.tensor([m]))
        k_rot, _ = rotary.apply_rotary(k[None], k[None], torch.tensor([n]))
        return (q_rot @ k_rot.T).squeeze()

    for offset in (0, 1, 5, -3):
        scores = torch.stack([score(m, m + offset) for m in (3, 10, 100, 1000)])
        assert_close(scores, scores[0].expand(4), rtol=0, atol=1e-9)
    assert not torch.isclose(score(0, 1), score(0, 5))  # ... and does depend on the offset
    # rotations keep lengths
    x = torch.randn(2, 3, 7, 16, dtype=DT)
    rotated, _ = rotary.apply_rotary(x, x)
    assert_close(rotated.norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_rotary_matches_hugging_face_llama(base):
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    head_dim, heads = 16, 4
    hf_rotary = llama.LlamaRotaryEmbedding(LlamaConfig(hidden_size=head_dim * heads, num_attention_heads=heads,
                                                       rope_theta=base))
    ours = RotaryEmbedding(head_dim, base=base)
    q, k = torch.randn(2, heads, 6, head_dim), torch.randn(2, heads, 6, head_dim)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [7, 8, 9, 10, 11, 12]])  # e.g. left padding shifts positions
    cos, sin = hf_rotary(q, positions)  # (batch, seq, head_dim)
    ours_cos, ours_sin = ours.cos_sin(positions)
    assert_close(ours_cos, cos)
    assert_close(ours_sin, sin)
    expected_q, expected_k = llama.apply_rotary_pos_emb(q, k, cos, sin)
    got_q, got_k = ours.apply_rotary(q, k, positions)
    assert_close(got_q, expected_q)
    assert_close(got_k, expected_k)
    got_q, _ = ours.apply_rotary(q, k, positions[0])  # one position vector shared by the batch
    assert_close(got_q, llama.apply_rotary_pos_emb(q, k, cos[:1].expand(2, -1, -1), sin[:1].expand(2, -1, -1))[0])


# --- transformer blocks ----------------------------------------------------------------------------------

def torch_layer(norm_first: bool, activation: str = "gelu", dim=16, heads=4, ff=64, seed=0):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ff, dropout=0.0, activation=activation,
                                       batch_first=True, norm_first=norm_first, dtype=DT)
    with torch.no_grad():  # non-trivial biases and norm parameters
        for name, parameter in layer.named_parameters():
            if "bias" in name or "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return layer.eval()


@pytest.mark.parametrize("norm,activation", [("post", "gelu"), ("pre", "gelu"), ("pre", "relu")])
def test_block_equals_torch_encoder_layer(norm, activation):
    reference = torch_layer(norm_first=norm == "pre", activation=activation)
    block = TransformerBlock(TransformerConfig(dim=16, num_heads=4, norm=norm, activation=activation)).double()
    torch_nn.load_torch_encoder_layer(block, reference).eval()
    x = torch.randn(3, 7, 16, dtype=DT)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 5:] = True
    with torch.no_grad():
        assert_close(block(x), reference(x))
        assert_close(block(x, key_padding_mask=padding), reference(x, src_key_padding_mask=padding))


def test_causal_block_gradients_equal_torch():
    reference = torch_layer(norm_first=True)
    block = torch_nn.load_torch_encoder_layer(TransformerBlock(TransformerConfig(dim=16, num_heads=4, causal=True)).double(),
                                              reference)
    x = torch.randn(2, 6, 16, dtype=DT)
    reference(x, src_mask=nn.Transformer.generate_square_subsequent_mask(6, dtype=DT), is_causal=True).sum().backward()
    block(x).sum().backward()
    assert_close(block.mlp.fc.weight.grad, reference.linear1.weight.grad)
    assert_close(block.attn.qkv_proj.weight.grad, reference.self_attn.in_proj_weight.grad)


def test_encoder_stack_equals_torch_encoder():
    config = TransformerConfig(dim=16, num_heads=4, num_layers=3)
    layers = [torch_layer(norm_first=True, seed=s) for s in range(3)]
    reference = nn.TransformerEncoder(layers[0], num_layers=3, norm=nn.LayerNorm(16, dtype=DT),
                                      enable_nested_tensor=False)
    ours = TransformerEncoder(config).double()
    for i in range(3):
        reference.layers[i].load_state_dict(layers[i].state_dict())
        torch_nn.load_torch_encoder_layer(ours.blocks[i], layers[i])
    with torch.no_grad():
        reference.norm.weight.normal_()
    ours.norm.load_state_dict(reference.norm.state_dict())
    x = torch.randn(2, 5, 16, dtype=DT)
    with torch.no_grad():
        assert_close(ours.eval()(x), reference.eval()(x))


def test_encoder_kv_caches_decode_like_one_causal_pass():
    torch.manual_seed(0)
    encoder = TransformerEncoder(TransformerConfig(dim=16, num_heads=2, num_layers=2, causal=True)).double().eval()
    x = torch.randn(2, 6, 16, dtype=DT)
    caches = encoder.new_kv_caches()
    with torch.no_grad():
        steps = torch.cat([encoder(x[:, t:t + 1], kv_caches=caches) for t in range(6)], dim=1)
        assert_close(steps, encoder(x))
    assert all(len(c) == 6 for c in caches)
    with pytest.raises(ValueError, match="one KVCache per block: expected 2, got 1"):
        encoder(x, kv_caches=[KVCache()])


def test_block_and_config_errors():
    with pytest.raises(ValueError, match="dim=10 must be divisible by num_heads=4"):
        TransformerConfig(dim=10, num_heads=4)
    with pytest.raises(ValueError, match="norm must be 'pre' or 'post', got 'middle'"):
        TransformerConfig(dim=8, num_heads=2, norm="middle")
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerConfig(dim=8, num_heads=2, activation="swish")
    block = TransformerBlock(TransformerConfig(dim=16, num_heads=4, norm="pre")).double()
    with pytest.raises(ValueError, match="norm mismatch: torch layer has norm_first=False"):
        torch_nn.load_torch_encoder_layer(block, torch_layer(norm_first=False))
    with pytest.raises(ValueError, match="activation mismatch"):
        torch_nn.load_torch_encoder_layer(block, torch_layer(norm_first=True, activation="relu"))


# --- parameter counts --------------------------------------------------------------------------------------

class TinyLanguageModel(nn.Module):
    """Token + learned position embeddings, a pre-LN stack and an LM head (GPT-2's layout)."""

    def __init__(self, vocab_size, max_seq_len, config, tied):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, config.dim)
        self.positions = LearnedPositionalEmbedding(max_seq_len, config.dim)
        self.encoder = TransformerEncoder(config)
        self.head = nn.Linear(config.dim, vocab_size, bias=False)
        if tied:
            self.head.weight = self.tokens.weight


@pytest.mark.parametrize("vocab,positions,dim,layers,ratio,tied,bias", [
    (50257, 1024, 768, 12, 4.0, True, True),   # GPT-2 small
    (1000, 64, 48, 3, 2.0, False, True),
    (1000, 64, 48, 2, 4.0, True, False),
])
def test_parameter_count_formula_matches_our_stack_on_meta(vocab, positions, dim, layers, ratio, tied, bias):
    config = TransformerConfig(dim=dim, num_heads=4 if dim % 12 else 12, num_layers=layers, mlp_ratio=ratio,
                               bias=bias)
    with torch.device("meta"):  # shapes only: GPT-2 size costs no memory and no time
        model = TinyLanguageModel(vocab, positions, config, tied)
    assert mmt.count_parameters(model) == transformer_parameter_count(vocab, positions, dim, layers, ratio, tied,
                                                                      bias=bias)


def test_published_counts():
    assert transformer_parameter_count(50257, 1024, 768, 12) == 124_439_808  # GPT-2 small
    assert transformer_parameter_count(vocab_size=50257, max_seq_len=1024, dim=768, num_layers=12) == 124_439_808
    bert = transformer_parameter_count(30522, 512, 768, 12, num_token_types=2, embedding_norm=True,
                                       final_norm=False, pooler=True, lm_head=False)
    assert bert == 109_482_240  # BERT-base (uncased), with its pooler
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config())
        bert_model = transformers.BertModel(transformers.BertConfig())
    assert mmt.count_parameters(gpt2) == 124_439_808
    assert mmt.count_parameters(bert_model) == bert


def test_rope_blocks_decode_with_caches_and_add_no_parameters():
    torch.manual_seed(0)
    config = TransformerConfig(dim=16, num_heads=2, num_layers=2, causal=True, rope=True)
    encoder = TransformerEncoder(config).double().eval()
    assert mmt.count_parameters(encoder) == transformer_parameter_count(0, 0, 16, 2, lm_head=False)
    x = torch.randn(2, 5, 16, dtype=DT)
    caches = encoder.new_kv_caches()
    with torch.no_grad():
        full = encoder(x)
        assert_close(torch.cat([encoder(x[:, t:t + 1], kv_caches=caches) for t in range(5)], dim=1), full)
        # RoPE makes the model order-aware even without added position embeddings
        without = TransformerEncoder(TransformerConfig(dim=16, num_heads=2, num_layers=2, causal=True)).double()
        without.load_state_dict(encoder.state_dict())
        assert not torch.allclose(without.eval()(x), full)

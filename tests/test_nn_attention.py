"""mmtutorial.nn.attention against torch's F.scaled_dot_product_attention and nn.MultiheadAttention (float64)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from mmtutorial.zoo import torch_nn
from mmtutorial.nn import (KVCache, MultiHeadAttention, causal_mask, combine_masks, padding_mask,
                           scaled_dot_product_attention)

DT = torch.float64


def qkv(batch=2, heads=3, seq_q=5, seq_k=7, d_k=4, d_v=6, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, seq_q, d_k), (batch, heads, seq_k, d_k), (batch, heads, seq_k, d_v)]
    return [torch.randn(*s, generator=g, dtype=DT, requires_grad=requires_grad) for s in shapes]


# --- scaled dot-product attention --------------------------------------------------------------------

def test_worked_example_from_the_errata():
    # q=[1,0,1] against three keys: scores [2,0,1], scaled by 1/sqrt(3), softmax, times V
    q = torch.tensor([[1.0, 0.0, 1.0]], dtype=DT)
    k = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=DT)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=DT)
    out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert_close(weights, torch.tensor([[0.5329, 0.1679, 0.2992]], dtype=DT), atol=1e-4, rtol=0)
    assert_close(out, torch.tensor([[0.8321, 0.4671]], dtype=DT), atol=1e-4, rtol=0)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("seq_q,seq_k", [(5, 5), (5, 7), (1, 4)])
def test_matches_sdpa_without_and_with_causal_mask(seq_q, seq_k):
    q, k, v = qkv(seq_q=seq_q, seq_k=seq_k)
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    assert_close(scaled_dot_product_attention(q, k, v, is_causal=True),
                 F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert_close(scaled_dot_product_attention(q, k, v, scale=0.3),
                 F.scaled_dot_product_attention(q, k, v, scale=0.3))


def test_bool_and_float_masks_match_sdpa():
    q, k, v = qkv()
    g = torch.Generator().manual_seed(1)
    bool_mask = torch.rand(2, 1, 5, 7, generator=g) > 0.3  # broadcast over heads
    bool_mask[..., 0] = True
    float_mask = torch.randn(5, 7, generator=g, dtype=DT)
    for mask in (bool_mask, float_mask, bool_mask[0, 0]):
        assert_close(scaled_dot_product_attention(q, k, v, attn_mask=mask),
                     F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    # a bool mask equals the additive mask with 0 / -inf
    additive = torch.zeros(bool_mask.shape, dtype=DT).masked_fill(~bool_mask, float("-inf"))
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=bool_mask),
                 scaled_dot_product_attention(q, k, v, attn_mask=additive))


def test_padding_and_causal_masks_combined_match_sdpa():
    q, k, v = qkv(seq_q=6, seq_k=6)
    lengths = torch.tensor([6, 4])
    pad = padding_mask(lengths, 6)
    assert pad.shape == (2, 1, 1, 6) and pad.dtype == torch.bool
    assert pad[1, 0, 0].tolist() == [True] * 4 + [False] * 2
    mask = combine_masks(causal_mask(6), pad)
    assert mask.shape == (2, 1, 6, 6)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=mask), expected)
    # is_causal combined with a padding mask (SDPA refuses both at once; ours combines them)
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=pad, is_causal=True), expected)
    # padded keys get exactly zero weight
    _, weights = scaled_dot_product_attention(q, k, v, attn_mask=pad, return_weights=True)
    assert torch.all(weights[1, ..., 4:] == 0)
    assert_close(weights.sum(-1), torch.ones(2, 3, 6, dtype=DT))


def test_mask_helpers():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # more keys than queries (incremental decoding): aligned at the bottom right
    assert causal_mask(2, seq_k=4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert combine_masks(None, None) is None
    both = combine_masks(torch.tensor([True, False]), torch.tensor([0.0, 1.0], dtype=DT))
    assert both.dtype == DT and both[0] == 0 and torch.isneginf(both[1])
    assert padding_mask([2, 0]).shape == (2, 1, 1, 2)
    with pytest.raises(ValueError, match="max_len=2 is shorter than the longest sequence \\(3\\)"):
        padding_mask([3, 1], max_len=2)
    with pytest.raises(TypeError, match="lengths must be a 1-D integer"):
        padding_mask(torch.tensor([1.5, 2.0]))
    with pytest.raises(TypeError, match="combine_masks wants bool or float tensors, got torch.int64"):
        combine_masks(torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="seq_k must be an int >= seq_len=3"):
        causal_mask(3, seq_k=2)


def test_fully_masked_rows_give_zeros_like_sdpa():
    q, k, v = qkv(requires_grad=True)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[2] = False  # query 2 may attend to nothing
    ours, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(ours, reference)
    assert torch.all(ours[..., 2, :] == 0) and torch.all(weights[..., 2, :] == 0)
    grads = torch.autograd.grad(ours.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    float_mask = torch.zeros(5, 7, dtype=DT).masked_fill(~mask, float("-inf"))
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=float_mask), reference)


def test_backward_matches_sdpa_backward():
    q, k, v = qkv(requires_grad=True)
    mask = combine_masks(causal_mask(5, seq_k=7), padding_mask([7, 5], 7))
    upstream = torch.randn(2, 3, 5, 6, dtype=DT)
    ours = torch.autograd.grad((scaled_dot_product_attention(q, k, v, attn_mask=mask) * upstream).sum(), (q, k, v))
    theirs = torch.autograd.grad((F.scaled_dot_product_attention(q, k, v, attn_mask=mask) * upstream).sum(), (q, k, v))
    for a, b in zip(ours, theirs):
        assert_close(a, b)
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, is_causal=True),
                                    [t[:1, :1, :3].detach().requires_grad_() for t in (q, k, v)])


def test_dropout_zeroes_and_rescales_weights():
    q, k, v = qkv()
    _, clean = scaled_dot_product_attention(q, k, v, return_weights=True)
    torch.manual_seed(0)
    _, dropped = scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    kept = dropped != 0
    assert 0.3 < kept.double().mean() < 0.7
    assert_close(dropped[kept], 2 * clean[kept])


def test_attention_errors_name_expected_and_received():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="query has last dim 4, key has 3"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="key has seq_k=7, value has 6"):
        scaled_dot_product_attention(q, k, v[..., :6, :])
    with pytest.raises(TypeError, match="must be bool .* or float .*got dtype torch.int64"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(5, 6\) does not broadcast .* \(2, 3, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="query must be a floating-point tensor, got dtype torch.int64"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="dropout_p must be in"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


def test_attention_refuses_mismatched_batches_heads_and_dtypes():
    q, k, v = qkv()                                          # (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)
    with pytest.raises(ValueError, match=r"leading \(batch, heads, ...\) dimensions, got query \(2, 3, 5, 4\), "
                                         r"key \(3, 3, 7, 4\)"):
        scaled_dot_product_attention(q, torch.cat([k, k[:1]]), torch.cat([v, v[:1]]))   # batch 2 vs 3
    with pytest.raises(ValueError, match=r"leading .* \(2, 3\), \(2, 1\) and \(2, 1\)"):
        scaled_dot_product_attention(q, k[:, :1], v[:, :1])  # one key head would broadcast silently
    with pytest.raises(TypeError, match="one dtype, got torch.float32, torch.float64 and torch.float64"):
        scaled_dot_product_attention(q.float(), k, v)
    with pytest.raises(TypeError, match="is_causal must be True or False"):
        scaled_dot_product_attention(q, k, v, is_causal=None)


# --- multi-head attention ------------------------------------------------------------------------------

def torch_and_ours(embed_dim=16, num_heads=4, bias=True, kdim=None, vdim=None, use_fused=True, seed=0):
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, kdim=kdim, vdim=vdim, batch_first=True,
                                      dtype=DT)
    if bias:  # torch initialises the biases to zero; make them count
        with torch.no_grad():
            reference.in_proj_bias.normal_()
            reference.out_proj.bias.normal_()
    ours = torch_nn.mha_from_torch(reference, use_fused=use_fused)
    return reference.eval(), ours.eval()


@pytest.mark.parametrize("use_fused", [True, False])
def test_mha_self_attention_equals_torch(use_fused):
    reference, ours = torch_and_ours(use_fused=use_fused)
    x = torch.randn(3, 6, 16, dtype=DT)
    expected, _ = reference(x, x, x, need_weights=False)
    assert_close(ours(x), expected)
    # the packed self-attention path and the general path agree
    assert_close(ours(x, x.clone(), x.clone()), expected)


def test_mha_masks_follow_their_conventions():
    reference, ours = torch_and_ours()
    x = torch.randn(2, 6, 16, dtype=DT)
    key_padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # torch: True = padding
    expected, _ = reference(x, x, x, key_padding_mask=key_padding, need_weights=False)
    assert_close(ours(x, key_padding_mask=key_padding), expected)

    allowed = torch.rand(6, 6, generator=torch.Generator().manual_seed(0)) > 0.4
    allowed.fill_diagonal_(True)
    expected, _ = reference(x, x, x, attn_mask=~allowed, need_weights=False)  # torch: True = NOT allowed
    assert_close(ours(x, attn_mask=allowed), expected)  # ours (like SDPA): True = may attend
    assert not torch.allclose(ours(x, attn_mask=~allowed), expected)  # the conventions really are opposite

    additive = torch.randn(6, 6, dtype=DT)  # float masks mean the same in both
    additive_padding = torch.zeros(2, 6, dtype=DT).masked_fill(key_padding, float("-inf"))
    expected, _ = reference(x, x, x, attn_mask=additive, key_padding_mask=additive_padding, need_weights=False)
    assert_close(ours(x, attn_mask=additive, key_padding_mask=additive_padding), expected)

    causal_blocked = torch.ones(6, 6, dtype=torch.bool).triu(diagonal=1)  # torch: True above the diagonal
    expected, _ = reference(x, x, x, attn_mask=causal_blocked, key_padding_mask=key_padding, need_weights=False)
    assert_close(ours(x, is_causal=True, key_padding_mask=key_padding), expected)
    expected, _ = reference(x, x, x, attn_mask=causal_blocked, need_weights=False)
    assert_close(ours(x, is_causal=True), expected)


def test_mha_cross_attention_equals_torch():
    reference, ours = torch_and_ours(kdim=10, vdim=12)  # e.g. text queries attending to image features
    assert not ours.packed
    text, image_keys, image_values = (torch.randn(2, 5, 16, dtype=DT), torch.randn(2, 9, 10, dtype=DT),
                                      torch.randn(2, 9, 12, dtype=DT))
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[0, 7:] = True
    expected, _ = reference(text, image_keys, image_values, key_padding_mask=padding, need_weights=False)
    assert_close(ours(text, image_keys, image_values, key_padding_mask=padding), expected)
    # same widths, different sequence: the packed weights are sliced, not copied
    reference, ours = torch_and_ours()
    memory = torch.randn(2, 9, 16, dtype=DT)
    expected, _ = reference(text, memory, memory, need_weights=False)
    assert_close(ours(text, memory), expected)


def test_mha_weights_and_no_bias():
    reference, ours = torch_and_ours(bias=False)
    x = torch.randn(2, 4, 16, dtype=DT)
    expected, expected_weights = reference(x, x, x, need_weights=True, average_attn_weights=False)
    out, weights = ours(x, need_weights=True)
    assert weights.shape == (2, 4, 4, 4)
    assert_close(out, expected)
    assert_close(weights, expected_weights)


def test_mha_gradients_equal_torch():
    reference, ours = torch_and_ours()
    reference.train(), ours.train()  # dropout is 0, so train mode is deterministic
    x = torch.randn(2, 5, 16, dtype=DT)
    blocked = nn.Transformer.generate_square_subsequent_mask(5, dtype=DT)  # -inf above the diagonal
    expected, _ = reference(x, x, x, need_weights=False, attn_mask=blocked)
    expected.square().sum().backward()
    ours(x, is_causal=True).square().sum().backward()
    assert_close(ours.qkv_proj.weight.grad, reference.in_proj_weight.grad)
    assert_close(ours.qkv_proj.bias.grad, reference.in_proj_bias.grad)
    assert_close(ours.out_proj.weight.grad, reference.out_proj.weight.grad)


def test_mha_dropout_only_in_training():
    mha = MultiHeadAttention(16, 4, dropout=0.5).double()
    x = torch.randn(2, 5, 16, dtype=DT)
    mha.eval()
    assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))


@pytest.mark.parametrize("use_fused", [True, False])
def test_kv_cache_decoding_equals_full_causal_attention(use_fused):
    _, mha = torch_and_ours(use_fused=use_fused)
    x = torch.randn(2, 7, 16, dtype=DT)
    full = mha(x, is_causal=True)
    cache = KVCache()
    steps = [mha(x[:, t:t + 1], is_causal=True, kv_cache=cache) for t in range(7)]  # one token at a time
    assert len(cache) == 7 and cache.keys.shape == (2, 4, 7, 4)
    assert_close(torch.cat(steps, dim=1), full)
    cache = KVCache()  # a prompt of 3 tokens, then chunks of 2 and 2
    chunks = [mha(x[:, a:b], is_causal=True, kv_cache=cache) for a, b in ((0, 3), (3, 5), (5, 7))]
    assert_close(torch.cat(chunks, dim=1), full)
    cache.reset()
    assert len(cache) == 0


def test_mha_errors():
    with pytest.raises(ValueError, match="embed_dim=10 must be divisible by num_heads=4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="only batch_first=True"):
        MultiHeadAttention(8, 2, batch_first=False)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"query must be \(batch, seq, embed_dim=8\), got \(2, 3, 6\)"):
        mha(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"key must be \(batch=2, seq_k, 8\), got \(2, 4, 5\)"):
        mha(x, torch.randn(2, 4, 5))
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        mha(torch.ones(2, 3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(batch, seq_k\) = \(2, 3\), got \(2, 4\)"):
        mha(x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask must be bool .*got torch.int64"):
        mha(x, key_padding_mask=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="attn_mask must be bool .*got dtype torch.int32"):
        mha(x, attn_mask=torch.ones(3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 3\) does not broadcast"):
        mha(x, attn_mask=torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="kv_cache is for self-attention"):
        mha(x, x, kv_cache=KVCache())
    with pytest.raises(ValueError, match=r"ours .* = \(8, 2, 8, 8, True\), torch's = \(8, 4, 8, 8, True\)"):
        torch_nn.load_torch_mha(mha, nn.MultiheadAttention(8, 4, batch_first=True))
    with pytest.raises(TypeError, match="torch_mha must be a torch.nn.MultiheadAttention, got Linear"):
        torch_nn.mha_from_torch(nn.Linear(2, 2))


def test_mha_with_rotary_equals_rotating_by_hand_and_decodes_with_the_cache():
    from mmtutorial.nn import RotaryEmbedding
    torch.manual_seed(0)
    rotary = RotaryEmbedding(head_dim=4)
    mha = MultiHeadAttention(16, 4, rotary=rotary).double().eval()
    x = torch.randn(2, 6, 16, dtype=DT)
    q, k, v = (t.view(2, 6, 4, 4).transpose(1, 2) for t in mha.qkv_proj(x).chunk(3, dim=-1))
    q, k = rotary.apply_rotary(q, k)
    expected = mha.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 6, 16))
    assert_close(mha(x, is_causal=True), expected)
    cache = KVCache()
    steps = torch.cat([mha(x[:, t:t + 1], is_causal=True, kv_cache=cache) for t in range(6)], dim=1)
    assert_close(steps, expected)
    with pytest.raises(ValueError, match="rotary must be a RotaryEmbedding with head_dim=4, got head_dim=8"):
        MultiHeadAttention(16, 4, rotary=RotaryEmbedding(8))
    with pytest.raises(ValueError, match="rotary position embedding is applied in self-attention only"):
        mha(x, torch.randn(2, 3, 16, dtype=DT))

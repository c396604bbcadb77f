"""The exercise checkers of chapters 5 and 6 accept right answers and reject wrong ones."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmtutorial.exercises import ExerciseError, ch05, ch06


# --- chapter 5 ----------------------------------------------------------------------------------------

def attention(query, key, value, mask=None):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ value


def test_check_attention():
    ch05.check_attention(attention)
    with pytest.raises(ExerciseError, match="sqrt"):
        ch05.check_attention(lambda q, k, v, mask=None: torch.softmax(q @ k.transpose(-2, -1), -1) @ v)
    with pytest.raises(ExerciseError, match="-inf"):
        ch05.check_attention(lambda q, k, v, mask=None: attention(q, k, v))        # ignores the mask
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch05.check_attention(lambda q, k, v, mask=None: (_ for _ in ()).throw(NotImplementedError))


def test_check_causal_mask():
    ch05.check_causal_mask(lambda seq_q, seq_k: torch.ones(seq_q, seq_k, dtype=torch.bool).tril(seq_k - seq_q))
    with pytest.raises(ExerciseError, match="bottom right"):
        ch05.check_causal_mask(lambda seq_q, seq_k: torch.ones(seq_q, seq_k, dtype=torch.bool).tril())
    with pytest.raises(ExerciseError, match="'may attend'"):
        ch05.check_causal_mask(lambda seq_q, seq_k: ~torch.ones(seq_q, seq_k, dtype=torch.bool).tril(seq_k - seq_q))
    with pytest.raises(ExerciseError, match="bool tensor"):
        ch05.check_causal_mask(lambda seq_q, seq_k: torch.ones(seq_q, seq_k).tril(seq_k - seq_q))


def test_check_score_variance():
    ch05.check_score_variance(lambda d_k, s_q, s_k: d_k * s_q**2 * s_k**2)
    with pytest.raises(ExerciseError, match="variances add"):
        ch05.check_score_variance(lambda d_k, s_q, s_k: d_k * s_q * s_k)          # standard deviations
    with pytest.raises(ExerciseError):
        ch05.check_score_variance(lambda d_k, s_q, s_k: math.sqrt(d_k))


def test_check_worked_example():
    q, k, v = (torch.tensor(x, dtype=torch.float64) for x in (ch05.WORKED_QUERY, ch05.WORKED_KEYS, ch05.WORKED_VALUES))
    weights = torch.softmax(q @ k.T / math.sqrt(2), dim=-1)
    ch05.check_worked_example(weights, weights @ v)
    ch05.check_worked_example(weights.numpy().round(4).tolist(), (weights @ v).numpy().round(4))  # rounded by hand
    with pytest.raises(ExerciseError, match="1/sqrt"):
        unscaled = torch.softmax(q @ k.T, dim=-1)
        ch05.check_worked_example(unscaled, unscaled @ v)
    with pytest.raises(ExerciseError, match="weights @ V"):
        ch05.check_worked_example(weights, weights)
    with pytest.raises(ExerciseError):
        ch05.check_worked_example(q @ k.T / math.sqrt(2), (q @ k.T / math.sqrt(2)) @ v)  # softmax forgotten


# --- chapter 6 ----------------------------------------------------------------------------------------

def split_heads(x, num_heads):
    batch, seq, dim = x.shape
    return x.view(batch, seq, num_heads, dim // num_heads).transpose(1, 2)


def merge_heads(x):
    batch, heads, seq, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, seq, heads * head_dim)


def multi_head_attention(x, w_in, b_in, w_out, b_out, num_heads):
    q, k, v = F.linear(x, w_in, b_in).chunk(3, dim=-1)
    out = F.scaled_dot_product_attention(split_heads(q, num_heads), split_heads(k, num_heads),
                                         split_heads(v, num_heads))
    return F.linear(merge_heads(out), w_out, b_out)


def test_check_split_heads():
    ch06.check_split_heads(split_heads, merge_heads)
    wrong_split = lambda x, h: x.view(x.size(0), h, x.size(1), x.size(2) // h)       # noqa: E731
    with pytest.raises(ExerciseError, match="wrong contents"):
        ch06.check_split_heads(wrong_split, merge_heads)
    with pytest.raises(ExerciseError, match="merge_heads"):
        ch06.check_split_heads(split_heads, lambda x: x.reshape(x.size(0), x.size(2), -1))
    with pytest.raises(ExerciseError, match="expected shape"):
        ch06.check_split_heads(lambda x, h: x, merge_heads)


def test_check_multi_head_attention():
    ch06.check_multi_head_attention(multi_head_attention)
    with pytest.raises(ExerciseError):   # forgot the output projection
        ch06.check_multi_head_attention(lambda x, wi, bi, wo, bo, h: merge_heads(F.scaled_dot_product_attention(
            *(split_heads(t, h) for t in F.linear(x, wi, bi).chunk(3, dim=-1)))))
    with pytest.raises(ExerciseError):   # one head of full width instead of h heads
        ch06.check_multi_head_attention(lambda x, wi, bi, wo, bo, h: multi_head_attention(x, wi, bi, wo, bo, 1))


def test_check_sinusoidal_encoding():
    def sinusoidal(max_len, dim, step=2):
        position = torch.arange(max_len, dtype=torch.float64)[:, None]
        frequency = 10000.0 ** (-torch.arange(0, dim // 2 * step, step, dtype=torch.float64) / dim)
        table = torch.zeros(max_len, dim, dtype=torch.float64)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
        return table

    ch06.check_sinusoidal_encoding(sinusoidal)
    with pytest.raises(ExerciseError, match="rows are positions"):
        ch06.check_sinusoidal_encoding(lambda max_len, dim: sinusoidal(max_len, dim).T)
    with pytest.raises(ExerciseError, match="2i"):   # exponent i/dim instead of 2i/dim
        ch06.check_sinusoidal_encoding(lambda max_len, dim: sinusoidal(max_len, dim, step=1))
    def swapped(max_len, dim):                       # sin and cos swapped in every pair
        return sinusoidal(max_len, dim)[:, torch.arange(dim).view(-1, 2).flip(-1).reshape(-1)]

    with pytest.raises(ExerciseError, match="2i"):
        ch06.check_sinusoidal_encoding(swapped)


def test_check_gpt_parameter_count():
    def gpt_count(vocab, context, dim, layers):
        return (vocab + context) * dim + layers * (12 * dim * dim + 13 * dim) + 2 * dim

    assert gpt_count(50257, 1024, 768, 12) == 124_439_808
    ch06.check_gpt_parameter_count(gpt_count)
    with pytest.raises(ExerciseError, match="tied"):
        ch06.check_gpt_parameter_count(lambda v, c, d, n: gpt_count(v, c, d, n) + v * d)
    with pytest.raises(ExerciseError, match="final LayerNorm"):
        ch06.check_gpt_parameter_count(lambda v, c, d, n: gpt_count(v, c, d, n) - 2 * d)
    with pytest.raises(ExerciseError, match="whole number"):
        ch06.check_gpt_parameter_count(lambda v, c, d, n: gpt_count(v, c, d, n) + 0.5)

"""mmtutorial.models.gpt against Hugging Face GPT-2 (float64), closed forms and its own KV-cache path."""
import math

import pytest
import torch
from torch.testing import assert_close

import mmtutorial as mmt
from mmtutorial.models.gpt import (BIGRAM_MARGIN, GPT, GPTConfig, beats_bigram, generation_flops,
                                   required_margin_over_bigram, sample_next_token, top_k_filter, top_p_filter)
from mmtutorial.zoo.gpt2 import config_from_hf_gpt2, load_hf_gpt2

transformers = pytest.importorskip("transformers")
TINY = dict(vocab_size=61, max_seq_len=16, dim=32, num_layers=2, num_heads=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_hf_pair():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=61, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).double().eval()
    return hf, load_hf_gpt2(hf).eval()


def test_gpt2_small_parameter_count_equals_transformers():
    with torch.device("meta"):
        ours = GPT(GPTConfig.gpt2_small())
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    expected = sum(p.numel() for p in hf.parameters())
    assert expected == 124_439_808
    assert mmt.count_parameters(ours) == ours.num_parameters() == expected
    assert expected == mmt.nn.transformer_parameter_count(50257, 1024, 768, 12)
    assert expected == mmt.nn.transformer_parameter_count(vocab_size=50257, max_seq_len=1024, dim=768, num_layers=12)
    assert ours.lm_head.weight is ours.token_embedding.weight
    assert ours.config.mlp_ratio == 4.0 and ours.transformer.blocks[0].mlp.fc.out_features == 3072


def test_mlp_ratio_matches_huggingface_n_inner():
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(vocab_size=61, n_positions=16, n_embd=32, n_layer=2, n_head=4, n_inner=48)
    hf = transformers.GPT2LMHeadModel(hf_config).double().eval()
    assert config_from_hf_gpt2(hf_config).mlp_ratio == 1.5
    ours = load_hf_gpt2(hf).eval()
    assert ours.transformer.blocks[0].mlp.fc.out_features == 48
    idx = torch.randint(0, 61, (2, 16))
    assert_close(ours(idx)[0], hf(idx).logits)
    assert mmt.count_parameters(ours) == sum(p.numel() for p in hf.parameters()) == mmt.nn.transformer_parameter_count(
        61, 16, 32, 2, mlp_ratio=1.5)
    with pytest.raises(ValueError, match="config mismatch"):
        load_hf_gpt2(hf, GPT(GPTConfig(**TINY)))                      # our default mlp_ratio 4 is not n_inner 48
    with pytest.raises(TypeError, match="expected a transformers GPT2LMHeadModel, got Linear"):
        load_hf_gpt2(torch.nn.Linear(2, 2))


def test_logits_and_loss_equal_huggingface_gpt2():
    hf, ours = tiny_hf_pair()
    idx = torch.randint(0, 61, (3, 16))
    targets = torch.randint(0, 61, (3, 16))
    logits, loss = ours(idx, targets)
    assert_close(logits, hf(idx).logits)
    assert_close(loss, torch.nn.functional.cross_entropy(hf(idx).logits.reshape(-1, 61), targets.reshape(-1)))
    assert ours(idx)[1] is None


def test_greedy_generation_equals_huggingface():
    hf, ours = tiny_hf_pair()
    prompt = torch.randint(0, 61, (2, 4))
    ours_out = ours.generate(prompt, 10, temperature=0)
    hf_out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(ours_out, hf_out)


def test_gpt2_initialisation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, max_seq_len=64, dim=256, num_layers=8, num_heads=4))
    block = model.transformer.blocks[0]
    assert abs(model.token_embedding.weight.std().item() - 0.02) < 1e-3
    assert abs(block.attn.qkv_proj.weight.std().item() - 0.02) < 1e-3
    residual = 0.02 / math.sqrt(2 * 8)
    assert abs(block.attn.out_proj.weight.std().item() - residual) < 5e-4
    assert abs(block.mlp.proj.weight.std().item() - residual) < 5e-4
    assert torch.count_nonzero(block.mlp.fc.bias) == 0


def test_causality():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).double().eval()
    idx = torch.randint(0, 61, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 61
    assert_close(model(idx)[0][:, :7], model(changed)[0][:, :7])


@pytest.mark.parametrize("prompt_len, new_tokens", [(1, 15), (5, 30)])   # 30: the window slides past 16
def test_kv_cache_generation_equals_no_cache(prompt_len, new_tokens):
    torch.manual_seed(1)
    model = GPT(GPTConfig(**TINY)).double()
    prompt = torch.randint(0, 61, (2, prompt_len))
    cached = model.generate(prompt, new_tokens, temperature=0, use_cache=True)
    assert torch.equal(cached, model.generate(prompt, new_tokens, temperature=0, use_cache=False))
    assert cached.shape == (2, prompt_len + new_tokens) and model.training  # mode restored
    # sampled generation with one seed is also identical
    a = model.generate(prompt, new_tokens, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(0))
    b = model.generate(prompt, new_tokens, top_k=10, top_p=0.9, use_cache=False,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_kv_cache_logits_equal_full_pass():
    torch.manual_seed(2)
    model = GPT(GPTConfig(**TINY)).double().eval()
    idx = torch.randint(0, 61, (2, 16))
    caches = model.new_kv_caches()
    steps = [model(idx[:, :5], kv_caches=caches)[0]] + [model(idx[:, i:i + 1], kv_caches=caches)[0]
                                                         for i in range(5, 16)]
    assert_close(torch.cat(steps, dim=1), model(idx)[0])


def test_top_k_top_p_equal_transformers_warpers():
    torch.manual_seed(0)
    scores = torch.randn(6, 100, dtype=torch.float64) * 3
    for k in (1, 3, 20, 100, 150):
        assert_close(top_k_filter(scores, k), transformers.TopKLogitsWarper(top_k=k)(None, scores.clone()))
    for p in (0.05, 0.3, 0.8, 0.95, 1.0):
        assert_close(top_p_filter(scores, p), transformers.TopPLogitsWarper(top_p=p)(None, scores.clone()))


def test_temperature_zero_is_greedy_and_sampling_follows_probabilities():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, -1.0, 0.5]])
    assert sample_next_token(logits, temperature=0).flatten().tolist() == [1, 0]
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next_token(logits[:1], 1.0, generator=generator) for _ in range(4000)]).flatten()
    frequencies = torch.bincount(draws, minlength=3).double() / 4000
    assert_close(frequencies, logits[0].double().softmax(-1), atol=0.03, rtol=0)
    only_top = torch.cat([sample_next_token(logits, 1.0, top_k=1) for _ in range(20)], dim=1)
    assert (only_top[0] == 1).all() and (only_top[1] == 0).all()


def test_generation_flops_closed_form():
    config = GPTConfig(vocab_size=100, max_seq_len=32, dim=16, num_layers=2, num_heads=2)
    weights = 2 * (2 * 12 * 16 * 16 + 100 * 16)
    narrow = GPTConfig(vocab_size=100, max_seq_len=32, dim=16, num_layers=2, num_heads=2, mlp_ratio=2.0)
    narrow_weights = 2 * (2 * (4 * 16 * 16 + 2 * 16 * 32) + 100 * 16)   # MLP 16 -> 32 -> 16
    assert generation_flops(narrow, 1, 1, True) == narrow_weights + 4 * 2 * 16
    attention = 4 * 2 * 16
    # with cache: prompt of 3 processed once (c = 1, 2, 3), then one position at c = 4 and 5
    assert generation_flops(config, 3, 3, True) == sum(weights + attention * c for c in (1, 2, 3, 4, 5))
    assert generation_flops(config, 1, 31, False) > 10 * generation_flops(config, 1, 31, True)
    with pytest.raises(ValueError, match="prompt_len \\+ new_tokens <= max_seq_len \\+ 1"):
        generation_flops(config, 10, 30, True)


def test_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    idx = torch.randint(0, 61, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(idx[:, :-1], idx[:, 1:])[1]
    assert abs(first.item() - math.log(61)) < 0.1            # near-uniform at initialisation
    for _ in range(30):
        loss = model(idx[:, :-1], idx[:, 1:])[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first.item() - 1.0


def test_errors():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="sequence of length 17 is longer than max_seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(TypeError, match="idx must hold integer token ids .* got dtype torch.float32"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"idx must have shape \(batch, seq\), got \(4,\)"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx must be in \[0, vocab_size=61\), got values in \[0, 61\]"):
        model(torch.tensor([[0, 61]]))
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx must hold at least one token per sequence, got shape \(1, 0\)"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    prompt = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"temperature must be >= 0 \(0 = greedy\), got -0.5"):
        model.generate(prompt, 3, temperature=-0.5)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 1.5"):
        model.generate(prompt, 3, top_p=1.5)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 0"):
        model.generate(prompt, 3, top_p=0)
    with pytest.raises(ValueError, match="top_k must be a positive int or None, got 0"):
        model.generate(prompt, 3, top_k=0)
    with pytest.raises(TypeError, match="idx must hold integer token ids"):
        model.generate(prompt.float(), 3)
    with pytest.raises(ValueError, match="GPTConfig.dim=30 must be divisible by num_heads=4"):
        GPTConfig(dim=30, num_heads=4)
    with pytest.raises(ValueError, match="GPTConfig.vocab_size must be a positive int, got 0"):
        GPTConfig(vocab_size=0)
    with pytest.raises(TypeError, match="GPT wants a GPTConfig, got dict"):
        GPT(TINY)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\], got 0"):
        top_p_filter(torch.zeros(1, 3), 0)
    with pytest.raises(ValueError, match="GPTConfig.mlp_ratio must be a number > 0"):
        GPTConfig(mlp_ratio=-1.0)


def test_loss_with_no_target_that_counts_raises_instead_of_nan():
    model = GPT(GPTConfig(**TINY))
    idx = torch.randint(0, 61, (2, 5))
    # F.cross_entropy gives NaN here (0 / 0): the model must say why instead
    assert torch.isnan(torch.nn.functional.cross_entropy(torch.zeros(10, 61), torch.full((10,), -100)))
    with pytest.raises(ValueError, match="no target position counts: every target is -100"):
        model(idx, torch.full((2, 5), -100))
    empty = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"no target position counts: targets of shape \(2, 0\) are empty"):
        model(empty, empty)
    assert model(empty)[0].shape == (2, 0, 61)                       # no targets: empty logits, no loss
    partly = torch.randint(0, 61, (2, 5))
    partly[:, :3] = -100                                             # ignored positions still work
    logits, loss = model(idx, partly)
    expected = torch.nn.functional.cross_entropy(logits[:, 3:].reshape(-1, 61), partly[:, 3:].reshape(-1))
    assert_close(loss, expected)


def test_targets_must_be_ids_in_range_or_ignored():
    model = GPT(GPTConfig(**TINY))
    idx = torch.randint(0, 61, (1, 4))
    with pytest.raises(ValueError, match=r"targets must be token ids in \[0, vocab_size=61\) or -100 \(ignored\), "
                                         r"got 2 other values in \[-5, 61\]"):
        model(idx, torch.tensor([[1, 61, -100, -5]]))
    with pytest.raises(TypeError, match="targets must hold integer token ids .* got dtype torch.float32"):
        model(idx, torch.zeros(1, 4))
    with pytest.raises(TypeError, match="targets must be a torch.Tensor of next-token ids"):
        model(idx, [[1, 2, 3, 4]])


def test_sample_next_token_refuses_nan_logits():
    logits = torch.tensor([[0.0, 1.0, 2.0], [0.5, float("nan"), 0.1]])
    for temperature in (1.0, 0):
        with pytest.raises(ValueError, match=r"logits hold NaN \(in rows \[1\] of 2\)"):
            sample_next_token(logits, temperature)
    with pytest.raises(ValueError, match=r"logits of rows \[0\] have no finite value"):
        sample_next_token(torch.full((1, 3), float("-inf")))
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        sample_next_token(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, vocab\), got \(3,\)"):
        sample_next_token(torch.zeros(3))


# --- exercise checkers of chapter 7 ----------------------------------------------------------------------

def test_exercise_checkers_accept_right_and_reject_wrong_answers(capsys):
    from mmtutorial.exercises import ExerciseError, ch07
    from mmtutorial.tokenizers import _merge

    def overlapping_merge(ids, pair, new_id):      # wrong: merges overlapping pairs one position at a time
        out = list(ids)
        for i in range(len(out) - 1):
            if (out[i], out[i + 1]) == pair:
                out[i] = new_id
        return out

    ch07.check_merge(_merge)
    with pytest.raises(ExerciseError, match="merge"):
        ch07.check_merge(overlapping_merge)

    def perplexity(logits, targets):
        return math.exp(torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).item())

    ch07.check_perplexity(perplexity)
    with pytest.raises(ExerciseError, match="perplexity"):
        ch07.check_perplexity(lambda logits, targets: math.log(perplexity(logits, targets)))  # the loss, not PPL

    def penalty(logits, previous, value):
        seen = logits.gather(1, previous)
        return logits.scatter(1, previous, torch.where(seen > 0, seen / value, seen * value))

    ch07.check_repetition_penalty(penalty)
    with pytest.raises(ExerciseError, match="repetition_penalty"):
        ch07.check_repetition_penalty(lambda logits, previous, value: logits.scatter(
            1, previous, logits.gather(1, previous) / value))                          # divides negatives too

    def count(vocab, seq, dim, layers):
        return vocab * dim + seq * dim + layers * (12 * dim * dim + 13 * dim) + 2 * dim

    ch07.check_gpt_parameter_count(count)
    with pytest.raises(ExerciseError, match="gpt_parameter_count"):
        ch07.check_gpt_parameter_count(lambda v, s, d, l: count(v, s, d, l) + v * d)   # untied head
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch07.check_gpt_parameter_count(lambda *args: (_ for _ in ()).throw(NotImplementedError))
    assert capsys.readouterr().out.count("correct") == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_input_and_target_checks_queue_on_cuda_without_a_synchronisation():
    from mmtutorial.checks import check_token_ids
    from mmtutorial.models.gpt import _check_targets

    idx = torch.randint(0, 61, (2, 16), device="cuda")
    targets = idx.clone()
    targets[:, :4] = -100
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")        # any read-back to the host raises
    try:
        check_token_ids(idx, 61, name="idx", max_len=16)
        _check_targets(targets, idx, 61)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()                        # the queued checks passed


def test_bigram_bound_per_mode_and_its_checks(monkeypatch):
    """Chapter 7's result bound (tests/test_quick_bounds.py applies it to broken models)."""
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    assert required_margin_over_bigram() == BIGRAM_MARGIN["quick"] == 0.2
    assert beats_bigram(2.9, 3.28) and not beats_bigram(3.1, 3.28) and not beats_bigram(3.28, 3.28)
    monkeypatch.setenv("MMTUTORIAL_QUICK", "0")
    assert required_margin_over_bigram() == BIGRAM_MARGIN["full"] == 0.3
    assert beats_bigram(2.9, 3.28) and not beats_bigram(3.0, 3.28)
    with pytest.raises(TypeError, match="model_loss must be a number of nats per token .a float., got Tensor"):
        beats_bigram(torch.tensor(2.9), 3.28)
    with pytest.raises(ValueError, match="bigram_loss must be a finite number of nats per token, got inf"):
        beats_bigram(2.9, float("inf"))


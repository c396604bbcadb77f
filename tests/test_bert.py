"""mmtutorial.models.bert against transformers' BERT (random weights, float64) and the MLM rules."""
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mmtutorial.models.bert import (IGNORE_INDEX, MLM_BOUNDS, BertConfig, BertForMaskedLM, BertModel,
                                    context_free_mlm_loss, mean_pool, mlm_beats_unigram, mlm_bound, mlm_context_gap,
                                    mlm_loss, mlm_mask_tokens, mlm_uses_context, mlm_wrong_loss_flatters,
                                    swap_context)

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=97, max_seq_len=24, type_vocab_size=2, dim=32, num_layers=2, num_heads=4,
            mlp_ratio=2.0, dropout=0.0)     # MLP 2 * 32 = 64 wide, as hf_tiny_config's intermediate_size


def hf_tiny_config(**extra):
    return transformers.BertConfig(vocab_size=97, max_position_embeddings=24, type_vocab_size=2, hidden_size=32,
                                   num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                   attn_implementation="eager", **extra)


def test_bert_base_parameter_count_matches_transformers_on_meta():
    with torch.device("meta"):
        ours = BertModel(BertConfig.base())
        theirs = transformers.BertModel(transformers.BertConfig())
    count = sum(p.numel() for p in ours.parameters())
    assert count == 109_482_240
    assert count == sum(p.numel() for p in theirs.parameters())


def test_minilm_config_fields():
    config = BertConfig.minilm_l6()
    assert (config.num_layers, config.dim, config.num_heads, config.mlp_ratio) == (6, 384, 12, 4.0)
    assert config.mlp_hidden_dim == config.transformer_config().mlp_hidden_dim == 1536
    assert (config.vocab_size, config.max_seq_len, config.bias) == (30522, 512, True)
    assert config.transformer_config().norm == "post"


def test_from_hf_config_reads_the_mlp_width_as_a_ratio():
    hf = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                 intermediate_size=1536).to_dict()
    config = BertConfig.from_hf_config(hf)
    assert config == BertConfig.minilm_l6()
    assert BertConfig.from_hf_config(hf_tiny_config().to_dict()) == BertConfig(**TINY)
    odd = BertConfig.from_hf_config({**hf, "intermediate_size": 1000})          # not a multiple of 384
    assert odd.mlp_hidden_dim == 1000
    with torch.device("meta"):
        assert BertModel(odd).encoder.blocks[0].mlp.fc.out_features == 1000
    # 15 / 11 = 1.3636...; 1.3636... * 11 = 14.999999999999998 in floating point: no ratio builds 15 units
    with pytest.raises(ValueError, match=r"intermediate_size=15 is not reproduced by int\(mlp_ratio \* hidden_size\)"):
        BertConfig.from_hf_config({**hf, "hidden_size": 11, "num_attention_heads": 1, "intermediate_size": 15})


def _random_batch(generator, batch=3, seq=11):
    ids = torch.randint(5, 97, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, 6:] = 1
    return ids, mask, types


def test_bert_model_matches_transformers_in_float64_with_padding():
    from mmtutorial.zoo.bert import hf_to_bert_state_dict

    torch.manual_seed(0)
    theirs = transformers.BertModel(hf_tiny_config()).double().eval()
    ours = BertModel(BertConfig(**TINY)).double().eval()
    ours.load_state_dict(hf_to_bert_state_dict(theirs.state_dict()), strict=True)
    ids, mask, types = _random_batch(torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
        hidden, pooled = ours(ids, mask, types, return_pooled=True)
    assert hidden.shape == (3, 11, 32)
    assert_close(hidden, expected.last_hidden_state, rtol=1e-9, atol=1e-9)
    assert_close(pooled, expected.pooler_output, rtol=1e-9, atol=1e-9)


def test_masked_lm_matches_transformers_logits_and_loss():
    from mmtutorial.zoo.bert import hf_to_bert_state_dict

    torch.manual_seed(0)
    theirs = transformers.BertForMaskedLM(hf_tiny_config()).double().eval()
    ours = BertForMaskedLM(BertConfig(**TINY, pooler=False)).double().eval()
    ours.load_state_dict(hf_to_bert_state_dict(theirs.state_dict()), strict=True)
    ids, mask, types = _random_batch(torch.Generator().manual_seed(2))
    corrupted, labels = mlm_mask_tokens(ids, 4, 97, special_ids=(0, 1, 2, 3), mask_prob=0.3,
                                        generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = theirs(input_ids=corrupted, attention_mask=mask, token_type_ids=types, labels=labels)
        logits = ours(corrupted, mask, types)
        loss = ours(corrupted, mask, types, labels=labels)
    assert_close(logits, expected.logits, rtol=1e-9, atol=1e-9)
    assert_close(loss, expected.loss, rtol=1e-9, atol=1e-9)


def test_mlm_head_is_tied_to_word_embeddings():
    model = BertForMaskedLM(BertConfig(**TINY, pooler=False))
    names = [name for name, _ in model.named_parameters()]
    assert "mlm_head.bias" in names and not any("decoder" in name for name in names)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[5].add_(1.0)
    logits_changed = model(torch.tensor([[1, 5, 2]]))
    assert logits_changed.shape == (1, 3, 97)


def test_mlm_loss_equals_cross_entropy_with_ignore_index():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, 50, generator=generator, dtype=torch.float64)
    labels = torch.randint(50, (4, 9), generator=generator)
    labels[torch.rand(4, 9, generator=generator) > 0.3] = IGNORE_INDEX
    labels[0, 0] = 7  # at least one scored position
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert_close(mlm_loss(logits, labels), expected)
    selected = labels != -100
    by_hand = -torch.log_softmax(logits, -1)[selected].gather(1, labels[selected, None]).sum() / selected.sum()
    assert_close(mlm_loss(logits, labels), by_hand)


def test_mlm_mask_tokens_80_10_10_proportions():
    vocab, mask_id, special = 1000, 3, (0, 1, 2, 3)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (400, 500), generator=generator)  # 200,000 ordinary tokens
    corrupted, labels = mlm_mask_tokens(ids, mask_id, vocab, special, generator=generator)
    selected = labels != IGNORE_INDEX
    count = int(selected.sum())
    # Binomial standard deviations: 0.0008 for the 15 %, about 0.003 for the 80 % and 0.002 for the 10 %s.
    assert abs(count / ids.numel() - 0.15) < 0.004
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(corrupted[~selected], ids[~selected])  # unselected tokens are never touched
    masked = (corrupted[selected] == mask_id).float().mean().item()
    kept = (corrupted[selected] == ids[selected]).float().mean().item()
    changed = ((corrupted[selected] != ids[selected]) & (corrupted[selected] != mask_id)).float().mean().item()
    assert abs(masked - 0.80) < 0.012
    assert abs(kept - 0.10) < 0.01    # (+ the 1/vocab chance that a random draw repeats the token)
    assert abs(changed - 0.10) < 0.01


def test_mlm_mask_tokens_never_selects_special_tokens():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 50, (64, 32), generator=generator)
    ids[:, 0], ids[:, -1], ids[:, 20:-1] = 1, 2, 0  # [CLS] ... [SEP] and padding
    corrupted, labels = mlm_mask_tokens(ids, 3, 50, special_ids=[0, 1, 2], mask_prob=0.9, generator=generator)
    special = (ids == 0) | (ids == 1) | (ids == 2)
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(corrupted[special], ids[special])
    assert (labels[~special] != IGNORE_INDEX).float().mean() > 0.85


def test_mlm_mask_tokens_is_reproducible_with_a_generator():
    ids = torch.randint(4, 50, (8, 16), generator=torch.Generator().manual_seed(0))
    first = mlm_mask_tokens(ids, 3, 50, (0,), generator=torch.Generator().manual_seed(5))
    second = mlm_mask_tokens(ids, 3, 50, (0,), generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_mean_pool_ignores_padding():
    hidden = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    assert_close(pooled[0], hidden[0, :3].mean(0))
    assert_close(pooled[1], hidden[1].mean(0))
    assert_close(mean_pool(hidden), hidden.mean(1))


def test_bias_false_builds_a_bert_without_biases():
    model = BertForMaskedLM(BertConfig(**TINY, bias=False, pooler=True)).eval()
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    with_bias = BertForMaskedLM(BertConfig(**TINY, pooler=True))
    assert any(name.endswith("bias") for name, _ in with_bias.named_parameters())
    logits = model(torch.tensor([[1, 5, 2]]))
    assert logits.shape == (1, 3, 97) and torch.isfinite(logits).all()


def test_bad_inputs_raise_clear_errors():
    model = BertModel(BertConfig(**TINY)).eval()
    with pytest.raises(TypeError, match=r"input_ids must hold integer token ids \(torch.long\), got dtype torch.float32"):
        model(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        model([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, seq\), got \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, vocab_size=97\), got values in \[0, 200\]"):
        model(torch.tensor([[0, 200]]))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, vocab_size=97\), got values in \[-1, 3\]"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="longer than max_seq_len=24"):
        model(torch.zeros(1, 30, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token_type_ids must be in \[0, vocab_size=2\), got values in \[0, 2\]"):
        model(torch.zeros(1, 3, dtype=torch.long), token_type_ids=torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"token_type_ids must have the shape of input_ids \(1, 3\)"):
        model(torch.zeros(1, 3, dtype=torch.long), token_type_ids=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of input_ids \(1, 4\)"):
        model(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match="divisible by num_heads=5"):
        BertConfig(**{**TINY, "num_heads": 5})
    with pytest.raises(ValueError, match="BertConfig.mlp_ratio must be a number > 0"):
        BertConfig(**{**TINY, "mlp_ratio": 0})
    with pytest.raises(ValueError, match="BertConfig.max_seq_len must be a positive int, got 0"):
        BertConfig(**{**TINY, "max_seq_len": 0})
    with pytest.raises(ValueError, match="BertConfig.bias must be True or False, got 'yes'"):
        BertConfig(**{**TINY, "bias": "yes"})
    with pytest.raises(ValueError, match="mask_prob must be in"):
        mlm_mask_tokens(torch.zeros(1, 3, dtype=torch.long), 3, 10, mask_prob=1.5)
    with pytest.raises(TypeError, match="input_ids must be an integer tensor, got torch.float32"):
        mlm_mask_tokens(torch.zeros(1, 3), 3, 10)
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\) \(the logits. without vocab\), got \(2, 4\)"):
        mlm_loss(torch.zeros(2, 3, 10), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="every label is -100"):
        mlm_loss(torch.zeros(1, 2, 10), torch.full((1, 2), -100))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(batch, seq\) = \(2, 5\)"):
        mean_pool(torch.zeros(2, 5, 3), torch.ones(2, 4))


# --------------------------------------------------------------------------------------------------
# Chapter 8's baselines and result bounds (tests/test_quick_bounds.py applies them to broken models)
# --------------------------------------------------------------------------------------------------
def test_context_free_mlm_loss_is_the_bayes_posterior_of_the_masking_rule():
    vocab_size, mask_id = 12, 0
    generator = torch.Generator().manual_seed(0)
    unigram = torch.rand(vocab_size, generator=generator, dtype=torch.float64) + 0.05
    unigram[mask_id] = 1e-12                                          # [MASK] never occurs in the text
    unigram /= unigram.sum()
    # P(shown v | original w) of mlm_mask_tokens for a selected token: 0.8 [MASK], 0.1 random, 0.1 itself.
    shown_given_original = torch.full((vocab_size, vocab_size), 0.1 / vocab_size, dtype=torch.float64)   # (w, v)
    shown_given_original[:, mask_id] += 0.8
    shown_given_original += 0.1 * torch.eye(vocab_size, dtype=torch.float64)
    joint = unigram[:, None] * shown_given_original                  # (w, v)
    posterior = joint / joint.sum(dim=0, keepdim=True)               # (w, v): p(w | v) by Bayes' rule

    originals = torch.multinomial(unigram.float(), 4000, replacement=True, generator=generator).view(40, 100)
    corrupted, labels = mlm_mask_tokens(originals, mask_id, vocab_size, [mask_id], mask_prob=0.5,
                                        generator=generator)
    selected = labels != IGNORE_INDEX
    by_enumeration = -posterior[labels[selected], corrupted[selected]].log().mean().item()
    assert_close(context_free_mlm_loss(unigram, corrupted, labels, mask_id), by_enumeration, rtol=1e-9, atol=1e-9)

    unigram_loss = -unigram[labels[selected]].log().mean().item()
    assert context_free_mlm_loss(unigram, corrupted, labels, mask_id) < unigram_loss   # the visible tenth helps
    all_masked = torch.where(selected, mask_id, corrupted)            # nothing visible: the unigram loss exactly
    assert_close(context_free_mlm_loss(unigram, all_masked, labels, mask_id), unigram_loss)


def test_context_gap_is_zero_without_context_and_swap_keeps_m():
    corrupted = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 4, 2]])
    labels = torch.tensor([[-100, 5, -100, -100, -100], [-100, -100, -100, 4, -100]])
    other = torch.tensor([[1, 10, 11, 12, 2], [1, 13, 14, 15, 2]])
    assert swap_context(corrupted, labels, other).tolist() == [[1, 5, 11, 12, 2], [1, 13, 14, 4, 2]]
    with pytest.raises(ValueError, match=r"other_context must have the shape of corrupted \(2, 5\), "
                                         r"got Tensor of shape \(2, 4\)"):
        swap_context(corrupted, labels, other[:, :4])

    torch.manual_seed(0)   # a wide initialisation, so that even untrained attention is far from uniform
    model = BertForMaskedLM(BertConfig(**TINY, pooler=False, initializer_range=0.5)).double().eval()
    assert abs(mlm_context_gap(model, corrupted, labels, other)) > 1e-2       # it reads the other positions

    def own_position_only(module, args, kwargs):                            # attention from each position to itself
        kwargs["attn_mask"] = torch.eye(args[0].shape[1], dtype=torch.bool)
        return args, kwargs

    model.bert.encoder.register_forward_pre_hook(own_position_only, with_kwargs=True)
    assert abs(mlm_context_gap(model, corrupted, labels, other)) < 1e-12     # blind to them: no gap at all


def test_mlm_bounds_per_mode_and_their_checks(monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    quick_bounds = {name: bound["quick"] for name, bound in MLM_BOUNDS.items()}
    assert {name: mlm_bound(name) for name in MLM_BOUNDS} == quick_bounds
    assert mlm_beats_unigram(5.3, 5.78) and not mlm_beats_unigram(5.6, 5.78)      # QUICK: 0.2 below
    assert mlm_uses_context(0.06) and not mlm_uses_context(0.0)
    assert mlm_wrong_loss_flatters(2.3, 5.3) and not mlm_wrong_loss_flatters(5.2, 5.3)
    monkeypatch.setenv("MMTUTORIAL_QUICK", "0")
    assert mlm_bound("unigram_margin") == MLM_BOUNDS["unigram_margin"]["full"] == 0.3
    assert not mlm_beats_unigram(5.6, 5.78) and not mlm_uses_context(0.1)
    with pytest.raises(ValueError, match="unknown bound 'margin'; expected one of"):
        mlm_bound("margin")
    with pytest.raises(TypeError, match="context_gap must be a number of nats .a float., got Tensor"):
        mlm_uses_context(torch.tensor(0.3))
    with pytest.raises(ValueError, match="val_loss must be a finite number of nats, got nan"):
        mlm_beats_unigram(float("nan"), 5.0)
    with pytest.raises(ValueError, match="loss_on_m must be > 0 nats, got 0.0"):
        mlm_wrong_loss_flatters(1.0, 0.0)
    unigram = torch.full((5,), 0.2, dtype=torch.float64)
    with pytest.raises(ValueError, match="unigram must be positive frequencies that sum to 1"):
        context_free_mlm_loss(unigram * 2, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), 0)
    with pytest.raises(TypeError, match="unigram must be a 1-d float tensor"):
        context_free_mlm_loss([0.5, 0.5], torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="every label is -100"):
        context_free_mlm_loss(unigram, torch.zeros(1, 3, dtype=torch.long), torch.full((1, 3), -100), 0)


# --------------------------------------------------------------------------------------------------
# Exercise checkers of chapter 8: accept the right answer, reject a wrong one
# --------------------------------------------------------------------------------------------------
def test_ch08_checkers_accept_right_and_reject_wrong_answers():
    from mmtutorial.exercises import ExerciseError, ch08

    ch08.check_mean_pool(mean_pool)
    with pytest.raises(ExerciseError, match="number of real tokens"):
        ch08.check_mean_pool(lambda hidden, mask: hidden.mean(1))  # averages the padding too

    ch08.check_masked_lm_loss(mlm_loss)
    with pytest.raises(ExerciseError, match="selected positions only"):
        ch08.check_masked_lm_loss(lambda logits, labels: F.cross_entropy(
            logits.flatten(0, 1), labels.clamp(min=0).flatten()))  # scores every position

    def count(vocab, max_seq_len, types, dim, layers, mlp_hidden_dim):
        embeddings = (vocab + max_seq_len + types) * dim + 2 * dim
        block = 4 * (dim * dim + dim) + 2 * dim * mlp_hidden_dim + mlp_hidden_dim + dim + 4 * dim
        return embeddings + layers * block + dim * dim + dim

    ch08.check_bert_parameter_count(count)
    with pytest.raises(ExerciseError, match="expected 109,482,240"):
        ch08.check_bert_parameter_count(lambda *args: count(*args) - args[3] * args[3] - args[3])  # no pooler

    ch08.check_cosine_similarity_matrix(lambda a, b: F.normalize(a, dim=1) @ F.normalize(b, dim=1).T)
    with pytest.raises(ExerciseError, match="Normalise every row"):
        ch08.check_cosine_similarity_matrix(lambda a, b: a @ b.T)
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch08.check_mean_pool(lambda hidden, mask: (_ for _ in ()).throw(NotImplementedError))

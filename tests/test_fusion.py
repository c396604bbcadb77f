"""mmtutorial.nn.fusion, mmtutorial.models.fusion and mmtutorial.data.paired: fusion layers against their
formulas and torch.nn.MultiheadAttention, missing-modality handling, bad-input errors, the paired data sets
and the chapter 14 exercise checkers.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mmtutorial.data import paired
from mmtutorial.encoders import audio as audio_encoders
from mmtutorial.exercises import ExerciseError, ch14
from mmtutorial.models.fusion import (FUSIONS, MultimodalClassifier, MultimodalClassifierConfig, SentimentFusionConfig,
                                      SentimentFusionModel, accuracy, multimodal_loss, sentiment_loss)
from mmtutorial.nn.fusion import (ConcatFusion, CrossAttentionFusion, FiLM, GatedFusion, LateFusion, ModalityDropout,
                                  WeightedFusion, presence_mask)


def _features(batch=5, dims=(3, 4), seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d, generator=generator, dtype=dtype) for d in dims]


# ------------------------------------------------------------------ input handling
def test_presence_mask_combines_none_and_per_sample_mask():
    a, b = _features()
    _, mask = presence_mask([a, None])
    assert mask.dtype == torch.bool and mask.tolist() == [[True, False]] * 5
    per_sample = torch.tensor([[True, True], [False, True], [True, False], [True, True], [False, True]])
    _, mask = presence_mask([a, b], per_sample)
    assert torch.equal(mask, per_sample)


@pytest.mark.parametrize("features, present, error, words", [
    ([torch.zeros(3, 2), torch.zeros(4, 2)], None, ValueError, "batch size"),
    ([None, None], None, ValueError, "missing"),
    ([torch.zeros(3, 2, dtype=torch.int64)], None, TypeError, "floating-point"),
    (torch.zeros(3, 2), None, TypeError, "list"),
    ([torch.zeros(3, 2)], torch.ones(3, 2, dtype=torch.bool), ValueError, "(batch, modalities)"),
    ([torch.zeros(3, 2)], torch.ones(3, 1), TypeError, "bool"),
])
def test_presence_mask_rejects_bad_input(features, present, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        presence_mask(features, present)


def test_wrong_feature_size_names_expected_and_received():
    with pytest.raises(ValueError, match=r"modality 1 must have shape \(batch, 4\), got \(5, 3\)"):
        ConcatFusion([3, 4])([torch.zeros(5, 3), torch.zeros(5, 3)])
    with pytest.raises(ValueError, match="expected 2 modalities, got 3"):
        ConcatFusion([3, 4])(_features(dims=(3, 4, 4)))


def test_dict_input_uses_names_and_absent_key_is_missing():
    a, b = _features()
    layer = ConcatFusion({"image": 3, "audio": 4}).double()
    assert_close(layer({"image": a, "audio": b}), torch.cat([a, b], dim=-1))
    assert_close(layer({"image": a}), torch.cat([a, torch.zeros_like(b)], dim=-1))
    with pytest.raises(ValueError, match="unknown modalities"):
        layer({"image": a, "text": b})


# ------------------------------------------------------------------ concatenation and weighted fusion
def test_concat_equals_torch_cat_and_zeroes_missing():
    a, b = _features()
    layer = ConcatFusion([3, 4])
    assert_close(layer([a, b]), torch.cat([a, b], dim=-1))
    present = torch.tensor([[True, False]] * 5)
    assert_close(layer([a, b], present), torch.cat([a, torch.zeros_like(b)], dim=-1))
    assert ConcatFusion([100, 9216, 1280]).output_dim == 10596          # not 11,496 (ERRATA E9)


def test_weighted_fusion_worked_example_and_weights():
    layer = WeightedFusion([2, 2], weights=[0.4, 0.6], learnable=False).double()
    fused = layer([torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[3.0, 4.0]], dtype=torch.float64)])
    assert_close(fused, torch.tensor([[2.2, 3.2]], dtype=torch.float64))   # not [3.2, 4.8] (ERRATA E25)
    assert_close(layer.weights, torch.tensor([0.4, 0.6], dtype=torch.float64))
    assert not any(p.requires_grad for p in layer.parameters())
    assert WeightedFusion([2, 2]).logits.requires_grad


def test_weighted_fusion_needs_one_size_and_valid_weights():
    with pytest.raises(ValueError, match=r"same size; got sizes \[100, 9216, 1280\]"):
        WeightedFusion([100, 9216, 1280])
    for weights in ([0.5, 0.6], [1.0, 0.0], [1.0]):
        with pytest.raises(ValueError, match="positive numbers summing to 1"):
            WeightedFusion([2, 2], weights=weights)


def test_weighted_fusion_renormalises_over_present_modalities():
    a, b = _features(dims=(4, 4))
    layer = WeightedFusion([4, 4], weights=[0.3, 0.7]).double()
    assert_close(layer([a, None]), a)                                     # the only present one gets weight 1
    present = torch.tensor([[True, True], [False, True], [True, False], [True, True], [True, True]])
    expected = torch.stack([0.3 * a[0] + 0.7 * b[0], b[1], a[2], 0.3 * a[3] + 0.7 * b[3], 0.3 * a[4] + 0.7 * b[4]])
    assert_close(layer([a, b], present), expected)


# ------------------------------------------------------------------ late fusion
def test_late_fusion_averages_logits_or_probabilities():
    a, b = _features()
    layer = LateFusion([3, 4], num_classes=3).double()
    logits_a, logits_b = layer.heads[0](a), layer.heads[1](b)
    assert_close(layer([a, b]), (logits_a + logits_b) / 2)
    assert_close(layer([a, None]), logits_a)
    layer.combine = "probs"
    expected = ((logits_a.softmax(-1) + logits_b.softmax(-1)) / 2).log()
    assert_close(layer([a, b]), expected)
    assert_close(layer([a, b]).exp().sum(-1), torch.ones(5, dtype=torch.float64))
    assert_close(LateFusion([3, 3], num_classes=None)([logits_a, logits_a * 3]), 2 * logits_a)


def test_late_fusion_is_additive_so_it_cannot_model_interactions():
    """s(x1, y1) + s(x2, y2) == s(x1, y2) + s(x2, y1): no 'do these match?' function has this form."""
    x, y = _features(batch=2, dims=(3, 4), seed=3)
    layer = LateFusion([3, 4], num_classes=2).double()
    score = lambda i, j: layer([x[i:i + 1], y[j:j + 1]])
    assert_close(score(0, 0) + score(1, 1), score(0, 1) + score(1, 0))
    with pytest.raises(ValueError, match="combine"):
        LateFusion([3, 4], 2, combine="vote")


# ------------------------------------------------------------------ gated fusion
def test_gated_fusion_with_two_modalities_is_the_gmu():
    x1, x2 = _features(dims=(3, 4))
    layer = GatedFusion([3, 4], 6).double()
    gate_w, gate_b = layer.gate.weight.view(2, 6, 7), layer.gate.bias.view(2, 6)
    # GMU (Arevalo et al., 2017): z = sigmoid(Wz [x1; x2]), h = z * tanh(W1 x1) + (1 - z) * tanh(W2 x2)
    z = torch.sigmoid(torch.cat([x1, x2], -1) @ (gate_w[0] - gate_w[1]).T + (gate_b[0] - gate_b[1]))
    h1, h2 = torch.tanh(layer.projections[0](x1)), torch.tanh(layer.projections[1](x2))
    assert_close(layer([x1, x2]), z * h1 + (1 - z) * h2)
    gates = layer.gates([x1, x2])                                         # (batch, 2, 6)
    assert_close(gates.sum(dim=1), torch.ones(5, 6, dtype=torch.float64))


def test_gated_fusion_missing_modality_gets_gate_zero():
    x1, x2 = _features(dims=(3, 4))
    layer = GatedFusion([3, 4], 6).double()
    assert_close(layer([x1, None]), torch.tanh(layer.projections[0](x1)))
    present = torch.tensor([[True, False]] * 5)
    assert_close(layer([x1, x2], present), torch.tanh(layer.projections[0](x1)))
    assert_close(layer.gates([x1, None])[:, 1], torch.zeros(5, 6, dtype=torch.float64))


# ------------------------------------------------------------------ FiLM
def test_film_scales_and_shifts_the_target():
    x, c = _features(dims=(3, 4))
    layer = FiLM([3, 4], target=0).double()
    gamma, beta = layer.to_gamma_beta(c).chunk(2, dim=-1)
    assert_close(layer([x, c]), (1 + gamma) * x + beta)
    assert_close(layer([x, None]), x)                                     # no condition: identity
    assert_close(layer([None, c]), beta)                                  # no target: only the shift
    named = FiLM({"image": 3, "audio": 4}, target="image").double()
    assert named.target == 0 and named.output_dim == 3
    with pytest.raises(ValueError, match="target"):
        FiLM([3, 4], target=2)
    with pytest.raises(ValueError, match="conditioning"):
        FiLM([3])


# ------------------------------------------------------------------ cross-attention
def _reference_cross_attention(layer: CrossAttentionFusion, inputs):
    """The same computation written with torch.nn.MultiheadAttention (weights copied from ours)."""
    tokens = [proj(x if x.dim() == 3 else x.unsqueeze(1)) + layer.modality_embedding[i]
              for i, (proj, x) in enumerate(zip(layer.projections, inputs))]
    pooled = []
    for m, attention in enumerate(layer.attentions):
        reference = nn.MultiheadAttention(layer.embed_dim, attention.num_heads, batch_first=True).double()
        with torch.no_grad():
            reference.in_proj_weight.copy_(attention.qkv_proj.weight)
            reference.in_proj_bias.copy_(attention.qkv_proj.bias)
            reference.out_proj.weight.copy_(attention.out_proj.weight)
            reference.out_proj.bias.copy_(attention.out_proj.bias)
        context = torch.cat([tokens[k] for k in range(len(tokens)) if k != m], dim=1)
        out, _ = reference(tokens[m], context, context)
        pooled.append(layer.norms[m](tokens[m] + out).mean(dim=1))
    return torch.cat(pooled, dim=-1)


def test_cross_attention_fusion_matches_torch_multihead_attention():
    torch.manual_seed(0)
    image, audio = torch.randn(3, 8, 5, dtype=torch.float64), torch.randn(3, 10, 7, dtype=torch.float64)
    layer = CrossAttentionFusion([5, 7], embed_dim=8, num_heads=2).double()
    assert_close(layer([image, audio]), _reference_cross_attention(layer, [image, audio]))
    vector = torch.randn(3, 7, dtype=torch.float64)                       # a vector is one token
    assert_close(layer([image, vector]), _reference_cross_attention(layer, [image, vector]))
    fused, weights = layer([image, audio], return_attention=True)
    assert fused.shape == (3, 16) and weights[0].shape == (3, 2, 8, 10) and weights[1].shape == (3, 2, 10, 8)
    assert_close(weights[0].sum(-1), torch.ones(3, 2, 8, dtype=torch.float64))


def test_cross_attention_fusion_missing_samples():
    torch.manual_seed(1)
    image, audio = torch.randn(4, 8, 5, dtype=torch.float64), torch.randn(4, 10, 7, dtype=torch.float64)
    layer = CrossAttentionFusion([5, 7], embed_dim=8, num_heads=2).double()
    present = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    fused = layer([image, audio], present)
    assert torch.isfinite(fused).all()
    # Sample 1 has no audio: its image tokens attend to nothing (residual only), its audio slot is zero.
    image_tokens = layer.projections[0](image[1:2]) + layer.modality_embedding[0]
    assert_close(fused[1, :8], layer.norms[0](image_tokens).mean(dim=1)[0])
    assert_close(fused[1, 8:], torch.zeros(8, dtype=torch.float64))
    assert_close(fused[2, :8], torch.zeros(8, dtype=torch.float64))
    # Samples with both modalities do not depend on the others in the batch.
    assert_close(fused[[0, 3]], layer([image[[0, 3]], audio[[0, 3]]]))
    assert_close(layer([image, None])[:, 8:], torch.zeros(4, 8, dtype=torch.float64))


# ------------------------------------------------------------------ modality dropout
def test_modality_dropout_statistics_and_eval_identity():
    a, b = torch.ones(20000, 3), torch.ones(20000, 2)
    dropout = ModalityDropout(0.4, num_modalities=2)
    generator = torch.Generator().manual_seed(0)
    (fa, fb), keep = dropout([a, b], generator=generator)
    assert keep.any(dim=1).all()                                          # never everything
    # Each modality is dropped with p, and an emptied sample (p^2) gets one back at random: p - p^2/2.
    assert abs((~keep).float().mean().item() - (0.4 - 0.4 ** 2 / 2)) < 0.01
    assert_close(fa, keep[:, :1].float().expand(-1, 3))
    assert_close(fb, keep[:, 1:].float().expand(-1, 2))
    again = dropout([a, b], generator=torch.Generator().manual_seed(0))[1]
    assert torch.equal(keep, again)                                       # seeded
    dropout.eval()
    features, keep = dropout([a, b])
    assert keep.all() and torch.equal(features[0], a)


def test_modality_dropout_never_revives_a_missing_modality():
    a, b = torch.ones(1000, 3), torch.ones(1000, 2)
    present = torch.rand(1000, 2, generator=torch.Generator().manual_seed(2)) < 0.7
    present[0] = False
    _, keep = ModalityDropout([0.5, 0.2])([a, b], present, generator=torch.Generator().manual_seed(3))
    assert not (keep & ~present).any()
    assert torch.equal(keep.any(dim=1), present.any(dim=1))
    _, keep = ModalityDropout(0.9)([a, None])
    assert keep[:, 0].all() and not keep[:, 1].any()                      # the only one is always kept


@pytest.mark.parametrize("p", [1.0, -0.1, [0.2, 1.5], []])
def test_modality_dropout_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="p must be"):
        ModalityDropout(p)


# ------------------------------------------------------------------ the classifiers
@pytest.mark.parametrize("fusion", FUSIONS)
def test_multimodal_classifier_shapes_missing_modalities_and_seeding(fusion):
    config = MultimodalClassifierConfig(input_shapes=((8, 8), (10, 13)), num_classes=3, fusion=fusion,
                                        hidden_dim=16, num_heads=2, modality_dropout=0.3)
    torch.manual_seed(0)
    model = MultimodalClassifier(config).eval()
    image, audio = torch.randn(6, 8, 8), torch.randn(6, 130)              # flat audio is accepted too
    logits = model([image, audio])
    assert logits.shape == (6, 3)
    assert model([image, None]).shape == model({"audio": audio}).shape == (6, 3)
    torch.manual_seed(0)
    assert_close(MultimodalClassifier(config).eval()([image, audio]), logits)
    with pytest.raises(ValueError, match=r"image must have shape \(batch, 8, 8\)"):
        model([torch.randn(6, 7, 8), audio])
    loss = multimodal_loss(model.train(), (image, audio, torch.randint(0, 3, (6,))))
    loss.backward()
    assert math.isfinite(loss.item())


def test_multimodal_classifier_config_errors():
    with pytest.raises(ValueError, match="fusion must be one of"):
        MultimodalClassifierConfig(fusion="sum")
    with pytest.raises(ValueError, match="one distinct name per modality"):
        MultimodalClassifierConfig(input_shapes=((4,),), modality_names=("a", "b"))
    with pytest.raises(ValueError, match="at least two modalities"):
        MultimodalClassifierConfig(input_shapes=((4,),), modality_names=("a",), fusion="film")
    with pytest.raises(ValueError, match="divisible"):
        MultimodalClassifierConfig(hidden_dim=30, num_heads=4)


def test_joint_model_learns_match_where_late_fusion_cannot():
    """On one-hot digits, 'do they match?' is learnt by concatenation + MLP, not by late fusion."""
    from mmtutorial.training import fit
    generator = torch.Generator().manual_seed(0)
    left = torch.randint(0, 4, (2000,), generator=generator)
    match = torch.rand(2000, generator=generator) < 0.5
    right = torch.where(match, left, (left + torch.randint(1, 4, (2000,), generator=generator)) % 4)
    inputs = [nn.functional.one_hot(left, 4).float(), nn.functional.one_hot(right, 4).float()]
    results = {}
    for fusion in ("concat", "late"):
        torch.manual_seed(0)
        model = MultimodalClassifier(MultimodalClassifierConfig(input_shapes=((4,), (4,)), fusion=fusion,
                                                                hidden_dim=16, num_heads=2, dropout=0.0))
        fit(model, (*inputs, match.long()), loss_fn=multimodal_loss, epochs=15, batch_size=100, lr=1e-2,
            progress=False, device="cpu")
        results[fusion] = accuracy(model, inputs, match.long())
    assert results["concat"] > 0.97
    assert results["late"] <= 0.76                                        # the additive ceiling is 3/4


def test_sentiment_model_packing_matches_plain_lstm_on_each_review():
    torch.manual_seed(0)
    model = SentimentFusionModel(SentimentFusionConfig(vocab_size=20, modalities=("text",))).double().eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10], [11, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 5, 1])
    features = model.encode_text(tokens, lengths)                          # (3, lstm_hidden)
    for row in range(3):   # the reference: nn.LSTM on the unpadded review alone
        _, (hidden, _) = model.lstm(model.embedding(tokens[row:row + 1, :lengths[row]]))
        assert_close(features[row], hidden[-1, 0])
    longer = torch.cat([tokens, torch.zeros(3, 4, dtype=torch.int64)], dim=1)   # more padding: same result
    assert_close(model.encode_text(longer, lengths), features)


def test_sentiment_model_shapes_and_errors():
    torch.manual_seed(0)
    model = SentimentFusionModel(SentimentFusionConfig(vocab_size=40))
    data = paired.make_reviews(6, seed=0)
    assert model(data.tokens, data.lengths, data.images).shape == (6, 2)
    sentiment_loss(model, data.tensors()).backward()
    with pytest.raises(ValueError, match=r"expected shape \(batch, 1, 16, 16\), got \(6, 1, 24, 24\)"):
        model(data.tokens, data.lengths, torch.zeros(6, 1, 24, 24))
    with pytest.raises(TypeError, match=r"integer token ids \(torch.long\), got dtype torch.float32"):
        model(data.tokens.float(), data.lengths, data.images)
    with pytest.raises(ValueError, match="lengths"):
        model(data.tokens, data.lengths * 0, data.images)
    with pytest.raises(ValueError, match=r"must be in \[0, vocab_size=40\), got values in \[100, "):
        model(data.tokens + 100, data.lengths, data.images)
    image_only = SentimentFusionModel(SentimentFusionConfig(vocab_size=40, modalities=("image",)))
    assert image_only(None, None, data.images).shape == (6, 2)
    with pytest.raises(ValueError, match="modalities"):
        SentimentFusionConfig(modalities=("audio",))
    with pytest.raises(ValueError, match="multiple of 4"):
        SentimentFusionConfig(image_size=18)


# ------------------------------------------------------------------ data
def test_make_pairs_match_is_balanced_and_uninformative_per_modality():
    rng = np.random.default_rng(0)
    image_digits, audio_digits = rng.integers(0, 10, 500), np.repeat(np.arange(10), 30)
    image_index, audio_index, labels = paired.make_pairs("match", image_digits, audio_digits, 20000, seed=1)
    assert labels.sum() == 10000                                          # exactly balanced
    shown, spoken = image_digits[image_index], audio_digits[audio_index]
    assert np.array_equal(labels, (shown == spoken).astype(np.int64))
    for digit in range(10):                                               # P(match | one modality) = 1/2
        assert abs(labels[shown == digit].mean() - 0.5) < 0.05
        assert abs(labels[spoken == digit].mean() - 0.5) < 0.05
    non_matching = spoken[(labels == 0) & (shown == 3)]
    assert set(non_matching) == set(range(10)) - {3}
    _, audio_index, sums = paired.make_pairs("sum", image_digits, audio_digits, 1000, seed=2)
    assert sums.max() <= 18 and sums.min() >= 0
    image_index, audio_index, digits = paired.make_pairs("digit", image_digits, audio_digits, 1000, seed=2)
    assert np.array_equal(image_digits[image_index], audio_digits[audio_index])
    assert np.array_equal(digits, image_digits[image_index])
    with pytest.raises(ValueError, match="task must be one of"):
        paired.make_pairs("xor", image_digits, audio_digits, 10)
    with pytest.raises(ValueError, match=r"audio have no example of digit\(s\) \[9\]"):
        paired.make_pairs("match", image_digits, audio_digits[audio_digits != 9], 10)


def test_add_noise_at_snr_gives_the_requested_ratio():
    audio = np.sin(np.linspace(0, 200, 16000))[None].repeat(3, axis=0) * np.array([[0.1], [0.5], [1.0]])
    noisy = paired.add_noise_at_snr(audio, snr_db=-6.0, seed=0)
    snr = 10 * np.log10(np.mean(audio ** 2, axis=1) / np.mean((noisy - audio) ** 2, axis=1))
    assert np.allclose(snr, -6.0, atol=0.1)


@pytest.mark.skipif(not __import__("mmtutorial.data.spoken_digits", fromlist=["x"]).espeak_available(),
                    reason="espeak-ng is not installed")
def test_load_paired_digits_small(monkeypatch, tmp_path):
    from mmtutorial.data import spoken_digits as sd
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    small = sd.load_spoken_digits(accents=("en-us",), variants=("m1", "m3", "f1", "f2"), styles_per_voice=1,
                                  verbose=False)
    monkeypatch.setattr(sd, "load_spoken_digits", lambda **kwargs: small)
    five_tokens = functools.partial(audio_encoders.mfcc_tokens, segments=5)
    data = paired.load_paired_digits("match", audio_transform=five_tokens, pairs=(200, 50, 60), image_noise=2.0,
                                     audio_snr_db=0.0, verbose=False)
    assert data.num_classes == 2 and len(data.test) == 60
    assert data.train.image.shape == (200, 8, 8) and data.train.audio.shape == (200, 5, 13)
    assert int(data.test.label.sum()) == 30
    assert not set(data.test.voices) & set(data.train.voices)             # held-out voices
    assert abs(float(data.train.image.mean())) < 0.1 and abs(float(data.train.image.std()) - 1) < 0.1
    image, audio, label = data.train.tensors(flat=True)
    assert image.shape == (200, 64) and audio.shape == (200, 65) and label.dtype == torch.int64
    with pytest.raises(ValueError, match="image_noise"):
        paired.load_paired_digits("match", audio_transform=five_tokens, image_noise=-1.0)
    with pytest.raises(ValueError, match="audio_transform must return"):
        paired.load_paired_digits("match", audio_transform=lambda waves, rate: waves, pairs=(200, 50, 60),
                                  verbose=False)


def test_reviews_label_is_positive_words_and_smile():
    data = paired.make_reviews(3000, seed=0)
    assert torch.equal(data.label, torch.as_tensor(data.text_positive & data.smiling, dtype=torch.int64))
    assert abs(data.label.float().mean().item() - 0.5) < 0.03             # balanced
    best_text_only = np.mean(data.label.numpy() == data.text_positive)   # the best rule from words alone
    assert abs(best_text_only - 5 / 6) < 0.02
    for text, positive in zip(data.texts, data.text_positive):
        words = text.split()
        polarity = words[-1] in paired.POSITIVE_WORDS
        assert positive == (polarity != ("not" in words))                 # "not" flips the polarity
    vocab = paired.REVIEW_VOCABULARY
    assert vocab.decode(data.tokens[0]) == data.texts[0]
    assert vocab.encode("the zebra") == [vocab.index["the"], 1]           # unknown word -> id 1
    assert data.images.shape == (3000, 1, 16, 16) and data.images.dtype == torch.float32
    smile = paired.draw_face(True, rng=np.random.default_rng(0), noise=0.0)
    frown = paired.draw_face(False, rng=np.random.default_rng(0), noise=0.0)
    assert smile.shape == (16, 16) and np.abs(smile - frown)[8:].sum() > np.abs(smile - frown)[:8].sum()
    with pytest.raises(ValueError, match="count"):
        paired.make_reviews(0)


# ------------------------------------------------------------------ exercise checkers
def _weighted_fusion(features, weights):
    return sum(w * np.asarray(f) for w, f in zip(weights, features))


def _gated_unit(x1, x2, w1, b1, w2, b2, wz, bz):
    z = 1 / (1 + np.exp(-(np.concatenate([x1, x2], axis=1) @ wz.T + bz)))
    return z * np.tanh(x1 @ w1.T + b1) + (1 - z) * np.tanh(x2 @ w2.T + b2)


def _modality_dropout_mask(present, p, rng):
    keep = present & (rng.random(present.shape) >= p)
    for row in np.flatnonzero(present.any(axis=1) & ~keep.any(axis=1)):
        keep[row, rng.choice(np.flatnonzero(present[row]))] = True
    return keep


def test_exercise_checkers_accept_solutions(capsys):
    ch14.check_weighted_fusion(_weighted_fusion)
    ch14.check_gated_unit(_gated_unit)
    ch14.check_modality_dropout_mask(_modality_dropout_mask)
    assert capsys.readouterr().out.count("✓") == 3


def test_exercise_checkers_reject_wrong_answers():
    with pytest.raises(ExerciseError, match="worked example"):     # the article's [3.2, 4.8]
        ch14.check_weighted_fusion(lambda features, weights: np.array([3.2, 4.8]))
    with pytest.raises(ExerciseError, match="sees BOTH"):          # a gate that looks at x1 only
        ch14.check_gated_unit(lambda x1, x2, w1, b1, w2, b2, wz, bz: _gated_unit(
            x1, np.zeros_like(x2), w1, b1, w2, b2, wz, bz) * 0 + np.tanh(x1 @ w1.T + b1))
    with pytest.raises(ExerciseError, match="lost every modality"):
        ch14.check_modality_dropout_mask(lambda present, p, rng: present & (rng.random(present.shape) >= p))
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        def stub(features, weights):
            raise NotImplementedError
        ch14.check_weighted_fusion(stub)


def test_the_shared_fusion_recipe_refuses_what_it_cannot_train():
    # chapter 14 and chapter 24 share this recipe (mmt.zoo.paired_fusion); wrong arguments fail before any work
    from mmtutorial.models.fusion import MultimodalClassifierConfig
    from mmtutorial.zoo import paired_fusion
    with pytest.raises(TypeError, match="MultimodalClassifierConfig"):
        paired_fusion.load_or_train_fusion_classifier("x", {"num_classes": 10}, None)
    with pytest.raises(TypeError, match="PairedDigits"):
        paired_fusion.load_or_train_fusion_classifier("x", MultimodalClassifierConfig(num_classes=10), (1, 2, 3))
    recipe = paired_fusion.fusion_train_config()
    assert (recipe.lr, recipe.weight_decay, recipe.schedule, recipe.seed) == (5e-3, 1e-2, "onecycle", 0)

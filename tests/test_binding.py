"""Chapter 20: the ImageBind-style binding loss against open_clip's ClipLoss (value and gradients), the absence
of any audio-text term, the model's towers and shapes, bad inputs, class-level retrieval against
``recall_at_k`` and scikit-learn, the unbound ablation, the training losses, the data splits and the
chapter 20 exercise checkers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mmtutorial.exercises import ExerciseError, ch20
from mmtutorial.models import binding
from mmtutorial.models.clip import clip_loss
from mmtutorial.retrieval import recall_at_k
from mmtutorial.zoo import digits_binding

open_clip_loss = pytest.importorskip("open_clip.loss")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def unit(rows, dim, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator, dtype=dtype), dim=-1)


def small_model(seed=0) -> binding.BindingModel:
    torch.manual_seed(seed)
    tokenizer = digits_binding.digit_tokenizer()
    config = binding.BindingConfig.digits(vocab_size=tokenizer.vocab_size, embed_dim=16,
                                          pad_id=tokenizer.stoi[digits_binding.PAD])
    return binding.BindingModel(config).eval()


def fake_inputs(batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokenizer = digits_binding.digit_tokenizer()
    texts = [digits_binding.TRAIN_TEMPLATES[i % 6].format(w) for i, w in enumerate(["one", "two", "three", "four"][:batch])]
    return {"image": torch.rand(batch, 1, 8, 8, generator=generator),
            "text": digits_binding.encode_texts(tokenizer, texts),
            "audio": 0.1 * torch.randn(batch, 16000, generator=generator)}


# -- the loss --------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch,dim,scale", [(4, 8, 1.0), (16, 32, 1 / 0.07), (7, 5, 100.0)])
def test_binding_loss_is_a_sum_of_open_clip_losses(batch, dim, scale):
    embeddings = {"image": unit(batch, dim, 0), "text": unit(batch, dim, 1), "audio": unit(batch, dim, 2)}
    log_scales = {m: torch.tensor(math.log(scale), dtype=torch.float64, requires_grad=True) for m in ("text", "audio")}
    ours = binding.binding_loss(embeddings, {m: t.exp() for m, t in log_scales.items()})
    reference = sum(open_clip_loss.ClipLoss()(embeddings["image"], embeddings[m], log_scales[m].exp())
                    for m in ("text", "audio"))
    assert_close(ours, reference)
    ours_grads = torch.autograd.grad(ours, list(log_scales.values()))
    reference_grads = torch.autograd.grad(
        sum(open_clip_loss.ClipLoss()(embeddings["image"], embeddings[m], log_scales[m].exp()) for m in ("text", "audio")),
        list(log_scales.values()))
    for a, b in zip(ours_grads, reference_grads):
        assert_close(a, b)
    # one modality only: exactly chapter 15's clip_loss
    only_text = binding.binding_loss({"image": embeddings["image"], "text": embeddings["text"]}, {"text": scale, "audio": scale})
    assert_close(only_text, clip_loss(embeddings["image"], embeddings["text"], scale))


def test_binding_loss_has_no_audio_text_term():
    image, audio = unit(8, 16, 0), unit(8, 16, 1).requires_grad_(True)
    grads = []
    for seed in (2, 3):
        loss = binding.binding_loss({"image": image, "text": unit(8, 16, seed), "audio": audio}, {"text": 14.0, "audio": 14.0})
        grads.append(torch.autograd.grad(loss, audio)[0])
    assert_close(grads[0], grads[1], rtol=0, atol=0)
    # without the hub there is nothing to score
    with pytest.raises(ValueError, match="hub"):
        binding.binding_loss({"text": unit(8, 16, 0), "audio": audio}, {"text": 1.0, "audio": 1.0})
    with pytest.raises(ValueError, match="same shape"):
        binding.binding_loss({"image": unit(8, 16, 0), "audio": unit(7, 16, 1)}, {"audio": 1.0})
    with pytest.raises(ValueError, match="no bound modality"):
        binding.binding_loss({"image": unit(8, 16, 0)}, {"audio": 1.0})


def test_binding_pairs_only_with_the_hub():
    assert binding.binding_pairs() == [("image", "text"), ("image", "audio")]
    assert binding.binding_pairs("text", ("image", "audio")) == [("text", "image"), ("text", "audio")]
    for hub, bound in (("image", ("image", "text")), ("video", ("text",)), ("image", ()), ("image", ("text", "text")),
                       ("image", ("smell",))):
        with pytest.raises(ValueError):
            binding.binding_pairs(hub, bound)


# -- configuration and model -----------------------------------------------------------------------
def test_config_validates_and_round_trips():
    config = binding.BindingConfig.digits(vocab_size=30, embed_dim=32)
    assert binding.BindingConfig(**config.to_dict()) == config
    with pytest.raises(ValueError, match="embed_dim"):
        binding.BindingConfig(embed_dim=32)          # the default towers project to 64
    with pytest.raises(ValueError, match="hub"):
        binding.BindingConfig(hub="audio", bound=("audio", "text"))
    with pytest.raises(TypeError):
        binding.BindingConfig(text="an LSTM")
    with pytest.raises(ValueError, match="pad_id"):
        binding.TextEncoderConfig(vocab_size=4, pad_id=4)
    with pytest.raises(TypeError, match="BindingConfig"):
        binding.BindingModel({"embed_dim": 64})


def test_forward_shapes_unit_norm_and_audio_front_end():
    model = small_model()
    inputs = fake_inputs()
    out = model(**inputs)
    assert set(out) == {"image", "text", "audio"}
    for embedding in out.values():
        assert embedding.shape == (4, 16)
        assert_close(embedding.norm(dim=-1), torch.ones(4))
    log_mel = model.encoders["audio"].front_end(inputs["audio"])            # (4, n_mels, frames)
    assert_close(model.encode("audio", log_mel), out["audio"])
    assert model.encode("image", inputs["image"], normalize=False).norm(dim=-1).max() > 0
    assert set(model.logit_scales) == {"text", "audio"}
    assert_close(model.scale("audio"), torch.tensor(1 / 0.07))
    with pytest.raises(ValueError, match="not bound"):
        model.scale("image")


def test_text_encoder_ignores_padding():
    model = small_model()
    tokenizer = digits_binding.digit_tokenizer()
    short = digits_binding.encode_texts(tokenizer, ["the digit seven"], max_len=3)
    long = digits_binding.encode_texts(tokenizer, ["the digit seven"], max_len=8)
    assert_close(model.encode("text", short), model.encode("text", long))
    assert int(model.encoders["text"].lengths(long)[0]) == 3


@pytest.mark.parametrize("call,error,match", [
    (lambda m, x: m(image=x["image"], audio=x["audio"][:3]), ValueError, "same batch size"),
    (lambda m, x: m.encode("image", x["image"][:, 0]), ValueError, "4-D"),
    (lambda m, x: m.encode("image", x["image"].expand(4, 3, 8, 8)), ValueError, "channel"),
    (lambda m, x: m.encode("audio", x["audio"][:, None]), ValueError, "n_mels"),
    (lambda m, x: m.encode("audio", x["audio"][0]), ValueError, "waveforms"),
    (lambda m, x: m.encode("text", x["text"].float()), TypeError, "integer"),
    (lambda m, x: m.encode("text", x["text"] + 100), ValueError, "vocab_size"),
    (lambda m, x: m.encode("text", torch.ones(2, 4, dtype=torch.long)), ValueError, "empty text"),
    (lambda m, x: m.encode("smell", x["image"]), ValueError, "modality"),
    (lambda m, x: m.encode("image", x["image"].numpy()), TypeError, "torch.Tensor"),
    (lambda m, x: m(video=x["image"]), ValueError, "unknown modalities"),
    (lambda m, x: m(), ValueError, "at least one"),
])
def test_bad_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call(small_model(), fake_inputs())


def test_encode_texts_refuses_long_or_empty_texts():
    tokenizer = digits_binding.digit_tokenizer()
    assert tokenizer.itos[:2] == ["<unk>", "<pad>"]
    with pytest.raises(ValueError, match="1 to 3 words"):
        digits_binding.encode_texts(tokenizer, ["this is the number seven"], max_len=3)
    with pytest.raises(ValueError):
        digits_binding.encode_texts(tokenizer, [""], max_len=3)


# -- training pieces -------------------------------------------------------------------------------
def test_stage_losses_touch_only_their_towers():
    model = small_model().train()
    inputs = fake_inputs()
    digits_binding.image_text_loss(model, (inputs["image"], inputs["text"])).backward()
    assert model.encoders["text"].projection.weight.grad is not None
    assert all(p.grad is None for p in model.encoders["audio"].parameters())
    model.zero_grad(set_to_none=True)
    hub = unit(4, 16, 0, dtype=torch.float32)
    log_mel = model.encoders["audio"].front_end(inputs["audio"])
    digits_binding.image_audio_loss(model, (hub, log_mel)).backward()
    assert all(p.grad is None for p in model.encoders["text"].parameters())
    assert all(p.grad is None for p in model.encoders["image"].parameters())
    assert model.logit_scales["audio"].grad is not None and model.logit_scales["text"].grad is None


def test_a_few_steps_reduce_the_image_text_loss():
    model = small_model().train()
    inputs = fake_inputs()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = digits_binding.image_text_loss(model, (inputs["image"], inputs["text"]))
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        model.clamp_logit_scales_()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_unbound_ablation_replaces_only_the_audio_tower():
    model = small_model()
    with torch.no_grad():
        model.logit_scales["audio"].fill_(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unbound = digits_binding.unbound_audio_ablation(model, seed=1)
    for key, value in unbound.state_dict().items():
        if key.startswith(("encoders.image", "encoders.text", "logit_scales.text")):
            assert torch.equal(value, before[key]), key
    changed = [k for k in before if k.startswith("encoders.audio") and not torch.equal(unbound.state_dict()[k], before[k])]
    assert changed and all(torch.equal(model.state_dict()[k], before[k]) for k in before)   # the original is untouched
    assert unbound.logit_scales["audio"].item() == pytest.approx(math.log(1 / 0.07))
    assert not unbound.training


# -- retrieval -------------------------------------------------------------------------------------
def test_class_level_recall_matches_recall_at_k_sklearn_and_scratch():
    from sklearn.metrics import top_k_accuracy_score

    generator = torch.Generator().manual_seed(0)
    queries, items = unit(50, 8, 1, torch.float32), unit(30, 8, 2, torch.float32)
    query_digits = torch.randint(0, 10, (50,), generator=generator)
    item_digits = torch.arange(30) % 10
    value = digits_binding.class_level_recall(queries, query_digits, items, item_digits)
    similarity = queries @ items.T
    assert value == pytest.approx(recall_at_k(similarity, 1, positives=(query_digits[:, None] == item_digits).numpy()))
    assert value == pytest.approx((item_digits[similarity.argmax(1)] == query_digits).double().mean().item())
    scores = torch.stack([similarity[:, item_digits == d].max(1).values for d in range(10)], 1)
    assert value == pytest.approx(top_k_accuracy_score(query_digits, scores, k=1, labels=range(10)))
    assert digits_binding.chance_recall(query_digits, item_digits) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="one digit per embedding"):
        digits_binding.class_level_recall(queries, query_digits[:-1], items, item_digits)
    table = digits_binding.recall_table({"image": (queries, query_digits), "text": (items, item_digits),
                                          "audio": (queries, query_digits)})
    assert len(table) == 6 and table["audio", "image"] == pytest.approx(1.0)   # identical embeddings


def test_sentences_and_templates():
    train_texts, train_digits = digits_binding.digit_sentences(digits_binding.TRAIN_TEMPLATES)
    test_texts, _ = digits_binding.digit_sentences(digits_binding.TEST_TEMPLATES)
    assert len(train_texts) == 10 * len(digits_binding.TRAIN_TEMPLATES) and train_texts[7] == "seven"
    assert np.bincount(train_digits).tolist() == [len(digits_binding.TRAIN_TEMPLATES)] * 10
    assert not set(train_texts) & set(test_texts)
    train_words = {w for t in train_texts for w in t.split()}
    assert {w for t in test_texts for w in t.split()} <= train_words


@pytest.mark.slow
def test_data_holds_out_voices(monkeypatch):
    from mmtutorial.data.spoken_digits import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    data = digits_binding.load_binding_data(verbose=False)
    assert not set(data.train_voices) & set(data.test_voices)
    assert data.train_images.shape[1:] == (1, 8, 8) and 0 <= data.train_images.min() and data.train_images.max() <= 1
    assert data.test_audio.shape[1] == 40 and len(data.test_audio) == len(data.test_waveforms)
    assert np.bincount(data.test_audio_digits.numpy()).tolist() == [len(data.test_audio) // 10] * 10


# -- exercise checkers -----------------------------------------------------------------------------
def test_checkers_accept_solutions_and_reject_mistakes():
    ch20.check_info_nce(lambda h, o, s: clip_loss(h, o, s))
    ch20.check_class_level_recall_at_1(lambda s, q, i: (i[s.argmax(1)] == q).double().mean())
    ch20.check_chance_recall(lambda q, i: (q[:, None] == i[None, :]).double().mean(1).mean())
    with pytest.raises(ExerciseError, match="only the hub -> other direction"):
        ch20.check_info_nce(lambda h, o, s: F.cross_entropy(s * h @ o.T, torch.arange(len(h))))
    with pytest.raises(ExerciseError, match="instance-level"):
        ch20.check_class_level_recall_at_1(lambda s, q, i: (s.argmax(1) == torch.arange(len(q))).double().mean())
    with pytest.raises(ExerciseError):
        ch20.check_chance_recall(lambda q, i: 0.1)
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch20.check_info_nce(lambda h, o, s: (_ for _ in ()).throw(NotImplementedError))


@pytest.mark.slow
def test_quick_recipe_trains_caches_and_beats_the_unbound_control(monkeypatch, tmp_path, capsys):
    """The chapter's QUICK run: trained once, then loaded from the cache; the emergent audio -> text bound the
    chapter asserts in QUICK mode holds for it and fails for the unbound ablation."""
    import mmtutorial as mmt
    from mmtutorial.data.spoken_digits import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    spoken = mmt.cache_dir("datasets", "spoken_digits")          # reuse the synthesised words, not the models
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "spoken_digits").symlink_to(spoken, target_is_directory=True)
    data = digits_binding.load_binding_data(verbose=False)
    trained = digits_binding.load_or_train_binding(data, device="cpu", progress=False)
    again = digits_binding.load_or_train_binding(data, device="cpu", progress=False)
    assert capsys.readouterr().out.count("Found trained model") == 2
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    bound = digits_binding.recall_table(digits_binding.embed_test_set(trained.model, data))
    unbound = digits_binding.recall_table(digits_binding.embed_test_set(
        digits_binding.unbound_audio_ablation(trained.model), data))
    chance = digits_binding.chance_recall(data.test_audio_digits, data.test_text_digits)
    quick_bar = max(0.3, chance + 0.2)                             # the chapter's QUICK bound
    assert bound["audio", "text"] >= quick_bar
    assert unbound["audio", "text"] < quick_bar

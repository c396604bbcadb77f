"""Chapter 17's vision-language model: the sequence layout and loss mask, the blind path, KV-cache
generation, the language side against Hugging Face GPT-2 fed the same embeddings, bad inputs, the recipe's
data and the exercise checkers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmtutorial.data import scenes
from mmtutorial.exercises import ExerciseError
from mmtutorial.exercises import ch17
from mmtutorial.models.vit import ViT, ViTConfig
from mmtutorial.models.vlm import (IGNORE_INDEX, VLM, Projector, VLMConfig, conversation_sequences,
                                   instruction_sequences)
from mmtutorial.zoo import scenes_vlm

VOCAB = scenes.caption_vocabulary()


def tiny_vit() -> ViT:
    return ViT(ViTConfig(image_size=16, patch_size=8, in_channels=3, num_classes=0, dim=24, num_layers=1,
                         num_heads=2))


def tiny_vlm(projector: str = "mlp", with_encoder: bool = True, seed: int = 0) -> VLM:
    torch.manual_seed(seed)
    config = VLMConfig(vocab_size=len(VOCAB), max_seq_len=40, dim=32, num_layers=2, num_heads=4, vision_dim=24,
                       num_image_tokens=5, projector=projector)
    return VLM(config, tiny_vit() if with_encoder else None).eval()


def batch(n: int = 3):
    tokens, targets, starts = instruction_sequences(VOCAB, ["how many shapes are there?", "what color is the circle?",
                                                            "is there a red square?"][:n], ["2", "red", "no"][:n])
    images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return tokens, targets, starts, images


# -- the loss mask ------------------------------------------------------------------------------------

def test_loss_mask_covers_exactly_the_answer_tokens():
    questions = ["how many shapes are there?", "is the red circle left of the blue square?", ""]
    answers = ["3", "yes", "a red circle and a blue square"]
    tokens, targets, starts = instruction_sequences(VOCAB, questions, answers)
    for row, (question, answer) in enumerate(zip(questions, answers)):
        counted = targets[row] != IGNORE_INDEX
        assert VOCAB.decode(targets[row][counted], skip_special=False) == answer + " <eos>"
        # the counted positions are exactly those whose next input token is an answer token (or <eos>)
        first = 1 + len(VOCAB.encode(question))                        # position of the first answer token
        expected = torch.zeros_like(counted)
        expected[first - 1:first - 1 + len(VOCAB.encode(answer)) + 1] = True
        torch.testing.assert_close(counted, expected)
        assert int(starts[row]) == first - 1
        assert int(targets[row, starts[row]]) == VOCAB.encode(answer)[0]
        # the answer's targets are the next inputs (the closing <eos> is a target only, never an input)
        words = counted[:-1] & (targets[row, :-1] != VOCAB.eos_id)
        torch.testing.assert_close(tokens[row, 1:][words], targets[row, :-1][words])


def test_multi_turn_mask_skips_every_question():
    turns = [("how many shapes are there?", "2"), ("what color is the circle?", "red"), ("is there a red square?", "no")]
    tokens, targets, starts = conversation_sequences(VOCAB, [turns])
    counted = targets[0][targets[0] != IGNORE_INDEX]
    assert VOCAB.decode(counted, skip_special=False) == "2 <eos> red <eos> no <eos>"
    assert int(starts[0]) == len(VOCAB.encode(turns[0][0]))
    assert tokens.shape == targets.shape == (1, 1 + sum(len(VOCAB.encode(q)) + 2 for q, _ in turns) - 1)


def test_masked_loss_equals_cross_entropy_on_answer_positions_only():
    model = tiny_vlm()
    tokens, targets, starts, images = batch()
    logits, loss = model(tokens, images=images, targets=targets)
    keep = targets != IGNORE_INDEX                                               # (n, T)
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], targets[keep]))


# -- the blind path -----------------------------------------------------------------------------------

def test_zeroed_image_tokens_give_the_blind_loss():
    model = tiny_vlm()
    tokens, targets, _, images = batch()
    _, blind_loss = model(tokens, targets=targets, blind=True)
    _, seeing_loss = model(tokens, images=images, targets=targets)
    assert not torch.allclose(blind_loss, seeing_loss)                        # the image does change the loss
    for parameter in model.projector.parameters():                             # projected image tokens = 0
        torch.nn.init.zeros_(parameter)
    _, zeroed_loss = model(tokens, images=images, targets=targets)
    torch.testing.assert_close(zeroed_loss, blind_loss, rtol=0, atol=0)


def test_image_tokens_come_before_the_text_and_text_cannot_see_the_future():
    model = tiny_vlm()
    tokens, _, _, images = batch(1)
    logits, _ = model(tokens, images=images)
    changed = tokens.clone()
    changed[0, -1] = VOCAB.index["blue"]
    logits_changed, _ = model(changed, images=images)
    torch.testing.assert_close(logits[:, :-1], logits_changed[:, :-1])          # causal: earlier outputs unchanged
    other_image = images.flip(-1)
    logits_other, _ = model(tokens, images=other_image)
    assert not torch.allclose(logits[:, 0], logits_other[:, 0])                # even <bos> sees the image


def test_language_side_equals_hugging_face_gpt2_on_the_same_embeddings():
    transformers = pytest.importorskip("transformers")
    from mmtutorial.zoo.gpt2 import load_hf_gpt2

    model = tiny_vlm()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(VOCAB), n_positions=40, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0)).eval()
    load_hf_gpt2(hf, model.lm)
    tokens, _, _, images = batch()
    with torch.no_grad():
        prefix = model.projector(model.encode_images(images))                   # (n, N, d)
        embeds = torch.cat([prefix, hf.transformer.wte(tokens)], dim=1)        # (n, N + T, d)
        expected = hf(inputs_embeds=embeds).logits[:, model.config.num_image_tokens:]
        got, _ = model(tokens, images=images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# -- generation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("blind", [False, True])
def test_kv_cache_generation_equals_uncached(blind):
    model = tiny_vlm()
    tokens, _, _, images = batch()
    prompt = tokens[:, :6]
    kwargs = dict(blind=True) if blind else dict(images=images)
    cached = model.generate(prompt, 8, use_cache=True, **kwargs)
    uncached = model.generate(prompt, 8, use_cache=False, **kwargs)
    torch.testing.assert_close(cached, uncached)
    assert cached.shape == (3, 14)
    # and the cached logits of the last step equal a full forward pass
    caches = model.new_kv_caches()
    model(cached[:, :-1], kv_caches=caches, **kwargs)
    step, _ = model(cached[:, -1:], kv_caches=caches)
    full, _ = model(cached, **kwargs)
    torch.testing.assert_close(step[:, -1], full[:, -1], rtol=1e-5, atol=1e-5)


def test_generation_with_features_equals_generation_with_images():
    model = tiny_vlm()
    tokens, _, _, images = batch()
    features = model.encode_images(images)
    torch.testing.assert_close(model.generate(tokens[:, :5], 4, images=images),
                               model.generate(tokens[:, :5], 4, image_features=features))


# -- projector and the frozen encoder -------------------------------------------------------------

def test_projectors_and_frozen_encoder():
    linear, mlp = Projector(24, 32, "linear"), Projector(24, 32, "mlp")
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(linear(x), F.linear(x, linear.net.weight, linear.net.bias))
    first, second = mlp.net[0], mlp.net[2]
    torch.testing.assert_close(mlp(x), second(F.gelu(first(x))))
    model = tiny_vlm()
    model.train()
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert not model.vision.training                                        # frozen: stays in eval mode
    tokens, targets, _, images = batch()
    model(tokens, images=images, targets=targets)[1].backward()
    assert all(p.grad is None for p in model.vision.parameters())
    assert model.projector.net[0].weight.grad is not None


# -- bad inputs ------------------------------------------------------------------------------------

def test_bad_inputs_are_refused_clearly():
    model = tiny_vlm()
    tokens, targets, _, images = batch()
    with pytest.raises(ValueError, match="exactly one of images or image_features"):
        model(tokens)
    with pytest.raises(ValueError, match="image_features must have shape"):
        model(tokens, image_features=torch.zeros(3, 4, 24))
    with pytest.raises(TypeError, match="image_features must be a float tensor"):
        model(tokens, image_features=torch.zeros(3, 5, 24, dtype=torch.long))
    with pytest.raises(ValueError, match="were built for|the model was built for"):
        model(tokens, images=torch.rand(3, 3, 32, 32))
    with pytest.raises(ValueError, match="longer than max_seq_len"):
        model(torch.zeros(1, 36, dtype=torch.long), images=images[:1])
    with pytest.raises(ValueError, match="every target is IGNORE_INDEX"):
        model(tokens, images=images, targets=torch.full_like(targets, IGNORE_INDEX))
    with pytest.raises(ValueError, match="exceeds"):
        model.generate(tokens, 40, images=images)
    with pytest.raises(ValueError, match="projector must be one of"):
        VLMConfig(projector="qformer")
    with pytest.raises(ValueError, match="leaves no room"):
        VLMConfig(max_seq_len=17, num_image_tokens=17)
    with pytest.raises(ValueError, match="the config expects"):
        VLM(VLMConfig(vocab_size=len(VOCAB), vision_dim=64, num_image_tokens=17), tiny_vit())
    with pytest.raises(ValueError, match="no vision encoder"):
        tiny_vlm(with_encoder=False)(tokens, images=images)
    with pytest.raises(ValueError, match="empty response"):
        instruction_sequences(VOCAB, ["how many shapes are there?"], [""])
    with pytest.raises(ValueError, match="as many prompts as responses"):
        instruction_sequences(VOCAB, ["a", "b"], ["2"])
    with pytest.raises(ValueError, match="more than max_len"):
        instruction_sequences(VOCAB, ["how many shapes are there?"], ["2"], max_len=4)
    with pytest.raises(TypeError, match="pair of strings"):
        conversation_sequences(VOCAB, [["how many shapes are there?"]])
    with pytest.raises(ValueError, match="budget must be one of"):
        scenes_vlm.scenes_vlm_recipe("huge")


# -- the recipe's data -----------------------------------------------------------------------------

def test_questions_cover_every_kind_with_exact_answers():
    scene_list = scenes.generate_scenes(40, split="train", seed=3)
    examples = scenes_vlm.sample_questions(scene_list, per_kind=2, seed=0)
    assert {qa.kind for _, qa in examples} == set(scenes_vlm.KINDS)
    for index, qa in examples:
        assert qa.answer in scenes.ANSWERS
        assert all(token in VOCAB for token in scenes.tokenize(qa.question))
        if qa.kind == "existence":
            color, shape = qa.question.removeprefix("is there a ").removesuffix("?").split()
            present = any(o.color == color and o.shape == shape for o in scene_list[index].objects)
            assert qa.answer == ("yes" if present else "no")
    existence = [qa.answer for _, qa in examples if qa.kind == "existence"]
    assert existence.count("yes") == existence.count("no")                 # balanced: the prior is 50 %
    conversations = scenes_vlm.question_conversations(scene_list, 2, 0)
    assert len(conversations) == 40
    assert sum(map(len, conversations)) == len(examples)


# -- exercise checkers -----------------------------------------------------------------------------

def test_exercise_checkers_accept_right_and_reject_wrong_answers():
    def answer_mask(tokens, targets):
        return targets != IGNORE_INDEX

    ch17.check_answer_mask(answer_mask)
    with pytest.raises(ExerciseError):
        ch17.check_answer_mask(lambda tokens, targets: tokens != VOCAB.pad_id)

    def per_kind_accuracy(kinds, predictions, answers):
        out = {}
        for kind in sorted(set(kinds)):
            rows = [p == a for k, p, a in zip(kinds, predictions, answers) if k == kind]
            out[kind] = sum(rows) / len(rows)
        return out

    ch17.check_per_kind_accuracy(per_kind_accuracy)
    with pytest.raises(ExerciseError):
        ch17.check_per_kind_accuracy(lambda kinds, p, a: {k: float(np.mean([x == y for x, y in zip(p, a)]))
                                                          for k in set(kinds)})

    def prior_baseline(train_answers, test_kinds):
        from collections import Counter
        best = {}
        for kind, answer in train_answers:
            best.setdefault(kind, Counter())[answer] += 1
        return [best[k].most_common(1)[0][0] for k in test_kinds]

    ch17.check_majority_answer(prior_baseline)
    with pytest.raises(ExerciseError):
        ch17.check_majority_answer(lambda train_answers, test_kinds: ["yes"] * len(test_kinds))

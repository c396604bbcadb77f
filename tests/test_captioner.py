"""Chapter 16: the captioner (cross-attention, decoder layer, teacher forcing, decoding) and corpus BLEU."""
import itertools
import math
import random

import pytest
import sacrebleu
import torch
from torch import nn

from mmtutorial.exercises import ExerciseError, ch16
from mmtutorial.metrics import bleu_statistics, corpus_bleu
from mmtutorial.models.captioner import (Captioner, CaptionerConfig, DecoderBlock, beam_search, caption_loss,
                                         greedy_decode, strip_special)
from mmtutorial.nn import MultiHeadAttention
from mmtutorial.zoo.torch_nn import load_torch_mha


def tiny(vocab_size=12, max_seq_len=8, seed=0, **kwargs) -> Captioner:
    torch.manual_seed(seed)
    config = CaptionerConfig(vocab_size=vocab_size, max_seq_len=max_seq_len, dim=32, num_layers=2, num_heads=4,
                             image_size=16, patch_size=4, encoder_layers=1, **kwargs)
    return Captioner(config).eval()


# --- cross-attention and the decoder layer against PyTorch ------------------------------------------------

def test_cross_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    ours, theirs = MultiHeadAttention(32, 4), nn.MultiheadAttention(32, 4, batch_first=True)
    load_torch_mha(ours, theirs)
    words, patches = torch.randn(3, 7, 32), torch.randn(3, 16, 32)          # queries from text, keys from image
    expected, expected_weights = theirs(words, patches, patches, average_attn_weights=False)
    got, weights = ours(words, patches, patches, need_weights=True)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ours(words, patches, patches), expected)   # the fused path too
    torch.testing.assert_close(weights, expected_weights)                 # (batch, heads, 7, 16)


def _load_torch_decoder_layer(block: DecoderBlock, layer: nn.TransformerDecoderLayer) -> None:
    load_torch_mha(block.self_attn, layer.self_attn)
    load_torch_mha(block.cross_attn, layer.multihead_attn)
    with torch.no_grad():
        for ours, theirs in ((block.norm1, layer.norm1), (block.norm2, layer.norm2), (block.norm3, layer.norm3),
                             (block.mlp.fc, layer.linear1), (block.mlp.proj, layer.linear2)):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)


def test_decoder_block_equals_torch_transformer_decoder_layer():
    config = CaptionerConfig(vocab_size=10, dim=32, num_heads=4, mlp_ratio=2.0)
    torch.manual_seed(0)
    block = DecoderBlock(config).eval()
    layer = nn.TransformerDecoderLayer(32, 4, dim_feedforward=64, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True).eval()
    _load_torch_decoder_layer(block, layer)
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 16, 32)
    blocked = torch.ones(6, 6, dtype=torch.bool).triu(1)                       # torch: True = may NOT attend
    expected = layer(x, memory, tgt_mask=blocked)
    torch.testing.assert_close(block(x, memory), expected, rtol=1e-5, atol=1e-5)


# --- the model ---------------------------------------------------------------------------------------------

def test_shapes_and_patch_tokens():
    model = tiny()
    images, tokens = torch.randn(2, 3, 16, 16), torch.randint(0, 12, (2, 5))
    memory = model.encode(images)
    assert memory.shape == (2, 16, 32)                                      # every patch, no pooling
    logits, weights = model.decode(tokens, memory, need_weights=True)
    assert logits.shape == (2, 5, 12)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 5, 16)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, 4, 5))


def test_decoder_is_causal_and_reads_the_image():
    model = tiny()
    images, tokens = torch.randn(2, 3, 16, 16), torch.randint(0, 12, (2, 6))
    changed = tokens.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 12
    with torch.no_grad():
        a, b = model(images, tokens), model(images, changed)
        torch.testing.assert_close(a[:, :4], b[:, :4])                      # the future does not leak
        assert not torch.allclose(a, model(images.flip(0), tokens))         # the image matters


def test_kv_cache_decoding_equals_one_pass():
    model = tiny()
    images, tokens = torch.randn(3, 3, 16, 16), torch.randint(0, 12, (3, 7))
    with torch.no_grad():
        memory = model.encode(images)
        caches = model.new_kv_caches()
        stepwise = torch.cat([model.decode(tokens[:, i:i + 1], memory, kv_caches=caches) for i in range(7)], dim=1)
        torch.testing.assert_close(stepwise, model.decode(tokens, memory), rtol=1e-5, atol=1e-5)


def test_caption_loss_is_teacher_forcing_and_ignores_padding():
    model = tiny()
    images = torch.randn(2, 3, 16, 16)
    captions = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 8, 2, 0, 0, 0, 0]])
    loss = caption_loss(model, (images, captions))
    logits = model(images, captions[:, :-1])
    targets = captions[:, 1:]
    keep = targets != 0
    expected = nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)
    # padding is ignored: junk after <eos> in the targets does not change the loss beyond the shifted inputs
    longer = torch.cat([captions, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(caption_loss(model, (images, longer[:, :8])), loss)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_with_one_beam_equals_greedy(seed):
    model = tiny(seed=seed)
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    assert beam_search(model, images, beam_size=1) == greedy_decode(model, images)
    assert beam_search(model, images, beam_size=1, length_penalty=0.0, max_new_tokens=3) == \
        greedy_decode(model, images, max_new_tokens=3)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_best_caption_by_enumeration(length_penalty):
    # vocabulary <pad> <bos> <eos> w: every caption of up to 3 new tokens can be scored exactly
    model = tiny(vocab_size=4, max_seq_len=4, seed=3)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    got, scores = beam_search(model, images, beam_size=64, length_penalty=length_penalty, return_scores=True)
    with torch.no_grad():
        memory = model.encode(images)
    for b in range(2):
        best = (-math.inf, None)
        for length in (1, 2, 3):
            for words in itertools.product([0, 1, 3], repeat=length - 1 if length < 3 else 3):
                ended = len(words) < 3
                sequence = [1, *words, 2] if ended else [1, *words]
                tokens = torch.tensor([sequence])
                with torch.no_grad():
                    log_probs = torch.log_softmax(model.decode(tokens[:, :-1], memory[b:b + 1]), -1)[0]
                total = sum(log_probs[i, t].item() for i, t in enumerate(sequence[1:]))
                score = total / (len(sequence) - 1) ** length_penalty
                if score > best[0]:
                    best = (score, list(words))
        assert got[b] == best[1]
        assert math.isclose(scores[b], best[0], rel_tol=1e-4)


def test_strip_special():
    assert strip_special([5, 6, 2, 7]) == [5, 6]
    assert strip_special(torch.tensor([5, 6])) == [5, 6]


# --- bad inputs ----------------------------------------------------------------------------------------------

def test_bad_inputs_are_refused_clearly():
    model = tiny()
    with pytest.raises(ValueError, match="16 x 16"):
        model.encode(torch.randn(1, 3, 32, 32))                             # wrong image size
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(TypeError, match="floating-point"):
        model.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    memory = model.encode(torch.randn(1, 3, 16, 16))
    with pytest.raises(TypeError, match="integer"):
        model.decode(torch.zeros(1, 3), memory)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.decode(torch.zeros(1, 9, dtype=torch.long), memory)
    with pytest.raises(ValueError, match="vocab_size"):
        model.decode(torch.full((1, 3), 99), memory)
    with pytest.raises(ValueError, match="memory"):
        model.decode(torch.zeros(1, 3, dtype=torch.long), memory[..., :8])
    with pytest.raises(ValueError, match="empty"):
        caption_loss(model, (torch.randn(2, 3, 16, 16), torch.tensor([[1, 0, 0], [1, 0, 0]])))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, torch.randn(1, 3, 16, 16), beam_size=0)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(model, torch.randn(1, 3, 16, 16), length_penalty=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model, torch.randn(1, 3, 16, 16), max_new_tokens=50)
    with pytest.raises(ValueError, match="divisible"):
        CaptionerConfig(vocab_size=10, dim=30, num_heads=4)
    with pytest.raises(ValueError, match="different"):
        CaptionerConfig(vocab_size=10, bos_id=2)
    with pytest.raises(ValueError, match="image_size"):
        CaptionerConfig(vocab_size=10, image_size=30, patch_size=8)
    with pytest.raises(TypeError, match="CaptionerConfig"):
        Captioner({"vocab_size": 10})


# --- BLEU ------------------------------------------------------------------------------------------------------

def sacre(hypotheses, references, smooth="exp"):
    return sacrebleu.corpus_bleu(hypotheses, [list(stream) for stream in zip(*references)],
                                 smooth_method=smooth, tokenize="none").score


def test_bleu_equals_sacrebleu_on_random_corpora():
    rng = random.Random(0)
    words = "a red blue circle square and , the".split()
    for _ in range(200):
        n, k = rng.randint(1, 6), rng.randint(1, 3)
        hypotheses = [" ".join(rng.choices(words, k=rng.randint(0, 9))) for _ in range(n)]
        references = [[" ".join(rng.choices(words, k=rng.randint(1, 9))) for _ in range(k)] for _ in range(n)]
        for smooth in ("exp", "none"):
            assert corpus_bleu(hypotheses, references, smooth=smooth) == pytest.approx(
                sacre(hypotheses, references, smooth), abs=1e-9)


@pytest.mark.parametrize("hypotheses, references", [
    (["x y z"], [["a b c d"]]),                                            # no match at all
    (["a red circle"], [["a red circle and a blue square"]]),              # short: brevity penalty
    (["the the the the the the the"], [["the cat is on the mat"]]),        # repeated n-grams are clipped
    (["a red circle and a blue square"], [["a red circle and a blue square"]]),   # perfect
    (["a red"], [["a red circle"]]),                                       # too short for 3- and 4-grams
    ([""], [["a red circle"]]),                                            # empty hypothesis
    (["a red circle", "a blue square and a red cross"], [["a red circle", "the red circle"],
                                                         ["a blue square and a red cross", "a blue square"]]),
])
def test_bleu_edge_cases_equal_sacrebleu(hypotheses, references):
    for smooth in ("exp", "none"):
        assert corpus_bleu(hypotheses, references, smooth=smooth) == pytest.approx(
            sacre(hypotheses, references, smooth), abs=1e-9)


def test_bleu_statistics_by_hand():
    stats = bleu_statistics(["the the the the the the the"], [["the cat is on the mat", "there is a cat on the mat"]])
    assert stats["correct"][0] == 2 and stats["total"][0] == 7            # Papineni et al.'s 2/7
    assert corpus_bleu(["a b c d"], [["a b c d"]]) == pytest.approx(100.0)
    assert corpus_bleu(["a b"], [["a b c d"]], max_order=2) == pytest.approx(100 * math.exp(1 - 4 / 2))


def test_bleu_bad_inputs():
    with pytest.raises(ValueError, match="empty caption"):
        corpus_bleu(["a b"], [[""]])
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        corpus_bleu(["a b", "c"], [["a b"]])
    with pytest.raises(TypeError, match="list of sentences"):
        corpus_bleu("a b", [["a b"]])
    with pytest.raises(ValueError, match="non-empty list"):
        corpus_bleu(["a b"], ["a b"])
    with pytest.raises(ValueError, match="empty corpus"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu(["a"], [["a"]], smooth="floor")


# --- exercise checkers -------------------------------------------------------------------------------------------

def clipped_precision(hypothesis, references, n):
    stats_words = hypothesis.split()
    grams = lambda words: __import__("collections").Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    hyp, best = grams(stats_words), __import__("collections").Counter()
    for ref in references:
        best |= grams(ref.split())
    return sum(min(c, best[g]) for g, c in hyp.items()), sum(hyp.values())


def test_exercise_checkers():
    ch16.check_clipped_precision(clipped_precision)
    with pytest.raises(ExerciseError, match="ONE reference"):
        def unclipped(hypothesis, references, n):
            words = hypothesis.split()
            grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            ref_grams = {tuple(r.split()[i:i + n]) for r in references for i in range(len(r.split()) - n + 1)}
            return sum(g in ref_grams for g in grams), len(grams)
        ch16.check_clipped_precision(unclipped)
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch16.check_clipped_precision(lambda h, r, n: (_ for _ in ()).throw(NotImplementedError))

    ch16.check_brevity_penalty(lambda c, r: 1.0 if c >= r else (math.exp(1 - r / c) if c else 0.0))
    with pytest.raises(ExerciseError, match="not penalised"):
        ch16.check_brevity_penalty(lambda c, r: math.exp(1 - r / c) if c else 0.0)

    def pairs(captions, pad_id):
        targets = captions[:, 1:].clone()
        return captions[:, :-1], targets.masked_fill(targets == pad_id, -100)
    ch16.check_teacher_forcing_pairs(pairs)
    with pytest.raises(ExerciseError, match="-100"):
        ch16.check_teacher_forcing_pairs(lambda c, p: (c[:, :-1], c[:, 1:]))
    with pytest.raises(ExerciseError, match="swapped"):
        ch16.check_teacher_forcing_pairs(lambda c, p: (c[:, 1:], c[:, :-1]))


# --- the chapter's recipe (no training here) ------------------------------------------------------------------

def test_scenes_recipe_pieces():
    from mmtutorial.data import scenes
    from mmtutorial.zoo import scenes_captioner

    vocab = scenes.caption_vocabulary()
    config = scenes_captioner.scenes_captioner_config(vocab)
    assert (config.vocab_size, config.num_patches, config.eos_id) == (len(vocab), 16, vocab.eos_id)
    assert scenes_captioner.reference_text("a red circle, a blue square and a green cross") == \
        "a red circle , a blue square and a green cross"
    # every canonical caption fits the decoder's positions with <bos> and <eos>
    captions = [s.captions()[0] for s in scenes.generate_scenes(300, split="train", seed=5)]
    assert max(len(vocab.encode(c, add_special=True)) for c in captions) <= config.max_seq_len
    torch.manual_seed(0)
    model = Captioner(config).eval()
    wrapped = scenes_captioner.ScenesCaptioner(model, None, vocab, torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1),
                                               config.max_seq_len)
    some = scenes.generate_scenes(3, split="test", seed=0)
    assert wrapped.caption(some) == wrapped.caption(some, beam_size=1)
    assert all(isinstance(text, str) for text in wrapped.caption(some, beam_size=2))

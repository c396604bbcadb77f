"""mmtutorial.encoders.text: tokenisers, skip-gram NS, GloVe, word-vector queries, RNN and LSTM against
direct formulas and PyTorch (float64), plus bad-input errors and the chapter 9 exercise checkers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mmtutorial.encoders import text
from mmtutorial.zoo import torch_nn
from mmtutorial.exercises import ExerciseError, ch09
from mmtutorial.tokenizers import BPETokenizer

TRAIN = ["In the beginning God created the heaven and the earth.",
         "And the earth was without form, and void; and darkness was upon the face of the deep.",
         "And God said, Let there be light: and there was light."] * 3
HELD_OUT = ["And God saw the light, that it was good: and God divided the light from the darkness.",
            "And the evening and the morning were the first day."]


# --- tokenisers ---------------------------------------------------------------------------------------

def test_word_tokenizer_vocabulary_and_unknowns():
    tokenizer = text.WordTokenizer.train(TRAIN, min_count=2)
    assert tokenizer.itos[0] == text.UNK and tokenizer.itos[1] == "and"       # most frequent first
    assert tokenizer.tokenize("The LORD's light.") == ["the", "lord's", "light", "."]
    ids = tokenizer.encode("the light of the morning")
    assert ids[-1] == tokenizer.unk_id and tokenizer.decode(ids) == "the light of the <unk>"
    assert tokenizer.counts[tokenizer.stoi["and"]] == 18
    assert tokenizer.counts[0] == 0                                             # every word is seen >= 2 times ...
    capped = text.WordTokenizer.train(TRAIN, max_vocab=3)
    assert capped.vocab_size == 4 and capped.counts[0] > 0                      # ... unless the vocabulary is capped
    words_only = text.WordTokenizer.train(TRAIN, words_only=True)
    assert "," not in words_only.stoi and "." not in words_only.stoi
    assert text.WordTokenizer.train(TRAIN).itos == text.WordTokenizer.train(TRAIN).itos   # deterministic


def test_char_tokenizer_round_trip():
    tokenizer = text.CharTokenizer.train(TRAIN)
    sentence = "And God said, Let there be light"
    assert tokenizer.decode(tokenizer.encode(sentence)) == sentence
    assert tokenizer.encode("z")[0] == tokenizer.unk_id                            # "z" never occurs in TRAIN


def test_compare_tokenizers_on_held_out_text():
    words = text.WordTokenizer.train(TRAIN, lowercase=False)
    chars = text.CharTokenizer.train(TRAIN)
    bpe = BPETokenizer.train("\n".join(TRAIN), 300)
    rows = {row["name"]: row for row in text.compare_tokenizers({"words": words, "chars": chars, "bpe": bpe},
                                                                HELD_OUT)}
    assert rows["bpe"]["unknown_rate"] == 0.0 and rows["words"]["unknown_rate"] > 0.0
    assert rows["chars"]["tokens"] == sum(len(t) for t in HELD_OUT) > rows["bpe"]["tokens"] > rows["words"]["tokens"]
    assert rows["chars"]["chars_per_token"] == 1.0
    with pytest.raises(TypeError, match="encode"):
        text.compare_tokenizers({"broken": object()}, HELD_OUT)


def test_tokenizer_bad_inputs():
    with pytest.raises(TypeError, match="list of strings"):
        text.WordTokenizer.train("one long string")
    with pytest.raises(ValueError, match="max_vocab"):
        text.WordTokenizer.train(TRAIN, max_vocab=0)
    with pytest.raises(ValueError, match="<unk>"):
        text.WordTokenizer(["the", "and"])
    with pytest.raises(TypeError, match="str"):
        text.CharTokenizer.train(TRAIN).encode(b"bytes")


# --- skip-gram with negative sampling -----------------------------------------------------------------

def test_subsampling_and_noise_distribution():
    counts = np.array([8000, 1000, 10, 0])
    frequency = counts / counts.sum()
    keep = text.subsample_keep_probability(counts, threshold=1e-2)
    assert_close(keep[:3], np.minimum(1.0, np.sqrt(1e-2 / frequency[:3])))
    assert keep[0] < keep[1] < 1.0
    assert keep[2] == keep[3] == 1.0
    noise = text.noise_distribution(counts)
    assert_close(noise, torch.tensor(counts ** 0.75 / (counts ** 0.75).sum()))
    with pytest.raises(ValueError, match=">= 0"):
        text.noise_distribution([1, -1])


def test_skipgram_pairs_window_one_is_exact_and_respects_sentences():
    sentences = [np.array([1, 2, 3]), np.array([4, 5])]
    centres, contexts = text.skipgram_pairs(sentences, window=1)
    pairs = sorted(zip(centres.tolist(), contexts.tolist()))
    assert pairs == sorted([(2, 1), (3, 2), (5, 4), (1, 2), (2, 3), (4, 5)])         # no pair crosses 3 -> 4


def test_skipgram_pairs_dynamic_window_and_subsampling():
    sentence = np.arange(50)
    centres, contexts = text.skipgram_pairs([sentence], window=4, seed=3)
    distance = (centres - contexts).abs()
    assert distance.min() >= 1 and distance.max() <= 4
    counts = torch.bincount(distance, minlength=5)[1:]                                # nearer pairs are commoner
    assert torch.all(counts[:-1] > counts[1:])
    again = text.skipgram_pairs([sentence], window=4, seed=3)
    assert torch.equal(centres, again[0]) and torch.equal(contexts, again[1])
    keep = np.where(sentence % 2 == 0, 1.0, 0.0)                                       # drop the odd ids
    centres, contexts = text.skipgram_pairs([sentence], window=1, keep_probability=keep)
    assert torch.all(centres % 2 == 0) and torch.all((centres - contexts).abs() == 2)  # the window reaches further


def test_skipgram_ns_loss_equals_the_objective():
    torch.manual_seed(0)
    model = text.SkipGramNS(text.SkipGramConfig(vocab_size=20, dim=6, num_negatives=3)).double()
    nn.init.normal_(model.output_embeddings.weight)
    centres, contexts = torch.tensor([1, 4, 7]), torch.tensor([2, 5, 9])
    negatives = torch.tensor([[3, 8, 11], [0, 13, 2], [19, 6, 6]])
    positive, negative = model(centres, contexts, negatives)
    v, u = model.input_embeddings.weight, model.output_embeddings.weight
    expected = sum(-torch.log(torch.sigmoid(u[c] @ v[w])) - sum(torch.log(torch.sigmoid(-u[n] @ v[w])) for n in ns)
                   for w, c, ns in zip(centres, contexts, negatives))
    assert_close(text.skipgram_ns_loss(positive, negative, reduction="sum"), expected)
    assert_close(text.skipgram_ns_loss(positive, negative), expected / 3)
    with pytest.raises(ValueError, match="batch"):
        text.skipgram_ns_loss(positive, negative[:2])


def test_skipgram_trains_with_fit():
    from mmtutorial.training import TrainConfig, fit

    torch.manual_seed(0)
    sentences = [np.array([1, 2, 3, 4] * 20), np.array([5, 6, 7, 8] * 20)]             # two "topics"
    centres, contexts = text.skipgram_pairs(sentences, window=2)
    model = text.SkipGramNS(text.SkipGramConfig(vocab_size=9, dim=8, num_negatives=2))
    loss_fn = text.skipgram_loss_fn(text.noise_distribution(np.r_[0, np.ones(8)]), num_negatives=2)
    history = fit(model, (centres, contexts), loss_fn=loss_fn, device="cpu",
                  config=TrainConfig(epochs=30, batch_size=64, lr=0.05, optimizer="adam", progress=False))
    assert history.last("train_loss") < 0.7 * history["train_loss"][0]
    vectors = text.WordVectors(model.embeddings(), [str(i) for i in range(9)])
    assert vectors.similarity("1", "3") > vectors.similarity("1", "7")


def test_skipgram_config_errors():
    with pytest.raises(ValueError, match="dim"):
        text.SkipGramConfig(vocab_size=10, dim=0)
    with pytest.raises(TypeError, match="SkipGramConfig"):
        text.SkipGramNS({"vocab_size": 10})


# --- GloVe --------------------------------------------------------------------------------------------

def test_cooccurrence_matrix_matches_loops():
    sentences = [np.array([0, 1, 2, 1, 3]), np.array([2, 2, 0])]
    expected = np.zeros((4, 4))
    for sentence in sentences:
        for i in range(len(sentence)):
            for j in range(max(0, i - 3), i):
                expected[sentence[i], sentence[j]] += 1 / (i - j)
                expected[sentence[j], sentence[i]] += 1 / (i - j)
    got = text.cooccurrence_matrix(sentences, vocab_size=4, window=3).toarray()
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, got.T)
    with pytest.raises(ValueError, match="ids must lie"):
        text.cooccurrence_matrix(sentences, vocab_size=3)


def test_glove_weight_and_loss_equal_numpy():
    x = np.array([0.5, 3.0, 99.0, 100.0, 250.0])
    np.testing.assert_allclose(text.glove_weight(x), np.where(x < 100, (x / 100) ** 0.75, 1.0))
    assert_close(text.glove_weight(torch.tensor(x)), torch.tensor(text.glove_weight(x)))
    torch.manual_seed(1)
    model = text.GloVe(text.GloVeConfig(vocab_size=6, dim=4)).double()
    rows, cols = torch.tensor([0, 1, 2, 5]), torch.tensor([1, 0, 4, 5])
    counts = torch.tensor([3.0, 3.0, 0.5, 140.0], dtype=torch.float64)
    W, C = model.word_vectors.detach().numpy(), model.context_vectors.detach().numpy()
    b, c = model.word_bias.detach().numpy(), model.context_bias.detach().numpy()
    r, k, X = rows.numpy(), cols.numpy(), counts.numpy()
    prediction = (W[r] * C[k]).sum(1) + b[r] + c[k]
    expected = np.sum(np.where(X < 100, (X / 100) ** 0.75, 1.0) * (prediction - np.log(X)) ** 2)
    assert_close(model(rows, cols), torch.from_numpy(prediction))
    assert_close(text.glove_loss(model(rows, cols), counts, reduction="sum"), torch.tensor(expected, dtype=torch.float64))
    assert_close(text.glove_loss_fn(model, (rows, cols, counts)), torch.tensor(expected / 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-zero"):
        text.glove_loss(model(rows, cols), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x_max"):
        text.GloVeConfig(vocab_size=5, x_max=0.0)


# --- word vectors -------------------------------------------------------------------------------------

def test_neighbours_and_analogy_match_numpy():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(12, 5)) * rng.uniform(0.5, 2.0, size=(12, 1))
    words = [text.UNK] + [f"w{i}" for i in range(1, 12)]
    vectors = text.WordVectors(raw, words)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    scores = unit @ unit[3]
    scores[[0, 3]] = -np.inf                                                 # itself and <unk> left out
    assert [w for w, _ in vectors.neighbours("w3", 4)] == [words[i] for i in np.argsort(-scores)[:4]]
    query = unit[2] - unit[1] + unit[4]
    scores = unit @ (query / np.linalg.norm(query))
    scores[[0, 1, 2, 4]] = -np.inf
    best = vectors.analogy("w1", "w2", "w4", k=1)[0]
    assert best[0] == words[int(np.argmax(scores))]
    assert math.isclose(best[1], float(np.max(scores)), rel_tol=1e-12)
    with pytest.raises(KeyError, match="vocabulary"):
        vectors.neighbours("missing")
    with pytest.raises(ValueError, match="vectors must be"):
        text.WordVectors(raw[:5], words)


# --- RNN and LSTM -------------------------------------------------------------------------------------

def test_rnn_worked_example_and_nn_rnn():
    inputs = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64).view(3, 1, 1)       # (time, batch, input)
    one = torch.ones(1, 1, dtype=torch.float64)
    sigmoid_states = text.rnn_forward(inputs, one, one, nonlinearity="sigmoid").flatten()
    tanh_states = text.rnn_forward(inputs, one, one).flatten()
    assert_close(sigmoid_states, torch.tensor([0.7311, 0.6750, 0.8422], dtype=torch.float64), atol=5e-5, rtol=0)
    assert_close(tanh_states, torch.tensor([0.7616, 0.6420, 0.9278], dtype=torch.float64), atol=5e-5, rtol=0)
    torch.manual_seed(0)
    reference = nn.RNN(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    expected, _ = reference(x)
    got = text.rnn_forward(x, reference.weight_ih_l0, reference.weight_hh_l0,
                           reference.bias_ih_l0 + reference.bias_hh_l0)
    assert_close(got, expected)
    with pytest.raises(ValueError, match="nonlinearity"):
        text.rnn_forward(x, reference.weight_ih_l0, reference.weight_hh_l0, nonlinearity="gelu")


def test_lstm_cell_equals_nn_lstm_cell_forward_and_backward():
    torch.manual_seed(0)
    reference = nn.LSTMCell(3, 5, dtype=torch.float64)
    cell = text.LSTMCell(3, 5, dtype=torch.float64)
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)               # (time, batch, input)
    state_ours = state_ref = None
    for x_t in x:                                                                   # several steps
        state_ours = cell(x_t, state_ours)
        state_ref = reference(x_t, state_ref)
        assert_close(state_ours[0], state_ref[0])
        assert_close(state_ours[1], state_ref[1])
    grad_ours = torch.autograd.grad(state_ours[0].sum() + state_ours[1].pow(2).sum(), [x, cell.weight_hh])
    grad_ref = torch.autograd.grad(state_ref[0].sum() + state_ref[1].pow(2).sum(), [x, reference.weight_hh])
    for ours, theirs in zip(grad_ours, grad_ref):
        assert_close(ours, theirs)


@pytest.mark.parametrize("num_layers,batch_first,bias", [(1, False, True), (2, True, True), (2, False, False)])
def test_lstm_from_torch_equals_nn_lstm(num_layers, batch_first, bias):
    torch.manual_seed(num_layers)
    reference = nn.LSTM(4, 6, num_layers=num_layers, batch_first=batch_first, bias=bias, dtype=torch.float64)
    model = torch_nn.lstm_from_torch(reference)
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    state = (torch.randn(num_layers, 3 if batch_first else 7, 6, dtype=torch.float64),
             torch.randn(num_layers, 3 if batch_first else 7, 6, dtype=torch.float64))
    for initial in (None, state):
        expected, (h_expected, c_expected) = reference(x, initial)
        got, (h_got, c_got) = model(x, initial)
        assert_close(got, expected)
        assert_close(h_got, h_expected)
        assert_close(c_got, c_expected)


def test_lstm_bad_inputs():
    model = text.LSTM(4, 6)
    with pytest.raises(ValueError, match="time, batch, input"):
        model(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="input=4"):
        model(torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match="state"):
        model(torch.zeros(3, 2, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6)))
    with pytest.raises(TypeError, match="floating"):
        text.LSTMCell(2, 3)(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="bidirectional"):
        torch_nn.lstm_from_torch(nn.LSTM(2, 3, bidirectional=True))
    with pytest.raises(ValueError, match="hidden_size"):
        text.LSTMCell(2, 0)
    with pytest.raises(ValueError, match="zero time steps"):
        model(torch.zeros(0, 2, 4))


# --- exercise checkers --------------------------------------------------------------------------------

def test_exercise_checkers_accept_right_and_reject_wrong_answers():
    ch09.check_subsample_keep_probability(lambda counts, t: np.minimum(1, np.sqrt(t / (counts / counts.sum()))))
    with pytest.raises(ExerciseError, match="relative frequency|exceed"):
        ch09.check_subsample_keep_probability(lambda counts, t: np.minimum(1, np.sqrt(t / counts)))
    with pytest.raises(ExerciseError, match="exceed 1"):
        ch09.check_subsample_keep_probability(lambda counts, t: np.sqrt(t / (counts / counts.sum())))

    ch09.check_glove_weight(lambda x, x_max, alpha: np.minimum(x / x_max, 1.0) ** alpha)
    with pytest.raises(ExerciseError, match="capped"):
        ch09.check_glove_weight(lambda x, x_max, alpha: (x / x_max) ** alpha)

    def analogy(vectors, a, a_star, b):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        scores = unit @ (unit[a_star] - unit[a] + unit[b])
        scores[[a, a_star, b]] = -np.inf
        return int(np.argmax(scores))

    def not_normalised(vectors, a, a_star, b):
        scores = vectors @ (vectors[a_star] - vectors[a] + vectors[b])
        scores[[a, a_star, b]] = -np.inf
        return int(np.argmax(scores))

    def keeps_query_words(vectors, a, a_star, b):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return int(np.argmax(unit @ (unit[a_star] - unit[a] + unit[b])))

    ch09.check_analogy(analogy)
    with pytest.raises(ExerciseError, match="Normalise"):
        ch09.check_analogy(not_normalised)
    with pytest.raises(ExerciseError, match="query words"):
        ch09.check_analogy(keeps_query_words)
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch09.check_glove_weight(lambda *args: (_ for _ in ()).throw(NotImplementedError))


def test_skipgram_loss_fn_draws_noise_from_the_distribution():
    noise = text.noise_distribution(np.array([0.0, 1.0, 3.0, 0.0]), power=1.0)        # P_n = [0, 1/4, 3/4, 0]
    drawn = []

    class Recorder(nn.Module):
        def forward(self, centres, contexts, negatives):
            drawn.append(negatives)
            return torch.zeros(len(centres)), torch.zeros(len(centres), negatives.shape[1])

    torch.manual_seed(0)
    loss = text.skipgram_loss_fn(noise, num_negatives=4)(Recorder(), (torch.zeros(5000, dtype=torch.long),) * 2)
    assert_close(loss, torch.tensor(5 * math.log(2)))                                 # all logits 0: (1 + K) log 2
    frequencies = torch.bincount(drawn[0].flatten(), minlength=4) / drawn[0].numel()
    assert drawn[0].shape == (5000, 4) and frequencies[0] == frequencies[3] == 0
    assert abs(float(frequencies[2]) - 0.75) < 0.01
    with pytest.raises(ValueError, match="probability"):
        text.skipgram_loss_fn(torch.tensor([0.5, 0.6]), 2)

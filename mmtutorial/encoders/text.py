"""Text representations from scratch: tokenisers, word2vec (skip-gram with negative sampling), GloVe, LSTM.

Tokenisers turn text into integer ids.  Three granularities are compared on held-out text:

    words        a closed vocabulary: a word never seen in training becomes <unk>
    characters   a tiny vocabulary, no unknowns for seen characters, but the longest sequences
    byte BPE     (``mmtutorial.tokenizers.BPETokenizer``) merges of bytes: no unknown token at all

Static word vectors are learnt from co-occurrence:

    skip-gram NS   maximise  log σ(u_cᵀ v_w) + Σ_{k=1..K} log σ(−u_{n_k}ᵀ v_w),   n_k ~ P_n ∝ count^0.75
                   over (word w, context c) pairs in a window (Mikolov et al. 2013)
    GloVe          minimise  Σ_ij f(X_ij) (w_iᵀ w̃_j + b_i + b̃_j − log X_ij)²,
                   f(x) = (x / x_max)^α for x < x_max, else 1     (Pennington et al. 2014)

and compared by cosine nearest neighbours and 3CosAdd analogies (:class:`WordVectors`).

Finally :class:`LSTMCell` and :class:`LSTM` are the LSTM of Hochreiter & Schmidhuber (1997) with a forget
gate (Gers et al. 2000), written with PyTorch's parameter names and gate order (i, f, g, o), so the
weights of ``nn.LSTMCell`` load directly and those of ``nn.LSTM`` through an explicit key map.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "UNK", "WORD_PATTERN", "WordTokenizer", "CharTokenizer", "compare_tokenizers", "encode_corpus",
    "subsample_keep_probability", "noise_distribution", "skipgram_pairs", "SkipGramConfig", "SkipGramNS",
    "skipgram_ns_loss", "skipgram_loss_fn", "cooccurrence_matrix", "glove_weight", "GloVeConfig", "GloVe",
    "glove_loss", "glove_loss_fn", "WordVectors", "rnn_forward", "LSTMCell", "LSTM",
]

UNK = "<unk>"
# Words (with an inner apostrophe: "LORD's"), runs of digits, or single punctuation marks.
WORD_PATTERN = r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+|[^\w\s]"
_word_regex = re.compile(WORD_PATTERN)


# --------------------------------------------------------------------------------------------------
# Tokenisers
# --------------------------------------------------------------------------------------------------
def _check_texts(texts, name: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings (e.g. verses), got one str; wrap it: [text]")
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"{name} must contain strings, got {type(text).__name__}")
    return texts


class _Vocabulary:
    """What the word and character tokenisers share: ``itos`` (id -> token) with ``<unk>`` as id 0."""

    itos: list[str]
    unk_id = 0

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return self.vocab_size


class WordTokenizer(_Vocabulary):
    """A closed word vocabulary: the ``max_vocab`` most frequent words of the training texts (seen at least
    ``min_count`` times), plus ``<unk>`` (id 0) for every other word.

    ``lowercase=True`` folds case ("And" and "and" are one word); ``words_only=True`` drops punctuation and
    digits, which is what word-vector training wants.
    """

    def __init__(self, itos: Sequence[str], counts: Sequence[int] | None = None, lowercase: bool = True,
                 words_only: bool = False):
        itos = list(itos)
        if not itos or itos[0] != UNK:
            raise ValueError(f"the vocabulary must start with {UNK!r} (id 0), got {itos[:1]}")
        if len(set(itos)) != len(itos):
            raise ValueError("the vocabulary has duplicate entries")
        self.itos = itos                                           # id -> word
        self.stoi = {word: i for i, word in enumerate(itos)}       # word -> id
        self.counts = np.asarray(counts if counts is not None else np.ones(len(itos)), dtype=np.int64)
        if self.counts.shape != (len(itos),):
            raise ValueError(f"counts must have one entry per word ({len(itos)}), got shape {self.counts.shape}")
        self.lowercase, self.words_only = lowercase, words_only

    @classmethod
    def train(cls, texts: Iterable[str], max_vocab: int | None = None, min_count: int = 1,
              lowercase: bool = True, words_only: bool = False) -> "WordTokenizer":
        """Count the words of ``texts`` and keep the most frequent (ties: alphabetical, so it is deterministic)."""
        texts = _check_texts(texts)
        if max_vocab is not None and (not isinstance(max_vocab, int) or max_vocab < 1):
            raise ValueError(f"max_vocab must be a positive int or None, got {max_vocab!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive int, got {min_count!r}")
        probe = cls([UNK], lowercase=lowercase, words_only=words_only)
        counter = Counter(word for text in texts for word in probe.tokenize(text))
        ranked = sorted((item for item in counter.items() if item[1] >= min_count), key=lambda wc: (-wc[1], wc[0]))
        ranked = ranked[:max_vocab]
        unknown = sum(counter.values()) - sum(count for _, count in ranked)
        return cls([UNK] + [word for word, _ in ranked], [unknown] + [count for _, count in ranked],
                   lowercase=lowercase, words_only=words_only)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, words_only={self.words_only})"

    def tokenize(self, text: str) -> list[str]:
        """The word strings of ``text`` (before the vocabulary lookup)."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize wants a str, got {type(text).__name__}")
        if self.lowercase:
            text = text.lower()
        tokens = _word_regex.findall(text)
        if self.words_only:
            tokens = [t for t in tokens if t[0].isalpha()]
        return tokens

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(token, self.unk_id) for token in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces (word tokenisation loses the original spacing and, for unknowns, the word)."""
        ids = list(ids)
        for i in ids:
            if not 0 <= int(i) < self.vocab_size:
                raise ValueError(f"token id {i} out of range: expected 0 <= id < {self.vocab_size}")
        return " ".join(self.itos[int(i)] for i in ids)


class CharTokenizer(_Vocabulary):
    """One token per character seen in training, plus ``<unk>`` (id 0) for characters never seen."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        self.itos = [UNK] + chars
        self.stoi = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> "CharTokenizer":
        return cls(sorted(set("".join(_check_texts(texts)))))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode wants a str, got {type(text).__name__}")
        return [self.stoi.get(c, self.unk_id) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[int(i)] if int(i) else "\ufffd" for i in ids)


def compare_tokenizers(tokenizers: dict[str, object], texts: Iterable[str]) -> list[dict]:
    """Vocabulary size, sequence length and unknown-token rate of each tokeniser on ``texts``.

    A tokeniser needs ``encode(str) -> list[int]`` and ``vocab_size``; its ``unk_id`` attribute (absent or
    ``None`` for byte-level BPE, which has no unknown token) marks unknowns.  Returns one row per tokeniser:
    ``name, vocab_size, tokens, tokens_per_text, chars_per_token, unknown_rate``.
    """
    texts = _check_texts(texts)
    if not texts:
        raise ValueError("texts is empty")
    characters = sum(len(text) for text in texts)
    rows = []
    for name, tokenizer in tokenizers.items():
        if not callable(getattr(tokenizer, "encode", None)) or not hasattr(tokenizer, "vocab_size"):
            raise TypeError(f"tokeniser {name!r} needs encode() and vocab_size, got {type(tokenizer).__name__}")
        unk_id = getattr(tokenizer, "unk_id", None)
        total = unknown = 0
        for text in texts:
            ids = tokenizer.encode(text)
            total += len(ids)
            if unk_id is not None:
                unknown += sum(1 for i in ids if i == unk_id)
        rows.append({"name": name, "vocab_size": int(tokenizer.vocab_size), "tokens": total,
                     "tokens_per_text": total / len(texts), "chars_per_token": characters / max(1, total),
                     "unknown_rate": unknown / max(1, total)})
    return rows


def encode_corpus(texts: Iterable[str], tokenizer: WordTokenizer) -> list[np.ndarray]:
    """Each text as an int64 array of in-vocabulary ids; out-of-vocabulary words are dropped, as word2vec
    and GloVe do (they would otherwise all become one frequent <unk> "word")."""
    if not isinstance(tokenizer, WordTokenizer):
        raise TypeError(f"encode_corpus wants a WordTokenizer, got {type(tokenizer).__name__}")
    sentences = []
    for text in _check_texts(texts):
        ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
        sentences.append(ids[ids != tokenizer.unk_id])
    return sentences


# --------------------------------------------------------------------------------------------------
# word2vec: skip-gram with negative sampling
# --------------------------------------------------------------------------------------------------
def _check_counts(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-d array of word counts, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("counts must be >= 0")
    if counts.sum() <= 0:
        raise ValueError("counts sum to 0")
    return counts


def subsample_keep_probability(counts, threshold: float = 1e-4) -> np.ndarray:
    """Mikolov et al.'s subsampling of frequent words: keep each occurrence of word w with probability
    ``min(1, sqrt(t / f(w)))``, f(w) = count(w) / total (the paper's P(discard) = 1 − sqrt(t / f)).

    "the" (8 % of the KJV) is kept 3.5 % of the time with t = 1e-4; words rarer than t are always kept.
    """
    counts = _check_counts(counts)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    frequency = counts / counts.sum()
    with np.errstate(divide="ignore"):
        return np.minimum(1.0, np.sqrt(threshold / frequency))    # frequency 0 -> inf -> 1


def noise_distribution(counts, power: float = 0.75) -> Tensor:
    """The negative-sampling distribution P_n(w) ∝ count(w)^power (0.75 in word2vec), float64 summing to 1."""
    counts = _check_counts(counts)
    weights = counts ** power
    return torch.from_numpy(weights / weights.sum())


def skipgram_pairs(sentences: Sequence[np.ndarray], window: int = 5, keep_probability=None,
                   seed: int = 0, passes: int = 1) -> tuple[Tensor, Tensor]:
    """(centre, context) id pairs for skip-gram, as word2vec draws them.

    For each pass: drop occurrences with ``1 − keep_probability[id]`` (subsampling, before windowing, so
    the window reaches further), draw for each centre a window size b uniformly in 1..window (nearer words
    are used more often), and pair the centre with the words at distance ≤ b in the same sentence.
    Returns two int64 tensors of equal length.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be a positive int, got {passes!r}")
    if not sentences:
        raise ValueError("sentences is empty")
    rng = np.random.default_rng(seed)
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sentences])         # (n,)
    sentence_of = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])  # (n,)
    if keep_probability is not None:
        keep_probability = np.asarray(keep_probability, dtype=np.float64)
        if ids.size and ids.max() >= len(keep_probability):
            raise ValueError(f"keep_probability has {len(keep_probability)} entries but ids go up to {ids.max()}")
    centres, contexts = [], []
    for _ in range(passes):
        kept = np.ones(len(ids), dtype=bool) if keep_probability is None else rng.random(len(ids)) < keep_probability[ids]
        kept_ids, kept_sentence = ids[kept], sentence_of[kept]                       # (m,)
        reach = rng.integers(1, window + 1, size=len(kept_ids))                      # (m,) b per centre
        for distance in range(1, window + 1):
            same = kept_sentence[distance:] == kept_sentence[:-distance]             # (m - d,)
            for centre_slice, context_slice in ((slice(distance, None), slice(None, -distance)),
                                                (slice(None, -distance), slice(distance, None))):
                use = same & (reach[centre_slice] >= distance)
                centres.append(kept_ids[centre_slice][use])
                contexts.append(kept_ids[context_slice][use])
    return torch.from_numpy(np.concatenate(centres)), torch.from_numpy(np.concatenate(contexts))


@dataclass
class SkipGramConfig:
    vocab_size: int            # number of words (rows of both embedding tables)
    dim: int = 100             # embedding dimension
    num_negatives: int = 5     # K negative (noise) words per positive pair

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "num_negatives"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SkipGramConfig.{name} must be a positive int, got {value!r}")


class SkipGramNS(nn.Module):
    """Two tables, as in word2vec: ``input_embeddings`` v (the word vectors one keeps) and
    ``output_embeddings`` u (the context vectors).  Initialised like word2vec: v uniform in ±0.5/dim, u = 0.

    ``forward(centres, contexts, negatives)`` returns the logits u_cᵀv_w (batch,) and u_nᵀv_w (batch, K).
    """

    def __init__(self, config: SkipGramConfig):
        super().__init__()
        if not isinstance(config, SkipGramConfig):
            raise TypeError(f"SkipGramNS wants a SkipGramConfig, got {type(config).__name__}")
        self.config = config
        self.input_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.output_embeddings = nn.Embedding(config.vocab_size, config.dim)
        nn.init.uniform_(self.input_embeddings.weight, -0.5 / config.dim, 0.5 / config.dim)
        nn.init.zeros_(self.output_embeddings.weight)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def forward(self, centres: Tensor, contexts: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        if centres.ndim != 1 or contexts.shape != centres.shape:
            raise ValueError(f"centres and contexts must be 1-d and equally long, got {tuple(centres.shape)} "
                             f"and {tuple(contexts.shape)}")
        if negatives.ndim != 2 or negatives.shape[0] != centres.shape[0]:
            raise ValueError(f"negatives must be (batch={centres.shape[0]}, K), got {tuple(negatives.shape)}")
        v = self.input_embeddings(centres)                               # (batch, dim)
        u_positive = self.output_embeddings(contexts)                    # (batch, dim)
        u_negative = self.output_embeddings(negatives)                   # (batch, K, dim)
        positive_logits = (u_positive * v).sum(dim=-1)                   # (batch,)
        negative_logits = torch.einsum("bkd,bd->bk", u_negative, v)      # (batch, K)
        return positive_logits, negative_logits

    def embeddings(self) -> Tensor:
        """The word vectors v (vocab, dim), detached."""
        return self.input_embeddings.weight.detach().clone()


def skipgram_ns_loss(positive_logits: Tensor, negative_logits: Tensor, reduction: str = "mean") -> Tensor:
    """Negative of the skip-gram NS objective per pair, −log σ(s⁺) − Σ_k log σ(−s⁻_k), written with
    BCE-with-logits (target 1 for the true context, 0 for the noise words), which is numerically stable.

    ``reduction="mean"`` averages over pairs (the training loss), ``"sum"`` adds them (the objective).
    """
    if positive_logits.ndim != 1 or negative_logits.ndim != 2 or negative_logits.shape[0] != positive_logits.shape[0]:
        raise ValueError(f"expected positive logits (batch,) and negative logits (batch, K), got "
                         f"{tuple(positive_logits.shape)} and {tuple(negative_logits.shape)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    per_pair = (F.binary_cross_entropy_with_logits(positive_logits, torch.ones_like(positive_logits), reduction="none")
                + F.binary_cross_entropy_with_logits(negative_logits, torch.zeros_like(negative_logits),
                                                     reduction="none").sum(dim=-1))      # (batch,)
    return per_pair.mean() if reduction == "mean" else per_pair.sum()


def skipgram_loss_fn(noise: Tensor, num_negatives: int) -> Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor]:
    """A ``loss_fn(model, (centres, contexts))`` for :func:`mmtutorial.training.fit` that draws K noise words
    per pair from ``noise`` (with torch's global CPU generator, which ``fit`` checkpoints for resumption).

    Noise words are drawn independently of the pair, so one may equal the true context, as in word2vec.
    """
    if not isinstance(noise, Tensor) or noise.ndim != 1 or not torch.isclose(noise.sum(), noise.new_tensor(1.0)):
        raise ValueError("noise must be a 1-d probability tensor summing to 1 (see noise_distribution)")
    if not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"num_negatives must be a positive int, got {num_negatives!r}")
    noise = noise.detach().cpu()

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        centres, contexts = batch                                                         # (batch,), (batch,)
        negatives = torch.multinomial(noise, len(centres) * num_negatives, replacement=True)
        negatives = negatives.view(len(centres), num_negatives).to(centres.device)        # (batch, K)
        return skipgram_ns_loss(*model(centres, contexts, negatives))

    return loss_fn


# --------------------------------------------------------------------------------------------------
# GloVe
# --------------------------------------------------------------------------------------------------
def cooccurrence_matrix(sentences: Sequence[np.ndarray], vocab_size: int, window: int = 10,
                        distance_weighting: bool = True):
    """GloVe's symmetric co-occurrence counts X (a ``scipy.sparse.csr_matrix`` of float64).

    Every pair of words at distance d ≤ ``window`` in one sentence adds 1/d (``distance_weighting``, as in
    GloVe: distant words say less about each other) or 1 to X[i, j] and to X[j, i].
    """
    from scipy import sparse

    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if not sentences:
        raise ValueError("sentences is empty")
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sentences])          # (n,)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got range [{ids.min()}, {ids.max()}]")
    sentence_of = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])   # (n,)
    rows, cols, values = [], [], []
    for distance in range(1, window + 1):
        same = sentence_of[distance:] == sentence_of[:-distance]
        left, right = ids[:-distance][same], ids[distance:][same]
        weight = np.full(len(left), 1.0 / distance if distance_weighting else 1.0)
        rows += [left, right]
        cols += [right, left]
        values += [weight, weight]
    matrix = sparse.coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(vocab_size, vocab_size)).tocsr()               # sums duplicates
    matrix.sum_duplicates()
    return matrix


def glove_weight(x, x_max: float = 100.0, alpha: float = 0.75):
    """GloVe's weighting f(x) = (x / x_max)^α below x_max, 1 above: rare pairs count little, frequent pairs
    are capped so "of the" cannot dominate.  Works on numpy arrays and torch tensors."""
    if not x_max > 0 or not alpha > 0:
        raise ValueError(f"x_max and alpha must be > 0, got {x_max} and {alpha}")
    if isinstance(x, Tensor):
        return torch.clamp(x / x_max, max=1.0) ** alpha
    return np.minimum(np.asarray(x, dtype=np.float64) / x_max, 1.0) ** alpha


@dataclass
class GloVeConfig:
    vocab_size: int          # number of words
    dim: int = 100           # embedding dimension
    x_max: float = 100.0     # f(x) saturates at 1 from here (the paper's value)
    alpha: float = 0.75      # exponent of f below x_max (the paper's value)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GloVeConfig.{name} must be a positive int, got {value!r}")
        if not self.x_max > 0 or not self.alpha > 0:
            raise ValueError(f"GloVeConfig.x_max and alpha must be > 0, got {self.x_max} and {self.alpha}")


class GloVe(nn.Module):
    """Word vectors W, context vectors W̃ and biases b, b̃; ``forward(i, j)`` is w_iᵀw̃_j + b_i + b̃_j (batch,).

    Initialised uniformly in ±0.5/dim as the reference implementation does.  The vectors one keeps are
    W + W̃ (:meth:`embeddings`), which the paper found slightly better than W alone.
    """

    def __init__(self, config: GloVeConfig):
        super().__init__()
        if not isinstance(config, GloVeConfig):
            raise TypeError(f"GloVe wants a GloVeConfig, got {type(config).__name__}")
        self.config = config
        bound = 0.5 / config.dim
        self.word_vectors = nn.Parameter(torch.empty(config.vocab_size, config.dim).uniform_(-bound, bound))
        self.context_vectors = nn.Parameter(torch.empty(config.vocab_size, config.dim).uniform_(-bound, bound))
        self.word_bias = nn.Parameter(torch.empty(config.vocab_size).uniform_(-bound, bound))
        self.context_bias = nn.Parameter(torch.empty(config.vocab_size).uniform_(-bound, bound))

    def config_dict(self) -> dict:
        return asdict(self.config)

    def forward(self, rows: Tensor, cols: Tensor) -> Tensor:
        if rows.ndim != 1 or cols.shape != rows.shape:
            raise ValueError(f"rows and cols must be 1-d and equally long, got {tuple(rows.shape)} and {tuple(cols.shape)}")
        dot = (self.word_vectors[rows] * self.context_vectors[cols]).sum(dim=-1)       # (batch,)
        return dot + self.word_bias[rows] + self.context_bias[cols]                    # (batch,)

    def embeddings(self) -> Tensor:
        return (self.word_vectors + self.context_vectors).detach().clone()            # (vocab, dim)


def glove_loss(predictions: Tensor, counts: Tensor, x_max: float = 100.0, alpha: float = 0.75,
               reduction: str = "mean") -> Tensor:
    """Σ f(X_ij)(prediction_ij − log X_ij)² over the given non-zero counts (``"sum"``: the paper's J;
    ``"mean"``: divided by the number of pairs, the training loss)."""
    if predictions.shape != counts.shape or predictions.ndim != 1:
        raise ValueError(f"predictions and counts must be 1-d and equally long, got {tuple(predictions.shape)} "
                         f"and {tuple(counts.shape)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if torch.any(counts <= 0):
        raise ValueError("GloVe is fitted only on non-zero co-occurrence counts (log 0 is undefined)")
    per_pair = glove_weight(counts, x_max, alpha) * (predictions - torch.log(counts)) ** 2      # (batch,)
    return per_pair.mean() if reduction == "mean" else per_pair.sum()


def glove_loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """``loss_fn(model, (rows, cols, counts))`` for :func:`mmtutorial.training.fit` (x_max = 100, α = 0.75)."""
    rows, cols, counts = batch
    return glove_loss(model(rows, cols), counts)


# --------------------------------------------------------------------------------------------------
# Using word vectors: nearest neighbours and analogies
# --------------------------------------------------------------------------------------------------
class WordVectors:
    """Unit-normalised word vectors with the words they belong to: cosine neighbours and 3CosAdd analogies."""

    def __init__(self, vectors, itos: Sequence[str]):
        vectors = torch.as_tensor(vectors).detach().to(torch.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(itos):
            raise ValueError(f"vectors must be (len(itos)={len(itos)}, dim), got {tuple(vectors.shape)}")
        self.itos = list(itos)
        self.stoi = {word: i for i, word in enumerate(self.itos)}
        self.unit = F.normalize(vectors, dim=-1)                               # (vocab, dim), rows of norm 1

    def __repr__(self) -> str:
        return f"WordVectors(words={len(self.itos)}, dim={self.unit.shape[1]})"

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def id(self, word: str) -> int:
        if word not in self.stoi:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(self.itos)} words")
        return self.stoi[word]

    def vector(self, word: str) -> Tensor:
        return self.unit[self.id(word)]

    def similarity(self, first: str, second: str) -> float:
        """Cosine similarity of two words."""
        return float(self.vector(first) @ self.vector(second))

    def _top(self, query: Tensor, k: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        scores = self.unit @ F.normalize(query, dim=-1)                        # (vocab,) cosines
        excluded = [self.id(w) for w in exclude] + ([0] if self.itos[0] == UNK else [])   # <unk> is no answer
        scores[excluded] = -math.inf
        values, indices = torch.topk(scores, k)
        return [(self.itos[i], float(v)) for i, v in zip(indices.tolist(), values.tolist())]

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to ``word`` (itself left out)."""
        return self._top(self.vector(word), k, exclude=[word])

    def analogy(self, a: str, a_star: str, b: str, k: int = 5) -> list[tuple[str, float]]:
        """3CosAdd (Mikolov et al. 2013): a is to a* as b is to ?  →  argmax_x cos(x, a* − a + b),
        leaving out the three query words (otherwise b itself usually wins)."""
        query = self.vector(a_star) - self.vector(a) + self.vector(b)          # (dim,)
        return self._top(query, k, exclude=[a, a_star, b])


# --------------------------------------------------------------------------------------------------
# Recurrent networks: the Elman RNN and the LSTM
# --------------------------------------------------------------------------------------------------
def rnn_forward(inputs: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None = None,
                h0: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """An Elman RNN, h_t = φ(W_ih x_t + W_hh h_{t−1} + b), over ``inputs`` (time, batch, input).

    Returns all hidden states (time, batch, hidden).  ``nonlinearity="tanh"`` is the standard RNN
    (``nn.RNN``); ``"sigmoid"`` reproduces textbook examples that use σ.
    """
    if inputs.ndim != 3:
        raise ValueError(f"inputs must be (time, batch, input_size), got {tuple(inputs.shape)}")
    activations = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
    if nonlinearity not in activations:
        raise ValueError(f"nonlinearity must be one of {sorted(activations)}, got {nonlinearity!r}")
    hidden_size = weight_hh.shape[0]
    if weight_ih.shape != (hidden_size, inputs.shape[-1]) or weight_hh.shape != (hidden_size, hidden_size):
        raise ValueError(f"expected weight_ih (hidden, {inputs.shape[-1]}) and weight_hh (hidden, hidden), got "
                         f"{tuple(weight_ih.shape)} and {tuple(weight_hh.shape)}")
    act = activations[nonlinearity]
    h = inputs.new_zeros(inputs.shape[1], hidden_size) if h0 is None else h0             # (batch, hidden)
    states = []
    for x in inputs:                                                                    # x: (batch, input)
        pre = x @ weight_ih.T + h @ weight_hh.T                                         # (batch, hidden)
        h = act(pre if bias is None else pre + bias)
        states.append(h)
    return torch.stack(states)                                                          # (time, batch, hidden)


class LSTMCell(nn.Module):
    """One LSTM step with PyTorch's parameters (``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``,
    ``bias_hh`` (4H,)) and gate order (input i, forget f, candidate g, output o)::

        [i, f, g, o] = W_ih x + b_ih + W_hh h + b_hh
        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)          the cell state: a gated running sum (why gradients survive)
        h' = σ(o) ⊙ tanh(c')

    ``nn.LSTMCell(I, H).state_dict()`` loads directly.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: torch.dtype | None = None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LSTMCell {name} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = 1.0 / math.sqrt(hidden_size)                       # PyTorch's initialisation U(−1/√H, 1/√H)
        def uniform(*shape):
            return nn.Parameter(torch.empty(*shape, dtype=dtype).uniform_(-bound, bound))
        self.weight_ih = uniform(4 * hidden_size, input_size)
        self.weight_hh = uniform(4 * hidden_size, hidden_size)
        self.bias_ih = uniform(4 * hidden_size) if bias else None
        self.bias_hh = uniform(4 * hidden_size) if bias else None

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if x.ndim != 2 or x.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell input must be (batch, {self.input_size}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"LSTMCell input must be floating point, got {x.dtype}")
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = state                                                          # (batch, H) each
        if h.shape != (x.shape[0], self.hidden_size) or c.shape != h.shape:
            raise ValueError(f"state must be two tensors (batch={x.shape[0]}, {self.hidden_size}), got "
                             f"{tuple(h.shape)} and {tuple(c.shape)}")
        gates = x @ self.weight_ih.T + h @ self.weight_hh.T                   # (batch, 4H)
        if self.bias_ih is not None:
            gates = gates + self.bias_ih + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=-1)                                   # (batch, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)           # (batch, H)
        h = torch.sigmoid(o) * torch.tanh(c)                                  # (batch, H)
        return h, c


class LSTM(nn.Module):
    """A stack of :class:`LSTMCell` run over time: ``forward(x, state)`` → ``(outputs, (h_n, c_n))`` with
    ``nn.LSTM``'s shapes: x (time, batch, input) or (batch, time, input) with ``batch_first``; outputs are
    the top layer's h_t; h_n and c_n are (num_layers, batch, hidden).  Unidirectional, no dropout or
    projection.  ``mmtutorial.zoo.torch_nn.lstm_from_torch`` copies the weights of an ``nn.LSTM``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype: torch.dtype | None = None):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first = batch_first
        self.cells = nn.ModuleList(LSTMCell(input_size if layer == 0 else hidden_size, hidden_size, bias, dtype)
                                   for layer in range(num_layers))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            layout = "(batch, time, input)" if self.batch_first else "(time, batch, input)"
            raise ValueError(f"LSTM input must be {layout} with input={self.input_size}, got {tuple(x.shape)}")
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"LSTM input has zero time steps (shape {tuple(x.shape)}): there is nothing to read, "
                             "so there is no final state; pass at least one step")
        if self.batch_first:
            x = x.transpose(0, 1)                                             # (time, batch, input)
        batch = x.shape[1]
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state                                                        # (layers, batch, H) each
        if h0.shape != (self.num_layers, batch, self.hidden_size) or c0.shape != h0.shape:
            raise ValueError(f"state must be two tensors ({self.num_layers}, {batch}, {self.hidden_size}), got "
                             f"{tuple(h0.shape)} and {tuple(c0.shape)}")
        layer_input, last_h, last_c = x, [], []
        for layer, cell in enumerate(self.cells):
            h, c = h0[layer], c0[layer]
            outputs = []
            for x_t in layer_input:                                           # x_t: (batch, in)
                h, c = cell(x_t, (h, c))
                outputs.append(h)
            layer_input = torch.stack(outputs)                                # (time, batch, H)
            last_h.append(h)
            last_c.append(c)
        outputs = layer_input.transpose(0, 1) if self.batch_first else layer_input
        return outputs, (torch.stack(last_h), torch.stack(last_c))

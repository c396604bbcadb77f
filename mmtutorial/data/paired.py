"""Paired multimodal data sets with exact labels, for the fusion chapter.

**Paired digits.**  A handwritten digit (scikit-learn's 8×8 images, :func:`mmtutorial.data.load_digits`)
is paired with a spoken digit (espeak-ng, :mod:`mmtutorial.data.spoken_digits`).  Three tasks:

- ``"match"``: label 1 if the image and the word show the same digit, else 0; exactly half the pairs match
  and a non-matching word is any of the other nine digits with equal probability.  Since
  P(match | image) = P(match | audio) = 1/2, **neither modality alone carries any information**.
- ``"sum"``: the word is drawn independently of the image; label = image digit + spoken digit (19 classes).
- ``"digit"``: both show the same digit and the label is that digit: each modality alone suffices, so
  with noise added to both (``image_noise``, ``audio_snr_db``) each carries *partial* information and
  fusion combines the evidence.

Splits never share a source item: train/val/test pairs are built from train/val/test images (a stratified
split of the 1,797 images) and train/val/test voices (``split_by_voice``: held-out speakers, as in
chapter 12).  The loader returns what the data is, not features: the caller passes ``audio_transform``,
which turns waveforms into a sequence of tokens per word (chapter 14 passes
``mmtutorial.encoders.audio.mfcc_tokens``: MFCCs averaged over equal time spans).  It is applied once per
split and its tokens are standardised with the training statistics.  Images are (8, 8): eight row tokens of
eight pixels.

**Reviews with a face.**  :func:`make_reviews` writes short templated reviews ("the food was not good")
and draws a small face (smiling or frowning) with numpy.  A review counts as positive only when the words
are positive *and* the face smiles: positive words with a frown are sarcasm.  Half the examples are
positive, so each modality alone is capped at 5/6 ≈ 83 % and only both reach 100 %.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = ["TASKS", "PairedSplit", "PairedDigits", "add_noise_at_snr", "make_pairs",
           "load_paired_digits", "REVIEW_VOCABULARY", "ReviewVocabulary", "ReviewSplit", "draw_face",
           "make_reviews"]

TASKS = ("match", "sum", "digit")
NUM_CLASSES = {"match": 2, "sum": 19, "digit": 10}


# --------------------------------------------------------------------------------------------------
# Audio noise
# --------------------------------------------------------------------------------------------------
def add_noise_at_snr(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` dB below each clip's mean power (n, samples) float32."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (clips, samples), got shape {audio.shape}")
    power = np.mean(audio ** 2, axis=1, keepdims=True)                   # (n, 1)
    noise = np.random.default_rng(seed).standard_normal(audio.shape)
    return (audio + noise * np.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Paired digits
# --------------------------------------------------------------------------------------------------
@dataclass
class PairedSplit:
    """One split of paired digits: image tokens, audio tokens and the label of every pair."""
    image: Tensor               # (n, 8, 8) float32, standardised pixels (8 row tokens)
    audio: Tensor               # (n, tokens, features) float32: audio_transform's tokens, standardised
    label: Tensor               # (n,) int64
    image_digit: np.ndarray     # (n,) the digit drawn in the image
    audio_digit: np.ndarray     # (n,) the digit spoken
    image_index: np.ndarray     # (n,) index into this split's images
    audio_index: np.ndarray     # (n,) index into this split's utterances
    voices: np.ndarray          # (n,) the voice of each utterance

    def __len__(self) -> int:
        return len(self.label)

    def tensors(self, flat: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(image, audio, label) for ``mmt.training.fit``; ``flat`` gives (n, 64) and (n, tokens·features)."""
        if flat:
            return self.image.flatten(1), self.audio.flatten(1), self.label
        return self.image, self.audio, self.label

    def __repr__(self) -> str:
        return (f"PairedSplit({len(self)} pairs, image {tuple(self.image.shape[1:])}, "
                f"audio {tuple(self.audio.shape[1:])}, labels {np.bincount(self.label.numpy()).tolist()})")


@dataclass
class PairedDigits:
    """Train, validation and test pairs of one task, and the settings that made them."""
    task: str
    train: PairedSplit
    val: PairedSplit
    test: PairedSplit
    num_classes: int
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"PairedDigits(task={self.task!r}, train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, classes={self.num_classes})")


def make_pairs(task: str, image_digits: np.ndarray, audio_digits: np.ndarray, count: int,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (image_index, audio_index) of ``count`` pairs and their labels for ``task``.

    ``"match"``: exactly ``count // 2`` matching pairs (rounded up), the rest with a different digit drawn
    uniformly from the other nine; ``"sum"``: independent draws, label = sum; ``"digit"``: same digit,
    label = digit.  The image's digit is uniform over 0–9 (then an image of it, uniformly), so that
    P(match | image) = P(match | audio) = 1/2; words are drawn uniformly among those of the digit needed.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not isinstance(count, int) or count < 2:
        raise ValueError(f"count must be an int >= 2, got {count!r}")
    image_digits, audio_digits = np.asarray(image_digits), np.asarray(audio_digits)
    images_of = [np.flatnonzero(image_digits == d) for d in range(10)]
    words_of = [np.flatnonzero(audio_digits == d) for d in range(10)]
    for what, items in (("images", images_of), ("audio", words_of)):
        missing = [d for d in range(10) if len(items[d]) == 0]
        if missing:
            raise ValueError(f"the {what} have no example of digit(s) {missing}")
    rng = np.random.default_rng(seed)
    # Digits first, uniformly, then an example of each: with uniform digits a match carries no
    # information about either digit, so neither modality alone says anything about the label.
    drawn = rng.integers(0, 10, count)
    image_index = np.array([images_of[d][rng.integers(len(images_of[d]))] for d in drawn])
    if task == "sum":
        spoken = rng.integers(0, 10, count)
    elif task == "digit":
        spoken = drawn
    else:
        is_match = rng.permutation(np.arange(count) < (count + 1) // 2)
        spoken = np.where(is_match, drawn, (drawn + rng.integers(1, 10, count)) % 10)
    audio_index = np.array([words_of[d][rng.integers(len(words_of[d]))] for d in spoken])
    labels = {"digit": drawn, "sum": drawn + spoken, "match": (spoken == drawn).astype(np.int64)}[task]
    return image_index, audio_index, labels


def _audio_tokens(audio_transform, waveforms: np.ndarray, sample_rate: int) -> Tensor:
    """Apply the caller's transform to (n, samples) waveforms and check it returned (n, tokens, features)."""
    if not callable(audio_transform):
        raise TypeError(f"audio_transform must be a callable (waveforms, sample_rate) -> tokens, got "
                        f"{type(audio_transform).__name__}")
    waveforms = torch.as_tensor(np.asarray(waveforms), dtype=torch.float32)     # (n, samples); float32 is 2x faster
    tokens = audio_transform(waveforms, sample_rate)
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.size(0) != waveforms.size(0):
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"audio_transform must return a tensor (n={waveforms.size(0)}, tokens, features), got {got}")
    return tokens.float()


def load_paired_digits(task: str = "match", *, audio_transform: Callable[[Tensor, int], Tensor],
                       pairs: tuple[int, int, int] | None = None, image_noise: float = 0.0,
                       audio_snr_db: float | None = None, seed: int = 0, verbose: bool = True) -> PairedDigits:
    """Paired image/spoken digits for ``task`` (see the module docstring), audio tokens computed once.

    Args:
        task: ``"match"``, ``"sum"`` or ``"digit"``.
        audio_transform: ``(waveforms (n, samples) float32, sample_rate) -> tokens (n, tokens, features)``,
            e.g. ``mmtutorial.encoders.audio.mfcc_tokens``; applied once to each split's utterances.
        pairs: number of (train, val, test) pairs; default (8000, 1000, 2000), QUICK (2000, 500, 1000).
        image_noise: standard deviation of Gaussian pixel noise (pixels range 0–16), a new draw per pair.
        audio_snr_db: white noise at this signal-to-noise ratio added to every utterance (None: clean).
        seed: seeds the pairing and the noise.
    """
    from ..config import is_quick
    from . import load_digits
    from .spoken_digits import load_spoken_digits, split_by_voice

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    pairs = pairs or ((2000, 500, 1000) if is_quick() else (8000, 1000, 2000))
    if len(pairs) != 3:
        raise ValueError(f"pairs must be (train, val, test) counts, got {pairs}")
    if image_noise < 0:
        raise ValueError(f"image_noise must be >= 0, got {image_noise}")
    images = load_digits(seed=0, standardize=False)                        # pixels 0..16, (n, 64)
    words = load_spoken_digits(verbose=verbose)
    word_splits = split_by_voice(words, val_fraction=0.15, test_fraction=0.25, seed=0)   # as in chapter 12
    waves = [split.audio if audio_snr_db is None else add_noise_at_snr(split.audio, audio_snr_db, seed + i)
             for i, split in enumerate(word_splits)]
    mfccs = [_audio_tokens(audio_transform, w, words.sample_rate) for w in waves]   # (n, tokens, features)
    audio_mean, audio_std = mfccs[0].mean(dim=0), mfccs[0].std(dim=0)        # training statistics only
    rng = np.random.default_rng(seed + 100)
    built = []
    for index, ((x, y), split, count) in enumerate(zip(
            ((images.x_train, images.y_train), (images.x_val, images.y_val), (images.x_test, images.y_test)),
            word_splits, pairs)):
        image_index, audio_index, labels = make_pairs(task, y, split.labels, int(count), seed=seed + index)
        pixels = x[image_index]                                            # (count, 64)
        if image_noise > 0:
            pixels = pixels + image_noise * rng.standard_normal(pixels.shape)
        built.append((y, split, image_index, audio_index, labels, pixels))
    # Standardise with the statistics of the training pairs as the model sees them (noise included):
    # clean statistics would divide the noise on the near-constant border pixels by a tiny std.
    mean, std = built[0][-1].mean(axis=0), built[0][-1].std(axis=0)
    std[std == 0] = 1.0
    out = []
    for (y, split, image_index, audio_index, labels, pixels), feats in zip(built, mfccs):
        image = torch.as_tensor((pixels - mean) / std, dtype=torch.float32).view(-1, 8, 8)   # (n, 8, 8)
        audio = ((feats - audio_mean) / audio_std)[torch.as_tensor(audio_index)]             # (n, tokens, features)
        out.append(PairedSplit(image, audio, torch.as_tensor(labels, dtype=torch.int64), y[image_index],
                               split.labels[audio_index], image_index, audio_index, split.voices[audio_index]))
    settings = {"task": task, "pairs": list(pairs), "image_noise": image_noise, "audio_snr_db": audio_snr_db,
                "audio_transform": getattr(audio_transform, "__name__", repr(audio_transform)), "seed": seed,
                "utterances": len(words)}
    return PairedDigits(task, *out, num_classes=NUM_CLASSES[task], settings=settings)


# --------------------------------------------------------------------------------------------------
# Reviews with a face: the multimodal sentiment task
# --------------------------------------------------------------------------------------------------
SUBJECTS = ("the food", "the service", "the room", "this phone", "the film", "the book", "the hotel",
            "the delivery", "the coffee", "the staff")
POSITIVE_WORDS = ("good", "great", "excellent", "lovely", "wonderful", "perfect")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "poor", "horrible", "disappointing")
TEMPLATES = ("{subject} was {negation}{word}", "{subject} is {negation}{word}",
             "honestly {subject} was {negation}{word}", "i found {subject} {negation}{word}",
             "{subject} was really {negation}{word}", "we thought {subject} was {negation}{word}")
PAD, UNKNOWN = "<pad>", "<unk>"


class ReviewVocabulary:
    """Word-level vocabulary of the templated reviews: id 0 is padding, 1 unknown words."""

    def __init__(self, words) -> None:
        self.words = [PAD, UNKNOWN] + sorted(set(words) - {PAD, UNKNOWN})
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(word, 1) for word in text.lower().split()]

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids if int(i) != 0)

    def encode_batch(self, texts, max_len: int | None = None) -> tuple[Tensor, Tensor]:
        """Padded ids (n, max_len) int64 and lengths (n,) int64."""
        encoded = [self.encode(text) for text in texts]
        lengths = [len(ids) for ids in encoded]
        if min(lengths, default=1) == 0:
            raise ValueError("an empty review cannot be encoded (length 0)")
        width = max_len or max(lengths)
        ids = torch.zeros(len(encoded), width, dtype=torch.int64)
        for row, tokens in enumerate(encoded):
            ids[row, :min(len(tokens), width)] = torch.tensor(tokens[:width])
        return ids, torch.tensor([min(n, width) for n in lengths])


def _template_words():
    words = {"not"}
    for text in TEMPLATES + SUBJECTS + POSITIVE_WORDS + NEGATIVE_WORDS:
        words.update(text.replace("{subject}", "").replace("{negation}", "").replace("{word}", "").split())
    return words


REVIEW_VOCABULARY = ReviewVocabulary(_template_words())


def draw_face(smiling: bool, size: int = 16, rng: np.random.Generator | None = None,
              noise: float = 0.1) -> np.ndarray:
    """A face (outline, two eyes, a mouth curved up or down) on a ``size`` × ``size`` grid, float32 in ~[0, 1].

    Position, size, mouth curvature and width vary at random; Gaussian pixel noise is added.
    """
    rng = rng or np.random.default_rng()
    coords = np.linspace(-1.0, 1.0, size)
    x, y = np.meshgrid(coords, -coords)                                    # y points up
    cx, cy = rng.uniform(-0.08, 0.08, 2)
    radius = rng.uniform(0.78, 0.92)
    line = 2.2 / size                                                      # stroke half-width ~1 pixel

    def stroke(distance):
        return np.clip(1.0 - np.abs(distance) / line, 0.0, 1.0)

    face = stroke(np.hypot(x - cx, y - cy) - radius)
    for side in (-1, 1):
        face = np.maximum(face, stroke(np.hypot(x - cx - side * 0.33 * radius, y - cy - 0.3 * radius) - 0.06))
    curvature = rng.uniform(0.9, 1.6) * (1 if smiling else -1)             # corners up = smile
    half_width = rng.uniform(0.38, 0.5) * radius
    mouth_y = cy - 0.38 * radius - (0.0 if smiling else 0.1 * radius)
    u = np.clip(x - cx, -half_width, half_width)
    curve = mouth_y + curvature * u ** 2                                   # parabola through the mouth
    on_mouth = np.abs(x - cx) <= half_width + line
    face = np.maximum(face, stroke(y - curve) * on_mouth)
    return (face + noise * rng.standard_normal(face.shape)).astype(np.float32)


@dataclass
class ReviewSplit:
    """Reviews (text ids), faces (images) and labels; plus what each modality says on its own."""
    tokens: Tensor              # (n, max_len) int64 word ids, 0 = padding
    lengths: Tensor             # (n,) int64 number of words
    images: Tensor              # (n, 1, size, size) float32 faces
    label: Tensor               # (n,) int64: 1 positive, 0 negative
    text_positive: np.ndarray   # (n,) bool: the words alone are positive
    smiling: np.ndarray         # (n,) bool: the face smiles
    texts: list[str]            # the reviews

    def __len__(self) -> int:
        return len(self.label)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.tokens, self.lengths, self.images, self.label


def make_reviews(count: int, seed: int = 0, image_size: int = 16, noise: float = 0.1,
                 max_len: int = 8) -> ReviewSplit:
    """``count`` reviews with a face; label = positive words AND a smiling face (sarcasm is negative).

    The (words, face) combinations are drawn with probabilities (+,+) 1/2, (+,−), (−,+), (−,−) 1/6 each,
    so labels are balanced and the best single-modality accuracy is 5/6.  Negation ("not good") flips the
    words' polarity, so the words must be read in order.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    rng = np.random.default_rng(seed)
    combo = rng.choice(4, size=count, p=[1 / 2, 1 / 6, 1 / 6, 1 / 6])     # 0: (+,+) 1: (+,-) 2: (-,+) 3: (-,-)
    text_positive = np.isin(combo, (0, 1))
    smiling = np.isin(combo, (0, 2))
    texts = []
    for positive in text_positive:
        negated = rng.random() < 0.4
        pool = POSITIVE_WORDS if positive != negated else NEGATIVE_WORDS    # "not bad" is positive
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        texts.append(template.format(subject=SUBJECTS[rng.integers(len(SUBJECTS))],
                                     negation="not " if negated else "", word=pool[rng.integers(len(pool))]))
    tokens, lengths = REVIEW_VOCABULARY.encode_batch(texts, max_len=max_len)
    images = np.stack([draw_face(bool(s), image_size, rng, noise) for s in smiling])[:, None]
    label = torch.as_tensor(text_positive & smiling, dtype=torch.int64)
    return ReviewSplit(tokens, lengths, torch.from_numpy(images), label, text_positive, smiling, texts)

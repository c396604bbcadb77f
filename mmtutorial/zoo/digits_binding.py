"""Chapter 20's three-modality binding of digits, trained once and cached ("load if present, else train").

Data: the 8x8 handwritten digits (``mmtutorial.data.load_digits``; held-out test images), the spoken digits
of chapter 12 (``mmtutorial.data.spoken_digits``; held-out test *voices*) and number words and sentences
("seven", "the digit seven", ...; the test sentences use templates never seen in training).

Training is ImageBind's recipe in two stages, with the image as the hub:

1. **image <-> text**: the image and text towers and the text temperature learn from (image, sentence about
   its digit) pairs, with the symmetric InfoNCE loss (a small CLIP); cache name ``"binding-digits-image-text"``.
2. **image <-> audio**: the image tower is frozen (its embeddings of the paired images are computed once) and
   the audio tower and its temperature learn from (image, spoken word of the same digit) pairs, chapter 14's
   ``make_pairs("digit", ...)``; cache name ``"binding-digits-audio"``.

No batch ever holds audio and text together: the two are never paired.  ``unbound_audio_ablation`` gives the
same model with a freshly initialised audio tower, the control for the emergent audio <-> text retrieval.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import get_device, scale
from ..data import load_digits
from ..data.paired import make_pairs
from ..data.spoken_digits import DIGITS, load_spoken_digits, split_by_voice
from ..encoders.audio import LogMel
from ..encoders.text import UNK, WordTokenizer
from ..models.binding import MODALITIES, BindingConfig, BindingModel
from ..retrieval import recall_at_k
from ..training import History, TrainConfig, fit, load_or_train
from ..utils import cpu_threads

__all__ = ["IMAGE_TEXT_CACHE_NAME", "AUDIO_CACHE_NAME", "TRAIN_TEMPLATES", "TEST_TEMPLATES", "PAD",
           "digit_sentences", "digit_tokenizer", "encode_texts", "BindingData", "load_binding_data",
           "BindingRecipe", "binding_recipe", "image_text_loss", "image_audio_loss", "BoundDigits",
           "load_or_train_binding", "unbound_audio_ablation", "embed_test_set", "class_level_recall",
           "chance_recall", "recall_table"]

IMAGE_TEXT_CACHE_NAME = "binding-digits-image-text"
AUDIO_CACHE_NAME = "binding-digits-audio"
PAD = "<pad>"
# Sentences about a digit; the test templates are never seen in training (their words all are).
TRAIN_TEMPLATES = ("{}", "the digit {}", "the number {}", "a handwritten {}", "this is a {}", "a picture of a {}")
TEST_TEMPLATES = ("digit {}", "this is the number {}", "a {}")


def digit_sentences(templates=TRAIN_TEMPLATES) -> tuple[list[str], np.ndarray]:
    """Every template filled with every number word: texts and their digits (len(templates) * 10,)."""
    texts = [template.format(word) for template in templates for word in DIGITS]
    return texts, np.tile(np.arange(len(DIGITS)), len(templates))


def digit_tokenizer() -> WordTokenizer:
    """A closed word vocabulary of all templates: id 0 ``<unk>``, id 1 ``<pad>``, then the words."""
    probe = WordTokenizer.train(digit_sentences(TRAIN_TEMPLATES + TEST_TEMPLATES)[0])
    return WordTokenizer([UNK, PAD] + probe.itos[1:])


def encode_texts(tokenizer: WordTokenizer, texts, max_len: int = 8) -> Tensor:
    """Word ids (n, max_len) int64, right-padded with ``<pad>``; a text longer than ``max_len`` is refused."""
    pad_id = tokenizer.stoi[PAD]
    rows = [tokenizer.encode(text) for text in texts]
    too_long = [t for t, ids in zip(texts, rows) if not 1 <= len(ids) <= max_len]
    if too_long:
        raise ValueError(f"texts must have 1 to {max_len} words, got {too_long[:3]}")
    tokens = torch.full((len(rows), max_len), pad_id, dtype=torch.int64)    # (n, max_len)
    for row, ids in enumerate(rows):
        tokens[row, :len(ids)] = torch.tensor(ids)
    return tokens


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
@dataclass
class BindingData:
    """Train and test items of the three modalities, each with its digit (audio as log-mel spectrograms)."""
    train_images: Tensor        # (n, 1, 8, 8) in [0, 1]
    train_image_digits: Tensor  # (n,)
    test_images: Tensor
    test_image_digits: Tensor
    train_audio: Tensor         # (n, n_mels, frames) log-mel in dB, from the audio tower's front end
    train_audio_digits: Tensor
    test_audio: Tensor          # held-out voices only
    test_audio_digits: Tensor
    test_waveforms: Tensor      # (n, samples) the test words as waveforms (to check the front end)
    train_voices: np.ndarray
    test_voices: np.ndarray
    train_texts: list[str]
    train_text_digits: Tensor
    test_texts: list[str]       # templates never seen in training
    test_text_digits: Tensor
    tokenizer: WordTokenizer
    sample_rate: int

    def tokens(self, texts) -> Tensor:
        return encode_texts(self.tokenizer, texts)

    def __repr__(self) -> str:
        return (f"BindingData(images {len(self.train_images)}/{len(self.test_images)}, "
                f"audio {len(self.train_audio)}/{len(self.test_audio)} ({len(set(self.train_voices))}/"
                f"{len(set(self.test_voices))} voices), texts {len(self.train_texts)}/{len(self.test_texts)})")


def load_binding_data(verbose: bool = True) -> BindingData:
    """The chapter's data: digit images (train/test split), spoken digits split by voice (chapter 12's split),
    number sentences (train and held-out templates).  Log-mels are computed once with the audio front end."""
    images = load_digits(seed=0, standardize=False)                         # pixels 0..16, (n, 64)
    to_images = lambda x: torch.as_tensor(x / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)   # (n, 1, 8, 8)
    words = load_spoken_digits(verbose=verbose)
    train_words, _, test_words = split_by_voice(words, val_fraction=0.15, test_fraction=0.25, seed=0)
    front_end = LogMel(sample_rate=words.sample_rate)                       # the audio tower's, no parameters
    with torch.no_grad():
        train_audio = front_end(torch.from_numpy(train_words.audio))         # (n, n_mels, frames)
        test_waveforms = torch.from_numpy(test_words.audio)                  # (n, samples)
        test_audio = front_end(test_waveforms)
    tokenizer = digit_tokenizer()
    train_texts, train_text_digits = digit_sentences(TRAIN_TEMPLATES)
    test_texts, test_text_digits = digit_sentences(TEST_TEMPLATES)
    as_long = lambda y: torch.as_tensor(np.asarray(y), dtype=torch.int64)
    return BindingData(to_images(images.x_train), as_long(images.y_train), to_images(images.x_test),
                       as_long(images.y_test), train_audio, as_long(train_words.labels), test_audio,
                       as_long(test_words.labels), test_waveforms, train_words.voices, test_words.voices,
                       train_texts, as_long(train_text_digits), test_texts, as_long(test_text_digits), tokenizer,
                       words.sample_rate)


# --------------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------------
@dataclass
class BindingRecipe:
    image_text_pairs: int       # (image, sentence) pairs per stage-1 epoch
    image_text_epochs: int
    image_audio_pairs: int      # (image, spoken word) pairs per stage-2 epoch
    image_audio_epochs: int
    batch_size: int = 32        # small batches: with ten digits, a batch of B holds about B / 10 "false negatives"
    lr: float = 6e-3            # peak of the one-cycle schedule
    weight_decay: float = 1e-2
    embed_dim: int = 64
    seed: int = 0

    def train_config(self, stage: int, **overrides) -> TrainConfig:
        epochs = self.image_text_epochs if stage == 1 else self.image_audio_epochs
        return TrainConfig(**{"epochs": epochs, "batch_size": self.batch_size, "lr": self.lr, "schedule": "onecycle",
                              "weight_decay": self.weight_decay, "seed": self.seed + stage, **overrides})


def binding_recipe() -> BindingRecipe:
    """Full: 4,000 image-text pairs x 3 epochs, then 3,000 image-audio pairs x 3 epochs (about 30 s on a laptop
    CPU); QUICK: 1,000 x 2, then 1,000 x 3 (every code path, a few seconds)."""
    return BindingRecipe(image_text_pairs=scale(full=4000, quick=1000), image_text_epochs=scale(full=3, quick=2),
                         image_audio_pairs=scale(full=3000, quick=1000), image_audio_epochs=scale(full=3, quick=3))


@dataclass
class BoundDigits:
    model: BindingModel                 # eval mode
    image_text_history: History | None
    audio_history: History | None
    recipe: BindingRecipe


def image_text_loss(model: BindingModel, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Stage 1: (images (B, 1, 8, 8), word ids (B, seq)), row i a pair; the image-text InfoNCE term only."""
    images, tokens = batch
    return model.loss(model(image=images, text=tokens))


def image_audio_loss(model: BindingModel, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Stage 2: (frozen hub embeddings of the images (B, embed_dim), log-mels of the words (B, n_mels, frames));
    the image-audio InfoNCE term only.  No text anywhere: audio and text are never paired."""
    hub_embeddings, log_mels = batch
    return model.loss({"image": hub_embeddings, "audio": model.encode("audio", log_mels)})


def _record_scale(model: BindingModel, modality: str, history_rows: list):
    def after_step(step: int, loss: float) -> None:
        model.clamp_logit_scales_()                         # keep 1/temperature <= 100, as open_clip does
        history_rows.append(float(model.scale(modality).detach()))
    return after_step


def load_or_train_binding(data: BindingData | None = None, device=None, progress: bool = True) -> BoundDigits:
    """The bound model (eval mode): each stage loaded if cached in this mode, else trained now."""
    recipe = binding_recipe()
    data = data if data is not None else load_binding_data()
    config = BindingConfig.digits(vocab_size=data.tokenizer.vocab_size, embed_dim=recipe.embed_dim,
                                  pad_id=data.tokenizer.stoi[PAD])
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed)
    model = BindingModel(config).to(device)
    generator = np.random.default_rng(recipe.seed)

    def train_image_text(network: BindingModel) -> History:
        # Stage 1: (image, a training sentence about its digit): the hub and the text tower learn together.
        image_index = generator.integers(0, len(data.train_images), recipe.image_text_pairs)
        digits = data.train_image_digits[image_index].numpy()
        templates = generator.integers(0, len(TRAIN_TEMPLATES), recipe.image_text_pairs)
        texts = [TRAIN_TEMPLATES[t].format(DIGITS[d]) for t, d in zip(templates, digits)]
        pairs = (data.train_images[image_index], data.tokens(texts))        # (n, 1, 8, 8), (n, seq)
        scales: list[float] = []
        history = fit(network, pairs, config=recipe.train_config(1, progress=progress), device=device,
                      loss_fn=image_text_loss, callback=_record_scale(network, "text", scales))
        for row, value in zip(history.steps, scales):
            row["logit_scale"] = value
        return history

    def train_audio(network: BindingModel) -> History:
        # Stage 2: the hub is frozen; (image, spoken word of the same digit) pairs train the audio tower only.
        image_index, audio_index, _ = make_pairs("digit", data.train_image_digits.numpy(),
                                                 data.train_audio_digits.numpy(), recipe.image_audio_pairs,
                                                 seed=recipe.seed)
        network.eval()
        with torch.no_grad():
            hub = network.encode("image", data.train_images[image_index].to(device)).cpu()   # (n, embed_dim)
        for modality in ("image", "text"):
            network.encoders[modality].requires_grad_(False)
        network.logit_scales["text"].requires_grad_(False)
        scales: list[float] = []
        history = fit(network, (hub, data.train_audio[audio_index]), config=recipe.train_config(2, progress=progress),
                      loss_fn=image_audio_loss, device=device, callback=_record_scale(network, "audio", scales))
        network.requires_grad_(True)
        for row, value in zip(history.steps, scales):
            row["logit_scale"] = value
        return history

    base = {"model": config.to_dict(), "recipe": asdict(recipe), "images": len(data.train_images),
            "words": len(data.train_audio), "texts": data.train_texts}
    with cpu_threads(1, device):                          # tiny towers: one thread is faster
        image_text_history = load_or_train(IMAGE_TEXT_CACHE_NAME, model, train_image_text, config=base)
        audio_history = load_or_train(AUDIO_CACHE_NAME, model, train_audio, config={**base, "stage": 2})
    return BoundDigits(model.eval(), image_text_history, audio_history, recipe)


def unbound_audio_ablation(bound: BindingModel, seed: int = 1) -> BindingModel:
    """A copy of ``bound`` whose audio tower (and its temperature) is freshly initialised: never bound to the
    hub, while the image and text towers are the trained ones (eval mode)."""
    unbound = copy.deepcopy(bound)
    torch.manual_seed(seed)
    fresh = type(bound.encoders["audio"])(bound.config.audio).to(next(bound.parameters()).device)
    unbound.encoders["audio"] = fresh
    with torch.no_grad():
        unbound.logit_scales["audio"].fill_(bound.config.init_logit_scale)
    return unbound.eval()


# --------------------------------------------------------------------------------------------------
# Evaluation: class-level retrieval between every pair of modalities
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def embed_test_set(model: BindingModel, data: BindingData, batch_size: int = 512) -> dict[str, tuple[Tensor, Tensor]]:
    """{modality: (unit-length embeddings (n, embed_dim) on the CPU, digits (n,))} for the test items."""
    model.eval()
    device = next(model.parameters()).device
    inputs = {"image": (data.test_images, data.test_image_digits),
              "text": (data.tokens(data.test_texts), data.test_text_digits),
              "audio": (data.test_audio, data.test_audio_digits)}
    out = {}
    for modality, (items, digits) in inputs.items():
        parts = [model.encode(modality, items[i:i + batch_size].to(device)).float().cpu()
                 for i in range(0, len(items), batch_size)]
        out[modality] = (torch.cat(parts), digits)
    return out


def class_level_recall(query_embeddings: Tensor, query_digits: Tensor, item_embeddings: Tensor,
                       item_digits: Tensor, k: int = 1) -> float:
    """Recall@k where an item is correct when it shows the query's digit (``retrieval.recall_at_k``)."""
    if len(query_embeddings) != len(query_digits) or len(item_embeddings) != len(item_digits):
        raise ValueError(f"one digit per embedding needed: {len(query_embeddings)} queries with "
                         f"{len(query_digits)} digits, {len(item_embeddings)} items with {len(item_digits)} digits")
    similarity = F.normalize(query_embeddings, dim=-1) @ F.normalize(item_embeddings, dim=-1).T   # (Q, N)
    same_digit = np.asarray(query_digits)[:, None] == np.asarray(item_digits)[None, :]          # (Q, N) bool
    return recall_at_k(similarity, k, positives=same_digit)


def chance_recall(query_digits, item_digits) -> float:
    """Class-level Recall@1 of a random ranking: the mean, over queries, of the share of items showing the query's
    digit (0.1 for ten balanced digits)."""
    query_digits, item_digits = np.asarray(query_digits), np.asarray(item_digits)
    return float(np.mean((query_digits[:, None] == item_digits[None, :]).mean(axis=1)))


def recall_table(embeddings: dict[str, tuple[Tensor, Tensor]], k: int = 1) -> dict[tuple[str, str], float]:
    """{(query modality, item modality): class-level Recall@k} for every ordered pair of distinct modalities."""
    return {(query, item): class_level_recall(*embeddings[query], *embeddings[item], k=k)
            for query in MODALITIES for item in MODALITIES
            if query != item and query in embeddings and item in embeddings}

"""Chapter 16's image captioner trained on synthetic scenes with exact captions, cached for later chapters.

``load_or_train_scenes_captioner()`` is "load if cached, else train, and say which" (cache name
``"captioner-scenes"``).  It returns a :class:`ScenesCaptioner`: the model with the caption vocabulary and
the pixel standardisation of its training images, and helpers that turn scenes into inputs and token ids
back into text.

The data: ``scenes.generate_scenes`` draws one to three coloured shapes on a 32 x 32 canvas; the target is
the canonical caption (objects listed left to right, "a red circle and a blue square").  Four colour-shape
pairs never occur in the training split, neither in an image nor in a caption; the ``"test_heldout"`` split
puts at least one of them in every scene.  The model: a 2-block ViT encoder on 8 x 8-pixel patches (16
image tokens) and a 2-block decoder, width 64.  Training: teacher forcing (``captioner.caption_loss``)
with ``mmtutorial.training.fit``, AdamW and a one-cycle schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from ..config import get_device, scale
from ..data import scenes
from ..models.captioner import Captioner, CaptionerConfig, beam_search, caption_loss, greedy_decode
from ..training import History, TrainConfig, fit, load_or_train

__all__ = ["SCENES_CAPTIONER_CACHE_NAME", "ScenesCaptionerRecipe", "scenes_captioner_recipe",
           "scenes_captioner_config", "training_scenes", "ScenesCaptioner", "reference_text",
           "load_or_train_scenes_captioner"]

SCENES_CAPTIONER_CACHE_NAME = "captioner-scenes"


@dataclass
class ScenesCaptionerRecipe:
    """Data size and training settings of chapter 16's captioner (QUICK mode: fewer scenes and epochs)."""
    train_count: int          # training scenes (a prefix of the "train" split)
    epochs: int               # passes over the training scenes
    batch_size: int = 128
    lr: float = 3e-3          # peak of the one-cycle schedule
    weight_decay: float = 0.05
    seed: int = 0             # the scenes, the data order and the initial weights
    max_seq_len: int = 16     # <bos> + at most 11 caption tokens + <eos>, padded

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "schedule": "onecycle", "weight_decay": self.weight_decay, "seed": self.seed,
                              "max_grad_norm": 1.0, **overrides})


def scenes_captioner_recipe() -> ScenesCaptionerRecipe:
    """Full: 16,000 scenes x 10 epochs; QUICK: 4,000 x 3."""
    return ScenesCaptionerRecipe(train_count=scale(full=16_000, quick=4_000), epochs=scale(full=10, quick=3))


def scenes_captioner_config(vocab: scenes.Vocabulary, recipe: ScenesCaptionerRecipe | None = None) -> CaptionerConfig:
    """32 px images in 8 px patches (16 image tokens), 2 encoder and 2 decoder blocks of width 64."""
    recipe = recipe or scenes_captioner_recipe()
    return CaptionerConfig(vocab_size=len(vocab), max_seq_len=recipe.max_seq_len, dim=64, num_layers=2,
                           num_heads=4, mlp_ratio=2.0, image_size=32, patch_size=8, in_channels=3,
                           encoder_layers=2, pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id)


def training_scenes(recipe: ScenesCaptionerRecipe | None = None) -> list[scenes.Scene]:
    recipe = recipe or scenes_captioner_recipe()
    return scenes.generate_scenes(recipe.train_count, split="train", seed=recipe.seed)


@dataclass
class ScenesCaptioner:
    """Chapter 16's trained captioner, with what its inputs need and what reads its outputs."""
    model: Captioner               # in eval mode, on the device it was asked for
    history: History | None        # the training run (from the cache when loaded)
    vocab: scenes.Vocabulary       # scenes.caption_vocabulary()
    pixel_mean: Tensor             # (1, 3, 1, 1) per-channel mean of the training images in [0, 1]
    pixel_std: Tensor              # (1, 3, 1, 1)
    max_seq_len: int

    def pixels(self, scene_list: Sequence[scenes.Scene]) -> Tensor:
        """Scenes -> standardised images (n, 3, 32, 32)."""
        return (scenes.to_tensors(scene_list) - self.pixel_mean) / self.pixel_std

    def tokens(self, texts: Sequence[str]) -> Tensor:
        """Captions -> (n, max_seq_len) ids: <bos> words <eos> <pad>..."""
        return self.vocab.encode_batch(texts, max_len=self.max_seq_len)

    def text(self, ids: Sequence[int]) -> str:
        """Word ids -> the words joined by single spaces (BLEU's tokens; commas stay separate words)."""
        return " ".join(self.vocab.tokens[i] for i in ids)

    def caption(self, scene_list: Sequence[scenes.Scene], beam_size: int = 1, length_penalty: float = 1.0,
                batch_size: int = 500) -> list[str]:
        """Generated captions (space-separated words): greedy for ``beam_size=1``, else beam search."""
        device = next(self.model.parameters()).device
        pixels, out = self.pixels(scene_list), []
        for start in range(0, len(pixels), batch_size):
            images = pixels[start:start + batch_size].to(device)
            ids = (greedy_decode(self.model, images) if beam_size == 1
                   else beam_search(self.model, images, beam_size=beam_size, length_penalty=length_penalty))
            out += [self.text(row) for row in ids]
        return out


def reference_text(caption: str) -> str:
    """A true caption in the same word form as generated ones ("a red circle , a blue square")."""
    return " ".join(scenes.tokenize(caption))


def load_or_train_scenes_captioner(device=None, progress: bool = True) -> ScenesCaptioner:
    """Chapter 16's captioner (eval mode, on ``device``): loaded from the cache if trained in this mode
    with this recipe, else trained now (about two minutes on one CPU core in full mode)."""
    recipe, vocab = scenes_captioner_recipe(), scenes.caption_vocabulary()
    config, train_config = scenes_captioner_config(vocab, recipe), recipe.train_config()
    train_scenes = training_scenes(recipe)
    train_images, pixel_mean, pixel_std = scenes.standardize_images(scenes.to_tensors(train_scenes))  # (N, 3, 32, 32)
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed)                                       # the initial weights
    model = Captioner(config).to(device)

    def train(network: Captioner) -> History:
        captions = [scene.captions()[0] for scene in train_scenes]
        data = (train_images,                                            # (N, 3, 32, 32) standardised
                vocab.encode_batch(captions, max_len=recipe.max_seq_len))  # (N, max_seq_len)
        return fit(network, data, config=replace(train_config, progress=progress), loss_fn=caption_loss,
                   device=device)

    history = load_or_train(SCENES_CAPTIONER_CACHE_NAME, model, train,
                            config={"model": config.to_dict(), "train": vars(train_config),
                                    "data": len(train_scenes)})
    return ScenesCaptioner(model.eval(), history, vocab, pixel_mean, pixel_std, recipe.max_seq_len)

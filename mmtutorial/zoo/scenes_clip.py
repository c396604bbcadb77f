"""Chapter 15's CLIP trained on synthetic scenes with exact captions, cached for later chapters.

``load_or_train_scenes_clip()`` is "load if cached, else train, and say which" (cache name
``"clip-scenes"``): chapter 15 trains it, and the chapters that build on a pretrained image-text model
(captioning, VQA, the VLM, retrieval) load it.  It returns a :class:`ScenesCLIP`: the model together with
what reads its inputs, the caption vocabulary and the pixel standardisation of its training images.

The data: ``scenes.generate_scenes`` draws one to three coloured shapes on a 32 x 32 canvas and describes
them left to right; four colour-shape pairs never occur in the training split (the zero-shot test of
chapter 15).  The model: two tiny towers (2 blocks of width 64; 8 x 8-pixel patches), a 64-d shared
space.  Training: ``train_clip``, ``mmtutorial.training.fit`` with the symmetric InfoNCE loss, the
temperature clipped after every optimizer step as open_clip does, and its trajectory recorded in the
History.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from ..config import get_device, scale
from ..data import scenes
from ..models.clip import CLIP, CLIPConfig, CLIPTextConfig, clip_image_config, clip_loss
from ..training import History, TrainConfig, fit, load_or_train

__all__ = ["SCENES_CLIP_CACHE_NAME", "ScenesCLIPRecipe", "scenes_clip_recipe", "scenes_clip_config",
           "training_scenes", "contrastive_loss", "train_clip", "ScenesCLIP", "load_or_train_scenes_clip"]

SCENES_CLIP_CACHE_NAME = "clip-scenes"


@dataclass
class ScenesCLIPRecipe:
    """Data size and training settings of chapter 15's scenes CLIP (QUICK mode: fewer scenes and epochs)."""
    train_count: int          # training scenes (a prefix of the "train" split: QUICK sees part of the full data)
    epochs: int               # passes over the training scenes
    batch_size: int = 128     # pairs per batch: each image's 127 other captions are its negatives
    lr: float = 3e-3          # peak of the one-cycle schedule
    weight_decay: float = 0.1
    seed: int = 0             # the scenes, the data order and the initial weights
    max_seq_len: int = 16     # tokens per caption: <bos> words <eos> <pad>...

    def train_config(self, **overrides) -> TrainConfig:
        """The :class:`mmtutorial.training.TrainConfig` of this recipe (AdamW, one-cycle)."""
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "schedule": "onecycle", "weight_decay": self.weight_decay, "seed": self.seed,
                              **overrides})


def scenes_clip_recipe() -> ScenesCLIPRecipe:
    """Chapter 15's recipe for the current mode: full 12,000 scenes x 8 epochs; QUICK 3,000 x 4."""
    return ScenesCLIPRecipe(train_count=scale(full=12_000, quick=3_000), epochs=scale(full=8, quick=4))


def scenes_clip_config(vocab: scenes.Vocabulary, recipe: ScenesCLIPRecipe | None = None) -> CLIPConfig:
    """The tiny CLIP: 32 px images in 8 px patches, 2 blocks of width 64 in each tower, a 64-d shared space;
    the text feature is read at ``<eos>`` (not the largest id in this vocabulary)."""
    recipe = recipe or scenes_clip_recipe()
    return CLIPConfig(
        embed_dim=64,
        vision=clip_image_config(image_size=32, patch_size=8, dim=64, num_layers=2, num_heads=4),
        text=CLIPTextConfig(vocab_size=len(vocab), max_seq_len=recipe.max_seq_len, dim=64, num_layers=2,
                            num_heads=4, eot_token_id=vocab.eos_id))


def training_scenes(recipe: ScenesCLIPRecipe | None = None) -> list[scenes.Scene]:
    """The recipe's training scenes (the same list every call)."""
    recipe = recipe or scenes_clip_recipe()
    return scenes.generate_scenes(recipe.train_count, split="train", seed=recipe.seed)


def contrastive_loss(model: CLIP, batch: tuple[Tensor, Tensor]) -> Tensor:
    """``fit``'s loss: the forward pass returns exactly what the symmetric InfoNCE loss takes."""
    images, tokens = batch
    return clip_loss(*model(images, tokens))


def train_clip(model: CLIP, data: tuple[Tensor, Tensor], config: TrainConfig, device=None) -> History:
    """Train ``model`` on (images, tokens) pairs with :func:`contrastive_loss`.

    After every optimizer step the temperature parameter is clipped (s <= 100), as open_clip's training
    loop does, and s is recorded: ``history.steps[i]["logit_scale"]`` is its trajectory, cached with the model.
    """
    scales = []

    def after_step(step, loss):
        model.clamp_logit_scale_()                                  # keep s <= 100, as open_clip does
        scales.append(model.scale().item())

    history = fit(model, data, config=config, loss_fn=contrastive_loss, callback=after_step, device=device)
    for row, value in zip(history.steps, scales):
        row["logit_scale"] = value
    return history


@dataclass
class ScenesCLIP:
    """Chapter 15's trained CLIP, with the vocabulary and pixel standardisation its inputs need."""
    model: CLIP                    # in eval mode, on the device it was asked for
    history: History | None        # the training run (steps carry "logit_scale"), from the cache when loaded
    vocab: scenes.Vocabulary       # scenes.caption_vocabulary(): <pad> <bos> <eos> <unk> + the caption words
    pixel_mean: Tensor             # (1, 3, 1, 1): per-channel mean of the training images in [0, 1]
    pixel_std: Tensor              # (1, 3, 1, 1): per-channel standard deviation
    max_seq_len: int               # tokens per caption

    def pixels(self, scene_list: Sequence[scenes.Scene]) -> Tensor:
        """Scenes -> standardised images (n, 3, 32, 32), as the model was trained on them."""
        return (scenes.to_tensors(scene_list) - self.pixel_mean) / self.pixel_std

    def tokens(self, texts: Sequence[str]) -> Tensor:
        """Captions -> token ids (n, max_seq_len): <bos> words <eos> <pad>..."""
        return self.vocab.encode_batch(texts, max_len=self.max_seq_len)


def load_or_train_scenes_clip(device=None, progress: bool = True) -> ScenesCLIP:
    """Chapter 15's scenes CLIP (eval mode, on ``device``, default ``get_device()``): loaded from the cache if
    chapter 15 (or an earlier call) trained it in this mode, else trained now with the same recipe (about a
    minute on a CPU)."""
    recipe, vocab = scenes_clip_recipe(), scenes.caption_vocabulary()
    config, train_config = scenes_clip_config(vocab, recipe), recipe.train_config()
    train_scenes = training_scenes(recipe)
    train_images, pixel_mean, pixel_std = scenes.standardize_images(scenes.to_tensors(train_scenes))  # (N, 3, 32, 32)
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed)                                       # the initial weights
    model = CLIP(config).to(device)

    def train(network: CLIP) -> History:
        captions = [scene.captions()[0] for scene in train_scenes]
        data = (train_images,                                            # (N, 3, 32, 32) standardised
                vocab.encode_batch(captions, max_len=recipe.max_seq_len))  # (N, max_seq_len)
        return train_clip(network, data, replace(train_config, progress=progress), device=device)

    # the cache key: what the weights depend on (progress bars excluded: train_config keeps the default)
    history = load_or_train(SCENES_CLIP_CACHE_NAME, model, train,
                            config={"model": config.to_dict(), "train": vars(train_config), "data": len(train_scenes)})
    return ScenesCLIP(model.eval(), history, vocab, pixel_mean, pixel_std, recipe.max_seq_len)

"""Chapter 24's biased CLIP: chapter 15's tiny CLIP trained where colour is spuriously correlated with shape.

The data: one-object scenes (:func:`mmtutorial.data.scenes.single_object_scenes`, every colour-shape pair
allowed) captioned with the shape only ("a circle").  Training scenes are *selected* from a balanced pool so
that each shape mostly comes in one colour (``BIAS_COLORS``: circles red, squares blue, triangles green,
crosses yellow) with probability ``correlation``, and in the five other colours otherwise.  The test scenes
stay balanced, so a model that learned "red means circle" is caught: its zero-shot shape accuracy is high on
the bias-aligned test scenes (a red circle) and low on the bias-conflicting ones (a blue circle).

The mitigation, ``balance="groups"``: the same training scenes, resampled (with replacement, seeded) so that
every (colour, shape) group has the same weight, the group-balanced sampling of Sagawa et al. (2020)'s
baselines.  No new image is added; the rare groups are repeated.

``load_or_train_bias_clip(balance)`` is "load if cached, else train, and say which" (cache names
``"clip-bias-none"`` and ``"clip-bias-groups"``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ..config import get_device, scale
from ..data import scenes
from ..models.clip import CLIP, zero_shot_classifier
from ..training import History, TrainConfig, load_or_train
from .scenes_clip import scenes_clip_config, train_clip

__all__ = ["BIAS_COLORS", "BALANCES", "BiasRecipe", "bias_recipe", "bias_scene_config", "shape_caption",
           "biased_training_scenes", "group_balanced_indices", "BiasCLIP", "load_or_train_bias_clip",
           "shape_accuracy_by_alignment"]

BIAS_COLORS = {"circle": "red", "square": "blue", "triangle": "green", "cross": "yellow"}   # the shortcut
BALANCES = ("none", "groups")


@dataclass
class BiasRecipe:
    """Data and training settings of the biased CLIP (QUICK mode: fewer scenes and epochs)."""
    train_count: int              # training scenes, selected from a balanced pool
    epochs: int                   # passes over the training scenes
    correlation: float = 0.9      # P(the shape's bias colour | shape) in training (1 / 6 would be no bias)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    seed: int = 0                 # the scenes, the selection, the resampling, the initial weights
    max_seq_len: int = 16

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "schedule": "onecycle", "weight_decay": self.weight_decay, "seed": self.seed,
                              **overrides})


def bias_recipe() -> BiasRecipe:
    """Full: 4,000 scenes x 6 epochs; QUICK: 1,500 x 5."""
    return BiasRecipe(train_count=scale(full=4_000, quick=1_500), epochs=scale(full=6, quick=5))


def bias_scene_config() -> scenes.SceneConfig:
    """Scenes with every colour-shape pair allowed (no held-out pairs): the bias comes from the selection."""
    return scenes.SceneConfig(held_out_pairs=frozenset())


def shape_caption(scene: scenes.Scene) -> str:
    """"a circle": the caption names the shape only, so colour is free to become a shortcut."""
    return f"a {scene.objects[0].shape}"


def _is_aligned(scene: scenes.Scene) -> bool:
    obj = scene.objects[0]
    return BIAS_COLORS[obj.shape] == obj.color


def biased_training_scenes(recipe: BiasRecipe | None = None) -> list[scenes.Scene]:
    """``train_count`` one-object training scenes in which each shape has its bias colour with probability
    ``correlation``: drawn by rejection from a balanced pool (each scene is kept or passed over by a seeded
    coin with the right odds), so the images themselves are the ordinary scenes."""
    recipe = recipe or bias_recipe()
    if not 1 / len(scenes.COLORS) <= recipe.correlation < 1:
        raise ValueError(f"correlation must be in [1/6, 1), got {recipe.correlation}")
    rng = np.random.default_rng(recipe.seed)
    # In a balanced pool one scene in six of each shape is aligned; keep aligned ones always and the others
    # with the probability that brings their share down to 1 - correlation.
    keep_conflicting = (1 - recipe.correlation) / recipe.correlation / (len(scenes.COLORS) - 1)
    chosen: list[scenes.Scene] = []
    pool_size, offset = 8 * recipe.train_count, 0
    while len(chosen) < recipe.train_count:
        pool = scenes.single_object_scenes(pool_size, bias_scene_config(), split="train", seed=recipe.seed + offset)
        for scene in pool:
            if _is_aligned(scene) or rng.random() < keep_conflicting:
                chosen.append(scene)
                if len(chosen) == recipe.train_count:
                    break
        offset += 1
    return chosen


def group_balanced_indices(scene_list: list[scenes.Scene], seed: int = 0) -> np.ndarray:
    """Indices (len(scene_list),) drawn with replacement so that every (colour, shape) group present has the
    same expected weight: each scene is drawn with probability proportional to 1 / (its group's size)."""
    if not scene_list:
        raise ValueError("need at least one scene")
    groups = [scene.objects[0].pair for scene in scene_list]
    counts = Counter(groups)
    weights = np.array([1.0 / counts[g] for g in groups])
    return np.random.default_rng(seed).choice(len(scene_list), size=len(scene_list), p=weights / weights.sum())


@dataclass
class BiasCLIP:
    """A CLIP trained on the biased scenes, with what reads its inputs."""
    model: CLIP
    history: History | None
    vocab: scenes.Vocabulary
    pixel_mean: Tensor            # (1, 3, 1, 1) per-channel statistics of the (unresampled) training images
    pixel_std: Tensor
    balance: str                  # "none" or "groups"
    max_seq_len: int

    def pixels(self, scene_list) -> Tensor:
        return (scenes.to_tensors(scene_list) - self.pixel_mean) / self.pixel_std     # (n, 3, 32, 32)

    @torch.no_grad()
    def classify_shapes(self, scene_list) -> np.ndarray:
        """Zero-shot shape predictions (indices into ``scenes.SHAPES``) from the prompts "a circle", ..."""
        prompts = self.vocab.encode_batch([f"a {shape}" for shape in scenes.SHAPES], max_len=self.max_seq_len)
        device = self.model.logit_scale.device
        classes = zero_shot_classifier(self.model, prompts)                              # (4, embed_dim)
        images = self.model.encode_image(self.pixels(scene_list).to(device), normalize=True)   # (n, embed_dim)
        return (images @ classes.T).argmax(dim=-1).cpu().numpy()


def load_or_train_bias_clip(balance: str = "none", device=None, progress: bool = True) -> BiasCLIP:
    """The CLIP trained on the biased scenes as they are (``balance="none"``) or group-balanced
    (``"groups"``): loaded from the cache if trained before in this mode, else trained now."""
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}")
    recipe, vocab = bias_recipe(), scenes.caption_vocabulary()
    config, train_config = scenes_clip_config(vocab), recipe.train_config()
    train_scenes = biased_training_scenes(recipe)
    images, pixel_mean, pixel_std = scenes.standardize_images(scenes.to_tensors(train_scenes))   # (N, 3, 32, 32)
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed)                                                   # the initial weights
    model = CLIP(config).to(device)

    def train(network: CLIP) -> History:
        order = (np.arange(len(train_scenes)) if balance == "none"
                 else group_balanced_indices(train_scenes, recipe.seed))
        tokens = vocab.encode_batch([shape_caption(train_scenes[i]) for i in order], max_len=recipe.max_seq_len)
        data = (images[torch.as_tensor(order)], tokens)                               # (N, 3, 32, 32), (N, seq)
        return train_clip(network, data, replace(train_config, progress=progress), device=device)

    history = load_or_train(f"clip-bias-{balance}", model, train,
                            config={"model": config.to_dict(), "train": vars(train_config), "recipe": asdict(recipe),
                                    "balance": balance})
    return BiasCLIP(model.eval(), history, vocab, pixel_mean, pixel_std, balance, recipe.max_seq_len)


def shape_accuracy_by_alignment(clip: BiasCLIP, scene_list) -> dict[str, float]:
    """Zero-shot shape accuracy on the bias-aligned scenes (a shape in its bias colour), on the conflicting
    ones, their gap, and how often a conflicting scene is called the shape whose bias colour it has."""
    scene_list = list(scene_list)
    if any(len(scene) != 1 for scene in scene_list):
        raise ValueError("shape_accuracy_by_alignment wants one-object scenes")
    predicted = clip.classify_shapes(scene_list)
    truth = np.array([scenes.SHAPES.index(s.objects[0].shape) for s in scene_list])
    aligned = np.array([_is_aligned(s) for s in scene_list])
    if aligned.all() or not aligned.any():
        raise ValueError("the test scenes need both bias-aligned and bias-conflicting examples")
    colour_shape = {color: scenes.SHAPES.index(shape) for shape, color in BIAS_COLORS.items()}
    follows_colour = np.array([colour_shape.get(s.objects[0].color, -1) for s in scene_list]) == predicted
    correct = predicted == truth
    return {"aligned": float(correct[aligned].mean()), "conflicting": float(correct[~aligned].mean()),
            "gap": float(correct[aligned].mean() - correct[~aligned].mean()),
            "follows_colour": float(follows_colour[~aligned].mean())}

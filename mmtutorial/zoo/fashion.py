"""The book's Fashion-MNIST classifiers, trained once and cached: chapter 10's CNN and chapter 11's tiny ViT.

Each is a "load if cached, else train, and say which" recipe (``mmtutorial.training.load_or_train``) with
one cache name, used both by the chapter that teaches the model and by every later chapter that reuses
it, so it is trained only once per mode:

    load_or_train_fashion_cnn()   cache "fashion-cnn"   chapter 10's FashionCNN (it standardises its input)
    load_or_train_fashion_vit()   cache "fashion-vit"   chapter 11's ViT (inputs standardised with the
                                                        training pixels' mean and std, label smoothing 0.1)

The split is the same everywhere: the first 55,000 training images train, the last 5,000 validate, the
10,000 test images test.  QUICK mode trains on fewer images for fewer epochs, and caches separately.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..config import get_device, scale
from ..encoders.vision import FashionCNN, FashionCNNConfig
from ..models.vit import ViT, ViTConfig
from ..training import History, TrainConfig, fit, load_or_train
from ..utils import seed_everything

__all__ = ["FASHION_CNN_CACHE_NAME", "FASHION_VIT_CACHE_NAME", "FashionRecipe", "FashionCNNRecipe",
           "FashionTransformerRecipe", "fashion_cnn_recipe", "fashion_vit_recipe", "fashion_vit_config",
           "fashion_mnist_splits", "fashion_pixel_statistics", "load_or_train_fashion_cnn",
           "load_or_train_fashion_vit"]

FASHION_CNN_CACHE_NAME = "fashion-cnn"
FASHION_VIT_CACHE_NAME = "fashion-vit"
_TRAIN_END = 55_000   # images [0, 55000) of the training file train, [55000, 60000) validate


# --------------------------------------------------------------------------------------------------
# Recipes: data sizes and training settings
# --------------------------------------------------------------------------------------------------
@dataclass
class FashionRecipe:
    """Data sizes and training settings of a Fashion-MNIST classifier (QUICK mode uses the smaller sizes)."""
    train_count: int          # training images (the first of the 60,000; the last 5,000 are held out)
    val_count: int            # validation images, taken from the last 5,000 training images
    epochs: int               # passes over the training images
    batch_size: int = 128
    lr: float = 3e-3          # peak of the one-cycle schedule
    weight_decay: float = 0.05
    seed: int = 0             # the data order (and, for the ViT, its initial weights)

    def train_config(self, **overrides) -> TrainConfig:
        """The :class:`mmtutorial.training.TrainConfig` of this recipe (AdamW, one-cycle)."""
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "optimizer": "adamw", "schedule": "onecycle", "weight_decay": self.weight_decay,
                              "seed": self.seed, **overrides})

    def cache_config(self, model_config) -> dict:
        """What the cached weights depend on (not progress bars or checkpoint folders)."""
        return {"model": asdict(model_config), "recipe": asdict(self)}


@dataclass
class FashionCNNRecipe(FashionRecipe):
    """Chapter 10's CNN: AdamW, one-cycle to 3e-3, weight decay 0.05, batch 128."""


@dataclass
class FashionTransformerRecipe(FashionRecipe):
    """Chapter 11's tiny Vision Transformer: AdamW, one-cycle to 5e-3, weight decay 0.05, batch 128, and
    label smoothing (DeiT trains ViTs with it too)."""
    lr: float = 5e-3
    label_smoothing: float = 0.1   # the target puts 1 - eps + eps/K on the true class, eps/K on the others


def fashion_cnn_recipe() -> FashionCNNRecipe:
    """Chapter 10's recipe for the current mode: full 55,000 images x 4 epochs; QUICK 5,000 x 1."""
    return FashionCNNRecipe(train_count=scale(full=55_000, quick=5_000), val_count=scale(full=5_000, quick=1_000),
                            epochs=scale(full=4, quick=1))


def fashion_vit_recipe() -> FashionTransformerRecipe:
    """Chapter 11's recipe for the current mode: full 55,000 images x 9 epochs; QUICK 6,000 x 3 (all 5,000
    validation images in both modes)."""
    return FashionTransformerRecipe(train_count=scale(full=55_000, quick=6_000), val_count=5_000,
                                    epochs=scale(full=9, quick=3))


def fashion_vit_config() -> ViTConfig:
    """Chapter 11's tiny ViT: 16 patches of 7 x 7 + a class token, width 64, 4 blocks of 4 heads, MLP 128."""
    return ViTConfig.tiny(dim=64, num_layers=4, num_heads=4, mlp_ratio=2.0)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def fashion_mnist_splits(train_count: int = 55_000, val_count: int = 5_000):
    """Fashion-MNIST as float images in [0, 1]: (x_train, y_train, x_val, y_val, x_test, y_test).

    Images are (n, 1, 28, 28) float32, labels (n,) int64.  Validation comes from the last 5,000 training
    images, so it never overlaps the training images for any ``train_count`` up to 55,000.
    """
    from ..data import fashion_mnist_tensors
    if not 1 <= train_count <= _TRAIN_END or not 1 <= val_count <= 60_000 - _TRAIN_END:
        raise ValueError(f"train_count must be in [1, 55000] and val_count in [1, 5000], got {train_count}, "
                         f"{val_count}")
    train_images, train_labels = fashion_mnist_tensors(train=True)          # (60000, 28, 28) uint8
    test_images, test_labels = fashion_mnist_tensors(train=False)           # (10000, 28, 28) uint8
    to_float = lambda images: (images.float() / 255.0)[:, None]             # (n, 1, 28, 28) in [0, 1]
    return (to_float(train_images[:train_count]), train_labels[:train_count],
            to_float(train_images[_TRAIN_END:_TRAIN_END + val_count]), train_labels[_TRAIN_END:_TRAIN_END + val_count],
            to_float(test_images), test_labels)


def fashion_pixel_statistics() -> tuple[float, float]:
    """Mean and standard deviation of the pixels, scaled to [0, 1], of the 55,000 training images (the
    validation images excluded); chapter 11 standardises its ViT's inputs with them."""
    from ..data import fashion_mnist_tensors
    train_images, _ = fashion_mnist_tensors(train=True)                     # (60000, 28, 28) uint8
    pixels = train_images[:_TRAIN_END].float() / 255.0                      # (55000, 28, 28)
    return pixels.mean().item(), pixels.std().item()


# --------------------------------------------------------------------------------------------------
# Load if cached, else train
# --------------------------------------------------------------------------------------------------
def load_or_train_fashion_cnn(device=None, progress: bool = True) -> tuple[FashionCNN, History | None]:
    """Chapter 10's trained :class:`FashionCNN` (eval mode, on ``device``, default ``get_device()``) and its
    History: loaded from the cache if chapter 10 (or an earlier call) trained it in this mode, else trained
    now with the same recipe (about a minute on a CPU)."""
    recipe, config = fashion_cnn_recipe(), FashionCNNConfig()
    device = torch.device(device) if device is not None else get_device()
    model = FashionCNN(config).to(device)

    def train(network: FashionCNN) -> History:
        x_train, y_train, x_val, y_val, _, _ = fashion_mnist_splits(recipe.train_count, recipe.val_count)
        return fit(network, (x_train, y_train), config=recipe.train_config(progress=progress),
                   val_data=(x_val, y_val), device=device)

    history = load_or_train(FASHION_CNN_CACHE_NAME, model, train, config=recipe.cache_config(config))
    return model.eval(), history


def load_or_train_fashion_vit(device=None, progress: bool = True) -> tuple[ViT, History | None]:
    """Chapter 11's trained tiny :class:`~mmtutorial.models.vit.ViT` (eval mode, on ``device``, default
    ``get_device()``) and its History: loaded from the cache if chapter 11 (or an earlier call) trained it in
    this mode, else trained now with the same recipe (about 2 minutes on a CPU).

    The model takes images standardised with :func:`fashion_pixel_statistics`: ``(x - mean) / std`` for
    pixels ``x`` in [0, 1], shaped (batch, 1, 28, 28).
    """
    recipe, config = fashion_vit_recipe(), fashion_vit_config()
    device = torch.device(device) if device is not None else get_device()
    seed_everything(recipe.seed)                                            # the initial weights
    model = ViT(config).to(device)

    def smoothed_loss(network, batch):
        images, labels = batch
        return F.cross_entropy(network(images), labels, label_smoothing=recipe.label_smoothing)

    def train(network: ViT) -> History:
        x_train, y_train, x_val, y_val, _, _ = fashion_mnist_splits(recipe.train_count, recipe.val_count)
        mean, std = fashion_pixel_statistics()
        return fit(network, ((x_train - mean) / std, y_train), config=recipe.train_config(progress=progress),
                   loss_fn=smoothed_loss, val_data=((x_val - mean) / std, y_val), device=device)

    history = load_or_train(FASHION_VIT_CACHE_NAME, model, train, config=recipe.cache_config(config))
    return model.eval(), history

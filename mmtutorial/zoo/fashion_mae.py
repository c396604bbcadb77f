"""Chapter 19's models on Fashion-MNIST, cached ("load if present, else train, and say which").

    load_or_train_fashion_mae()          cache "fashion-mae"        MAE pretrained on the training images,
                                                                    labels unused
    load_or_train_fashion_classifier()   cache "fashion-mae-<kind>-<labels>"   a classifier trained on the
                                         first ``label_count`` images of a fixed shuffle of the training split:
                                         "scratch" (random start), "finetune" (every weight, from the MAE
                                         encoder) or "lora" (the MAE encoder frozen, LoRA adapters + a new head)

Inputs are standardised with chapter 11's pixel statistics (``fashion.fashion_pixel_statistics``); the split is
chapter 10's (55,000 train, last 5,000 validate, 10,000 test).  QUICK mode uses fewer images and epochs and
caches separately.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import get_device, scale
from ..models.mae import MAE, MAEConfig, mae_classifier
from ..models.vit import ViT
from ..nn.lora import apply_lora
from ..training import History, TrainConfig, evaluate_classifier, fit, load_or_train
from ..utils import seed_everything
from .fashion import fashion_mnist_splits, fashion_pixel_statistics

__all__ = ["MAE_CACHE_NAME", "KINDS", "FashionMAERecipe", "fashion_mae_recipe", "fashion_mae_config",
           "fashion_mae_data", "labelled_subset", "load_or_train_fashion_mae", "load_or_train_fashion_classifier",
           "test_accuracy"]

MAE_CACHE_NAME = "fashion-mae"
KINDS = ("scratch", "finetune", "lora")


@dataclass
class FashionMAERecipe:
    pretrain_count: int               # unlabelled training images for MAE
    pretrain_epochs: int
    label_counts: tuple               # labelled images for the few-label curve (the first is ~1 % of the 60,000)
    finetune_steps: int               # optimizer steps of every classifier run, whatever its number of labels
    test_count: int                   # test images the accuracies are measured on
    pretrain_batch_size: int = 256
    pretrain_lr: float = 1.5e-3       # AdamW, cosine schedule with warm-up, weight decay 0.05 (MAE's recipe)
    pretrain_weight_decay: float = 0.05
    finetune_batch_size: int = 64
    finetune_lr: float = 1e-3         # full fine-tuning and from scratch
    lora_lr: float = 1e-2             # LoRA trains few numbers from a zero start: a larger step suits it
    finetune_weight_decay: float = 0.05
    label_smoothing: float = 0.1
    lora_rank: int = 1                # rank 1 already works well (Hu et al., Table 6)
    lora_alpha: float = 4.0
    lora_targets: tuple = ("qkv_proj", "fc")   # the packed Q, K, V projection and the MLP's first layer
    seed: int = 0

    def pretrain_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": self.pretrain_epochs, "batch_size": self.pretrain_batch_size,
                              "lr": self.pretrain_lr, "optimizer": "adamw", "schedule": "cosine",
                              "warmup_steps": 50, "weight_decay": self.pretrain_weight_decay, "seed": self.seed,
                              **overrides})

    def finetune_config(self, kind: str, **overrides) -> TrainConfig:
        lr = self.lora_lr if kind == "lora" else self.finetune_lr
        return TrainConfig(**{"batch_size": self.finetune_batch_size, "max_steps": self.finetune_steps,
                              "epochs": 1_000_000, "lr": lr, "optimizer": "adamw", "schedule": "onecycle",
                              "weight_decay": self.finetune_weight_decay, "seed": self.seed, **overrides})


def fashion_mae_recipe() -> FashionMAERecipe:
    """Full: MAE on 55,000 images x 8 epochs; classifiers on 150, 600 and 3,000 labels (0.25 %, 1 % and 5 % of the
    60,000), 200 steps each, tested on 5,000 test images.  QUICK: MAE on 8,000 images x 2 epochs; 150 and 600
    labels, 100 steps, 1,000 test images (every code path)."""
    return FashionMAERecipe(pretrain_count=scale(full=55_000, quick=8_000), pretrain_epochs=scale(full=8, quick=2),
                            label_counts=scale(full=(150, 600, 3_000), quick=(150, 600)),
                            finetune_steps=scale(full=200, quick=100), test_count=scale(full=5_000, quick=1_000))


def fashion_mae_config() -> MAEConfig:
    """Chapter 11's tiny ViT as the encoder: 28 px in 7 px patches (16 tokens; the encoder sees 4 of them + the
    class token), width 64, 4 blocks of 4 heads, MLP 128; a 1-block decoder of width 32."""
    return MAEConfig(image_size=28, patch_size=7, in_channels=1, dim=64, num_layers=4, num_heads=4, mlp_ratio=2.0,
                     decoder_dim=32, decoder_num_layers=1, decoder_num_heads=4, decoder_mlp_ratio=2.0)


def fashion_mae_data(recipe: FashionMAERecipe | None = None):
    """(train images, train labels, test images, test labels), standardised (n, 1, 28, 28) float32."""
    recipe = recipe or fashion_mae_recipe()
    x_train, y_train, _, _, x_test, y_test = fashion_mnist_splits(55_000, 5_000)
    mean, std = fashion_pixel_statistics()
    return (x_train - mean) / std, y_train, (x_test[:recipe.test_count] - mean) / std, y_test[:recipe.test_count]


def labelled_subset(label_count: int, seed: int = 0, pool: int = 55_000) -> Tensor:
    """Indices of the labelled training images: the first ``label_count`` of a seeded shuffle of the pool, so
    a smaller labelled set is contained in every larger one."""
    if not isinstance(label_count, int) or not 1 <= label_count <= pool:
        raise ValueError(f"label_count must be an int in [1, {pool}], got {label_count!r}")
    return torch.randperm(pool, generator=torch.Generator().manual_seed(seed))[:label_count]


def _mae_loss(model: MAE, batch) -> Tensor:
    (images,) = batch
    return model(images).loss


def load_or_train_fashion_mae(device=None, progress: bool = True) -> tuple[MAE, History | None]:
    """The chapter's MAE (eval mode, on ``device``): loaded if cached in this mode, else pretrained now on the
    training images (labels unused)."""
    recipe, config = fashion_mae_recipe(), fashion_mae_config()
    device = torch.device(device) if device is not None else get_device()
    seed_everything(recipe.seed)
    model = MAE(config).to(device)
    train_config = recipe.pretrain_config()

    def train(network: MAE) -> History:
        x_train = fashion_mae_data(recipe)[0][:recipe.pretrain_count]
        seed_everything(recipe.seed)                   # the masks drawn during training
        return fit(network, (x_train,), config=replace(train_config, progress=progress), loss_fn=_mae_loss,
                   device=device)

    history = load_or_train(MAE_CACHE_NAME, model, train,
                            config={"model": config.to_dict(), "train": asdict(train_config),
                                    "data": recipe.pretrain_count})
    return model.eval(), history


def _classifier(kind: str, mae: MAE | None, config: MAEConfig, recipe: FashionMAERecipe) -> ViT:
    if kind == "scratch":
        return mae_classifier(config, num_classes=10, pool="cls")
    if mae is None:
        raise ValueError(f"kind={kind!r} starts from the pretrained MAE: pass mae=")
    classifier = mae_classifier(mae, num_classes=10, pool="cls")
    if kind == "lora":
        apply_lora(classifier, recipe.lora_targets, rank=recipe.lora_rank, alpha=recipe.lora_alpha,
                   trainable=["head"])
    return classifier


def load_or_train_fashion_classifier(kind: str, label_count: int, mae: MAE | None = None, device=None,
                                     progress: bool = True) -> tuple[ViT, History | None]:
    """A classifier (eval mode) trained on ``label_count`` labels: ``kind`` "scratch", "finetune" or "lora"
    (the latter two need the pretrained ``mae``).  Every kind gets the same labels, steps, batch and schedule."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    recipe, config = fashion_mae_recipe(), fashion_mae_config()
    device = torch.device(device) if device is not None else get_device()
    seed_everything(recipe.seed + 1)                   # the new head (and, from scratch, every weight)
    model = _classifier(kind, mae, config, recipe).to(device)
    train_config = recipe.finetune_config(kind)

    def smoothed_loss(network, batch):
        images, labels = batch
        return F.cross_entropy(network(images), labels, label_smoothing=recipe.label_smoothing)

    def train(network: ViT) -> History:
        x_train, y_train, _, _ = fashion_mae_data(recipe)
        index = labelled_subset(label_count, recipe.seed)
        return fit(network, (x_train[index], y_train[index]), config=replace(train_config, progress=progress),
                   loss_fn=smoothed_loss, device=device)

    cache_config = {"kind": kind, "labels": label_count, "model": config.to_dict(), "train": asdict(train_config),
                    "recipe": asdict(recipe)}
    history = load_or_train(f"fashion-mae-{kind}-{label_count}", model, train, config=cache_config)
    return model.eval(), history


def test_accuracy(model: ViT, recipe: FashionMAERecipe | None = None) -> float:
    """Accuracy on the recipe's test images (the first ``test_count`` of the 10,000)."""
    _, _, x_test, y_test = fashion_mae_data(recipe)
    return evaluate_classifier(model, (x_test, y_test))["val_accuracy"]

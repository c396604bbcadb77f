"""Chapter 12's spoken-digit CNN, trained once and reused: "load if cached, else train, and say which".

The recipe (data, split, model configuration, optimiser settings) lives here, so chapter 12, which teaches
it, and every later chapter that needs an audio encoder (binding three modalities in chapter 20, robustness
in chapter 24) get the same model from the same cache entry.

The front end (``LogMel``) has no trainable parameter, so the log-mel spectrograms are computed once and the
backbone (``SpectrogramCNN``) is trained on them; the whole ``AudioCNN`` then takes waveforms.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..config import get_device, scale
from ..data import spoken_digits
from ..encoders.audio import AudioCNN, AudioCNNConfig
from ..training import History, TrainConfig, fit, load_or_train

__all__ = ["SPOKEN_DIGIT_CNN_CACHE_NAME", "SpokenDigitRecipe", "spoken_digit_recipe", "spoken_digit_splits",
           "load_or_train_spoken_digit_cnn"]

SPOKEN_DIGIT_CNN_CACHE_NAME = "spoken-digit-cnn"


@dataclass
class SpokenDigitRecipe:
    """How chapter 12's CNN is trained (QUICK mode: more passes over a smaller batch size)."""
    epochs: int                  # passes over the training words
    batch_size: int
    lr: float = 3e-3             # peak of the one-cycle schedule
    weight_decay: float = 1e-2
    seed: int = 0
    val_fraction: float = 0.15   # share of the voices held out for validation
    test_fraction: float = 0.25  # share of the voices held out for testing (never heard in training)
    split_seed: int = 0          # which voices are held out

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "schedule": "onecycle", "weight_decay": self.weight_decay, "seed": self.seed,
                              **overrides})


def spoken_digit_recipe() -> SpokenDigitRecipe:
    """Chapter 12's recipe for the current mode: full 4 epochs of batch 64; QUICK 6 epochs of batch 16."""
    return SpokenDigitRecipe(epochs=scale(full=4, quick=6), batch_size=scale(full=64, quick=16))


def spoken_digit_splits(digits: spoken_digits.SpokenDigits | None = None, recipe: SpokenDigitRecipe | None = None):
    """(train, val, test) words split by voice as the recipe says (``digits`` defaults to the cached set)."""
    recipe = recipe or spoken_digit_recipe()
    digits = digits if digits is not None else spoken_digits.load_spoken_digits()
    return spoken_digits.split_by_voice(digits, val_fraction=recipe.val_fraction,
                                        test_fraction=recipe.test_fraction, seed=recipe.split_seed)


def load_or_train_spoken_digit_cnn(digits: spoken_digits.SpokenDigits | None = None, device=None,
                                   progress: bool = True) -> tuple[AudioCNN, History | None]:
    """Chapter 12's trained :class:`AudioCNN` (eval mode) and its History: from the cache if chapter 12 (or an
    earlier call) trained it in this mode, else trained now (under a minute on a CPU)."""
    recipe, config = spoken_digit_recipe(), AudioCNNConfig()
    device = torch.device(device) if device is not None else get_device()
    model = AudioCNN(config).to(device)
    digits = digits if digits is not None else spoken_digits.load_spoken_digits()

    def train(network: AudioCNN) -> History:
        train_set, val_set, _ = spoken_digit_splits(digits, recipe)
        with torch.no_grad():                       # the front end has nothing to learn: compute it once
            train_features = network.front_end(train_set.tensors()[0].to(device))   # (n, n_mels, frames)
            val_features = network.front_end(val_set.tensors()[0].to(device))
        return fit(network.backbone, (train_features, torch.from_numpy(train_set.labels)),
                   config=recipe.train_config(progress=progress),
                   val_data=(val_features, torch.from_numpy(val_set.labels)), device=device)

    history = load_or_train(SPOKEN_DIGIT_CNN_CACHE_NAME, model, train,
                            config={"model": asdict(config), "recipe": asdict(recipe), "words": len(digits)})
    return model.eval(), history

"""Chapter 14's fusion classifiers on paired image/spoken digits: one load-or-train recipe for every chapter.

Chapter 14 trains a :class:`~mmtutorial.models.fusion.MultimodalClassifier` per fusion method (and, on the digit
task, per modality-dropout rate); chapter 24 measures two of them (concatenation, with and without modality
dropout) under missing and noisy modalities. Both go through :func:`load_or_train_fusion_classifier` with the
same training recipe, so the second chapter finds the first one's weights in the cache and the two cannot
drift apart.
"""
from __future__ import annotations

import torch

from ..config import scale
from ..data import paired
from ..encoders.audio import mfcc_tokens
from ..models.fusion import MultimodalClassifier, MultimodalClassifierConfig, multimodal_loss
from ..training import TrainConfig, fit, load_or_train
from ..utils import seed_everything

# The digit task is made hard on purpose: noisy images and speech at -12 dB SNR, so that neither modality
# suffices alone and fusing them pays (chapter 14, section "when fusion helps").
DIGIT_NOISE = {"image_noise": 8.0, "audio_snr_db": -12.0}


def fusion_train_config() -> TrainConfig:
    """The training recipe of every chapter-14 classifier (one-cycle AdamW; QUICK trains fewer epochs)."""
    return TrainConfig(epochs=scale(full=12, quick=8), batch_size=scale(full=256, quick=128), lr=5e-3,
                       weight_decay=1e-2, schedule="onecycle", seed=0)


def load_digit_pairs(verbose: bool = False) -> paired.PairedDigits:
    """The noisy paired-digit task ("which digit?") with MFCC tokens for the audio, as chapter 14 uses it."""
    return paired.load_paired_digits("digit", audio_transform=mfcc_tokens, verbose=verbose, **DIGIT_NOISE)


def load_or_train_fusion_classifier(name: str, config: MultimodalClassifierConfig, data: paired.PairedDigits,
                                    device: torch.device | str | None = None) -> MultimodalClassifier:
    """Build ``MultimodalClassifier(config)``, load it from the cache under ``name`` or train it on ``data``'s
    training split (the inputs are the modalities ``config.modality_names`` names, in that order), and return
    it on the CPU in eval mode.  The cache key holds the model config, the recipe and the data settings."""
    if not isinstance(config, MultimodalClassifierConfig):
        raise TypeError(f"config must be a MultimodalClassifierConfig, got {type(config).__name__}")
    if not isinstance(data, paired.PairedDigits):
        raise TypeError(f"data must be paired.PairedDigits (paired.load_paired_digits), got {type(data).__name__}")
    train_config = fusion_train_config()
    seed_everything(0)
    model = MultimodalClassifier(config)
    inputs = [getattr(data.train, modality) for modality in config.modality_names]   # (n, 8, 8), (n, 10, 13)

    def train(network):
        return fit(network, (*inputs, data.train.label), config=train_config, loss_fn=multimodal_loss, device=device)

    load_or_train(name, model, train, config={"model": model.config_dict(), "train": vars(train_config),
                                              "data": data.settings})
    return model.cpu().eval()

"""Chapter 18's detector and phrase grounder trained on synthetic scenes, cached ("load if present, else train").

``load_or_train_scenes_detector()`` trains :class:`mmtutorial.models.detector.Detector` (a YOLOS-style ViT
with learned detection tokens) with DETR's Hungarian set-prediction loss on ``scenes.generate_scenes``
(one to three shapes on 32 x 32 pixels, 24 colour-shape classes, exact boxes); cache name
``"detector-scenes"``.  ``load_or_train_scenes_grounder()`` trains :class:`PhraseGrounder` on the scenes'
referring expressions, with the true objects (one-hot classes, slightly jittered boxes) as its object
tokens; at test time it reads the detector's detections instead; cache name ``"grounder-scenes"``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import get_device, scale
from ..data import scenes
from ..models.detector import (Detector, DetectorConfig, GrounderConfig, PhraseGrounder, box_xyxy_to_cxcywh,
                               pad_targets, postprocess, set_prediction_loss)
from ..training import History, TrainConfig, fit, load_or_train

__all__ = ["DETECTOR_CACHE_NAME", "GROUNDER_CACHE_NAME", "ScenesDetectorRecipe", "scenes_detector_recipe",
           "scenes_detector_config", "detection_loss", "ScenesDetector", "load_or_train_scenes_detector",
           "grounding_examples", "true_objects", "ScenesGrounder", "load_or_train_scenes_grounder", "detections_as_objects"]

DETECTOR_CACHE_NAME = "detector-scenes"
GROUNDER_CACHE_NAME = "grounder-scenes"
MAX_OBJECTS = 3                        # scenes.SceneConfig's default max_objects


@dataclass
class ScenesDetectorRecipe:
    train_count: int                   # training scenes (the "train" split)
    epochs: int                        # passes over them
    batch_size: int = 64
    lr: float = 4e-3                   # peak of the one-cycle schedule (1e-3 and 6e-4 learnt far slower here)
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0         # DETR clips gradients too (0.1 there; its loss is larger)
    seed: int = 0
    grounding_count: int = 0           # scenes for the grounder (two expressions each)
    grounding_epochs: int = 0

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "schedule": "onecycle", "weight_decay": self.weight_decay,
                              "max_grad_norm": self.max_grad_norm, "seed": self.seed, **overrides})


def scenes_detector_recipe() -> ScenesDetectorRecipe:
    """Full: 10,000 scenes x 12 epochs; QUICK: 1,200 x 2 (every code path, a weak but non-blind model)."""
    return ScenesDetectorRecipe(train_count=scale(full=10_000, quick=1_200), epochs=scale(full=12, quick=2),
                                grounding_count=scale(full=8_000, quick=1_500),
                                grounding_epochs=scale(full=5, quick=2))


def scenes_detector_config() -> DetectorConfig:
    """32 px RGB in 8 px patches (16 tokens) + 6 detection tokens, 4 blocks of width 64, 24 pair classes."""
    return DetectorConfig(image_size=32, patch_size=8, in_channels=3, num_classes=len(scenes.PAIRS),
                          num_detection_tokens=6, dim=64, num_layers=4, num_heads=4, mlp_ratio=2.0)


def detection_loss(model: Detector, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """``fit``'s loss: images, padded target boxes (cxcywh in [0, 1]) and labels (-1 = none)."""
    images, target_boxes, target_labels = batch
    logits, boxes = model(images)
    return set_prediction_loss(logits, boxes, target_labels, target_boxes, model.config)


@dataclass
class ScenesDetector:
    model: Detector                    # eval mode
    history: History | None
    pixel_mean: Tensor                 # (1, 3, 1, 1)
    pixel_std: Tensor                  # (1, 3, 1, 1)

    def pixels(self, scene_list: Sequence[scenes.Scene]) -> Tensor:
        return (scenes.to_tensors(scene_list) - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def outputs(self, scene_list: Sequence[scenes.Scene], batch_size: int = 500) -> tuple[Tensor, Tensor]:
        """(class logits (n, K, C+1), boxes (n, K, 4) cxcywh in [0, 1]) on the CPU."""
        device = next(self.model.parameters()).device
        pixels = self.pixels(scene_list)
        parts = [self.model(pixels[i:i + batch_size].to(device)) for i in range(0, len(pixels), batch_size)]
        return torch.cat([p[0] for p in parts]).float().cpu(), torch.cat([p[1] for p in parts]).float().cpu()

    def predict(self, scene_list: Sequence[scenes.Scene]) -> list[dict]:
        """torchmetrics-format predictions: every slot's box (pixels), score and label."""
        logits, boxes = self.outputs(scene_list)
        return postprocess(logits, boxes, self.model.config.image_size)


def _training_tensors(train_scenes, config: DetectorConfig):
    targets = scenes.detection_targets(train_scenes)
    boxes, labels = pad_targets(targets, MAX_OBJECTS, config.image_size)      # (N, 3, 4), (N, 3)
    return boxes, labels


def load_or_train_scenes_detector(device=None, progress: bool = True) -> ScenesDetector:
    """The chapter's detector (eval mode, on ``device``): loaded if cached in this mode, else trained now."""
    recipe, config = scenes_detector_recipe(), scenes_detector_config()
    train_config = recipe.train_config()
    train_scenes = scenes.generate_scenes(recipe.train_count, split="train", seed=recipe.seed)
    images = scenes.to_tensors(train_scenes)                                  # (N, 3, 32, 32) in [0, 1]
    pixel_mean = images.mean(dim=(0, 2, 3), keepdim=True)                     # (1, 3, 1, 1)
    pixel_std = images.std(dim=(0, 2, 3), keepdim=True)
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed)
    model = Detector(config).to(device)

    def train(network: Detector) -> History:
        boxes, labels = _training_tensors(train_scenes, config)
        data = ((images - pixel_mean) / pixel_std, boxes, labels)
        return fit(network, data, config=replace(train_config, progress=progress), loss_fn=detection_loss,
                   device=device)

    history = load_or_train(DETECTOR_CACHE_NAME, model, train,
                            config={"model": config.to_dict(), "train": vars(train_config), "data": len(train_scenes)})
    return ScenesDetector(model.eval(), history, pixel_mean, pixel_std)


# --------------------------------------------------------------------------------------------------
# Phrase grounding
# --------------------------------------------------------------------------------------------------
def grounding_examples(scene_list: Sequence[scenes.Scene], per_scene: int = 2, seed: int = 0):
    """(scene index, expression, object index) triples: ``per_scene`` referring expressions drawn per scene."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for index, scene in enumerate(scene_list):
        expressions = scene.referring_expressions()
        if not expressions:
            continue
        picks = torch.randperm(len(expressions), generator=generator)[:per_scene].tolist()
        examples += [(index, *expressions[p]) for p in picks]
    return examples


def true_objects(scene_list, num_classes: int, max_objects: int, jitter: float = 0.0, generator=None):
    """Ground-truth objects as grounder inputs: one-hot classes (n, M, C), cxcywh boxes (n, M, 4), mask (n, M)."""
    targets = scenes.detection_targets(scene_list)
    boxes, labels = pad_targets(targets, max_objects, scene_list[0].image_size)   # (n, M, 4), (n, M)
    mask = labels >= 0
    classes = F.one_hot(labels.clamp(min=0), num_classes).float() * mask[..., None]
    if jitter:
        boxes = boxes + jitter * torch.randn(boxes.shape, generator=generator)
    return classes, boxes, mask


def detections_as_objects(logits: Tensor, boxes: Tensor, score_threshold: float = 0.5):
    """Detector outputs -> grounder object tokens: class probabilities over the real classes (n, K, C), boxes
    (n, K, 4) cxcywh, and a mask of the slots whose best class scores >= ``score_threshold`` (the best slot
    is always kept, so every image offers at least one object)."""
    probabilities = logits.softmax(dim=-1)[..., :-1]                             # (n, K, C)
    scores = probabilities.max(dim=-1).values                                    # (n, K)
    mask = scores >= score_threshold
    mask[torch.arange(len(scores)), scores.argmax(dim=-1)] = True
    return probabilities / probabilities.sum(-1, keepdim=True), boxes, mask


@dataclass
class ScenesGrounder:
    model: PhraseGrounder
    history: History | None
    vocab: scenes.Vocabulary
    max_seq_len: int

    def tokens(self, expressions: Sequence[str]) -> Tensor:
        return self.vocab.encode_batch(list(expressions), max_len=self.max_seq_len)

    @torch.no_grad()
    def select(self, expressions: Sequence[str], classes: Tensor, boxes: Tensor, mask: Tensor) -> Tensor:
        """The index of the chosen object token for each expression (n,)."""
        device = next(self.model.parameters()).device
        scores = self.model(self.tokens(expressions).to(device), classes.to(device), boxes.to(device),
                            mask.to(device))
        return scores.argmax(dim=-1).cpu()


def load_or_train_scenes_grounder(device=None, progress: bool = True) -> ScenesGrounder:
    """The chapter's phrase grounder (eval mode): loaded if cached in this mode, else trained now."""
    recipe, vocab = scenes_detector_recipe(), scenes.caption_vocabulary()
    config = GrounderConfig(vocab_size=len(vocab), max_seq_len=12, num_classes=len(scenes.PAIRS),
                            max_objects=8, pad_id=vocab.pad_id)
    train_config = TrainConfig(epochs=recipe.grounding_epochs, batch_size=128, lr=2e-3, schedule="onecycle",
                               weight_decay=1e-4, seed=recipe.seed + 1)
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed + 1)
    model = PhraseGrounder(config).to(device)

    def train(network: PhraseGrounder) -> History:
        train_scenes = scenes.generate_scenes(recipe.grounding_count, split="train", seed=recipe.seed + 1)
        examples = grounding_examples(train_scenes, per_scene=2, seed=recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        classes, boxes, mask = true_objects(train_scenes, config.num_classes, config.max_objects, jitter=0.01,
                                             generator=generator)
        # light label noise, so that soft detector probabilities at test time look familiar
        classes = (0.9 * classes + 0.1 / config.num_classes) * mask[..., None]
        index = torch.tensor([e[0] for e in examples])
        tokens = vocab.encode_batch([e[1] for e in examples], max_len=config.max_seq_len)
        targets = torch.tensor([e[2] for e in examples])
        data = (tokens, classes[index], boxes[index], mask[index], targets)

        def loss_fn(net, batch):
            words, object_classes, object_boxes, object_mask, target = batch
            return F.cross_entropy(net(words, object_classes, object_boxes, object_mask), target)

        return fit(network, data, config=replace(train_config, progress=progress), loss_fn=loss_fn, device=device)

    history = load_or_train(GROUNDER_CACHE_NAME, model, train,
                            config={"model": config.to_dict(), "train": vars(train_config),
                                    "data": recipe.grounding_count})
    return ScenesGrounder(model.eval(), history, vocab, config.max_seq_len)

"""Chapter 21's video models trained on moving-shape clips, cached ("load if present, else train").

``load_or_train_video_classifier(kind, task)`` trains one of four classifiers of
:mod:`mmtutorial.models.video` on :mod:`mmtutorial.data.clips`:

=================  =======================================================  ============================
kind               model                                                    cache name
=================  =======================================================  ============================
``single_frame``   ``SingleFrameClassifier`` (each frame alone; votes)      ``video-single_frame-<task>``
``mean_pool``      ``MeanPoolClassifier`` (mean of frame features)          ``video-mean_pool-<task>``
``attention``      ``TemporalAttentionClassifier`` (time embeddings)        ``video-attention-<task>``
``conv2plus1d``    ``Conv2Plus1dNet`` ((2+1)D convolutions)                 ``video-conv2plus1d-<task>``
=================  =======================================================  ============================

``task`` is ``"direction"`` (4 classes) or ``"order"`` (which of two shapes moved first, 2 classes).
``load_or_train_video_text()`` trains the video-text dual encoder with chapter 15's contrastive loss on
(clip, caption) pairs, each batch completed by the clips played backwards with their opposite captions
(the hardest negatives: same colour, shape and positions, opposite direction); cache name ``"video-text"``.
QUICK and full mode never share a cached model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import get_device, scale
from ..data import clips
from ..models.clip import CLIPTextConfig
from ..models.video import (Conv2Plus1dConfig, Conv2Plus1dNet, MeanPoolClassifier, SingleFrameClassifier,
                            TemporalAttentionClassifier, VideoConfig, VideoTextConfig, VideoTextModel)
from ..training import History, TrainConfig, fit, load_or_train

__all__ = ["KINDS", "TASKS", "VideoRecipe", "video_recipe", "clip_config", "video_config", "conv2plus1d_config",
           "build_classifier", "frame_loss", "TrainedVideoClassifier", "load_or_train_video_classifier",
           "video_text_config", "VideoText", "load_or_train_video_text", "predict", "accuracy"]

KINDS: tuple[str, ...] = ("single_frame", "mean_pool", "attention", "conv2plus1d")
TASKS: dict[str, int] = {"direction": len(clips.DIRECTIONS), "order": len(clips.ORDER_LABELS)}
TEXT_CACHE_NAME = "video-text"
MAX_CAPTION_LEN = 8                     # <bos> a red circle moving left <eos> = 7 tokens


@dataclass
class VideoRecipe:
    train_count: int                    # training clips of each classification task (reversal pairs)
    epochs: int                         # passes over them
    retrieval_count: int                # (clip, caption) pairs for the dual encoder
    retrieval_epochs: int
    batch_size: int = 64
    lr: float = 3e-3                    # peak of the one-cycle schedule
    conv_lr: float = 1e-2               # the (2+1)D network's peak (BatchNorm after every convolution lets it
                                        # take larger steps; at 3e-3 it needed more epochs for the order task)
    weight_decay: float = 1e-4
    seed: int = 0

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                              "schedule": "onecycle", "weight_decay": self.weight_decay, "seed": self.seed,
                              **overrides})


def video_recipe() -> VideoRecipe:
    """Full: 2,000 clips x 3 epochs per classifier, 2,000 pairs x 4 epochs for retrieval; QUICK: 512 x 3 and
    320 x 2 in batches of 32 (every code path, weaker models)."""
    return VideoRecipe(train_count=scale(full=2000, quick=512), epochs=scale(full=3, quick=3),
                       batch_size=scale(full=64, quick=32),
                       retrieval_count=scale(full=2000, quick=320), retrieval_epochs=scale(full=4, quick=2))


def clip_config() -> clips.ClipConfig:
    """8 frames of 20 x 20 pixels, shapes of radius 2 moving 1 or 2 pixels a frame."""
    return clips.ClipConfig()


def video_config(num_classes: int = 4, time_embedding: bool = True) -> VideoConfig:
    data = clip_config()
    return VideoConfig(image_size=data.image_size, max_seq_len=data.num_frames, num_classes=num_classes,
                       time_embedding=time_embedding)


def conv2plus1d_config(num_classes: int = 4) -> Conv2Plus1dConfig:
    data = clip_config()
    return Conv2Plus1dConfig(image_size=data.image_size, max_seq_len=data.num_frames, channels=(8, 16, 32),
                             num_classes=num_classes)


def _check_kind_task(kind: str, task: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(TASKS)}")


def build_classifier(kind: str, task: str = "direction") -> nn.Module:
    """An untrained classifier of this kind for this task."""
    _check_kind_task(kind, task)
    num_classes = TASKS[task]
    if kind == "conv2plus1d":
        return Conv2Plus1dNet(conv2plus1d_config(num_classes))
    model_class = {"single_frame": SingleFrameClassifier, "mean_pool": MeanPoolClassifier,
                   "attention": TemporalAttentionClassifier}[kind]
    return model_class(video_config(num_classes))


def frame_loss(model: SingleFrameClassifier, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The single-frame baseline's loss: every frame is an example labelled with its clip's label."""
    videos, labels = batch
    logits = model.frame_logits(videos)                                   # (batch, T, classes)
    return F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(videos.size(1)))


def _make_clips(task: str, n: int, split: str, seed: int) -> list[clips.Clip]:
    make = clips.direction_clips if task == "direction" else clips.order_clips
    return make(n, split=split, seed=seed, config=clip_config())


@torch.no_grad()
def predict(model: nn.Module, videos: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted classes (N,) on the CPU, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(videos[i:i + batch_size].to(device)).argmax(dim=-1).cpu()
                      for i in range(0, len(videos), batch_size)])


def accuracy(model: nn.Module, videos: Tensor, labels: Tensor) -> float:
    return float((predict(model, videos) == labels).float().mean())


@dataclass
class TrainedVideoClassifier:
    kind: str
    task: str
    model: nn.Module                    # eval mode
    history: History | None


def load_or_train_video_classifier(kind: str, task: str = "direction", device=None,
                                   progress: bool = True) -> TrainedVideoClassifier:
    """One of the chapter's classifiers (eval mode): loaded if cached in this mode, else trained now."""
    _check_kind_task(kind, task)
    recipe = video_recipe()
    train_config = recipe.train_config(lr=recipe.conv_lr) if kind == "conv2plus1d" else recipe.train_config()
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed)
    model = build_classifier(kind, task).to(device)

    def train(network: nn.Module) -> History:
        videos, labels = clips.to_tensors(_make_clips(task, recipe.train_count, "train", recipe.seed))
        return fit(network, (videos, labels), config=replace(train_config, progress=progress),
                   loss_fn=frame_loss if kind == "single_frame" else None, device=device)

    model_config = model.config.to_dict()
    history = load_or_train(f"video-{kind}-{task}", model, train,
                            config={"model": model_config, "train": vars(train_config),
                                    "data": {"count": recipe.train_count, **vars(clip_config())}})
    return TrainedVideoClassifier(kind, task, model.eval(), history)


# --------------------------------------------------------------------------------------------------
# Video-text retrieval
# --------------------------------------------------------------------------------------------------
def video_text_config() -> VideoTextConfig:
    vocab = clips.caption_vocabulary()
    return VideoTextConfig(embed_dim=64, video=video_config(num_classes=0),
                           text=CLIPTextConfig(vocab_size=len(vocab), max_seq_len=MAX_CAPTION_LEN, dim=64,
                                               num_layers=2, num_heads=4, eot_token_id=vocab.eos_id))


@dataclass
class VideoText:
    model: VideoTextModel               # eval mode
    history: History | None
    vocab: object                       # scenes.Vocabulary of the captions

    def tokens(self, texts) -> Tensor:
        return self.vocab.encode_batch(list(texts), max_len=MAX_CAPTION_LEN)

    @torch.no_grad()
    def embed_videos(self, videos: Tensor, batch_size: int = 500) -> Tensor:
        device = self.model.logit_scale.device
        return torch.cat([self.model.encode_video(videos[i:i + batch_size].to(device), normalize=True).cpu()
                          for i in range(0, len(videos), batch_size)])

    @torch.no_grad()
    def embed_texts(self, texts) -> Tensor:
        return self.model.encode_text(self.tokens(texts).to(self.model.logit_scale.device), normalize=True).cpu()


def _with_reversals(model: VideoTextModel, batch) -> Tensor:
    """Contrastive loss on the batch plus every clip played backwards with its opposite caption."""
    videos, tokens, reversed_tokens = batch
    # = model.loss(torch.cat([videos, videos.flip(1)]), torch.cat([tokens, reversed_tokens])), each frame encoded once
    return model.reversal_loss(videos, tokens, reversed_tokens)


def load_or_train_video_text(device=None, progress: bool = True) -> VideoText:
    """The chapter's video-text dual encoder (eval mode): loaded if cached in this mode, else trained now.

    Its video tower starts from the trained temporal-attention direction classifier's encoder (as video-text
    models start from a pretrained image or video encoder): trained from scratch with the contrastive loss
    alone it learnt colour and shape quickly but not the direction within our budget.
    """
    recipe, config, vocab = video_recipe(), video_text_config(), clips.caption_vocabulary()
    # Half batches: the reversals double them.
    train_config = recipe.train_config(epochs=recipe.retrieval_epochs, batch_size=recipe.batch_size // 2)
    device = torch.device(device) if device is not None else get_device()
    torch.manual_seed(recipe.seed + 1)
    model = VideoTextModel(config).to(device)

    def train(network: VideoTextModel) -> History:
        start = load_or_train_video_classifier("attention", "direction", device=device, progress=progress)
        network.video.load_state_dict(start.model.encoder.state_dict())
        # unpaired: the reversals are added inside every batch
        train_clips = clips.direction_clips(recipe.retrieval_count, split="train", seed=recipe.seed + 1,
                                            config=clip_config(), paired=False)
        videos, _ = clips.to_tensors(train_clips)
        tokens = vocab.encode_batch([c.caption() for c in train_clips], max_len=MAX_CAPTION_LEN)
        reversed_tokens = vocab.encode_batch([clips.reverse_clip(c).caption() for c in train_clips],
                                             max_len=MAX_CAPTION_LEN)
        return fit(network, (videos, tokens, reversed_tokens), config=replace(train_config, progress=progress),
                   loss_fn=_with_reversals, device=device)

    history = load_or_train(TEXT_CACHE_NAME, model, train,
                            config={"model": config.to_dict(), "train": vars(train_config), "init": "attention-direction",
                                    "data": {"count": recipe.retrieval_count, **vars(clip_config())}})
    return VideoText(model.eval(), history, vocab)

"""Video models: a frame encoder and four ways to add time, and a video-text dual encoder (chapter 21).

A video is a tensor ``(batch, T, channels, height, width)``.  Every model here starts from the same idea,
a 2-D network applied to each frame, and differs in how it combines the T frames:

* :class:`SingleFrameClassifier`: classify every frame on its own and average the T predictions (the
  "single frame" baseline of Karpathy et al., 2014);
* :class:`MeanPoolClassifier`: average the T frame features, then classify (temporal mean pooling);
* :class:`TemporalAttentionClassifier`: add a learned **time embedding** to each frame feature and let a
  Transformer attend across time (the temporal half of TimeSformer's divided attention, or ViViT's
  factorised encoder, on one token per frame);
* :class:`Conv2Plus1dNet`: (2+1)D convolutions (Tran et al., 2018): a k x k spatial convolution, then a
  t x 1 x 1 temporal one, so motion is seen from the first layer on.

The first two are **order-invariant**: they are functions of the *set* of frames, so a clip and its time
reversal get the same answer.  So is attention *without* time embeddings followed by pooling (self-attention
is permutation-equivariant).  The time embedding, or a temporal convolution, is what lets a model see order.

:class:`VideoTextModel` is a CLIP-style dual encoder (chapter 15) whose image tower is replaced by the
temporal-attention video encoder; its text tower and its loss are chapter 15's ``CLIPTextTower`` and
``clip_loss``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import LearnedPositionalEmbedding, TransformerConfig, TransformerEncoder, conv_stack
from .clip import CLIPConfig, CLIPTextConfig, CLIPTextTower, clip_image_config, clip_loss

TIME_EMBEDDING_STD = 1.0   # frame features are O(1); GPT-2's 0.02 would leave the order signal buried at the start

__all__ = ["VideoConfig", "Conv2Plus1dConfig", "VideoTextConfig", "check_videos", "FrameEncoder",
           "SingleFrameClassifier", "MeanPoolClassifier", "TemporalAttentionEncoder",
           "TemporalAttentionClassifier", "mid_channels", "Conv2Plus1d", "Conv2Plus1dNet", "receptive_field",
           "conv_output_size", "VideoTextModel", "clip_loss"]


def _positive_int(owner: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{owner}.{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}.{name} must be >= 1, got {value}")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass
class VideoConfig:
    """A frame encoder and a temporal model on top of it."""
    image_size: int = 20                  # frame height = width in pixels
    in_channels: int = 3                  # RGB
    max_seq_len: int = 8                  # most frames per clip (rows of the time-embedding table)
    channels: tuple[int, ...] = (16, 32)  # widths of the frame encoder's conv blocks (each halves H and W)
    dim: int = 64                         # frame feature size = Transformer width
    num_layers: int = 2                   # temporal Transformer blocks
    num_heads: int = 4                    # attention heads; head_dim = dim // num_heads
    mlp_ratio: float = 2.0                # MLP hidden size = mlp_ratio * dim
    dropout: float = 0.0                  # in the Transformer blocks
    bias: bool = True                     # biases in the Transformer's linear layers and LayerNorms
    num_classes: int = 4                  # classifier outputs (0: no head, features only)
    time_embedding: bool = True           # add a learned embedding of the frame index (False: order-blind)

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "max_seq_len", "dim", "num_layers", "num_heads"):
            _positive_int("VideoConfig", name, getattr(self, name))
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 0:
            raise ValueError(f"VideoConfig.num_classes must be an int >= 0, got {self.num_classes!r}")
        if isinstance(self.channels, int) or not self.channels:
            raise ValueError(f"VideoConfig.channels must be a non-empty sequence of widths, got {self.channels!r}")
        self.channels = tuple(self.channels)
        for width in self.channels:
            _positive_int("VideoConfig", "channels[i]", width)
        if self.feature_map_size() < 1:
            raise ValueError(f"{len(self.channels)} conv blocks halve a {self.image_size}-pixel frame to nothing; "
                             "use fewer blocks or larger frames")
        if self.max_seq_len < 2:
            raise ValueError(f"VideoConfig.max_seq_len must be >= 2 (a clip has at least two frames), got {self.max_seq_len}")
        if not isinstance(self.time_embedding, bool):
            raise TypeError(f"VideoConfig.time_embedding must be True or False, got {self.time_embedding!r}")
        self.transformer_config()        # dim % num_heads, mlp_ratio, dropout checked there

    def feature_map_size(self) -> int:
        """Side of the frame encoder's last feature map (each block halves it, rounding down)."""
        size = self.image_size
        for _ in self.channels:
            size //= 2
        return size

    def transformer_config(self) -> TransformerConfig:
        """Pre-LN, bidirectional blocks: every frame may attend to every other frame."""
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=self.mlp_ratio, dropout=self.dropout, bias=self.bias)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Conv2Plus1dConfig:
    """A small (2+1)D network: one factorised block per width, 2 x 2 spatial max-pooling between blocks."""
    image_size: int = 20                      # frame height = width
    in_channels: int = 3
    max_seq_len: int = 8                      # most frames per clip (the network itself accepts any T >= 2)
    channels: tuple[int, ...] = (16, 32, 64)  # output width of each (2+1)D block
    kernel_size: int = 3                      # k of the spatial k x k convolution
    temporal_kernel_size: int = 3             # t of the temporal t x 1 x 1 convolution
    num_classes: int = 4
    dropout: float = 0.0                      # before the classifier

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "max_seq_len", "kernel_size", "temporal_kernel_size", "num_classes"):
            _positive_int("Conv2Plus1dConfig", name, getattr(self, name))
        for name in ("kernel_size", "temporal_kernel_size"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"Conv2Plus1dConfig.{name} must be odd (\"same\" padding), got {getattr(self, name)}")
        if isinstance(self.channels, int) or not self.channels:
            raise ValueError(f"Conv2Plus1dConfig.channels must be a non-empty sequence, got {self.channels!r}")
        self.channels = tuple(self.channels)
        for width in self.channels:
            _positive_int("Conv2Plus1dConfig", "channels[i]", width)
        if self.image_size // 2 ** (len(self.channels) - 1) < 1:
            raise ValueError(f"{len(self.channels) - 1} poolings halve a {self.image_size}-pixel frame to nothing")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Conv2Plus1dConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VideoTextConfig:
    """A video tower (``video``, a temporal-attention encoder) and chapter 15's text tower (``text``)."""
    embed_dim: int = 64                                                   # shared embedding space
    video: VideoConfig = field(default_factory=lambda: VideoConfig(num_classes=0))
    # the text tower; the default fits data.clips.caption_vocabulary() (66 words, <eos> = 2)
    text: CLIPTextConfig = field(default_factory=lambda: CLIPTextConfig(vocab_size=66, max_seq_len=12, dim=64,
                                                                        num_layers=2, num_heads=4, eot_token_id=2))
    init_logit_scale: float = math.log(1 / 0.07)   # log(1 / temperature) at initialisation, as CLIP
    max_logit_scale: float = 100.0

    def __post_init__(self) -> None:
        if isinstance(self.video, dict):
            self.video = VideoConfig(**self.video)
        if isinstance(self.text, dict):
            self.text = CLIPTextConfig(**self.text)
        if not isinstance(self.video, VideoConfig) or not isinstance(self.text, CLIPTextConfig):
            raise TypeError("VideoTextConfig.video and .text must be a VideoConfig and a CLIPTextConfig, got "
                            f"{type(self.video).__name__} and {type(self.text).__name__}")
        _positive_int("VideoTextConfig", "embed_dim", self.embed_dim)

    def clip_config(self) -> CLIPConfig:
        """The ``CLIPConfig`` that chapter 15's text tower is built from (its image half is unused)."""
        tiny_image = clip_image_config(image_size=8, patch_size=8, dim=8, num_layers=1, num_heads=1)
        return CLIPConfig(embed_dim=self.embed_dim, vision=tiny_image, text=self.text,
                          init_logit_scale=self.init_logit_scale, max_logit_scale=self.max_logit_scale)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Input check
# --------------------------------------------------------------------------------------------------
def check_videos(videos: Tensor, in_channels: int, image_size: int, max_frames: int | None = None,
                 name: str = "videos") -> None:
    """A float tensor (batch, T >= 2, in_channels, image_size, image_size); else a ValueError/TypeError."""
    if not isinstance(videos, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(videos).__name__}")
    if not videos.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (pixels in [0, 1] or standardised), got dtype "
                        f"{videos.dtype}; convert uint8 frames with .float() / 255")
    expected = f"(batch, frames, {in_channels}, {image_size}, {image_size})"
    if videos.dim() != 5:
        hint = " (one clip? add the batch axis with .unsqueeze(0))" if videos.dim() == 4 else ""
        raise ValueError(f"{name} must be 5-D {expected}, got shape {tuple(videos.shape)}{hint}")
    batch, frames, channels, height, width = videos.shape
    if (channels, height, width) != (in_channels, image_size, image_size):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(videos.shape)}")
    if frames < 2:
        raise ValueError(f"{name} has {frames} frame(s) per clip; a clip needs at least 2 frames to show motion")
    if max_frames is not None and frames > max_frames:
        raise ValueError(f"{name} has {frames} frames, more than max_seq_len={max_frames} time embeddings")
    if batch < 1:
        raise ValueError(f"{name} is an empty batch: shape {tuple(videos.shape)}")


# --------------------------------------------------------------------------------------------------
# Frame encoder and the frame-based classifiers
# --------------------------------------------------------------------------------------------------
class FrameEncoder(nn.Module):
    """The book's conv blocks (3 x 3 conv, BatchNorm, ReLU, 2 x 2 max-pool), flattened, then a linear map to
    ``dim``.  Flattening, not global pooling, keeps *where* the shape is, which motion is made of."""

    def __init__(self, config: VideoConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = conv_stack(config.in_channels, config.channels)
        side = config.feature_map_size()
        self.proj = nn.Linear(config.channels[-1] * side * side, config.dim)

    def forward(self, videos: Tensor) -> Tensor:
        """(batch, T, C, H, W) -> frame features (batch, T, dim); every frame encoded alone."""
        config = self.config
        check_videos(videos, config.in_channels, config.image_size)
        batch, frames = videos.shape[:2]
        flat = videos.reshape(batch * frames, *videos.shape[2:])           # (batch * T, C, H, W)
        features = self.proj(self.convs(flat).flatten(1))                  # (batch * T, dim)
        return features.view(batch, frames, config.dim)                    # (batch, T, dim)


class _FrameModel(nn.Module):
    """A frame encoder and a head (ReLU, linear); subclasses decide how the T frames are combined."""

    def __init__(self, config: VideoConfig) -> None:
        super().__init__()
        if not isinstance(config, VideoConfig):
            raise TypeError(f"{type(self).__name__} wants a VideoConfig, got {type(config).__name__}")
        if config.num_classes < 1:
            raise ValueError(f"{type(self).__name__} is a classifier: VideoConfig.num_classes must be >= 1")
        self.config = config
        self.encoder = FrameEncoder(config)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(config.dim, config.num_classes))


class SingleFrameClassifier(_FrameModel):
    """Classify each frame alone; a clip's prediction averages its frames' probabilities.

    ``frame_logits`` (batch, T, classes) is what it is trained on (every frame labelled with its clip's
    label); ``forward`` returns the log of the mean probability, an order-invariant vote.
    """

    def frame_logits(self, videos: Tensor) -> Tensor:
        return self.head(self.encoder(videos))                             # (batch, T, classes)

    def forward(self, videos: Tensor) -> Tensor:
        log_probs = self.frame_logits(videos).log_softmax(dim=-1)          # (batch, T, classes)
        return torch.logsumexp(log_probs, dim=1) - math.log(videos.size(1))  # log mean_t p_t: (batch, classes)


class MeanPoolClassifier(_FrameModel):
    """Average the frame features over time, then classify: ``head(mean_t f(x_t))``."""

    def forward(self, videos: Tensor) -> Tensor:
        return self.head(self.encoder(videos).mean(dim=1))                 # (batch, classes)


class TemporalAttentionEncoder(nn.Module):
    """Frame features + time embeddings -> Transformer across time -> mean over time: (batch, dim)."""

    def __init__(self, config: VideoConfig) -> None:
        super().__init__()
        if not isinstance(config, VideoConfig):
            raise TypeError(f"{type(self).__name__} wants a VideoConfig, got {type(config).__name__}")
        self.config = config
        self.frames = FrameEncoder(config)
        self.time_embedding = (LearnedPositionalEmbedding(config.max_seq_len, config.dim, init_std=TIME_EMBEDDING_STD)
                               if config.time_embedding else None)
        self.transformer = TransformerEncoder(config.transformer_config())

    def tokens(self, videos: Tensor, need_weights: bool = False):
        """The Transformer's output tokens (batch, T, dim) (and each block's attention weights)."""
        check_videos(videos, self.config.in_channels, self.config.image_size, self.config.max_seq_len)
        return self.attend(self.frames(videos), need_weights=need_weights)

    def attend(self, frame_features: Tensor, need_weights: bool = False):
        """Frame features (batch, T, dim) -> the Transformer's output tokens (batch, T, dim)."""
        x = frame_features
        if self.time_embedding is not None:
            x = self.time_embedding(x)                                     # + E[t] for frame t
        return self.transformer(x, need_weights=need_weights)

    def forward(self, videos: Tensor) -> Tensor:
        return self.tokens(videos).mean(dim=1)                             # (batch, dim)


class TemporalAttentionClassifier(nn.Module):
    """:class:`TemporalAttentionEncoder` and a linear head."""

    def __init__(self, config: VideoConfig) -> None:
        super().__init__()
        if not isinstance(config, VideoConfig):
            raise TypeError(f"TemporalAttentionClassifier wants a VideoConfig, got {type(config).__name__}")
        if config.num_classes < 1:
            raise ValueError("TemporalAttentionClassifier is a classifier: VideoConfig.num_classes must be >= 1")
        self.config = config
        self.encoder = TemporalAttentionEncoder(config)
        self.head = nn.Linear(config.dim, config.num_classes)

    def forward(self, videos: Tensor) -> Tensor:
        return self.head(self.encoder(videos))                             # (batch, classes)


# --------------------------------------------------------------------------------------------------
# (2+1)D convolution
# --------------------------------------------------------------------------------------------------
def mid_channels(in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3) -> int:
    """Tran et al. (2018)'s width M of the (2+1)D block's middle, chosen so that its two convolutions have as
    many weights as one full t x k x k convolution:  t k^2 N_in N_out = M (k^2 N_in + t N_out), rounded down
    (torchvision's ``r2plus1d_18`` uses the same formula)."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("kernel_size", kernel_size),
                        ("temporal_kernel_size", temporal_kernel_size)):
        _positive_int("mid_channels", name, value)
    k2, t = kernel_size ** 2, temporal_kernel_size
    return max(1, (t * k2 * in_channels * out_channels) // (k2 * in_channels + t * out_channels))


class Conv2Plus1d(nn.Module):
    """A (2+1)D convolution: Conv3d(1 x k x k) -> BatchNorm3d -> ReLU -> Conv3d(t x 1 x 1).

    (batch, C_in, T, H, W) -> (batch, C_out, T', H', W') with "same" padding (T' = T, H' = H at stride 1).
    Its receptive field is t x k x k, that of a full 3-D convolution, with an extra nonlinearity in between.
    Same layout as torchvision's ``Conv2Plus1D`` (``spatial`` = its ``0``, ``norm`` = ``1``,
    ``temporal`` = ``3``).
    """

    def __init__(self, in_channels: int, out_channels: int, middle: int | None = None, kernel_size: int = 3,
                 temporal_kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        middle = mid_channels(in_channels, out_channels, kernel_size, temporal_kernel_size) if middle is None else middle
        _positive_int("Conv2Plus1d", "middle", middle)
        _positive_int("Conv2Plus1d", "stride", stride)
        self.kernel_size, self.temporal_kernel_size, self.stride = kernel_size, temporal_kernel_size, stride
        self.spatial = nn.Conv3d(in_channels, middle, (1, kernel_size, kernel_size), stride=(1, stride, stride),
                                 padding=(0, kernel_size // 2, kernel_size // 2), bias=False)
        self.norm = nn.BatchNorm3d(middle)
        self.activation = nn.ReLU()
        self.temporal = nn.Conv3d(middle, out_channels, (temporal_kernel_size, 1, 1), stride=(stride, 1, 1),
                                  padding=(temporal_kernel_size // 2, 0, 0), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 5 or x.size(1) != self.spatial.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Conv2Plus1d wants (batch, {self.spatial.in_channels}, T, H, W), got {got}")
        return self.temporal(self.activation(self.norm(self.spatial(x))))   # (batch, C_out, T', H', W')


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """floor((size + 2 padding - kernel_size) / stride) + 1, the output length of a convolution or pooling."""
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ValueError(f"a kernel of {kernel_size} (stride {stride}, padding {padding}) does not fit {size} inputs")
    return out


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Receptive field along one axis of a stack of (kernel_size, stride) layers:

        r_0 = 1,   r_l = r_{l-1} + (k_l - 1) * j_{l-1},   j_l = j_{l-1} * s_l   (j_0 = 1, the input's spacing)
    """
    field_size, jump = 1, 1
    for kernel_size, stride in layers:
        field_size += (kernel_size - 1) * jump
        jump *= stride
    return field_size


class Conv2Plus1dNet(nn.Module):
    """(2+1)D blocks (each followed by BatchNorm and ReLU; 2 x 2 spatial max-pooling between blocks), global
    average pooling over time and space, a linear classifier."""

    def __init__(self, config: Conv2Plus1dConfig) -> None:
        super().__init__()
        if not isinstance(config, Conv2Plus1dConfig):
            raise TypeError(f"Conv2Plus1dNet wants a Conv2Plus1dConfig, got {type(config).__name__}")
        self.config = config
        layers: list[nn.Module] = []
        widths = (config.in_channels, *config.channels)
        for i in range(len(config.channels)):
            layers += [Conv2Plus1d(widths[i], widths[i + 1], kernel_size=config.kernel_size,
                                   temporal_kernel_size=config.temporal_kernel_size),
                       nn.BatchNorm3d(widths[i + 1]), nn.ReLU()]
            if i < len(config.channels) - 1:
                layers.append(nn.MaxPool3d((1, 2, 2)))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.channels[-1], config.num_classes)

    def receptive_field(self) -> tuple[int, int]:
        """(frames, pixels) that one output of the last block sees: the formula of :func:`receptive_field`."""
        config, temporal, spatial = self.config, [], []
        for i in range(len(config.channels)):
            temporal.append((config.temporal_kernel_size, 1))
            spatial.append((config.kernel_size, 1))
            if i < len(config.channels) - 1:
                spatial.append((2, 2))
        return receptive_field(temporal), receptive_field(spatial)

    def feature_maps(self, videos: Tensor) -> Tensor:
        """(batch, T, C, H, W) -> the last block's maps (batch, C_last, T, H', W')."""
        config = self.config
        check_videos(videos, config.in_channels, config.image_size)
        return self.features(videos.transpose(1, 2))                      # Conv3d wants (batch, C, T, H, W)

    def forward(self, videos: Tensor) -> Tensor:
        pooled = self.feature_maps(videos).mean(dim=(2, 3, 4))             # (batch, C_last)
        return self.head(self.dropout(pooled))                             # (batch, classes)


# --------------------------------------------------------------------------------------------------
# Video-text retrieval
# --------------------------------------------------------------------------------------------------
class VideoTextModel(nn.Module):
    """Video tower (:class:`TemporalAttentionEncoder` + projection) and chapter 15's ``CLIPTextTower``, in one
    space; ``forward`` returns ``(video_features, text_features, logit_scale)`` for ``clip_loss``."""

    def __init__(self, config: VideoTextConfig | None = None) -> None:
        super().__init__()
        config = config or VideoTextConfig()
        if not isinstance(config, VideoTextConfig):
            raise TypeError(f"VideoTextModel wants a VideoTextConfig, got {type(config).__name__}")
        self.config = config
        self.video = TemporalAttentionEncoder(config.video)
        self.video_projection = nn.Linear(config.video.dim, config.embed_dim, bias=False)
        self.text = CLIPTextTower(config.clip_config())
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_video(self, videos: Tensor, normalize: bool = False) -> Tensor:
        features = self.video_projection(self.video(videos))               # (batch, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: Tensor, normalize: bool = False) -> Tensor:
        features = self.text(tokens)                                       # (batch, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def forward(self, videos: Tensor | None = None, tokens: Tensor | None = None):
        if videos is not None and tokens is not None and videos.size(0) != tokens.size(0):
            raise ValueError(f"videos and tokens must be matching pairs: got {videos.size(0)} videos and "
                             f"{tokens.size(0)} texts")
        video_features = self.encode_video(videos, normalize=True) if videos is not None else None
        text_features = self.encode_text(tokens, normalize=True) if tokens is not None else None
        return video_features, text_features, self.scale()

    def loss(self, videos: Tensor, tokens: Tensor) -> Tensor:
        """Chapter 15's symmetric InfoNCE loss on a batch of matching (video, caption) pairs."""
        return clip_loss(*self(videos, tokens))

    def reversal_loss(self, videos: Tensor, tokens: Tensor, reversed_tokens: Tensor) -> Tensor:
        """The loss on the batch completed by every clip played backwards, with its caption ``reversed_tokens``:
        ``loss(cat(videos, videos.flip(1)), cat(tokens, reversed_tokens))``, computed with each frame encoded once
        (a clip and its reversal have the same frames; BatchNorm sees the same statistics either way)."""
        if not (videos.size(0) == tokens.size(0) == reversed_tokens.size(0)):
            raise ValueError(f"videos, tokens and reversed_tokens must be matching triples: got {videos.size(0)}, "
                             f"{tokens.size(0)} and {reversed_tokens.size(0)}")
        config = self.video.config
        check_videos(videos, config.in_channels, config.image_size, config.max_seq_len)
        frames = self.video.frames(videos)                                 # (batch, T, dim), each frame once
        both = torch.cat([frames, frames.flip(1)])                         # (2 batch, T, dim)
        video_features = F.normalize(self.video_projection(self.video.attend(both).mean(dim=1)), dim=-1)
        text_features = self.encode_text(torch.cat([tokens, reversed_tokens]), normalize=True)
        return clip_loss(video_features, text_features, self.scale())

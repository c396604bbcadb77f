"""ImageBind-style binding of several modalities to one hub modality (Girdhar et al., 2023), in one file.

Every modality has its own encoder and a linear projection into one shared ``embed_dim``-dimensional space;
embeddings are L2-normalised.  Only pairs *with the hub* (the image) are ever trained, each with chapter 15's
symmetric InfoNCE loss (:func:`mmtutorial.models.clip.clip_loss`) and its own learned temperature:

    image  (B, 1, 8, 8)      --FashionCNN (encoders.vision)--> projection --> f   (B, embed_dim)
    text   (B, seq) word ids --embedding + LSTM (encoders.text)--> projection --> g   (B, embed_dim)
    audio  (B, samples)      --log-mel + CNN (encoders.audio)--> projection --> a   (B, embed_dim)

    L = sum over bound modalities m of  InfoNCE(f, e_m; s_m),       s_m = exp(t_m), t_m learned

With ``bound = ("text", "audio")`` the loss has an image-text term and an image-audio term and *no
audio-text term*: :func:`binding_pairs` lists the pairs and refuses a pair that does not contain the hub.
Audio and text nevertheless end up aligned, because both were pulled towards the same image embeddings:
ImageBind calls this *emergent* alignment.

The encoders are the package's own (the image tower is chapter 10's CNN, the audio tower chapter 12's
spectrogram CNN, the text tower chapter 9's LSTM); in the first two the last linear layer (their
"classifier", with ``num_classes = embed_dim``) is the projection into the shared space, as CLIP replaces a
classifier head by a projection.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_token_ids
from ..encoders.audio import AudioCNN, AudioCNNConfig
from ..encoders.text import LSTM
from ..encoders.vision import FashionCNN, FashionCNNConfig
from .clip import clip_loss

__all__ = ["MODALITIES", "TextEncoderConfig", "TextEncoder", "BindingConfig", "BindingModel", "binding_pairs",
           "binding_loss", "digit_image_config"]

MODALITIES = ("image", "text", "audio")
# The 8x8 digits as images in [0, 1] (pixel / 16): their mean and standard deviation over all 1,797 images.
DIGIT_PIXEL_MEAN, DIGIT_PIXEL_STD = 0.3049, 0.3769


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass
class TextEncoderConfig:
    vocab_size: int = 32        # word ids, padding included
    max_seq_len: int = 8        # longest text in words
    dim: int = 64               # word-embedding size and LSTM hidden size
    num_layers: int = 1         # stacked LSTM layers
    dropout: float = 0.0        # on the final state, before the projection
    bias: bool = True           # LSTM gate biases
    pad_id: int = 1             # right padding; the text's feature is the LSTM state at its last real word

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "dim", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TextEncoderConfig.{name} must be a positive int, got {value!r}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"TextEncoderConfig.pad_id must be in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_id}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TextEncoderConfig.dropout must be in [0, 1), got {self.dropout}")


def digit_image_config(embed_dim: int = 64) -> FashionCNNConfig:
    """Chapter 10's CNN for the 8x8 digits (pixels / 16, in [0, 1]): two conv blocks (8 -> 4 -> 2), a 128-wide
    hidden layer and ``embed_dim`` outputs, the projection into the shared space."""
    return FashionCNNConfig(in_channels=1, image_size=8, channels=(32, 64), hidden=128, num_classes=embed_dim,
                            dropout=0.1, mean=DIGIT_PIXEL_MEAN, std=DIGIT_PIXEL_STD)


@dataclass
class BindingConfig:
    embed_dim: int = 64                                              # size of the shared space
    image: FashionCNNConfig = field(default_factory=digit_image_config)   # image tower (num_classes = embed_dim)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)    # text tower
    audio: AudioCNNConfig = field(default_factory=lambda: AudioCNNConfig(num_classes=64))  # audio tower
    hub: str = "image"                        # the modality every other one is paired with in training
    bound: tuple[str, ...] = ("text", "audio")  # the modalities trained against the hub (never with each other)
    init_logit_scale: float = math.log(1 / 0.07)   # log 1/temperature at the start, one per bound modality
    max_logit_scale: float = 100.0                  # 1/temperature is clipped here, as in CLIP

    def __post_init__(self) -> None:
        for name, kind in (("image", FashionCNNConfig), ("text", TextEncoderConfig), ("audio", AudioCNNConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, kind(**value))
            elif not isinstance(value, kind):
                raise TypeError(f"BindingConfig.{name} must be a {kind.__name__} (or a dict), "
                                f"got {type(value).__name__}")
        if not isinstance(self.embed_dim, int) or isinstance(self.embed_dim, bool) or self.embed_dim < 1:
            raise ValueError(f"BindingConfig.embed_dim must be a positive int, got {self.embed_dim!r}")
        for name in ("image", "audio"):        # their last linear layer is the projection into the shared space
            outputs = getattr(self, name).num_classes
            if outputs != self.embed_dim:
                raise ValueError(f"BindingConfig.{name}.num_classes is the projection's size and must equal "
                                 f"embed_dim={self.embed_dim}, got {outputs}")
        self.bound = tuple(self.bound)
        binding_pairs(self.hub, self.bound)     # validates hub and bound
        if not self.max_logit_scale > 0 or not math.isfinite(self.init_logit_scale):
            raise ValueError(f"BindingConfig.max_logit_scale must be > 0 and init_logit_scale finite, got "
                             f"{self.max_logit_scale} and {self.init_logit_scale}")

    @classmethod
    def digits(cls, vocab_size: int, embed_dim: int = 64, max_seq_len: int = 8, pad_id: int = 1) -> "BindingConfig":
        """The chapter's model: 8x8 digit images, number words, spoken digits at 16 kHz (about 0.2 M parameters)."""
        return cls(embed_dim=embed_dim, image=digit_image_config(embed_dim),
                   text=TextEncoderConfig(vocab_size=vocab_size, max_seq_len=max_seq_len, dim=64, pad_id=pad_id),
                   audio=AudioCNNConfig(num_classes=embed_dim, dropout=0.1, freq_mask=6, time_mask=12))

    def to_dict(self) -> dict:
        return asdict(self)


def binding_pairs(hub: str = "image", bound=("text", "audio")) -> list[tuple[str, str]]:
    """The (hub, modality) pairs the loss trains: one per bound modality, every one of them with the hub."""
    if hub not in MODALITIES:
        raise ValueError(f"hub must be one of {MODALITIES}, got {hub!r}")
    bound = tuple(bound)
    if not bound or len(set(bound)) != len(bound) or any(m not in MODALITIES for m in bound):
        raise ValueError(f"bound must be distinct modalities from {MODALITIES}, got {bound}")
    if hub in bound:
        raise ValueError(f"the hub {hub!r} cannot be bound to itself; bound={bound}")
    return [(hub, modality) for modality in bound]


# --------------------------------------------------------------------------------------------------
# The text tower (the image and audio towers are the encoders' CNNs as they are)
# --------------------------------------------------------------------------------------------------
class TextEncoder(nn.Module):
    """Word ids (batch, seq), right-padded with ``pad_id`` -> embedding -> LSTM -> the state after the last real
    word -> linear projection (batch, embed_dim)."""

    def __init__(self, config: TextEncoderConfig, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.lstm = LSTM(config.dim, config.dim, num_layers=config.num_layers, bias=config.bias, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(config.dim, embed_dim)

    def lengths(self, tokens: Tensor) -> Tensor:
        """Number of words of each text (batch,): the positions before the first padding id."""
        is_word = tokens != self.config.pad_id                                # (batch, seq)
        return is_word.int().cumprod(dim=1).sum(dim=1)                       # words before the first pad

    def forward(self, tokens: Tensor) -> Tensor:
        check_token_ids(tokens, self.config.vocab_size, name="text tokens", max_len=self.config.max_seq_len)
        lengths = self.lengths(tokens)
        if tokens.device.type == "cpu" and bool((lengths == 0).any()):
            raise ValueError("every text needs at least one word before its padding; got an empty text "
                             f"(row {int((lengths == 0).nonzero()[0])})")
        states, _ = self.lstm(self.embedding(tokens))                        # (batch, seq, dim)
        last = states[torch.arange(len(tokens), device=tokens.device), (lengths - 1).clamp(min=0)]  # (batch, dim)
        return self.projection(self.dropout(last))                           # (batch, embed_dim)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
class BindingModel(nn.Module):
    """One encoder per modality, a shared space, one learned temperature per modality bound to the hub.

    ``encode(modality, inputs)`` embeds one modality (any batch size); ``forward(image=..., text=..., audio=...)``
    embeds *paired* rows (equal batch sizes) and returns ``{modality: unit-length (batch, embed_dim)}``;
    ``loss(embeddings)`` is the sum of the hub-pair InfoNCE losses present in ``embeddings``.
    """

    def __init__(self, config: BindingConfig | None = None) -> None:
        super().__init__()
        config = config or BindingConfig()
        if not isinstance(config, BindingConfig):
            raise TypeError(f"BindingModel wants a BindingConfig, got {type(config).__name__}")
        self.config = config
        self.encoders = nn.ModuleDict({"image": FashionCNN(config.image),
                                       "text": TextEncoder(config.text, config.embed_dim),
                                       "audio": AudioCNN(config.audio)})
        # One log(1 / temperature) per bound modality (ImageBind gives each modality its own).
        self.logit_scales = nn.ParameterDict({m: nn.Parameter(torch.tensor(float(config.init_logit_scale)))
                                              for m in config.bound})

    # -- embeddings ---------------------------------------------------------------------------------
    def encode(self, modality: str, inputs: Tensor, normalize: bool = True) -> Tensor:
        """Embed one modality: images (batch, 1, 8, 8) in [0, 1], word ids (batch, seq), or audio as waveforms
        (batch, samples) at ``config.audio.sample_rate`` or log-mel spectrograms (batch, n_mels, frames) from the
        audio tower's front end (computed once when training).  Returns (batch, embed_dim)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if not isinstance(inputs, Tensor):
            raise TypeError(f"{modality} inputs must be a torch.Tensor, got {type(inputs).__name__}")
        if modality == "audio":
            audio = self.encoders["audio"]
            if inputs.dim() == 3:
                features = audio.backbone(inputs)                            # log-mel (batch, n_mels, frames)
            elif inputs.dim() == 2:
                features = audio(inputs)                                     # waveform (batch, samples)
            else:
                raise ValueError("audio must be waveforms (batch, samples) or log-mel spectrograms (batch, "
                                 f"n_mels={self.config.audio.n_mels}, frames), got shape {tuple(inputs.shape)}")
        else:
            features = self.encoders[modality](inputs)                       # (batch, embed_dim)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, **inputs: Tensor) -> dict[str, Tensor]:
        """Unit-length embeddings of paired rows: ``model(image=x, audio=w)`` -> {"image": ..., "audio": ...}."""
        unknown = set(inputs) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected keyword arguments among {MODALITIES}")
        if not inputs:
            raise ValueError(f"give at least one modality as a keyword argument among {MODALITIES}")
        sizes = {m: (len(x) if isinstance(x, Tensor) else None) for m, x in inputs.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"paired inputs must have the same batch size (row i of each is one pair), got {sizes}")
        return {m: self.encode(m, x) for m, x in inputs.items()}

    def scale(self, modality: str) -> Tensor:
        """exp(t_m) = 1 / temperature of the pair (hub, ``modality``), never above ``max_logit_scale``."""
        if modality not in self.logit_scales:
            raise ValueError(f"{modality!r} is not bound to the hub; bound modalities: {tuple(self.logit_scales)}")
        return self.logit_scales[modality].exp().clamp(max=self.config.max_logit_scale)

    @torch.no_grad()
    def clamp_logit_scales_(self) -> None:
        """Keep every t_m in [0, log max_logit_scale] (open_clip clips the parameter after each step)."""
        for parameter in self.logit_scales.values():
            parameter.clamp_(0, math.log(self.config.max_logit_scale))

    # -- the loss ------------------------------------------------------------------------------------
    def loss(self, embeddings: dict[str, Tensor]) -> Tensor:
        """Sum of the InfoNCE losses of the (hub, m) pairs whose both sides are in ``embeddings``."""
        return binding_loss(embeddings, {m: self.scale(m) for m in self.logit_scales}, hub=self.config.hub)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def config_dict(self) -> dict:
        return self.config.to_dict()


def binding_loss(embeddings: dict[str, Tensor], logit_scales: dict[str, Tensor | float],
                 hub: str = "image") -> Tensor:
    """sum_m clip_loss(e_hub, e_m, s_m) over the bound modalities m present in ``embeddings``.

    Only pairs with the hub are scored: there is no term between two non-hub modalities (audio and text),
    whatever is passed.  Each term is chapter 15's ``clip_loss`` (equal to open_clip's ``ClipLoss``).
    """
    if not isinstance(embeddings, dict) or hub not in embeddings:
        got = sorted(embeddings) if isinstance(embeddings, dict) else type(embeddings).__name__
        raise ValueError(f"embeddings must be a dict holding the hub {hub!r} and at least one bound modality, "
                         f"got {got}")
    pairs = [(hub, m) for m in logit_scales if m in embeddings]
    if not pairs:
        raise ValueError(f"no bound modality in embeddings (keys {sorted(embeddings)}, bound {sorted(logit_scales)})")
    for _, modality in pairs:
        if embeddings[modality].shape != embeddings[hub].shape:
            raise ValueError(f"{hub} embeddings {tuple(embeddings[hub].shape)} and {modality} embeddings "
                             f"{tuple(embeddings[modality].shape)} must have the same shape: row i is a pair")
    return sum(clip_loss(embeddings[hub], embeddings[m], logit_scales[m]) for _, m in pairs)

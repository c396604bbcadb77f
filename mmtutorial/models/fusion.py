"""Multimodal classifiers built from the fusion layers of :mod:`mmtutorial.nn.fusion`.

- :class:`MultimodalClassifier`: one small encoder per modality, a fusion module chosen by name, an
  optional :class:`~mmtutorial.nn.fusion.ModalityDropout` between them, and a classifier head.  With a
  single modality it is the unimodal baseline of the same size.
- :class:`SentimentFusionModel`: the "multimodal sentiment analysis" model of popular tutorials, built
  correctly: token ids -> embedding -> LSTM (padding handled by packing), image -> a real CNN, the two
  feature vectors concatenated, then a classifier.

Inputs are lists (or dicts keyed by ``modality_names``) with ``None`` for a missing modality, as in the
fusion layers; :func:`multimodal_loss` and :func:`accuracy` adapt them to ``mmt.training.fit``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..checks import check_images, check_token_ids
from ..nn.conv import conv_stack
from ..nn.fusion import FUSION_MODULES, ConcatFusion, ModalityDropout

__all__ = ["FUSIONS", "MultimodalClassifierConfig", "MultimodalClassifier", "multimodal_loss", "accuracy",
           "SentimentFusionConfig", "SentimentFusionModel", "sentiment_loss"]

FUSIONS = tuple(FUSION_MODULES)                # "concat", "weighted", "late", "gated", "film", "cross_attention"


@dataclass
class MultimodalClassifierConfig:
    """A multimodal classifier: encoders, fusion, head."""
    input_shapes: tuple = ((8, 8), (10, 13))    # per modality (tokens, token_dim) or (dim,)
    modality_names: tuple = ("image", "audio")  # names, also the keys accepted in a dict input
    num_classes: int = 2                        # classes of the task
    fusion: str = "concat"                      # one of FUSIONS
    hidden_dim: int = 64                        # width of every encoder output and of the head
    num_heads: int = 4                          # attention heads (cross_attention only)
    num_tokens: int = 4                         # tokens each encoder emits for cross_attention
    film_target: int = 0                        # modality modulated by the others (film only)
    late_combine: str = "logits"                # average "logits" or "probs" (late only)
    modality_dropout: float = 0.0               # probability of dropping each modality per sample (training)
    dropout: float = 0.1                        # ordinary dropout in the encoders and the head

    def __post_init__(self) -> None:
        self.input_shapes = tuple(tuple(int(s) for s in shape) for shape in self.input_shapes)
        self.modality_names = tuple(self.modality_names)
        if not self.input_shapes or any(len(s) not in (1, 2) or min(s) < 1 for s in self.input_shapes):
            raise ValueError(f"input_shapes must be (tokens, dim) or (dim,) per modality, got {self.input_shapes}")
        count = len(self.input_shapes)
        if len(self.modality_names) != count or len(set(self.modality_names)) != count:
            raise ValueError(f"need one distinct name per modality: {self.modality_names} for "
                             f"{len(self.input_shapes)} input shapes")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.fusion in ("film", "cross_attention") and len(self.input_shapes) < 2:
            raise ValueError(f"{self.fusion} fusion needs at least two modalities")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if self.num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {self.num_tokens}")
        if self.hidden_dim < 1 or self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be positive and divisible by num_heads "
                             f"({self.num_heads})")
        if not 0.0 <= self.modality_dropout < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"modality_dropout and dropout must be in [0, 1), got {self.modality_dropout} "
                             f"and {self.dropout}")


class _MLP(nn.Sequential):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class TokenEncoder(nn.Module):
    """Encodes one modality as ``num_tokens`` tokens (batch, tokens, hidden): an MLP on the whole input
    whose output is cut into tokens, so every token can summarise all of the input (a row of an 8×8
    digit on its own says little about which digit it is)."""

    def __init__(self, in_dim: int, num_tokens: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.num_tokens, self.hidden = num_tokens, hidden
        self.mlp = _MLP(in_dim, hidden, num_tokens * hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.flatten(1)).view(x.shape[0], self.num_tokens, self.hidden)   # (batch, tokens, hidden)


class MultimodalClassifier(nn.Module):
    """Per-modality encoders -> [modality dropout] -> fusion -> head.

    Every encoder is an MLP on the flattened input.  Vector fusions (concat, weighted, gated, film,
    late) get one vector per modality; cross-attention gets ``num_tokens`` tokens per modality (the
    encoder's output cut into pieces).  Late fusion has no shared head: its per-modality linear classifiers
    are the heads, and their logits are averaged.
    """

    def __init__(self, config: MultimodalClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MultimodalClassifierConfig()
        hidden = config.hidden_dim
        names = config.modality_names
        if config.fusion == "cross_attention":
            self.encoders = nn.ModuleDict({
                name: TokenEncoder(math.prod(shape), config.num_tokens, hidden, config.dropout)
                for name, shape in zip(names, config.input_shapes)})
        else:
            self.encoders = nn.ModuleDict({name: _MLP(math.prod(shape), hidden, hidden, config.dropout)
                                           for name, shape in zip(names, config.input_shapes)})
        dims = {name: hidden for name in names}
        self.modality_dropout = (ModalityDropout(config.modality_dropout, len(names))
                                 if config.modality_dropout > 0 else None)
        # The arguments each fusion takes beyond the modalities' widths.
        extra = {"late": dict(num_classes=config.num_classes, combine=config.late_combine),
                 "gated": dict(output_dim=hidden), "film": dict(target=config.film_target),
                 "cross_attention": dict(embed_dim=hidden, num_heads=config.num_heads)}
        self.fusion = FUSION_MODULES[config.fusion](dims, **extra.get(config.fusion, {}))
        # Encoders end in a Linear; the ReLU in front of the head makes the fused vector -> logits map
        # non-linear, which matters: a linear map of a concatenation is additive in the modalities.
        self.head = None if config.fusion == "late" else nn.Sequential(
            nn.ReLU(), _MLP(self.fusion.output_dim, hidden, config.num_classes, config.dropout))

    def _inputs(self, inputs) -> list[Tensor | None]:
        names, shapes = self.config.modality_names, self.config.input_shapes
        if isinstance(inputs, Tensor):
            raise TypeError("pass a list (or dict) with one tensor per modality, e.g. [image, audio]")
        if isinstance(inputs, Mapping):
            unknown = set(inputs) - set(names)
            if unknown:
                raise ValueError(f"unknown modalities {sorted(unknown)}; this model has {list(names)}")
            inputs = [inputs.get(name) for name in names]
        inputs = list(inputs)
        if len(inputs) != len(names):
            raise ValueError(f"expected {len(names)} modalities {list(names)}, got {len(inputs)} inputs")
        out = []
        for name, shape, x in zip(names, shapes, inputs):
            if x is None:
                out.append(None)
                continue
            if not isinstance(x, Tensor) or not x.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got "
                                f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
            if tuple(x.shape[1:]) == shape:
                pass
            elif x.dim() == 2 and x.shape[1] == math.prod(shape):
                x = x.view(x.shape[0], *shape)                       # flat input of the right size
            else:
                raise ValueError(f"{name} must have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
            out.append(x)
        return out

    def encode(self, inputs, present: Tensor | None = None) -> tuple[list[Tensor | None], Tensor | None]:
        """Each present modality's encoding (batch, hidden) or (batch, tokens, hidden), after modality
        dropout in training mode; returns (features, present mask or None)."""
        features = []
        for name, x in zip(self.config.modality_names, self._inputs(inputs)):
            if x is None:
                features.append(None)
            else:
                features.append(self.encoders[name](x.flatten(1)))       # (batch, hidden) or (batch, T, hidden)
        if self.modality_dropout is not None and self.training:
            features, present = self.modality_dropout(features, present)
        return features, present

    def forward(self, inputs, present: Tensor | None = None) -> Tensor:
        """Logits (batch, num_classes) from a list/dict of per-modality inputs (None = missing)."""
        features, present = self.encode(inputs, present)
        fused = self.fusion(features, present)                       # (batch, fusion.output_dim)
        return fused if self.head is None else self.head(fused)      # (batch, num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)


def multimodal_loss(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
    """``loss_fn`` for ``mmt.training.fit`` on batches (modality_1, ..., modality_M, labels)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"batches must be (modality_1, ..., labels), got {type(batch).__name__}")
    *inputs, labels = batch
    return F.cross_entropy(model(list(inputs)), labels)


@torch.no_grad()
def accuracy(model: nn.Module, inputs: Sequence[Tensor | None], labels: Tensor, missing: Sequence[int] = (),
             batch_size: int = 2048) -> float:
    """Accuracy of ``model`` in eval mode with the modalities at the indices in ``missing`` removed."""
    inputs = [None if i in missing else x for i, x in enumerate(inputs)]
    if all(x is None for x in inputs):
        raise ValueError("every modality is missing")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(labels), batch_size):
        chunk = [None if x is None else x[start:start + batch_size].to(device) for x in inputs]
        logits = model(chunk)                                         # (batch, classes)
        correct += int((logits.argmax(dim=-1).cpu() == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(labels)


# --------------------------------------------------------------------------------------------------
# The multimodal sentiment model, built correctly
# --------------------------------------------------------------------------------------------------
@dataclass
class SentimentFusionConfig:
    """Text (embedding + LSTM) and image (CNN) branches, concatenated, then a classifier."""
    vocab_size: int = 64                          # number of word ids (0 = padding)
    embed_dim: int = 16                           # word embedding size
    lstm_hidden: int = 32                         # LSTM state size = text feature size
    image_size: int = 16                          # images are (channels, image_size, image_size)
    image_channels: int = 1                       # 1 grey, 3 colour
    cnn_channels: tuple = (8, 16)                 # channels of the two conv blocks (3x3 conv, ReLU, 2x2 max-pool)
    image_feature_dim: int = 32                   # CNN output size after its linear layer
    hidden_dim: int = 32                          # classifier hidden width
    num_classes: int = 2                          # sentiment classes
    modalities: tuple = ("text", "image")         # branches in use: both, or one for a unimodal baseline
    dropout: float = 0.1                          # dropout before the classifier
    padding_idx: int = 0                          # word id used for padding

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.cnn_channels = tuple(self.cnn_channels)
        if not self.modalities or not set(self.modalities) <= {"text", "image"} or \
                len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be a non-empty subset of ('text', 'image'), got {self.modalities}")
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two 2x2 poolings), got {self.image_size}")
        if len(self.cnn_channels) != 2:
            raise ValueError(f"cnn_channels must have two entries, got {self.cnn_channels}")
        if not 0 <= self.padding_idx < self.vocab_size:
            raise ValueError(f"padding_idx {self.padding_idx} must be a valid id below vocab_size {self.vocab_size}")


class SentimentFusionModel(nn.Module):
    """Embedding + LSTM text branch, CNN image branch, concatenation, MLP classifier.

    What tutorials get wrong and this model does: texts are tokenised to ids and padded, and the LSTM
    reads each review only up to its length (``pack_padded_sequence``), so padding never changes the
    result; the LSTM's final hidden state (not its output tuple) is the text feature; the image branch
    is a real CNN whose flattened size is computed from ``image_size`` (an image of another size is
    rejected, instead of failing deep inside a Linear layer); labels are part of every batch.
    """

    def __init__(self, config: SentimentFusionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SentimentFusionConfig()
        dims = {}
        if "text" in config.modalities:
            self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.padding_idx)
            self.lstm = nn.LSTM(config.embed_dim, config.lstm_hidden, batch_first=True)
            dims["text"] = config.lstm_hidden
        if "image" in config.modalities:
            side = config.image_size // 4                              # two 2x2 poolings
            # Two conv blocks (3x3 conv with bias, ReLU, 2x2 max-pool: no BatchNorm in this small model),
            # then a linear layer whose input size follows from image_size.
            self.cnn = nn.Sequential(
                conv_stack(config.image_channels, config.cnn_channels, batch_norm=False),
                nn.Flatten(), nn.Linear(config.cnn_channels[-1] * side * side, config.image_feature_dim), nn.ReLU())
            dims["image"] = config.image_feature_dim
        self.fusion = ConcatFusion(dims)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout),
                                        nn.Linear(self.fusion.output_dim, config.hidden_dim), nn.ReLU(),
                                        nn.Linear(config.hidden_dim, config.num_classes))

    def encode_text(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(batch, seq) ids and (batch,) lengths -> the LSTM's last hidden state (batch, lstm_hidden)."""
        check_token_ids(tokens, self.config.vocab_size, name="tokens")
        if not isinstance(lengths, Tensor) or lengths.shape != (tokens.shape[0],):
            raise ValueError(f"lengths must be a tensor of shape ({tokens.shape[0]},), got "
                             f"{tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__}")
        lengths = lengths.cpu()                                         # pack_padded_sequence wants them there
        if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > tokens.shape[1]):
            raise ValueError(f"lengths must be in [1, {tokens.shape[1]}], got min {int(lengths.min())} "
                             f"and max {int(lengths.max())}")
        embedded = self.embedding(tokens)                               # (batch, seq, embed_dim)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)                              # hidden: (1, batch, lstm_hidden)
        return hidden[-1]                                               # (batch, lstm_hidden)

    def encode_image(self, images: Tensor) -> Tensor:
        """(batch, channels, size, size) -> CNN features (batch, image_feature_dim)."""
        check_images(images, channels=self.config.image_channels, size=self.config.image_size)
        return self.cnn(images)

    def forward(self, tokens: Tensor | None, lengths: Tensor | None, images: Tensor | None) -> Tensor:
        """Logits (batch, num_classes).  A branch the config does not use may be given as None."""
        features = []
        if "text" in self.config.modalities:
            if tokens is None or lengths is None:
                raise ValueError("this model reads text: pass tokens and lengths")
            features.append(self.encode_text(tokens, lengths))
        if "image" in self.config.modalities:
            if images is None:
                raise ValueError("this model reads images: pass images")
            features.append(self.encode_image(images))
        if len({f.shape[0] for f in features}) > 1:
            raise ValueError(f"text and images must have the same batch size, got {[f.shape[0] for f in features]}")
        return self.classifier(self.fusion(features))                  # (batch, num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)


def sentiment_loss(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
    """``loss_fn`` for ``mmt.training.fit`` on batches (tokens, lengths, images, labels)."""
    tokens, lengths, images, labels = batch
    return F.cross_entropy(model(tokens, lengths, images), labels)

"""A small vision-language model in the style of LLaVA (Liu et al., NeurIPS 2023), in one readable file.

A frozen vision encoder turns an image into tokens; a projector maps each of them into the language
model's embedding space; the projected image tokens are placed *before* the text, and a causal language
model (chapter 7's GPT: token + position embeddings, pre-LN causal blocks, tied LM head) reads them as if
they were words:

    v_1..v_N = Encoder(image)                    (N, d_v)  the ViT's final token states (class + patches)
    h_i      = Projector(v_i)                    (N, d)    "linear": W v + b;  "mlp": W_2 GELU(W_1 v + b_1) + b_2
    x        = [h_1..h_N ; E[w_1]..E[w_T]] + P   (N + T, d)
    logits_t = GPT-blocks(x)_{N + t} E^T         next-token distribution after text token t

Training is the usual next-token cross-entropy, counted only where a target is not ``IGNORE_INDEX``.
:func:`conversation_sequences` builds the text part: ``<bos> prompt response <eos> prompt response <eos> ...``
(LLaVA's multi-turn format), with targets only on the responses and the ``<eos>`` that ends each (stage 2:
the answers; stage 1: whole captions, the prompts being empty); :func:`instruction_sequences` is one turn.

A *blind* pass (``blind=True``) replaces the projected image tokens by zeros: the positions are the same,
only the picture is gone, so a model trained that way learns exactly what the questions alone predict
(the answer priors).  Zero image embeddings and the blind pass are the same computation (a unit test).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..checks import check_token_ids, describe
from ..data.scenes import Vocabulary
from ..nn import KVCache
from .gpt import GPT, IGNORE_INDEX, GPTConfig, sample_next_token
from ..nn.conv import conv_stack
from ..nn.positional import sincos_position_embedding_2d
from .vit import ViT

__all__ = ["PROJECTORS", "GridCNNConfig", "GridCNN", "VLMConfig", "Projector", "VLM", "conversation_sequences", "instruction_sequences",
           "IGNORE_INDEX"]

PROJECTORS = ("linear", "mlp")


@dataclass
class GridCNNConfig:
    image_size: int = 32                       # square input images
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)   # one conv block each (3x3 conv, BatchNorm, ReLU, 2x2 max-pool)
    dim: int = 64                              # width of every output token
    position_code: str = "sincos"              # "sincos": each cell token carries its (row, column); "none"

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if self.position_code not in ("sincos", "none"):
            raise ValueError(f"GridCNNConfig.position_code must be 'sincos' or 'none', got {self.position_code!r}")
        if self.position_code == "sincos" and self.dim % 4:
            raise ValueError(f"GridCNNConfig: a 2-D sin-cos position code needs dim divisible by 4, got {self.dim}")
        for name in ("image_size", "in_channels", "dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GridCNNConfig.{name} must be a positive int, got {value!r}")
        if not self.channels or self.image_size % 2 ** len(self.channels):
            raise ValueError(f"GridCNNConfig: image_size={self.image_size} must be divisible by 2**{len(self.channels)} "
                             f"(one halving per block of channels={self.channels})")

    @property
    def grid(self) -> int:
        """Cells per side of the output grid."""
        return self.image_size // 2 ** len(self.channels)

    @property
    def num_tokens(self) -> int:
        """A summary token and one token per grid cell (17 for 32 px and three blocks, as the 8 px ViT)."""
        return 1 + self.grid ** 2


class GridCNN(nn.Module):
    """A small CNN vision encoder that keeps *where* things are: chapter 10's conv blocks halve the image
    three times, and each cell of the final (grid x grid) map becomes one token; a summary token (a linear
    map of the mean over cells) comes first, as a ViT's class token does.  ``forward_tokens`` has the ViT's
    contract, so the VLM takes either.

    Convolutions are translation-equivariant: a cell's features say *what* is there, not *where*.  A ViT adds
    position embeddings to its patch tokens for that reason; here each cell token gets MAE's fixed 2-D
    sine-cosine code of its (row, column) (``position_code="sincos"``, the summary token gets zeros), so that
    "is the red circle on the left?" can be read from the token the question points at."""

    def __init__(self, config: GridCNNConfig) -> None:
        super().__init__()
        if not isinstance(config, GridCNNConfig):
            raise TypeError(f"GridCNN wants a GridCNNConfig, got {type(config).__name__}")
        self.config = config
        self.features = conv_stack(config.in_channels, config.channels)
        self.cell = nn.Linear(config.channels[-1], config.dim)                     # per-cell token
        self.summary = nn.Linear(config.channels[-1], config.dim)                  # whole-image token
        self.norm = nn.LayerNorm(config.dim)
        code = (sincos_position_embedding_2d(config.grid, config.dim) if config.position_code == "sincos"
                else torch.zeros(config.num_tokens, config.dim))
        self.register_buffer("position_code", code, persistent=False)               # (1 + grid**2, dim)

    def forward_tokens(self, images: Tensor) -> Tensor:
        """images (batch, C, H, W) -> tokens (batch, 1 + grid**2, dim): summary, then cells row by row."""
        c = self.config
        if not isinstance(images, Tensor) or tuple(images.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"images must be (batch, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {describe(images)}")
        cells = self.features(images).flatten(2).transpose(1, 2)                  # (batch, grid**2, channels)
        tokens = torch.cat([self.summary(cells.mean(dim=1, keepdim=True)), self.cell(cells)], dim=1)
        return self.norm(tokens) + self.position_code                             # (batch, 1 + grid**2, dim)


@dataclass
class VLMConfig:
    vocab_size: int = 64          # text token ids (the scenes' vocabulary has 77)
    max_seq_len: int = 48         # image tokens + text tokens that have a position embedding
    dim: int = 64                 # d: the language model's width (projected image tokens have it too)
    num_layers: int = 2           # language-model blocks
    num_heads: int = 4            # attention heads per block
    mlp_ratio: float = 4.0        # each block's MLP is mlp_ratio * dim wide
    dropout: float = 0.0          # dropout in the language model
    bias: bool = True             # biases in linear layers and LayerNorms
    vision_dim: int = 64          # d_v: width of the vision encoder's tokens (the projector's input)
    num_image_tokens: int = 17    # N: image tokens placed before the text (class token + 4 x 4 patches)
    projector: str = "mlp"        # "linear" (LLaVA) or "mlp" (2 layers with GELU, LLaVA-1.5)

    def __post_init__(self) -> None:
        for name in ("vision_dim", "num_image_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VLMConfig.{name} must be a positive int, got {value!r}")
        if self.projector not in PROJECTORS:
            raise ValueError(f"VLMConfig.projector must be one of {PROJECTORS}, got {self.projector!r}")
        if self.max_seq_len <= self.num_image_tokens:
            raise ValueError(f"VLMConfig.max_seq_len={self.max_seq_len} leaves no room for text after "
                             f"num_image_tokens={self.num_image_tokens} image tokens")
        self.lm_config()                  # the shared fields are checked by GPTConfig

    def lm_config(self) -> GPTConfig:
        """The language model: chapter 7's GPT with these shared fields."""
        return GPTConfig(vocab_size=self.vocab_size, max_seq_len=self.max_seq_len, dim=self.dim,
                         num_layers=self.num_layers, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                         dropout=self.dropout, bias=self.bias)

    @property
    def max_text_len(self) -> int:
        """Text tokens that fit after the image tokens."""
        return self.max_seq_len - self.num_image_tokens

    def to_dict(self) -> dict:
        return asdict(self)


class Projector(nn.Module):
    """Vision tokens (..., d_v) -> language-model embeddings (..., d): one linear map, or two with a GELU."""

    def __init__(self, vision_dim: int, dim: int, kind: str = "mlp") -> None:
        super().__init__()
        if kind not in PROJECTORS:
            raise ValueError(f"projector kind must be one of {PROJECTORS}, got {kind!r}")
        self.kind = kind
        if kind == "linear":
            self.net = nn.Linear(vision_dim, dim)
        else:
            self.net = nn.Sequential(nn.Linear(vision_dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)                                   # (..., dim)


class VLM(nn.Module):
    """Vision encoder (optional: precomputed features can be passed instead) -> projector -> GPT."""

    def __init__(self, config: VLMConfig, vision_encoder: ViT | GridCNN | None = None, freeze_vision: bool = True) -> None:
        super().__init__()
        if not isinstance(config, VLMConfig):
            raise TypeError(f"VLM wants a VLMConfig, got {type(config).__name__}")
        if vision_encoder is not None:
            if not isinstance(vision_encoder, (ViT, GridCNN)):
                raise TypeError(f"vision_encoder must be a mmtutorial ViT, GridCNN or None, got {type(vision_encoder).__name__}")
            if vision_encoder.config.dim != config.vision_dim or vision_encoder.config.num_tokens != config.num_image_tokens:
                raise ValueError(f"the vision encoder gives {vision_encoder.config.num_tokens} tokens of width "
                                 f"{vision_encoder.config.dim}; the config expects {config.num_image_tokens} of width "
                                 f"{config.vision_dim}")
        self.config = config
        self.vision = vision_encoder
        self.freeze_vision = freeze_vision
        if vision_encoder is not None and freeze_vision:
            vision_encoder.requires_grad_(False)
            vision_encoder.eval()                                   # e.g. BatchNorm must use its running statistics
        self.projector = Projector(config.vision_dim, config.dim, config.projector)
        self.lm = GPT(config.lm_config())

    def train(self, mode: bool = True) -> "VLM":
        super().train(mode)
        if self.vision is not None and self.freeze_vision:
            self.vision.eval()                                      # a frozen encoder never changes behaviour
        return self

    # -- the image side ------------------------------------------------------------------------------

    def encode_images(self, images: Tensor) -> Tensor:
        """Images (batch, C, H, W) -> the encoder's final token states (batch, N, d_v)."""
        if self.vision is None:
            raise ValueError("this VLM has no vision encoder: pass image_features (batch, N, d_v) instead of images")
        if self.freeze_vision:
            with torch.no_grad():
                return self.vision.forward_tokens(images)           # (batch, N, d_v)
        return self.vision.forward_tokens(images)                   # (batch, N, d_v)

    def _check_features(self, features: Tensor, batch: int) -> Tensor:
        expected = (batch, self.config.num_image_tokens, self.config.vision_dim)
        if not isinstance(features, Tensor) or not features.is_floating_point():
            raise TypeError(f"image_features must be a float tensor {expected}, got {describe(features)}")
        if tuple(features.shape) != expected:
            raise ValueError(f"image_features must have shape (batch, num_image_tokens, vision_dim) = {expected}, "
                             f"got {tuple(features.shape)}")
        return features

    def image_embeddings(self, batch: int, images: Tensor | None = None, image_features: Tensor | None = None,
                         blind: bool = False) -> Tensor:
        """The N projected image tokens (batch, N, d); zeros for a blind pass."""
        config = self.config
        if blind:
            weight = self.lm.token_embedding.weight
            return weight.new_zeros(batch, config.num_image_tokens, config.dim)     # (batch, N, d)
        if (images is None) == (image_features is None):
            raise ValueError("pass exactly one of images or image_features (or blind=True for the text-only path)")
        if images is not None:
            if images.dim() == 4 and images.size(0) != batch:
                raise ValueError(f"{images.size(0)} images for {batch} token sequences")
            image_features = self.encode_images(images)
        return self.projector(self._check_features(image_features, batch))          # (batch, N, d)

    # -- forward ---------------------------------------------------------------------------------------

    def forward(self, tokens: Tensor, images: Tensor | None = None, image_features: Tensor | None = None,
                targets: Tensor | None = None, blind: bool = False,
                kv_caches: list[KVCache] | None = None) -> tuple[Tensor, Tensor | None]:
        """tokens (batch, T) -> (logits (batch, T, vocab) at the text positions, loss or None).

        ``targets`` (batch, T): the next token after each text token, ``IGNORE_INDEX`` where none counts.
        With ``kv_caches`` already holding the image tokens and earlier text, ``tokens`` are only the new ones
        and no image argument is needed.
        """
        config, lm = self.config, self.lm
        start = 0 if kv_caches is None else len(kv_caches[0])
        check_token_ids(tokens, config.vocab_size, name="tokens", max_len=config.max_seq_len,
                        start=start if start else config.num_image_tokens, allow_empty=start > 0)
        text = lm.token_embedding(tokens)                                          # (batch, T, d)
        if start == 0:
            prefix = self.image_embeddings(tokens.size(0), images, image_features, blind)  # (batch, N, d)
            x = torch.cat([prefix.to(text.dtype), text], dim=1)                    # (batch, N + T, d)
        else:
            x = text                                                               # (batch, T, d)
        x = lm.dropout(lm.position_embedding(x, start=start))
        x = lm.transformer(x, kv_caches=kv_caches)                                 # (batch, ., d)
        if start == 0:
            x = x[:, config.num_image_tokens:]                                     # the text positions (batch, T, d)
        logits = lm.lm_head(x)                                                     # (batch, T, vocab)
        loss = None
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.shape != tokens.shape:
                raise ValueError(f"targets must be a tensor of the shape of tokens {tuple(tokens.shape)}, got "
                                 f"{describe(targets)}")
            if targets.is_floating_point() or targets.dtype == torch.bool:
                raise TypeError(f"targets must hold integer token ids (-100 = ignored), got dtype {targets.dtype}")
            if targets.device.type == "cpu" and not bool((targets != IGNORE_INDEX).any()):
                raise ValueError("no target counts: every target is IGNORE_INDEX, so the mean loss is 0 / 0")
            flat = logits.flatten(0, 1)                                            # (batch * T, vocab)
            if flat.dtype in (torch.float16, torch.bfloat16):
                flat = flat.float()
            loss = nn.functional.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    def new_kv_caches(self) -> list[KVCache]:
        return self.lm.new_kv_caches()

    @torch.no_grad()
    def generate(self, tokens: Tensor, max_new_tokens: int, images: Tensor | None = None,
                 image_features: Tensor | None = None, blind: bool = False, temperature: float = 0.0,
                 use_cache: bool = True, stop_token: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Append up to ``max_new_tokens`` tokens to the prompt ``tokens`` (batch, T); greedy by default.

        With ``use_cache`` the image tokens and the prompt are processed once and each later step runs one
        new token against the cached keys/values; without it every step reruns the whole sequence.  Both
        give the same tokens (a unit test).  Generation stops early once every row has produced ``stop_token``.
        """
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        check_token_ids(tokens, self.config.vocab_size, name="tokens")
        if tokens.size(1) + max_new_tokens > self.config.max_text_len:
            raise ValueError(f"prompt of {tokens.size(1)} tokens + {max_new_tokens} new ones exceeds the "
                             f"{self.config.max_text_len} text positions after the image tokens")
        was_training = self.training
        self.eval()
        image = dict(images=images, image_features=image_features, blind=blind)
        if not blind and images is not None:                       # encode once, reuse on every step
            image = dict(images=None, image_features=self.encode_images(images), blind=False)
        caches = self.new_kv_caches() if use_cache else None
        done = torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
        for step in range(max_new_tokens):
            if use_cache and step > 0:
                logits, _ = self(tokens[:, -1:], kv_caches=caches)                  # (batch, 1, vocab)
            else:
                logits, _ = self(tokens, kv_caches=caches, **image)                 # (batch, T, vocab)
            next_token = sample_next_token(logits[:, -1, :], temperature, generator=generator)  # (batch, 1)
            tokens = torch.cat([tokens, next_token], dim=1)
            if stop_token is not None:
                done |= next_token[:, 0] == stop_token
                if bool(done.all()):
                    break
        self.train(was_training)
        return tokens


def conversation_sequences(vocab: Vocabulary, conversations: Sequence[Sequence[tuple[str, str]]],
                           max_len: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Multi-turn training sequences ``<bos> p_1 r_1 <eos> p_2 r_2 <eos> ... <pad>`` (n, L, padded to the
    longest), their next-token targets (n, L) that count only on the responses r_k and the ``<eos>`` that ends
    each (``IGNORE_INDEX`` on prompts and padding), and the position whose target is the *first* response's
    first token (n,).

    Position t predicts token t + 1, so the target of position t counts exactly when token t + 1 belongs to a
    response or closes one.  Several turns about one image share its image tokens (LLaVA's multi-turn
    format), so a sequence trains on many answers for the price of one image.
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a scenes.Vocabulary, got {type(vocab).__name__}")
    conversations = [list(turns) for turns in conversations]
    if not conversations or any(not turns for turns in conversations):
        raise ValueError("need at least one conversation, each with at least one (prompt, response) turn")
    rows, starts = [], []
    for turns in conversations:
        sequence, counted, first = [vocab.bos_id], [], None
        for turn in turns:
            if not (isinstance(turn, tuple) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise TypeError(f"each turn must be a (prompt, response) pair of strings, got {turn!r}")
            prompt_ids, response_ids = vocab.encode(turn[0]), vocab.encode(turn[1])
            if not response_ids:
                raise ValueError(f"empty response for prompt {turn[0]!r}: nothing to train on")
            sequence += prompt_ids
            first = len(sequence) - 1 if first is None else first   # predicts the first response token
            counted += range(len(sequence), len(sequence) + len(response_ids) + 1)
            sequence += [*response_ids, vocab.eos_id]
        rows.append((sequence, counted))
        starts.append(first)
    length = max(len(sequence) for sequence, _ in rows) - 1   # the final <eos> is a target, never an input
    if max_len is not None and length > max_len:
        raise ValueError(f"a sequence needs {length} input positions, more than max_len={max_len}")
    tokens = torch.full((len(rows), length), vocab.pad_id, dtype=torch.long)          # (n, L)
    targets = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)         # (n, L)
    for row, (sequence, counted) in enumerate(rows):
        tokens[row, :len(sequence) - 1] = torch.as_tensor(sequence[:-1])
        where = torch.as_tensor(counted) - 1                                           # positions predicting them
        targets[row, where] = torch.as_tensor(sequence)[where + 1]
    return tokens, targets, torch.as_tensor(starts, dtype=torch.long)


def instruction_sequences(vocab: Vocabulary, prompts: Sequence[str], responses: Sequence[str],
                          max_len: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One turn per row: ``<bos> prompt response <eos> <pad>...`` (n, L), targets only on the response and its
    ``<eos>``, and the position whose target is the response's first token (n,).

    An empty prompt (stage 1, captions) trains on the whole caption; a one-word response (stage 2, answers)
    gives two counted targets: the word and ``<eos>``.
    """
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need as many prompts as responses, at least one: got {len(prompts)} and {len(responses)}")
    return conversation_sequences(vocab, [[(p, r)] for p, r in zip(prompts, responses)], max_len)

"""CLIP: contrastive language-image pretraining (Radford et al., 2021), in one readable file.

Two towers map an image and a text into the same ``embed_dim``-dimensional space:

    image  (B, C, H, W) --ViT--> class-token feature --proj--> f_i  (B, embed_dim)
    text   (B, T) ids  --causal Transformer--> feature at the end-of-text token --proj--> g_j  (B, embed_dim)

Both are L2-normalised, and the B x B matrix of cosine similarities, multiplied by a learned
``logit_scale`` = 1 / temperature, scores every image against every text of the batch:

    logits[i, j] = s * <f_i / |f_i|, g_j / |g_j|>,        s = exp(t),  t learned, init log(1 / 0.07)

Training maximises the matching pairs (the diagonal) against all the others, in both directions: the
symmetric InfoNCE loss ``clip_loss`` is the mean of the cross-entropy over rows (image -> text) and over
columns (text -> image).  Zero-shot classification then needs no classifier: embed one prompt per class
("a photo of a {class}") and pick the class whose text embedding is closest to the image's.

The image tower is the package's one ViT (``mmtutorial.models.vit.ViT``) configured as open_clip's
``VisionTransformer`` (``clip_image_config``: no patch bias, ``ln_pre``, class-token pooling after the final
LayerNorm ``ln_post``, no head), followed by a linear projection.  The text tower's blocks are
``mmtutorial.nn.TransformerBlock`` (pre-LN, attention through ``F.scaled_dot_product_attention``).  The
layout follows ``open_clip``'s ``model.py``/``transformer.py`` closely enough that its state dicts load
through an explicit key map (``mmtutorial.zoo.openclip``).  ``CLIPConfig.vit_b_32()`` has open_clip's
ViT-B-32 architecture: 151,277,313 parameters.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_token_ids
from ..nn import TransformerBlock, TransformerConfig
from .vit import ViT, ViTConfig

__all__ = ["clip_image_config", "CLIPTextConfig", "CLIPConfig", "CLIPImageTower", "CLIPTextTower", "CLIP",
           "clip_logits", "clip_loss", "zero_shot_classifier"]


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
def clip_image_config(image_size: int = 224, patch_size: int = 32, in_channels: int = 3, dim: int = 768,
                      num_layers: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                      activation: str = "gelu", layer_norm_eps: float = 1e-5) -> ViTConfig:
    """The ``ViTConfig`` of a CLIP image tower as open_clip builds it (defaults: ViT-B/32's tower).

    Against chapter 11's classifier: no bias in the patch convolution (open_clip's ``conv1``), a LayerNorm
    before the blocks (``ln_pre``), torch's LayerNorm epsilon 1e-5, no classification head (the projection
    into the shared space replaces it) and open_clip's initialisation; the class token's final state,
    after the final LayerNorm (``ln_post``), is the image's feature.  ``activation="quick_gelu"`` for
    OpenAI's original weights.
    """
    return ViTConfig(image_size=image_size, patch_size=patch_size, in_channels=in_channels, num_classes=0,
                     dim=dim, num_layers=num_layers, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=0.0,
                     bias=True, class_token=True, pool="cls", activation=activation, patch_bias=False,
                     norm_pre=True, layer_norm_eps=layer_norm_eps, init="clip")


@dataclass
class CLIPTextConfig:
    vocab_size: int = 49408      # token ids (OpenAI's BPE: 49,152 merges + 256 bytes; EOT = 49407, the largest)
    max_seq_len: int = 77        # maximum number of tokens, each with a learned position embedding (open_clip's
                                 # context_length)
    dim: int = 512               # token width of the text Transformer (open_clip's width)
    num_layers: int = 12         # Transformer blocks (causal self-attention)
    num_heads: int = 8           # attention heads
    mlp_ratio: float = 4.0       # MLP hidden size = mlp_ratio * dim
    activation: str = "gelu"     # the MLP's nonlinearity ("quick_gelu" for OpenAI's original weights)
    layer_norm_eps: float = 1e-5  # every LayerNorm of the tower (open_clip: torch's default)
    eot_token_id: int | None = None  # None: pool at the largest id of each text (open_clip's "argmax", right
                                     # when EOT is the largest id); else at the first occurrence of this id

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CLIPTextConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"CLIPTextConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.eot_token_id is not None and not 0 <= self.eot_token_id < self.vocab_size:
            raise ValueError(f"CLIPTextConfig.eot_token_id must be in [0, vocab_size={self.vocab_size}), "
                             f"got {self.eot_token_id}")
        try:  # activation and mlp_ratio are checked where the blocks are configured
            self.transformer_config()
        except ValueError as error:
            raise ValueError(f"CLIPTextConfig: {error}") from None

    def transformer_config(self) -> TransformerConfig:
        """Pre-LN blocks with causal self-attention, as open_clip's ``ResidualAttentionBlock``."""
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=self.mlp_ratio, causal=True, norm="pre", activation=self.activation,
                                 layer_norm_eps=self.layer_norm_eps)


@dataclass
class CLIPConfig:
    embed_dim: int = 512                                                  # size of the shared embedding space
    vision: ViTConfig = field(default_factory=clip_image_config)          # the image tower (a ViT, no head)
    text: CLIPTextConfig = field(default_factory=CLIPTextConfig)          # the text tower
    init_logit_scale: float = math.log(1 / 0.07)  # log of the initial 1 / temperature (CLIP: tau = 0.07)
    max_logit_scale: float = 100.0   # 1 / temperature is clipped here (CLIP: "to prevent training instability")

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):  # a dict overrides the fields of the default CLIP image tower
            self.vision = ViTConfig(**{**asdict(clip_image_config()), **self.vision})
        if isinstance(self.text, dict):
            self.text = CLIPTextConfig(**self.text)
        if not isinstance(self.vision, ViTConfig) or not isinstance(self.text, CLIPTextConfig):
            raise TypeError("CLIPConfig.vision and .text must be a ViTConfig and a CLIPTextConfig (or dicts), "
                            f"got {type(self.vision).__name__} and {type(self.text).__name__}")
        if self.vision.num_classes != 0 or self.vision.pool not in ("cls", "mean"):
            raise ValueError("CLIPConfig.vision must give one feature per image: num_classes=0 and pool 'cls' or "
                             f"'mean' (see clip_image_config), got num_classes={self.vision.num_classes}, "
                             f"pool={self.vision.pool!r}")
        if not isinstance(self.embed_dim, int) or isinstance(self.embed_dim, bool) or self.embed_dim < 1:
            raise ValueError(f"CLIPConfig.embed_dim must be a positive int, got {self.embed_dim!r}")
        if not self.max_logit_scale > 0 or not math.isfinite(self.init_logit_scale):
            raise ValueError(f"CLIPConfig.max_logit_scale must be > 0 and init_logit_scale finite, got "
                             f"{self.max_logit_scale} and {self.init_logit_scale}")

    @classmethod
    def vit_b_32(cls) -> "CLIPConfig":
        """open_clip's ``ViT-B-32``: 224 px, 32 px patches, 12 x 768 vision, 12 x 512 text, 512-d space."""
        return cls(embed_dim=512,
                   vision=clip_image_config(image_size=224, patch_size=32, dim=768, num_layers=12, num_heads=12),
                   text=CLIPTextConfig(vocab_size=49408, max_seq_len=77, dim=512, num_layers=12, num_heads=8))

    @classmethod
    def tiny(cls, vocab_size: int = 64, max_seq_len: int = 16, image_size: int = 32, patch_size: int = 8,
             in_channels: int = 3, eot_token_id: int | None = None) -> "CLIPConfig":
        """A CLIP small enough to train on a laptop CPU in a minute (about 0.2 M parameters)."""
        return cls(embed_dim=64,
                   vision=clip_image_config(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                                            dim=64, num_layers=2, num_heads=4),
                   text=CLIPTextConfig(vocab_size=vocab_size, max_seq_len=max_seq_len, dim=64, num_layers=2,
                                       num_heads=4, eot_token_id=eot_token_id))

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Towers
# --------------------------------------------------------------------------------------------------
class CLIPImageTower(nn.Module):
    """The ViT (``config.vision``, no head: it returns the class token's final state) and a linear projection
    to ``embed_dim`` (open_clip's ``VisionTransformer`` with pool_type 'tok' and proj_type 'linear')."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.vit = ViT(config.vision)
        self.projection = nn.Parameter(config.vision.dim ** -0.5 * torch.randn(config.vision.dim, config.embed_dim))

    def forward(self, images: Tensor) -> Tensor:
        """images (batch, in_channels, image_size, image_size) -> features (batch, embed_dim), not normalised."""
        pooled = self.vit(images)                                       # (batch, dim): ln_post(class token)
        return pooled @ self.projection                                 # (batch, embed_dim)


class CLIPTextTower(nn.Module):
    """Token + learned position embeddings, causal Transformer, ln_final, the feature at the end-of-text token,
    linear projection to ``embed_dim`` (open_clip's ``TextTransformer`` with pool_type 'argmax').

    Because attention is causal, the feature at the EOT token depends only on the tokens up to it: padding
    after EOT changes nothing, so no padding mask is needed.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        text = config.text
        self.config = text
        self.token_embedding = nn.Embedding(text.vocab_size, text.dim)
        self.position_embedding = nn.Parameter(torch.empty(text.max_seq_len, text.dim))
        # no final LayerNorm in the stack: the tower ends with its own, norm_final (open_clip's ln_final)
        self.blocks = nn.ModuleList(TransformerBlock(text.transformer_config()) for _ in range(text.num_layers))
        self.norm_final = nn.LayerNorm(text.dim, eps=text.layer_norm_eps)
        self.projection = nn.Parameter(torch.empty(text.dim, config.embed_dim))
        self._init_parameters()

    @torch.no_grad()
    def _init_parameters(self) -> None:
        # open_clip's TextTransformer.init_parameters: residual-branch outputs scaled by 1 / sqrt(2 L).
        width, layers = self.config.dim, self.config.num_layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv_proj.weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
        nn.init.normal_(self.projection, std=width ** -0.5)

    def check_tokens(self, tokens: Tensor) -> None:
        """Integer ids (batch, 1..max_seq_len) in [0, vocab_size) (``checks.check_token_ids``, which never
        synchronises a GPU); on the CPU also that every text holds its end-of-text token."""
        text = self.config
        check_token_ids(tokens, text.vocab_size, name="tokens", max_len=text.max_seq_len)
        if text.eot_token_id is not None and tokens.device.type == "cpu" and tokens.numel():
            if not bool((tokens == text.eot_token_id).any(dim=1).all()):
                raise ValueError(f"every text must contain the end-of-text token id {text.eot_token_id}: its "
                                 "feature is the text's embedding")

    def eot_positions(self, tokens: Tensor) -> Tensor:
        """Index of the token whose feature represents each text (batch,)."""
        if self.config.eot_token_id is None:
            return tokens.argmax(dim=-1)                      # OpenAI/open_clip: EOT has the largest id
        return (tokens == self.config.eot_token_id).int().argmax(dim=-1)  # first occurrence

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (batch, seq <= max_seq_len) -> features (batch, embed_dim), not normalised."""
        self.check_tokens(tokens)
        seq = tokens.size(1)
        x = self.token_embedding(tokens) + self.position_embedding[:seq]   # (batch, seq, dim)
        for block in self.blocks:
            x = block(x)                                                   # causal self-attention
        x = self.norm_final(x)                                             # (batch, seq, dim)
        pooled = x[torch.arange(x.size(0), device=x.device), self.eot_positions(tokens)]  # (batch, dim)
        return pooled @ self.projection                                    # (batch, embed_dim)


# --------------------------------------------------------------------------------------------------
# CLIP
# --------------------------------------------------------------------------------------------------
class CLIP(nn.Module):
    """Image tower + text tower + learned temperature.  ``forward`` returns what ``clip_loss`` takes."""

    def __init__(self, config: CLIPConfig | None = None) -> None:
        super().__init__()
        config = config or CLIPConfig()
        if not isinstance(config, CLIPConfig):
            raise TypeError(f"CLIP wants a CLIPConfig, got {type(config).__name__}")
        self.config = config
        self.visual = CLIPImageTower(config)
        self.text = CLIPTextTower(config)
        # The log of 1 / temperature is learned: optimising it in log space keeps it positive.
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        """(batch, C, H, W) -> (batch, embed_dim); unit length with ``normalize=True``."""
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: Tensor, normalize: bool = False) -> Tensor:
        """(batch, seq) token ids -> (batch, embed_dim); unit length with ``normalize=True``."""
        features = self.text(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def scale(self) -> Tensor:
        """exp(logit_scale) = 1 / temperature, never more than ``max_logit_scale`` (a 0-d tensor)."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clip the parameter itself to [0, log max_logit_scale], as open_clip's training loop does after every
        optimizer step (clipping only the output would leave a parameter above the limit with no gradient)."""
        self.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))

    def forward(self, images: Tensor | None = None, tokens: Tensor | None = None) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """Returns ``(image_features, text_features, logit_scale)``: unit-length features (batch, embed_dim)
        (None for a missing input) and the 0-d multiplier 1 / temperature, as open_clip's ``CLIP.forward``."""
        image_features = self.encode_image(images, normalize=True) if images is not None else None
        text_features = self.encode_text(tokens, normalize=True) if tokens is not None else None
        return image_features, text_features, self.scale()

    def similarity(self, images: Tensor, tokens: Tensor) -> Tensor:
        """Cosine similarities (num_images, num_texts) between every image and every text."""
        image_features, text_features, _ = self(images, tokens)
        return image_features @ text_features.T

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def config_dict(self) -> dict:
        return self.config.to_dict()


# --------------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------------
def clip_logits(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float) -> tuple[Tensor, Tensor]:
    """``(logits_per_image, logits_per_text)``, each (batch, batch): s * F G^T and its transpose.

    ``logit_scale`` is the multiplier s = 1 / temperature (already exponentiated, as ``CLIP.forward``
    returns it and open_clip's ``ClipLoss`` takes it).
    """
    for name, tensor in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            got = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
            raise TypeError(f"{name} must be a floating-point tensor, got {got}")
        if tensor.dim() != 2 or tensor.size(0) == 0:
            raise ValueError(f"{name} must have shape (batch, embed_dim) with batch >= 1, got {tuple(tensor.shape)}")
    if image_features.shape != text_features.shape:
        raise ValueError(f"image_features {tuple(image_features.shape)} and text_features {tuple(text_features.shape)} "
                         "must have the same shape: row i of each is the i-th matching pair")
    if isinstance(logit_scale, Tensor) and logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")
    logits_per_image = logit_scale * image_features @ text_features.T    # (batch, batch): row i = image i vs all texts
    return logits_per_image, logits_per_image.T                          # column view: text j vs all images


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE: (CE(image -> text) + CE(text -> image)) / 2, the targets being the diagonal.

        L = -1/(2B) sum_i [ log softmax_j(s f_i.g_j)[i] + log softmax_j(s g_i.f_j)[i] ]

    Pass normalised features (``CLIP.forward`` returns them) and s = exp(logit_scale).  Equals open_clip's
    ``ClipLoss()(image_features, text_features, logit_scale)`` on one process.
    """
    logits_per_image, logits_per_text = clip_logits(image_features, text_features, logit_scale)
    labels = torch.arange(logits_per_image.size(0), device=logits_per_image.device)  # pair i matches i
    if logits_per_image.dtype in (torch.float16, torch.bfloat16):  # the softmax of a mixed-precision run in float32
        logits_per_image, logits_per_text = logits_per_image.float(), logits_per_text.float()
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


@torch.no_grad()
def zero_shot_classifier(model: CLIP, prompt_tokens: Tensor) -> Tensor:
    """Class embeddings (num_classes, embed_dim) from prompt tokens (num_classes, num_prompts, seq) or
    (num_classes, seq): the mean of each class's normalised prompt embeddings, re-normalised (CLIP's
    prompt ensembling).  Classify with ``(model.encode_image(x, normalize=True) @ classes.T).argmax(-1)``."""
    if not isinstance(prompt_tokens, Tensor) or prompt_tokens.dim() not in (2, 3):
        shape = tuple(prompt_tokens.shape) if isinstance(prompt_tokens, Tensor) else type(prompt_tokens).__name__
        raise ValueError(f"prompt_tokens must be (num_classes, seq) or (num_classes, num_prompts, seq), got {shape}")
    if prompt_tokens.dim() == 2:
        prompt_tokens = prompt_tokens[:, None]
    prompt_tokens = prompt_tokens.to(model.logit_scale.device)
    num_classes, num_prompts, seq = prompt_tokens.shape
    embeddings = model.encode_text(prompt_tokens.reshape(-1, seq), normalize=True)   # (classes * prompts, embed_dim)
    embeddings = embeddings.view(num_classes, num_prompts, -1).mean(dim=1)            # (classes, embed_dim)
    return F.normalize(embeddings, dim=-1)

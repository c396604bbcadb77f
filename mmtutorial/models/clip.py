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

The layout follows ``open_clip``'s ``model.py``/``transformer.py`` so that its state dicts load through
``mmtutorial.interop.load_openclip_state_dict`` (an explicit key map); the Transformer blocks are
``mmtutorial.nn.TransformerBlock`` (pre-LN, attention through ``F.scaled_dot_product_attention``).
``CLIPConfig.vit_b_32()`` has open_clip's ViT-B-32 architecture: 151,277,313 parameters.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import TransformerBlock, TransformerConfig

__all__ = ["CLIPVisionConfig", "CLIPTextConfig", "CLIPConfig", "QuickGELU", "CLIPVisionTower", "CLIPTextTower",
           "CLIP", "clip_logits", "clip_loss", "zero_shot_classifier"]


def _check_positive_ints(owner: str, obj, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass
class CLIPVisionConfig:
    image_size: int = 224        # input images are image_size x image_size pixels
    patch_size: int = 32         # square patches; (image_size / patch_size)^2 patch tokens + 1 class token
    in_channels: int = 3         # 3 for RGB (open_clip); 1 for grey images such as Fashion-MNIST
    width: int = 768             # token width of the vision Transformer
    num_layers: int = 12         # Transformer blocks
    num_heads: int = 12          # attention heads (open_clip: width / head_width, head_width = 64)
    mlp_ratio: float = 4.0       # MLP hidden size = mlp_ratio * width

    def __post_init__(self) -> None:
        _check_positive_ints("CLIPVisionConfig", self, ("image_size", "patch_size", "in_channels", "width",
                                                        "num_layers", "num_heads"))
        if self.image_size % self.patch_size:
            raise ValueError(f"CLIPVisionConfig.image_size={self.image_size} must be divisible by "
                             f"patch_size={self.patch_size}")
        if self.width % self.num_heads:
            raise ValueError(f"CLIPVisionConfig.width={self.width} must be divisible by num_heads={self.num_heads}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class CLIPTextConfig:
    vocab_size: int = 49408      # token ids (OpenAI's BPE: 49,152 merges + 256 bytes; EOT = 49407, the largest)
    context_length: int = 77     # maximum number of tokens, each with a learned position embedding
    width: int = 512             # token width of the text Transformer
    num_layers: int = 12         # Transformer blocks (causal self-attention)
    num_heads: int = 8           # attention heads
    mlp_ratio: float = 4.0       # MLP hidden size = mlp_ratio * width
    eot_token_id: int | None = None  # None: pool at the largest id of each text (open_clip's "argmax", right
                                     # when EOT is the largest id); else at the first occurrence of this id

    def __post_init__(self) -> None:
        _check_positive_ints("CLIPTextConfig", self, ("vocab_size", "context_length", "width", "num_layers",
                                                      "num_heads"))
        if self.width % self.num_heads:
            raise ValueError(f"CLIPTextConfig.width={self.width} must be divisible by num_heads={self.num_heads}")
        if self.eot_token_id is not None and not 0 <= self.eot_token_id < self.vocab_size:
            raise ValueError(f"CLIPTextConfig.eot_token_id must be in [0, vocab_size={self.vocab_size}), "
                             f"got {self.eot_token_id}")


@dataclass
class CLIPConfig:
    embed_dim: int = 512                                               # size of the shared embedding space
    vision: CLIPVisionConfig = field(default_factory=CLIPVisionConfig)  # the image tower
    text: CLIPTextConfig = field(default_factory=CLIPTextConfig)        # the text tower
    quick_gelu: bool = False         # x * sigmoid(1.702 x) (OpenAI's original weights) instead of exact GELU;
                                     # open_clip's ViT-B-32 config uses nn.GELU unless quick_gelu is set
    init_logit_scale: float = math.log(1 / 0.07)  # log of the initial 1 / temperature (CLIP: tau = 0.07)
    max_logit_scale: float = 100.0   # 1 / temperature is clipped here (CLIP: "to prevent training instability")
    layer_norm_eps: float = 1e-5     # every LayerNorm (open_clip: torch's default)

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = CLIPVisionConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = CLIPTextConfig(**self.text)
        if not isinstance(self.vision, CLIPVisionConfig) or not isinstance(self.text, CLIPTextConfig):
            raise TypeError("CLIPConfig.vision and .text must be a CLIPVisionConfig and a CLIPTextConfig (or dicts), "
                            f"got {type(self.vision).__name__} and {type(self.text).__name__}")
        _check_positive_ints("CLIPConfig", self, ("embed_dim",))
        if not self.max_logit_scale > 0 or not math.isfinite(self.init_logit_scale):
            raise ValueError(f"CLIPConfig.max_logit_scale must be > 0 and init_logit_scale finite, got "
                             f"{self.max_logit_scale} and {self.init_logit_scale}")

    @classmethod
    def vit_b_32(cls) -> "CLIPConfig":
        """open_clip's ``ViT-B-32``: 224 px, 32 px patches, 12 x 768 vision, 12 x 512 text, 512-d space."""
        return cls(embed_dim=512,
                   vision=CLIPVisionConfig(image_size=224, patch_size=32, width=768, num_layers=12, num_heads=12),
                   text=CLIPTextConfig(vocab_size=49408, context_length=77, width=512, num_layers=12, num_heads=8))

    @classmethod
    def tiny(cls, vocab_size: int = 64, context_length: int = 16, image_size: int = 32, patch_size: int = 8,
             in_channels: int = 3, eot_token_id: int | None = None) -> "CLIPConfig":
        """A CLIP small enough to train on a laptop CPU in a minute (about 0.2 M parameters)."""
        return cls(embed_dim=64,
                   vision=CLIPVisionConfig(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                                           width=64, num_layers=2, num_heads=4),
                   text=CLIPTextConfig(vocab_size=vocab_size, context_length=context_length, width=64,
                                       num_layers=2, num_heads=4, eot_token_id=eot_token_id))

    @classmethod
    def from_openclip(cls, model_cfg: dict, quick_gelu: bool | None = None) -> "CLIPConfig":
        """Our config from an open_clip model config dict (``{"embed_dim", "vision_cfg", "text_cfg"}``).

        Only plain ViT + Transformer CLIPs are representable; options that change the computation (timm or
        Hugging Face towers, attentional pooling, layer scale, patch dropout, ...) raise ``ValueError``.
        """
        if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg):
            raise ValueError("expected an open_clip model config dict with embed_dim, vision_cfg and text_cfg, "
                             f"got {model_cfg!r}")
        vision_cfg, text_cfg = dict(model_cfg["vision_cfg"]), dict(model_cfg["text_cfg"])
        supported_vision = {"image_size", "patch_size", "width", "layers", "head_width", "mlp_ratio"}
        supported_text = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
        harmless = {"pool_type": ("tok", "argmax"), "proj_type": ("linear",), "proj_bias": (False,),
                    "pos_embed_type": ("learnable",), "no_ln_pre": (False,), "final_ln_after_pool": (False,),
                    "ls_init_value": (None,), "patch_dropout": (0.0,), "attentional_pool": (False,),
                    "embed_cls": (False,), "no_causal_mask": (False,)}
        for name, cfg, supported in (("vision_cfg", vision_cfg, supported_vision), ("text_cfg", text_cfg, supported_text)):
            for key, value in cfg.items():
                if key in supported or (key in harmless and value in harmless[key]):
                    continue
                raise ValueError(f"open_clip {name}[{key!r}] = {value!r} is not supported by this CLIP")
        if isinstance(vision_cfg.get("layers", 12), (list, tuple)):
            raise ValueError("a ModifiedResNet image tower (layers given as a tuple) is not supported")
        vision_width = vision_cfg.get("width", 768)
        vision = CLIPVisionConfig(image_size=vision_cfg.get("image_size", 224), patch_size=vision_cfg.get("patch_size", 16),
                                  width=vision_width, num_layers=vision_cfg.get("layers", 12),
                                  num_heads=vision_width // vision_cfg.get("head_width", 64),
                                  mlp_ratio=vision_cfg.get("mlp_ratio", 4.0))
        text = CLIPTextConfig(vocab_size=text_cfg.get("vocab_size", 49408), context_length=text_cfg.get("context_length", 77),
                              width=text_cfg.get("width", 512), num_layers=text_cfg.get("layers", 12),
                              num_heads=text_cfg.get("heads", 8), mlp_ratio=text_cfg.get("mlp_ratio", 4.0))
        quick = model_cfg.get("quick_gelu", False) if quick_gelu is None else quick_gelu
        return cls(embed_dim=model_cfg["embed_dim"], vision=vision, text=text, quick_gelu=bool(quick))

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Towers
# --------------------------------------------------------------------------------------------------
class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI's cheap approximation of GELU, which their released CLIPs were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def _blocks(width: int, num_heads: int, num_layers: int, mlp_ratio: float, causal: bool,
            config: CLIPConfig) -> nn.ModuleList:
    """Pre-LN Transformer blocks as in open_clip's ``ResidualAttentionBlock`` (no final LayerNorm: each tower
    has its own, ``norm_post`` / ``norm_final``)."""
    block_config = TransformerConfig(dim=width, num_heads=num_heads, num_layers=num_layers, mlp_ratio=mlp_ratio,
                                     causal=causal, norm="pre", activation="gelu", layer_norm_eps=config.layer_norm_eps)
    blocks = nn.ModuleList(TransformerBlock(block_config) for _ in range(num_layers))
    if config.quick_gelu:  # TransformerConfig knows exact GELU; swap in the parameter-free QuickGELU
        for block in blocks:
            block.mlp.activation = QuickGELU()
    return blocks


class CLIPVisionTower(nn.Module):
    """A ViT: patch embedding (a strided conv), class token, learned positions, ln_pre, blocks, ln_post on the
    class token, linear projection to ``embed_dim`` (open_clip's ``VisionTransformer`` with pool_type 'tok')."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        vision = config.vision
        self.config = vision
        scale = vision.width ** -0.5
        # A conv with kernel = stride = patch_size is "cut into patches, flatten, multiply by one matrix".
        self.patch_embed = nn.Conv2d(vision.in_channels, vision.width, kernel_size=vision.patch_size,
                                     stride=vision.patch_size, bias=False)
        self.class_token = nn.Parameter(scale * torch.randn(vision.width))
        self.position_embedding = nn.Parameter(scale * torch.randn(vision.num_patches + 1, vision.width))
        self.norm_pre = nn.LayerNorm(vision.width, eps=config.layer_norm_eps)
        self.blocks = _blocks(vision.width, vision.num_heads, vision.num_layers, vision.mlp_ratio, False, config)
        self.norm_post = nn.LayerNorm(vision.width, eps=config.layer_norm_eps)
        self.projection = nn.Parameter(scale * torch.randn(vision.width, config.embed_dim))

    def check_images(self, images: Tensor) -> None:
        vision = self.config
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor (convert uint8 pixels with .float() / 255 "
                            f"and normalise), got dtype {images.dtype}")
        expected = (vision.in_channels, vision.image_size, vision.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                             f"(batch, channels, height, width), got {tuple(images.shape)}")

    def forward(self, images: Tensor) -> Tensor:
        """images (batch, in_channels, image_size, image_size) -> features (batch, embed_dim), not normalised."""
        self.check_images(images)
        x = self.patch_embed(images)                                    # (batch, width, grid, grid)
        x = x.flatten(2).transpose(1, 2)                                # (batch, num_patches, width)
        class_token = self.class_token.to(x.dtype).expand(x.size(0), 1, -1)  # (batch, 1, width)
        x = torch.cat([class_token, x], dim=1)                          # (batch, 1 + num_patches, width)
        x = self.norm_pre(x + self.position_embedding.to(x.dtype))
        for block in self.blocks:
            x = block(x)                                                # (batch, 1 + num_patches, width)
        pooled = self.norm_post(x[:, 0])                                # (batch, width): the class token
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
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.position_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.blocks = _blocks(text.width, text.num_heads, text.num_layers, text.mlp_ratio, True, config)
        self.norm_final = nn.LayerNorm(text.width, eps=config.layer_norm_eps)
        self.projection = nn.Parameter(torch.empty(text.width, config.embed_dim))
        self._init_parameters()

    @torch.no_grad()
    def _init_parameters(self) -> None:
        # open_clip's TextTransformer.init_parameters: residual-branch outputs scaled by 1 / sqrt(2 L).
        width, layers = self.config.width, self.config.num_layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv_proj.weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
        nn.init.normal_(self.projection, std=width ** -0.5)

    def check_tokens(self, tokens: Tensor) -> None:
        text = self.config
        if not isinstance(tokens, Tensor):
            raise TypeError(f"tokens must be a torch.Tensor of token ids, got {type(tokens).__name__}")
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise TypeError(f"tokens must hold integer token ids (torch.long), got dtype {tokens.dtype}")
        if tokens.dim() != 2 or tokens.size(1) == 0:
            raise ValueError(f"tokens must have shape (batch, seq), got {tuple(tokens.shape)}")
        if tokens.size(1) > text.context_length:
            raise ValueError(f"texts of {tokens.size(1)} tokens are longer than context_length="
                             f"{text.context_length}; truncate them (keeping the end-of-text token)")
        if tokens.device.type == "cpu" and tokens.numel():  # a GPU check would force a synchronisation
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= text.vocab_size:
                raise ValueError(f"token ids must be in [0, vocab_size={text.vocab_size}), got values in [{low}, {high}]")
            if text.eot_token_id is not None and not bool((tokens == text.eot_token_id).any(dim=1).all()):
                raise ValueError(f"every text must contain the end-of-text token id {text.eot_token_id}: its "
                                 "feature is the text's embedding")

    def eot_positions(self, tokens: Tensor) -> Tensor:
        """Index of the token whose feature represents each text (batch,)."""
        if self.config.eot_token_id is None:
            return tokens.argmax(dim=-1)                      # OpenAI/open_clip: EOT has the largest id
        return (tokens == self.config.eot_token_id).int().argmax(dim=-1)  # first occurrence

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (batch, seq <= context_length) -> features (batch, embed_dim), not normalised."""
        self.check_tokens(tokens)
        seq = tokens.size(1)
        x = self.token_embedding(tokens) + self.position_embedding[:seq]   # (batch, seq, width)
        for block in self.blocks:
            x = block(x)                                                   # causal self-attention
        x = self.norm_final(x)                                             # (batch, seq, width)
        pooled = x[torch.arange(x.size(0), device=x.device), self.eot_positions(tokens)]  # (batch, width)
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
        self.visual = CLIPVisionTower(config)
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

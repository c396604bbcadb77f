"""ViT: the Vision Transformer (Dosovitskiy et al., ICLR 2021), in one readable file.

An image becomes a sequence of tokens, and a plain Transformer encoder reads it:

    patches  x_p^1..x_p^N         cut the (C, H, W) image into N = (H/P)(W/P) patches of P x P pixels
    z_0 = [x_cls; x_p^1 E; ...; x_p^N E] + E_pos     linear patch embedding E (C P^2 -> d), a learned
                                                      class token and learned position embeddings
    z_l = Block_l(z_{l-1})   l = 1..L                 pre-LN blocks, bidirectional self-attention
    y   = Head(LN(z_L)[0])                            classify from the class token's final state

The linear map of flattened patches is computed as a convolution whose kernel and stride are both P:
each output position sees exactly one patch, so ``Conv2d(C, d, P, stride=P)`` equals "unfold into
patches, then a Linear layer" (``PatchEmbedding.patchify`` gives the unfolded patches to check it).

This is the one ViT tower of the package: chapter 11's classifier, CLIP's image tower, and the detector,
MAE and VLM image encoders are all this class, configured by ``ViTConfig``:

    class token or not          ``class_token``   (MAE and many VLM encoders have none)
    what comes out              ``pool``: "cls" (the class token), "mean" (mean of the patch tokens),
                                "none" (every token: detectors, MAE, VLM encoders); ``num_classes`` > 0
                                adds a linear head on what comes out
    the MLP's nonlinearity      ``activation``: any entry of ``nn.transformer``'s table, e.g. "quick_gelu"
    open_clip's differences     ``patch_bias=False``, ``norm_pre=True`` (its ``ln_pre``), ``init="clip"``

The blocks are ``mmtutorial.nn.TransformerEncoder`` (one implementation of attention in the package).
``ViTConfig.vit_b_16()`` is ViT-B/16, with exactly the parameters of ``torchvision.models.vit_b_16``
(86,567,656); ``mmtutorial.zoo.torchvision_models`` loads torchvision's weights by an explicit key map.
``forward(..., need_weights=True)`` also returns every layer's attention weights, for attention maps
and ``attention_rollout`` (Abnar & Zuidema, 2020).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_images
from ..nn import LearnedPositionalEmbedding, TransformerConfig, TransformerEncoder, transformer_parameter_count

__all__ = ["ViTConfig", "PatchEmbedding", "ViT", "vit_parameter_count", "attention_rollout"]

POOLS = ("cls", "mean", "none")
INITS = ("vit", "clip")


@dataclass
class ViTConfig:
    image_size: int = 28          # height = width of the input images in pixels (square images only)
    patch_size: int = 7           # P: side of one square patch; image_size must be a multiple of it
    in_channels: int = 1          # C: 1 for grey-scale (Fashion-MNIST), 3 for RGB
    num_classes: int = 10         # outputs of the linear head (0: no head, forward gives the pooled features)
    dim: int = 64                 # d: width of every token (the patch embedding's output size)
    num_layers: int = 4           # L: Transformer blocks
    num_heads: int = 4            # attention heads per block (head_dim = dim / num_heads)
    mlp_ratio: float = 4.0        # MLP hidden size = mlp_ratio * dim (ViT-B: 3072 = 4 * 768)
    dropout: float = 0.0          # dropout on the embeddings, attention weights and residual branches
    bias: bool = True             # biases in the blocks' linear layers and in every LayerNorm
    class_token: bool = True      # prepend a learned class token (False: patch tokens only, as MAE's decoder)
    pool: str = "cls"             # "cls": the class token; "mean": mean of the patch tokens; "none": all tokens
    activation: str = "gelu"      # the MLP's nonlinearity, from nn.transformer's table ("gelu", "quick_gelu", ...)
    patch_bias: bool = True       # a bias in the patch embedding (torchvision: yes; open_clip's conv1: no)
    norm_pre: bool = False        # a LayerNorm on the embedded tokens before the first block (open_clip's ln_pre)
    layer_norm_eps: float = 1e-6  # LayerNorm epsilon (torchvision's and the original ViT's 1e-6; open_clip 1e-5)
    init: str = "vit"             # "vit": torchvision's initialisation; "clip": open_clip's (see ViT.init_weights)

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ViTConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 0:
            raise ValueError(f"ViTConfig.num_classes must be an int >= 0, got {self.num_classes!r}")
        for name in ("bias", "class_token", "patch_bias", "norm_pre"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"ViTConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"ViTConfig.image_size={self.image_size} is not divisible by patch_size="
                             f"{self.patch_size}: the patches must tile the image exactly")
        if self.dim % self.num_heads:
            raise ValueError(f"ViTConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.pool not in POOLS:
            raise ValueError(f"ViTConfig.pool must be one of {POOLS}, got {self.pool!r}")
        if self.pool == "cls" and not self.class_token:
            raise ValueError("ViTConfig.pool='cls' needs class_token=True; without a class token use pool='mean' "
                             "(average the patch tokens) or pool='none' (every token)")
        if self.init not in INITS:
            raise ValueError(f"ViTConfig.init must be one of {INITS}, got {self.init!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"ViTConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        try:  # activation, dropout and mlp_ratio are checked where the blocks are configured
            self.transformer_config()
        except ValueError as error:
            raise ValueError(f"ViTConfig: {error}") from None

    @property
    def grid_size(self) -> int:
        """Patches per side: image_size / patch_size (14 for ViT-B/16 at 224 pixels)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: 1 with a class token, else 0."""
        return int(self.class_token)

    @property
    def num_tokens(self) -> int:
        """Sequence length seen by the Transformer: the patches plus the class token, if any."""
        return self.num_prefix_tokens + self.num_patches

    @classmethod
    def vit_b_16(cls, num_classes: int = 1000) -> "ViTConfig":
        """ViT-B/16 at 224 x 224: 196 patches of 16 x 16, d = 768, 12 layers, 12 heads, MLP 3072 (86.6 M)."""
        return cls(image_size=224, patch_size=16, in_channels=3, num_classes=num_classes, dim=768,
                   num_layers=12, num_heads=12, mlp_ratio=4.0)

    @classmethod
    def tiny(cls, image_size: int = 28, patch_size: int = 7, in_channels: int = 1, num_classes: int = 10,
             dim: int = 64, num_layers: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0) -> "ViTConfig":
        """A ViT that trains on Fashion-MNIST on a laptop CPU: 16 patches of 7 x 7, d = 64, 4 layers."""
        return cls(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                   num_classes=num_classes, dim=dim, num_layers=num_layers, num_heads=num_heads,
                   mlp_ratio=mlp_ratio)

    def transformer_config(self) -> TransformerConfig:
        """The blocks: pre-LN, bidirectional (no causal mask)."""
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=self.mlp_ratio, dropout=self.dropout, causal=False, norm="pre",
                                 activation=self.activation, bias=self.bias, layer_norm_eps=self.layer_norm_eps)


class PatchEmbedding(nn.Module):
    """Cut an image into P x P patches and map each one linearly to a d-dimensional token.

    ``proj`` is ``Conv2d(C, d, kernel_size=P, stride=P)``: with stride = kernel the windows do not overlap,
    so output position (i, j) is W . vec(patch_ij) + b, the same number as ``patchify(x) @ W^T + b`` with
    W = proj.weight viewed as (d, C P^2).
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not divisible by patch_size={patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid_size = image_size // patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def patchify(self, images: Tensor) -> Tensor:
        """(batch, C, H, W) -> (batch, N, C P^2): each row a flattened patch in the conv weight's (c, y, x) order,
        patches in raster order (left to right, then top to bottom)."""
        patches = F.unfold(images, kernel_size=self.patch_size, stride=self.patch_size)  # (batch, C P^2, N)
        return patches.transpose(1, 2)                                                  # (batch, N, C P^2)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.proj(images)                    # (batch, dim, H/P, W/P)
        return tokens.flatten(2).transpose(1, 2)      # (batch, N, dim), raster order like patchify


class ViT(nn.Module):
    """The Vision Transformer: float images (batch, C, H, W) -> logits (batch, num_classes), or the pooled
    features (batch, dim) without a head, or every token (batch, T, dim) with ``pool="none"``.

    ``forward_tokens`` gives the final normalised state of every token, for models that read all of them
    (detectors, MAE, VLM encoders); token 0 is the class token when there is one, then the patches in
    raster order.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"ViT wants a ViTConfig, got {type(config).__name__}")
        self.config = config
        self.patch_embedding = PatchEmbedding(config.image_size, config.patch_size, config.in_channels, config.dim,
                                              bias=config.patch_bias)
        # The class token is one learned vector prepended to every sequence; having no content of its own,
        # it can only gather information from the patches by attention, which makes it a summary of the image.
        self.class_token = nn.Parameter(torch.zeros(1, 1, config.dim)) if config.class_token else None
        self.position_embedding = LearnedPositionalEmbedding(config.num_tokens, config.dim)
        self.norm_pre = (nn.LayerNorm(config.dim, eps=config.layer_norm_eps, bias=config.bias)
                         if config.norm_pre else nn.Identity())
        self.dropout = nn.Dropout(config.dropout)
        # pre-LN blocks, then the one final LayerNorm that a pre-LN stack needs (open_clip's ln_post)
        self.encoder = TransformerEncoder(config.transformer_config())
        self.head = nn.Linear(config.dim, config.num_classes) if config.num_classes else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """``config.init == "vit"``, close to torchvision's ViT: the patch projection initialised like a Linear
        of fan-in C P^2 (truncated LeCun normal), a zero class token, small position embeddings (std 0.02),
        Xavier-uniform linear layers with (almost) zero biases, and a zero head, so that every class starts
        at the same logit.

        ``config.init == "clip"``, open_clip's ``VisionTransformer``: class token and position embeddings
        drawn from N(0, 1/d); the patch convolution and the blocks keep PyTorch's default initialisation.
        """
        if self.config.init == "clip":
            scale = self.config.dim ** -0.5
            if self.class_token is not None:
                nn.init.normal_(self.class_token, std=scale)
            nn.init.normal_(self.position_embedding.embedding.weight, std=scale)
            return
        fan_in = self.config.in_channels * self.config.patch_size ** 2
        nn.init.trunc_normal_(self.patch_embedding.proj.weight, std=math.sqrt(1.0 / fan_in))
        if self.patch_embedding.proj.bias is not None:
            nn.init.zeros_(self.patch_embedding.proj.bias)
        nn.init.normal_(self.position_embedding.embedding.weight, std=0.02)
        for module in self.encoder.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # -- forward ---------------------------------------------------------------------------------------

    def embed_patches(self, images: Tensor) -> Tensor:
        """Images (batch, C, H, W) -> the patch tokens with their position embeddings (batch, N, dim), in raster
        order and without the class token: what MAE's random masking chooses from."""
        config = self.config
        check_images(images, channels=config.in_channels, size=config.image_size, divisible_by=config.patch_size)
        tokens = self.patch_embedding(images)                                    # (batch, N, dim)
        positions = self.position_embedding.embedding.weight                     # (T, dim)
        return tokens + positions[config.num_prefix_tokens:]                     # + E_pos, (batch, N, dim)

    def prepend_prefix_tokens(self, patch_tokens: Tensor) -> Tensor:
        """Patch tokens with positions (batch, n, dim), all N of them or any subset (MAE's visible patches)
        -> the first block's input z_0 (batch, prefix + n, dim): the class token (with its own position) in
        front, then dropout and the optional ``norm_pre``."""
        if self.class_token is not None:
            positions = self.position_embedding.embedding.weight                 # (T, dim)
            class_token = self.class_token.to(patch_tokens.dtype) + positions[:1]    # (1, 1, dim)
            class_token = class_token.expand(patch_tokens.size(0), -1, -1)       # (batch, 1, dim)
            patch_tokens = torch.cat([class_token, patch_tokens], dim=1)         # (batch, 1 + n, dim)
        return self.norm_pre(self.dropout(patch_tokens))                         # (batch, T, dim)

    def embed_tokens(self, images: Tensor) -> Tensor:
        """Images (batch, C, H, W) -> the first block's input z_0 (batch, T, dim), T = num_tokens."""
        return self.prepend_prefix_tokens(self.embed_patches(images))            # (batch, T, dim)

    def forward_tokens(self, images: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Final normalised token states LN(z_L) (batch, T, dim); with ``need_weights=True`` also a list of
        each block's attention weights (batch, heads, T, T)."""
        return self.encoder(self.embed_tokens(images), need_weights=need_weights)

    def pool(self, tokens: Tensor) -> Tensor:
        """(batch, T, dim) -> (batch, dim): the class token or the mean of the patch tokens; or every token
        unchanged (batch, T, dim) with ``pool="none"``."""
        if self.config.pool == "cls":
            return tokens[:, 0]                                                  # (batch, dim)
        if self.config.pool == "mean":
            return tokens[:, self.config.num_prefix_tokens:].mean(dim=1)         # (batch, dim)
        return tokens                                                            # (batch, T, dim)

    def forward(self, images: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """images (batch, C, H, W) float -> logits (batch, num_classes): the head applied to the pooled tokens
        (to every token with ``pool="none"``); without a head (num_classes=0), the pooled features.

        ``need_weights=True`` returns ``(output, attentions)``: a list with one (batch, heads, T, T) tensor per
        block; with a class token, token 0 is the class token and tokens 1.. the patches in raster order.
        """
        if need_weights:
            tokens, attentions = self.forward_tokens(images, need_weights=True)
            return self.head(self.pool(tokens)), attentions
        return self.head(self.pool(self.forward_tokens(images)))                # (batch, num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)


# ---------------------------------------------------------------------------------------------------
# Parameter count in closed form
# ---------------------------------------------------------------------------------------------------

def vit_parameter_count(config: ViTConfig) -> int:
    """Parameters of ``ViT(config)``, counted by formula (with h = mlp_ratio d, N patches, T tokens,
    C P^2 pixels per patch, b = 1 with ``bias`` else 0):

        patch embedding  C P^2 d (+ d with patch_bias)     class token  d (if any)     positions  T d
        ln_pre           (1 + b) d (with norm_pre)
        per block        4 d^2 + 4 b d (attention) + 2 d h + b (h + d) (MLP) + 2 (1 + b) d (two LayerNorms)
        final LayerNorm  (1 + b) d                          head  d K + K (K classes, if any)

    ViT-B/16 (d = 768, h = 3072, N = 196, L = 12, K = 1000) -> 86,567,656.
    """
    d, b = config.dim, int(config.bias)
    patch = config.in_channels * config.patch_size ** 2 * d + (d if config.patch_bias else 0)
    embeddings = patch + config.num_prefix_tokens * d + config.num_tokens * d
    norm_pre = (1 + b) * d if config.norm_pre else 0
    # the blocks and the final LayerNorm are exactly a Transformer encoder's (no vocabulary, no positions)
    encoder = transformer_parameter_count(0, 0, d, config.num_layers, config.mlp_ratio, bias=config.bias,
                                          final_norm=True, lm_head=False)
    head = d * config.num_classes + config.num_classes
    return embeddings + norm_pre + encoder + head


# ---------------------------------------------------------------------------------------------------
# Attention rollout
# ---------------------------------------------------------------------------------------------------

def attention_rollout(attentions: list[Tensor], residual: bool = True) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token.

    Each layer's weights are averaged over heads, A_l = mean_h A_l^h (batch, seq, seq).  The residual
    connection passes x itself on, so with ``residual`` the layer mixes by 0.5 A_l + 0.5 I (rows renormalised
    to sum to 1).  Chaining the layers multiplies the matrices: R = A'_L ... A'_2 A'_1.  Row 0 of R, without
    its first entry, is the class token's "relevance" over the patches.  Returns R (batch, seq, seq).
    """
    if not attentions:
        raise ValueError("attention_rollout needs the attention weights of at least one layer")
    rollout = None
    for weights in attentions:
        if weights.dim() != 4 or weights.size(-1) != weights.size(-2):
            raise ValueError(f"each attention tensor must be (batch, heads, seq, seq), got {tuple(weights.shape)}")
        mixing = weights.mean(dim=1)                                             # (batch, seq, seq)
        if residual:
            identity = torch.eye(mixing.size(-1), dtype=mixing.dtype, device=mixing.device)
            mixing = 0.5 * mixing + 0.5 * identity
            mixing = mixing / mixing.sum(dim=-1, keepdim=True)
        rollout = mixing if rollout is None else mixing @ rollout               # later layers on the left
    return rollout

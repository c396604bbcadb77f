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

The blocks are ``mmtutorial.nn.TransformerBlock``s (one implementation of attention in the package).
``ViTConfig.vit_b_16()`` is ViT-B/16, with exactly the parameters of ``torchvision.models.vit_b_16``
(86,567,656), and ``load_torchvision_vit`` copies torchvision's weights by an explicit key map.
``forward(..., return_attention=True)`` also returns every layer's attention weights, for attention maps
and ``attention_rollout`` (Abnar & Zuidema, 2020).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_converted_state_dict
from ..nn import LearnedPositionalEmbedding, TransformerBlock, TransformerConfig

__all__ = ["ViTConfig", "PatchEmbedding", "ViT", "vit_parameter_count", "attention_rollout",
           "torchvision_vit_key_map", "load_torchvision_vit", "config_from_torchvision_vit"]


@dataclass
class ViTConfig:
    image_size: int = 28          # height = width of the input images in pixels (square images only)
    patch_size: int = 7           # P: side of one square patch; image_size must be a multiple of it
    in_channels: int = 1          # C: 1 for grey-scale (Fashion-MNIST), 3 for RGB
    num_classes: int = 10         # outputs of the classification head (0: no head, forward gives features)
    dim: int = 64                 # d: width of every token (the patch embedding's output size)
    num_layers: int = 4           # L: Transformer blocks
    num_heads: int = 4            # attention heads per block (head_dim = dim / num_heads)
    mlp_ratio: float = 4.0        # MLP hidden size = mlp_ratio * dim (ViT-B: 3072 = 4 * 768)
    dropout: float = 0.0          # dropout on the embeddings, attention weights and residual branches
    pool: str = "cls"             # "cls": classify the class token (ViT); "mean": average the patch tokens
    layer_norm_eps: float = 1e-6  # LayerNorm epsilon (torchvision's and the original ViT's 1e-6)

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ViTConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"ViTConfig.num_classes must be an int >= 0, got {self.num_classes!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"ViTConfig.image_size={self.image_size} is not divisible by patch_size="
                             f"{self.patch_size}: the patches must tile the image exactly")
        if self.dim % self.num_heads:
            raise ValueError(f"ViTConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"ViTConfig.pool must be 'cls' or 'mean', got {self.pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ViTConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def grid_size(self) -> int:
        """Patches per side: image_size / patch_size (14 for ViT-B/16 at 224 pixels)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def num_tokens(self) -> int:
        """Sequence length seen by the Transformer: the patches plus the class token."""
        return self.num_patches + 1

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
        return TransformerConfig(dim=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
                                 mlp_ratio=self.mlp_ratio, dropout=self.dropout, causal=False, norm="pre",
                                 activation="gelu", bias=True, layer_norm_eps=self.layer_norm_eps)


def _check_images(images: Tensor, config: ViTConfig) -> None:
    """Images must be float (batch, in_channels, image_size, image_size); say what came otherwise."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor (e.g. uint8 / 255, then standardised), "
                        f"got dtype {images.dtype}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (batch, channels, height, width), got {tuple(images.shape)}")
    channels, height, width = images.shape[1:]
    if channels != config.in_channels:
        raise ValueError(f"images have {channels} channels, the model expects in_channels={config.in_channels} "
                         f"(shape (batch, {config.in_channels}, {config.image_size}, {config.image_size}))")
    size = config.image_size
    if (height, width) != (size, size):
        extra = "" if height % config.patch_size == 0 and width % config.patch_size == 0 else (
            f"; {height} x {width} is not even divisible by patch_size={config.patch_size}")
        raise ValueError(f"images are {height} x {width} pixels, the model was configured for {size} x {size} "
                         f"(its position embeddings cover a {config.grid_size} x {config.grid_size} grid of "
                         f"patches){extra}. Resize the images first.")


class PatchEmbedding(nn.Module):
    """Cut an image into P x P patches and map each one linearly to a d-dimensional token.

    ``proj`` is ``Conv2d(C, d, kernel_size=P, stride=P)``: with stride = kernel the windows do not overlap,
    so output position (i, j) is W . vec(patch_ij) + b, the same number as ``patchify(x) @ W^T + b`` with
    W = proj.weight viewed as (d, C P^2).
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not divisible by patch_size={patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid_size = image_size // patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def patchify(self, images: Tensor) -> Tensor:
        """(batch, C, H, W) -> (batch, N, C P^2): each row a flattened patch in the conv weight's (c, y, x) order,
        patches in raster order (left to right, then top to bottom)."""
        patches = F.unfold(images, kernel_size=self.patch_size, stride=self.patch_size)  # (batch, C P^2, N)
        return patches.transpose(1, 2)                                                  # (batch, N, C P^2)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.proj(images)                    # (batch, dim, H/P, W/P)
        return tokens.flatten(2).transpose(1, 2)      # (batch, N, dim), raster order like patchify


class ViT(nn.Module):
    """Vision Transformer classifier; ``forward`` takes float images (batch, C, H, W) and returns logits."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"ViT wants a ViTConfig, got {type(config).__name__}")
        self.config = config
        self.patch_embedding = PatchEmbedding(config.image_size, config.patch_size, config.in_channels, config.dim)
        # The class token is one learned vector prepended to every sequence; having no content of its own,
        # it can only gather information from the patches by attention, which makes it a summary of the image.
        self.class_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.position_embedding = LearnedPositionalEmbedding(config.num_tokens, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        block_config = config.transformer_config()
        self.blocks = nn.ModuleList(TransformerBlock(block_config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)  # pre-LN stacks end with one LayerNorm
        self.head = nn.Linear(config.dim, config.num_classes) if config.num_classes else nn.Identity()
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # Close to torchvision's ViT: the patch projection initialised like a Linear of fan-in C P^2
        # (truncated LeCun normal), small position embeddings, Xavier-uniform linear layers with (almost)
        # zero biases, and a zero head, so that every class starts at the same logit.
        fan_in = self.config.in_channels * self.config.patch_size ** 2
        nn.init.trunc_normal_(self.patch_embedding.proj.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.patch_embedding.proj.bias)
        nn.init.normal_(self.position_embedding.embedding.weight, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # -- forward ---------------------------------------------------------------------------------------

    def embed_tokens(self, images: Tensor) -> Tensor:
        """Images (batch, C, H, W) -> the Transformer's input z_0 (batch, 1 + N, dim)."""
        _check_images(images, self.config)
        patches = self.patch_embedding(images)                                   # (batch, N, dim)
        class_token = self.class_token.expand(images.size(0), -1, -1)            # (batch, 1, dim)
        tokens = torch.cat([class_token, patches], dim=1)                        # (batch, 1 + N, dim)
        return self.dropout(self.position_embedding(tokens))                     # + E_pos, (batch, 1 + N, dim)

    def _block_with_attention(self, block: TransformerBlock, x: Tensor) -> tuple[Tensor, Tensor]:
        """The pre-LN block's computation, also returning its attention weights (batch, heads, seq, seq)."""
        attended, weights = block.attn(block.norm1(x), need_weights=True)
        x = x + block.attn_dropout(attended)
        x = x + block.mlp_dropout(block.mlp(block.norm2(x)))
        return x, weights

    def forward_features(self, images: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Final normalised token states (batch, 1 + N, dim); optionally each block's attention weights."""
        x = self.embed_tokens(images)                                            # (batch, 1 + N, dim)
        attentions = []
        for block in self.blocks:
            if return_attention:
                x, weights = self._block_with_attention(block, x)                # weights (batch, heads, 1+N, 1+N)
                attentions.append(weights)
            else:
                x = block(x)                                                     # (batch, 1 + N, dim)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def pool(self, features: Tensor) -> Tensor:
        """(batch, 1 + N, dim) -> (batch, dim): the class token, or the mean of the patch tokens."""
        return features[:, 0] if self.config.pool == "cls" else features[:, 1:].mean(dim=1)

    def forward(self, images: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """images (batch, C, H, W) float -> logits (batch, num_classes) (pooled features if num_classes=0).

        ``return_attention=True`` returns ``(logits, attentions)``: a list with one (batch, heads, 1 + N, 1 + N)
        tensor per block; token 0 is the class token, tokens 1.. the patches in raster order.
        """
        if return_attention:
            features, attentions = self.forward_features(images, return_attention=True)
            return self.head(self.pool(features)), attentions
        return self.head(self.pool(self.forward_features(images)))              # (batch, num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)


# ---------------------------------------------------------------------------------------------------
# Parameter count in closed form
# ---------------------------------------------------------------------------------------------------

def vit_parameter_count(config: ViTConfig) -> int:
    """Parameters of ``ViT(config)``, counted by formula (with h = mlp_ratio d, N patches, C P^2 = patch size):

        patch embedding  C P^2 d + d       class token  d       position embeddings  (N + 1) d
        per block        4 d^2 + 4 d (attention) + 2 d h + h + d (MLP) + 4 d (two LayerNorms)
        final LayerNorm  2 d               head  d K + K (K classes)

    ViT-B/16 (d = 768, h = 3072, N = 196, L = 12, K = 1000) -> 86,567,656.
    """
    d, hidden = config.dim, int(config.mlp_ratio * config.dim)
    patch = config.in_channels * config.patch_size ** 2
    embeddings = patch * d + d + d + config.num_tokens * d
    block = 4 * d * d + 4 * d + 2 * d * hidden + hidden + d + 4 * d
    head = d * config.num_classes + config.num_classes
    return embeddings + config.num_layers * block + 2 * d + head


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


# ---------------------------------------------------------------------------------------------------
# torchvision interop: an explicit key map
# ---------------------------------------------------------------------------------------------------

def torchvision_vit_key_map(num_layers: int, head: bool = True) -> dict[str, str]:
    """torchvision ``VisionTransformer`` parameter name -> ours, for every parameter, in order.

    torchvision packs Q, K and V in ``in_proj_weight`` (3d, d) in the order Q, K, V, which is exactly the
    layout of our ``qkv_proj``; its position embedding is (1, 1 + N, d), ours an ``nn.Embedding`` (1 + N, d).
    """
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    mapping = {"class_token": "class_token",
               "conv_proj.weight": "patch_embedding.proj.weight",
               "conv_proj.bias": "patch_embedding.proj.bias",
               "encoder.pos_embedding": "position_embedding.embedding.weight"}
    for i in range(num_layers):
        theirs, ours = f"encoder.layers.encoder_layer_{i}", f"blocks.{i}"
        mapping.update({
            f"{theirs}.ln_1.weight": f"{ours}.norm1.weight",
            f"{theirs}.ln_1.bias": f"{ours}.norm1.bias",
            f"{theirs}.self_attention.in_proj_weight": f"{ours}.attn.qkv_proj.weight",
            f"{theirs}.self_attention.in_proj_bias": f"{ours}.attn.qkv_proj.bias",
            f"{theirs}.self_attention.out_proj.weight": f"{ours}.attn.out_proj.weight",
            f"{theirs}.self_attention.out_proj.bias": f"{ours}.attn.out_proj.bias",
            f"{theirs}.ln_2.weight": f"{ours}.norm2.weight",
            f"{theirs}.ln_2.bias": f"{ours}.norm2.bias",
            f"{theirs}.mlp.0.weight": f"{ours}.mlp.fc.weight",     # MLPBlock = Linear, GELU, Dropout, Linear, Dropout
            f"{theirs}.mlp.0.bias": f"{ours}.mlp.fc.bias",
            f"{theirs}.mlp.3.weight": f"{ours}.mlp.proj.weight",
            f"{theirs}.mlp.3.bias": f"{ours}.mlp.proj.bias",
        })
    mapping.update({"encoder.ln.weight": "norm.weight", "encoder.ln.bias": "norm.bias"})
    if head:
        mapping.update({"heads.head.weight": "head.weight", "heads.head.bias": "head.bias"})
    return mapping


def config_from_torchvision_vit(tv_model: nn.Module) -> ViTConfig:
    """The ``ViTConfig`` of a torchvision ``VisionTransformer`` (only its plain single-Linear head)."""
    from torchvision.models.vision_transformer import VisionTransformer

    if not isinstance(tv_model, VisionTransformer):
        raise TypeError(f"expected torchvision.models.VisionTransformer, got {type(tv_model).__name__}")
    if tv_model.representation_size is not None or not isinstance(tv_model.conv_proj, nn.Conv2d):
        raise ValueError("only torchvision ViTs with a single-Linear head and a patch convolution are supported")
    first_layer = tv_model.encoder.layers[0]
    return ViTConfig(image_size=tv_model.image_size, patch_size=tv_model.patch_size,
                     in_channels=tv_model.conv_proj.in_channels, num_classes=tv_model.num_classes,
                     dim=tv_model.hidden_dim, num_layers=len(tv_model.encoder.layers),
                     num_heads=first_layer.num_heads, mlp_ratio=tv_model.mlp_dim / tv_model.hidden_dim,
                     dropout=tv_model.dropout, layer_norm_eps=first_layer.ln_1.eps)


@torch.no_grad()
def load_torchvision_vit(model: ViT, tv_model: nn.Module) -> ViT:
    """Copy a torchvision ``VisionTransformer``'s weights into ``model`` by ``torchvision_vit_key_map``.

    Every tensor's shape is checked and the load is ``strict``: a missing or extra name is an error.
    """
    if not isinstance(model, ViT):
        raise TypeError(f"expected an mmtutorial ViT, got {type(model).__name__}")
    from torchvision.models.vision_transformer import VisionTransformer
    if not isinstance(tv_model, VisionTransformer):
        raise TypeError(f"expected torchvision.models.VisionTransformer, got {type(tv_model).__name__}")
    theirs = tv_model.state_dict()
    mapping = torchvision_vit_key_map(model.config.num_layers, head=model.config.num_classes > 0)
    unknown = sorted(set(theirs) - set(mapping))
    missing = sorted(set(mapping) - set(theirs))
    if unknown or missing:
        raise ValueError(f"the torchvision state dict does not fit a {model.config.num_layers}-layer ViT: "
                         f"names without a mapping {unknown[:5]}, mapped names it lacks {missing[:5]}")
    # torchvision keeps the position table as (1, 1 + N, d); ours is (1 + N, d).
    converted = {our_name: theirs[their_name].squeeze(0) if their_name == "encoder.pos_embedding"
                 else theirs[their_name] for their_name, our_name in mapping.items()}
    load_converted_state_dict(model, converted, source="torchvision", config_name="ViTConfig")
    return model

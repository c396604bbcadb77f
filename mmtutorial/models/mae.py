"""MAE: masked autoencoders (He et al., CVPR 2022), on the package's one ViT, in one readable file.

Pretraining without labels by hiding most of the image and asking for it back:

    patches   x_1..x_N            the image cut into N patches of P x P pixels (``patchify``)
    masking   keep n = int(N (1 - r)) patches, r = 0.75: per image, draw noise u in [0, 1)^N, sort it
              (``ids_shuffle = argsort(u)``), keep the patches with the n smallest noise values; the inverse
              permutation ``ids_restore = argsort(ids_shuffle)`` puts them back in place later
    encoder   the ViT (``mmtutorial.models.vit.ViT``) on the class token and the n visible patches only,
              with fixed 2-D sine-cosine position embeddings added before the masking
    decoder   a light Transformer: project the latents to the decoder width, append N - n copies of one learned
              mask token, unshuffle with ``ids_restore``, add the decoder's positions, a few blocks, then a
              linear layer that predicts each patch's P^2 C pixels
    loss      L = (1 / |M|) sum_{i in M} (1 / P^2 C) || x^_i - t_i ||^2 over the masked patches M only,
              with t_i the patch normalised by its own mean and (unbiased) variance: (x_i - mu_i) / sqrt(var_i + 1e-6)

The encoder never sees a mask token: it runs on a quarter of the tokens, which is what makes MAE cheap.
``mmtutorial.zoo.vitmae`` loads ``transformers``' ``ViTMAEForPreTraining`` weights into this model by an
explicit key map; with the same ``noise`` the two give the same mask, reconstruction and loss.
``mae_classifier`` turns the pretrained encoder into a classifier for fine-tuning.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import check_images
from ..nn import TransformerConfig, TransformerEncoder
from ..nn.positional import sincos_position_embedding_2d  # MAE's fixed 2-D table, shared
from .vit import ViT, ViTConfig

__all__ = ["MAEConfig", "MAEOutput", "MAE", "random_masking", "patchify", "unpatchify", "normalize_patches",
           "masked_patch_loss", "sincos_position_embedding_2d", "mae_classifier", "check_mask_ratio"]


def check_mask_ratio(mask_ratio, num_patches: int | None = None) -> float:
    """A mask ratio r must be a number in the open interval (0, 1); with ``num_patches`` N it must also leave
    at least one visible patch, int(N (1 - r)) >= 1 (else the encoder would see no patch at all)."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, numbers.Real):
        raise TypeError(f"mask_ratio must be a number in (0, 1), got {type(mask_ratio).__name__} {mask_ratio!r}")
    if not 0.0 < float(mask_ratio) < 1.0:                  # also refuses NaN
        raise ValueError(f"mask_ratio must be in the open interval (0, 1) (MAE uses 0.75), got {mask_ratio}")
    if num_patches is not None and int(num_patches * (1 - float(mask_ratio))) < 1:
        raise ValueError(f"mask_ratio={mask_ratio} keeps int({num_patches} * (1 - {mask_ratio})) = 0 of "
                         f"{num_patches} patches: the encoder needs at least one visible patch")
    return float(mask_ratio)


@dataclass
class MAEConfig:
    image_size: int = 28            # height = width of the input images in pixels
    patch_size: int = 4             # P: side of a square patch (28 / 4 = 7 x 7 = 49 patches)
    in_channels: int = 1            # C: 1 for grey-scale (Fashion-MNIST)
    dim: int = 64                   # the encoder's width d (must be divisible by 4 for the 2-D sin-cos positions)
    num_layers: int = 4             # encoder blocks
    num_heads: int = 4              # encoder attention heads
    mlp_ratio: float = 2.0          # encoder MLP hidden size = mlp_ratio * dim
    decoder_dim: int = 32           # the decoder's width (MAE's decoder is much narrower than its encoder)
    decoder_num_layers: int = 1     # decoder blocks (MAE: 8 for ViT-L, and 1 block still works well)
    decoder_num_heads: int = 4      # decoder attention heads
    decoder_mlp_ratio: float = 2.0  # decoder MLP hidden size = decoder_mlp_ratio * decoder_dim
    mask_ratio: float = 0.75        # r: share of the patches hidden from the encoder
    norm_pix_loss: bool = True      # target: each patch normalised by its own mean and variance (MAE's default)
    dropout: float = 0.0            # dropout in both Transformers
    bias: bool = True               # biases in linear layers and LayerNorms
    layer_norm_eps: float = 1e-6    # LayerNorm epsilon of every LayerNorm (MAE's timm models: 1e-6)

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "dim", "num_layers", "num_heads", "decoder_dim",
                     "decoder_num_layers", "decoder_num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MAEConfig.{name} must be a positive int, got {value!r}")
        for name in ("dim", "decoder_dim"):
            if getattr(self, name) % 4:
                raise ValueError(f"MAEConfig.{name}={getattr(self, name)} must be divisible by 4: the 2-D sin-cos "
                                 "position embedding gives a quarter of the channels to each of sin/cos of row/column")
        if self.decoder_dim % self.decoder_num_heads:
            raise ValueError(f"MAEConfig.decoder_dim={self.decoder_dim} must be divisible by decoder_num_heads="
                             f"{self.decoder_num_heads}")
        for name in ("norm_pix_loss", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"MAEConfig.{name} must be True or False, got {getattr(self, name)!r}")
        self.encoder_config()                                   # ViTConfig checks sizes, heads, dropout, ...
        self.decoder_config()
        check_mask_ratio(self.mask_ratio, self.num_patches)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def patch_pixels(self) -> int:
        """P^2 C: the numbers the decoder predicts per patch."""
        return self.patch_size ** 2 * self.in_channels

    def encoder_config(self, num_classes: int = 0, pool: str = "none") -> ViTConfig:
        """The ViT: a class token, every token out (``pool="none"``) and no head for pretraining; fine-tuning
        asks for ``num_classes`` and a pool."""
        return ViTConfig(image_size=self.image_size, patch_size=self.patch_size, in_channels=self.in_channels,
                         num_classes=num_classes, dim=self.dim, num_layers=self.num_layers, num_heads=self.num_heads,
                         mlp_ratio=self.mlp_ratio, dropout=self.dropout, bias=self.bias, class_token=True,
                         pool=pool, layer_norm_eps=self.layer_norm_eps)

    def decoder_config(self) -> TransformerConfig:
        return TransformerConfig(dim=self.decoder_dim, num_heads=self.decoder_num_heads,
                                 num_layers=self.decoder_num_layers, mlp_ratio=self.decoder_mlp_ratio,
                                 dropout=self.dropout, causal=False, norm="pre", bias=self.bias,
                                 layer_norm_eps=self.layer_norm_eps)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Patches, positions, masking and the loss (functions: each one is checked against transformers)
# --------------------------------------------------------------------------------------------------
def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(batch, C, H, W) -> (batch, N, P^2 C): each row one patch, raster order, pixels in (row, column, channel)
    order (MAE's and ``ViTMAEForPreTraining.patchify``'s layout; for C = 1 the same as ``F.unfold``)."""
    check_images(images, divisible_by=patch_size)
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"images of {height} x {width} pixels cannot be cut into {patch_size} x {patch_size} "
                         "patches: both sides must be multiples of patch_size")
    rows, cols = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1)                  # (batch, rows, cols, P, P, C)
    return patches.reshape(batch, rows * cols, patch_size ** 2 * channels)   # (batch, N, P^2 C)


def unpatchify(patches: Tensor, patch_size: int, channels: int = 1) -> Tensor:
    """The inverse of :func:`patchify` for square images: (batch, N, P^2 C) -> (batch, C, H, W)."""
    if patches.dim() != 3 or patches.size(-1) != patch_size ** 2 * channels:
        raise ValueError(f"patches must be (batch, N, {patch_size ** 2 * channels}) for patch_size={patch_size} "
                         f"and {channels} channel(s), got {tuple(patches.shape)}")
    batch, num_patches, _ = patches.shape
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    images = patches.reshape(batch, grid, grid, patch_size, patch_size, channels)
    images = images.permute(0, 5, 1, 3, 2, 4)                    # (batch, C, rows, P, cols, P)
    return images.reshape(batch, channels, grid * patch_size, grid * patch_size)


def random_masking(tokens: Tensor, mask_ratio: float, noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample random masking by sorting noise.

    tokens (batch, N, dim) -> (visible (batch, n, dim), mask (batch, N), ids_restore (batch, N)), n = int(N (1 - r)).
    ``noise`` (batch, N): the patches with the n smallest values are kept (uniform noise makes every subset of
    size n equally likely); ``mask`` is 1 on hidden patches and 0 on visible ones, in the original order.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3:
        raise ValueError(f"tokens must be a (batch, N, dim) tensor, got "
                         f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__}")
    batch, num_patches, dim = tokens.shape
    num_keep = int(num_patches * (1 - check_mask_ratio(mask_ratio, num_patches)))
    if noise is None:
        noise = torch.rand(batch, num_patches, device=tokens.device)
    elif noise.shape != (batch, num_patches):
        raise ValueError(f"noise must be (batch, N) = {(batch, num_patches)}, got {tuple(noise.shape)}")
    ids_shuffle = noise.argsort(dim=1)                           # (batch, N): ascending noise, kept ones first
    ids_restore = ids_shuffle.argsort(dim=1)                     # (batch, N): the inverse permutation
    ids_keep = ids_shuffle[:, :num_keep]                         # (batch, n)
    visible = tokens.gather(1, ids_keep[..., None].expand(-1, -1, dim))      # (batch, n, dim)
    mask = torch.ones(batch, num_patches, device=tokens.device)
    mask[:, :num_keep] = 0                                       # in shuffled order: kept first
    mask = mask.gather(1, ids_restore)                           # (batch, N) back in raster order
    return visible, mask, ids_restore


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Each patch (row) minus its mean, divided by sqrt(its unbiased variance + eps): MAE's ``norm_pix`` target."""
    mean = patches.mean(dim=-1, keepdim=True)                    # (batch, N, 1)
    var = patches.var(dim=-1, keepdim=True)                      # unbiased, as MAE's code (torch's default)
    return (patches - mean) / (var + eps) ** 0.5


def masked_patch_loss(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error per patch, averaged over the masked patches only: sum_i m_i e_i / sum_i m_i."""
    if prediction.shape != target.shape or mask.shape != prediction.shape[:2]:
        raise ValueError(f"prediction and target must be (batch, N, P^2 C) and mask (batch, N); got "
                         f"{tuple(prediction.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}")
    per_patch = ((prediction - target) ** 2).mean(dim=-1)        # (batch, N)
    return (per_patch * mask).sum() / mask.sum()


class MAEOutput(NamedTuple):
    loss: Tensor           # () the masked-patch MSE
    prediction: Tensor     # (batch, N, P^2 C) the decoder's output for every patch (normalised pixels)
    mask: Tensor           # (batch, N) 1 = hidden from the encoder, 0 = visible
    ids_restore: Tensor    # (batch, N) the permutation that undoes the shuffle


class MAE(nn.Module):
    """Masked autoencoder: images (batch, C, H, W) -> :class:`MAEOutput` (loss, prediction, mask, ids_restore).

    ``encoder`` is a :class:`~mmtutorial.models.vit.ViT` (class token, no head) whose position table holds the
    fixed sin-cos embedding and is frozen; ``decoder`` is a :class:`~mmtutorial.nn.TransformerEncoder` whose
    final LayerNorm is MAE's ``decoder_norm``.
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        if not isinstance(config, MAEConfig):
            raise TypeError(f"MAE wants an MAEConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = ViT(config.encoder_config())
        self.decoder_embed = nn.Linear(config.dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.register_buffer("decoder_position_embedding",
                             sincos_position_embedding_2d(config.grid_size, config.decoder_dim))   # (1 + N, dd)
        self.decoder = TransformerEncoder(config.decoder_config())
        self.decoder_pred = nn.Linear(config.decoder_dim, config.patch_pixels)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """MAE's: fixed sin-cos positions (frozen), class and mask tokens ~ N(0, 0.02^2), Xavier-uniform linear
        layers (the patch projection too, seen as a (d, P^2 C) matrix) with zero biases."""
        positions = self.encoder.position_embedding.embedding.weight
        positions.copy_(sincos_position_embedding_2d(self.config.grid_size, self.config.dim))
        positions.requires_grad_(False)
        nn.init.normal_(self.encoder.class_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        projection = self.encoder.patch_embedding.proj.weight
        nn.init.xavier_uniform_(projection.view(projection.size(0), -1))
        for module in [*self.encoder.encoder.modules(), self.decoder_embed, *self.decoder.modules(),
                       self.decoder_pred]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _mask_ratio(self, mask_ratio: float | None) -> float:
        return check_mask_ratio(self.config.mask_ratio if mask_ratio is None else mask_ratio, self.config.num_patches)

    def forward_encoder(self, images: Tensor, mask_ratio: float | None = None,
                        noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """-> latent (batch, 1 + n, dim) of the class token and the n visible patches, mask, ids_restore."""
        tokens = self.encoder.embed_patches(images)                              # (batch, N, dim) with positions
        visible, mask, ids_restore = random_masking(tokens, self._mask_ratio(mask_ratio), noise)  # (batch, n, dim)
        latent = self.encoder.encoder(self.encoder.prepend_prefix_tokens(visible))           # (batch, 1 + n, dim)
        return latent, mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """latent (batch, 1 + n, dim) -> predicted pixels of every patch (batch, N, P^2 C)."""
        tokens = self.decoder_embed(latent)                                      # (batch, 1 + n, dd)
        batch, num_patches = ids_restore.shape
        width = tokens.size(-1)
        mask_tokens = self.mask_token.to(tokens.dtype).expand(batch, num_patches + 1 - tokens.size(1), -1)
        patches = torch.cat([tokens[:, 1:], mask_tokens], dim=1)                 # (batch, N, dd), shuffled order
        patches = patches.gather(1, ids_restore[..., None].expand(-1, -1, width))   # (batch, N, dd), raster order
        tokens = torch.cat([tokens[:, :1], patches], dim=1) + self.decoder_position_embedding   # (batch, 1 + N, dd)
        tokens = self.decoder(tokens)                                            # (batch, 1 + N, dd)
        return self.decoder_pred(tokens)[:, 1:]                        # (batch, N, P^2 C), class token dropped

    def target(self, images: Tensor) -> Tensor:
        """What the decoder must predict: the patches (batch, N, P^2 C), normalised per patch with norm_pix_loss."""
        patches = patchify(images, self.config.patch_size)
        return normalize_patches(patches) if self.config.norm_pix_loss else patches

    def forward(self, images: Tensor, mask_ratio: float | None = None, noise: Tensor | None = None) -> MAEOutput:
        latent, mask, ids_restore = self.forward_encoder(images, mask_ratio, noise)
        prediction = self.forward_decoder(latent, ids_restore)                   # (batch, N, P^2 C)
        loss = masked_patch_loss(prediction, self.target(images), mask)
        return MAEOutput(loss, prediction, mask, ids_restore)

    @torch.no_grad()
    def reconstruct(self, images: Tensor, output: MAEOutput) -> tuple[Tensor, Tensor]:
        """For figures: (masked images, reconstructions), both (batch, C, H, W).  The masked image shows the
        visible patches only (hidden ones 0); the reconstruction pastes the visible patches and, in the hidden
        places, the prediction mapped back to pixels with each true patch's mean and std (with norm_pix_loss
        the model predicts normalised pixels and cannot know a hidden patch's brightness)."""
        patches = patchify(images, self.config.patch_size)                       # (batch, N, P^2 C)
        prediction = output.prediction.float()
        if self.config.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
            prediction = prediction * std + mean
        hidden = output.mask[..., None].to(patches.dtype)                        # (batch, N, 1)
        P, C = self.config.patch_size, self.config.in_channels
        masked = unpatchify(patches * (1 - hidden), P, C)
        reconstruction = unpatchify(patches * (1 - hidden) + prediction * hidden, P, C)
        return masked, reconstruction


def mae_classifier(source: MAE | MAEConfig, num_classes: int = 10, pool: str = "mean") -> ViT:
    """A ViT classifier with MAE's encoder: its weights copied from a pretrained :class:`MAE` (fine-tuning), or
    freshly initialised from an :class:`MAEConfig` (training from scratch, the baseline).  Either way the fixed
    sin-cos positions are kept and frozen, so the two differ only in the starting weights.  ``pool="mean"``
    averages the patch tokens (MAE fine-tunes with global average pooling); the head is new."""
    config = source.config if isinstance(source, MAE) else source
    if not isinstance(config, MAEConfig):
        raise TypeError(f"mae_classifier wants an MAE or an MAEConfig, got {type(source).__name__}")
    classifier = ViT(config.encoder_config(num_classes=num_classes, pool=pool))
    with torch.no_grad():
        if isinstance(source, MAE):
            weights = {k: v for k, v in source.encoder.state_dict().items() if not k.startswith("head.")}
            missing, unexpected = classifier.load_state_dict(weights, strict=False)
            if unexpected or any(not k.startswith("head.") for k in missing):
                raise ValueError(f"the MAE encoder does not fit the classifier: missing {missing}, "
                                 f"unexpected {unexpected}")
        else:
            classifier.position_embedding.embedding.weight.copy_(
                sincos_position_embedding_2d(config.grid_size, config.dim))
    classifier.position_embedding.embedding.weight.requires_grad_(False)
    return classifier

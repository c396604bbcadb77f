"""Convolutional vision encoders from scratch: 2-D convolution (loops and im2col), output-size arithmetic,
pooling, data augmentation, a Fashion-MNIST CNN and ResNet.

What a 2-D convolution layer computes (deep learning's "convolution" is a cross-correlation: the kernel
is not flipped)::

    Y[b, o, i, j] = bias[o] + Σ_c Σ_m Σ_n  X_pad[b, g(o)·C_g + c,  i·s + m·d,  j·s + n·d] · W[o, c, m, n]

with stride ``s``, dilation ``d``, zero padding ``p`` (``X_pad`` is ``X`` padded by ``p`` zeros on each side)
and ``groups``: output channel ``o`` sees only the ``C_g = C_in / groups`` input channels of its group
``g(o) = o // (C_out / groups)``.  Each spatial output size follows from the same arithmetic::

    out = ⌊(size + 2p − d·(k − 1) − 1) / s⌋ + 1

``conv2d_loops`` computes Y one output position at a time; ``conv2d_im2col`` copies every receptive
field into a column (``im2col``) and does the whole layer as one matrix product, which is how fast
libraries lower convolutions onto GEMM.  Both are plain torch code, so autograd differentiates them,
and both equal ``torch.nn.functional.conv2d`` (checked in ``tests/test_vision_conv.py``).

Models: :class:`FashionCNN` (two conv blocks and an MLP head; it standardises its ``[0, 1]`` input
itself), :class:`BasicBlock` and :class:`ResNet` with :func:`resnet18`, whose parameter names and count
(11,689,512) are those of ``torchvision.models.resnet18``, so torchvision weights load with ``strict=True``.

Later chapters get chapter 10's trained CNN with ``mmtutorial.zoo.fashion.load_or_train_fashion_cnn``
(cache name ``"fashion-cnn"``; the same recipe and cache entry as the chapter, so it is trained only once).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_images
from ..nn import conv_stack

__all__ = [
    "conv_output_size", "conv_output_shape", "trace_shapes", "im2col", "conv2d_loops", "conv2d_im2col",
    "max_pool2d", "avg_pool2d", "crop_and_flip", "random_crop_flip",
    "FashionCNNConfig", "FashionCNN", "BasicBlock", "ResNetConfig", "ResNet", "resnet18",
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
]

# Pixel statistics of the 60,000 Fashion-MNIST training images scaled to [0, 1].
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


# --------------------------------------------------------------------------------------------------
# Arguments and input checks
# --------------------------------------------------------------------------------------------------
def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> (height value, width value)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis: ⌊(size + 2p − d(k − 1) − 1) / s⌋ + 1.

    ``d(k − 1) + 1`` is the extent of a dilated kernel.  Raises ``ValueError`` when that extent exceeds the
    padded input, the case where PyTorch refuses to run the layer.  (Pooling layers use the same formula
    with their own stride, which defaults to the kernel size in ``nn.MaxPool2d``.)
    """
    for name, value, low in (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                             ("padding", padding, 0), ("dilation", dilation, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    extent = dilation * (kernel - 1) + 1
    if extent > size + 2 * padding:
        raise ValueError(f"the kernel (extent {extent} = dilation {dilation} x (kernel {kernel} - 1) + 1) is larger "
                         f"than the padded input ({size} + 2 x {padding} = {size + 2 * padding})")
    return (size + 2 * padding - extent) // stride + 1


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zeros that keep the size at stride 1; odd totals put the extra zero after,
    as PyTorch does."""
    (kh, kw), (dh, dw) = kernel, dilation
    total_h, total_w = dh * (kh - 1), dw * (kw - 1)
    return total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2


def _resolve_padding(padding, kernel: tuple[int, int], dilation: tuple[int, int],
                     stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """Padding as F.pad wants it: (left, right, top, bottom)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
            return _same_padding(kernel, dilation)
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pw, pw, ph, ph


def _check_conv_arguments(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups):
    """Validate a conv2d call; return (x padded, stride, dilation, output height, output width)."""
    x = check_images(x, name="input", finite=False)
    if not isinstance(weight, Tensor) or weight.ndim != 4:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be 4-D (out_channels, in_channels / groups, kernel_h, kernel_w), got {shape}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    out_channels, channels_per_group, kh, kw = weight.shape
    in_channels = x.shape[1]
    if in_channels % groups:
        raise ValueError(f"groups={groups} must divide the input channels, got {in_channels} input channels")
    if out_channels % groups:
        raise ValueError(f"groups={groups} must divide the output channels, got {out_channels} output channels")
    if channels_per_group * groups != in_channels:
        raise ValueError(f"the weight expects {channels_per_group * groups} input channels "
                         f"({channels_per_group} per group x {groups} groups), got input with {in_channels} "
                         f"channels (shape {tuple(x.shape)})")
    if bias is not None and (not isinstance(bias, Tensor) or bias.shape != (out_channels,)):
        shape = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        raise ValueError(f"bias must have shape ({out_channels},), got {shape}")
    if weight.dtype != x.dtype:
        raise TypeError(f"input and weight must have one dtype, got {x.dtype} and {weight.dtype}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"stride and dilation must be >= 1, got {stride} and {dilation}")
    left, right, top, bottom = _resolve_padding(padding, (kh, kw), dilation, stride)
    # Asymmetric totals ('same' with an even kernel) are folded in by padding first, then using p = 0.
    x_padded = F.pad(x, (left, right, top, bottom))                     # (B, C, H + top + bottom, W + l + r)
    out_h = conv_output_size(x_padded.shape[2], kh, stride[0], 0, dilation[0])
    out_w = conv_output_size(x_padded.shape[3], kw, stride[1], 0, dilation[1])
    return x_padded, stride, dilation, out_h, out_w


# --------------------------------------------------------------------------------------------------
# Convolution: loops, im2col
# --------------------------------------------------------------------------------------------------
def conv2d_loops(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
                 groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) one output position at a time; same arguments as ``F.conv2d``.

    x (B, C_in, H, W), weight (C_out, C_in / groups, kH, kW) -> (B, C_out, H_out, W_out).
    """
    x_padded, (sh, sw), (dh, dw), out_h, out_w = _check_conv_arguments(x, weight, bias, stride, padding,
                                                                       dilation, groups)
    batch = x.shape[0]
    out_channels, channels_per_group, kh, kw = weight.shape
    outputs_per_group = out_channels // groups
    w = weight.reshape(groups, outputs_per_group, channels_per_group, kh, kw)      # (G, O_g, C_g, kH, kW)
    rows = []
    for i in range(out_h):
        row = []
        for j in range(out_w):
            # The receptive field of output (i, j): a kH x kW grid spaced by the dilation.
            top, left = i * sh, j * sw
            patch = x_padded[:, :, top: top + dh * (kh - 1) + 1: dh,
                             left: left + dw * (kw - 1) + 1: dw]                   # (B, C_in, kH, kW)
            patch = patch.reshape(batch, groups, channels_per_group, kh, kw)        # (B, G, C_g, kH, kW)
            value = torch.einsum("bgcmn,gocmn->bgo", patch, w)                     # (B, G, O_g)
            row.append(value.reshape(batch, out_channels))                          # (B, C_out)
        rows.append(torch.stack(row, dim=-1))                                       # (B, C_out, W_out)
    out = torch.stack(rows, dim=-2)                                                 # (B, C_out, H_out, W_out)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def im2col(x: Tensor, kernel_size, stride=1, padding=0, dilation=1) -> Tensor:
    """Copy every receptive field into a column: (B, C, H, W) -> (B, C·kH·kW, L), L = H_out·W_out.

    Rows are ordered (channel, kernel row, kernel column) and columns row-major over output positions,
    the layout of ``F.unfold``.  ``padding`` may be an int, a pair, or (left, right, top, bottom).
    """
    x = check_images(x, name="input", finite=False)
    kh, kw = _pair(kernel_size, "kernel_size")
    (sh, sw), (dh, dw) = _pair(stride, "stride"), _pair(dilation, "dilation")
    if isinstance(padding, tuple) and len(padding) == 4:
        x = F.pad(x, padding)
    else:
        ph, pw = _pair(padding, "padding")
        x = F.pad(x, (pw, pw, ph, ph))                                              # (B, C, H + 2ph, W + 2pw)
    batch, channels, height, width = x.shape
    out_h = conv_output_size(height, kh, sh, 0, dh)
    out_w = conv_output_size(width, kw, sw, 0, dw)
    # One strided slice per kernel offset (m, n) gathers that offset's pixel for every output position.
    slices = [x[:, :, m * dh: m * dh + sh * (out_h - 1) + 1: sh, n * dw: n * dw + sw * (out_w - 1) + 1: sw]
              for m in range(kh) for n in range(kw)]                                # kH·kW of (B, C, H_out, W_out)
    columns = torch.stack(slices, dim=2)                                            # (B, C, kH·kW, H_out, W_out)
    return columns.reshape(batch, channels * kh * kw, out_h * out_w)                # (B, C·kH·kW, L)


def conv2d_im2col(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
                  groups: int = 1) -> Tensor:
    """2-D convolution as one batched matrix product over im2col columns; same arguments as ``F.conv2d``.

    Per group g:  Y_g = W_g · cols_g  with W_g (O_g, C_g·kH·kW) and cols_g (C_g·kH·kW, L).
    """
    x_padded, stride, dilation, out_h, out_w = _check_conv_arguments(x, weight, bias, stride, padding,
                                                                     dilation, groups)
    batch = x.shape[0]
    out_channels, channels_per_group, kh, kw = weight.shape
    columns = im2col(x_padded, (kh, kw), stride, 0, dilation)                       # (B, C_in·kH·kW, L)
    columns = columns.reshape(batch, groups, channels_per_group * kh * kw, -1)     # (B, G, C_g·kH·kW, L)
    w = weight.reshape(groups, out_channels // groups, channels_per_group * kh * kw)   # (G, O_g, C_g·kH·kW)
    out = torch.matmul(w[None], columns)                                            # (B, G, O_g, L)
    out = out.reshape(batch, out_channels, out_h, out_w)                            # (B, C_out, H_out, W_out)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


# --------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------
def _pool_windows(x: Tensor, kernel_size, stride, padding, pad_value: float):
    x = check_images(x, name="input", finite=False)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
    ph, pw = _pair(padding, "padding")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding must be at most half the kernel size (as in PyTorch), got padding "
                         f"{(ph, pw)} for kernel {(kh, kw)}")
    batch, channels, height, width = x.shape
    out_h = conv_output_size(height, kh, sh, ph)
    out_w = conv_output_size(width, kw, sw, pw)
    x = F.pad(x, (pw, pw, ph, ph), value=pad_value)
    columns = im2col(x, (kh, kw), (sh, sw))                                         # (B, C·kH·kW, L)
    windows = columns.reshape(batch, channels, kh * kw, out_h, out_w)               # (B, C, kH·kW, H_out, W_out)
    return windows, (kh, kw), (ph, pw), (height, width), (sh, sw)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Max pooling like ``F.max_pool2d`` (stride defaults to the kernel; padding counts as −∞)."""
    windows, *_ = _pool_windows(x, kernel_size, stride, padding, pad_value=-math.inf)
    return windows.amax(dim=2)                                                      # (B, C, H_out, W_out)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, count_include_pad: bool = True) -> Tensor:
    """Average pooling like ``F.avg_pool2d``; with ``count_include_pad=False`` padded zeros are not counted."""
    windows, (kh, kw), (ph, pw), (height, width), (sh, sw) = _pool_windows(x, kernel_size, stride, padding, 0.0)
    total = windows.sum(dim=2)                                                      # (B, C, H_out, W_out)
    if count_include_pad or (ph == 0 and pw == 0):
        return total / (kh * kw)
    ones = torch.ones(1, 1, height, width, dtype=x.dtype, device=x.device)
    counts, *_ = _pool_windows(ones, (kh, kw), (sh, sw), (ph, pw), 0.0)
    return total / counts.sum(dim=2)                                                # real pixels per window


# --------------------------------------------------------------------------------------------------
# Output shapes of a stack of layers: by the formula, and by running it
# --------------------------------------------------------------------------------------------------
def conv_output_shape(layers: Sequence[nn.Module] | nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape (C, H, W) after ``layers`` computed with :func:`conv_output_size` only (nothing is run).

    Knows Conv2d, MaxPool2d, AvgPool2d and shape-preserving layers (BatchNorm2d, ReLU, Dropout, ...).
    """
    if isinstance(layers, nn.Module):
        layers = [layers]
    # Nested Sequentials (a stack of conv blocks) are read layer by layer, in order.
    layers = [leaf for layer in layers for leaf in (_leaf_layers(layer) if isinstance(layer, nn.Sequential) else [layer])]
    channels, height, width = (int(v) for v in input_shape)
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if layer.in_channels != channels:
                raise ValueError(f"{layer} expects {layer.in_channels} input channels, the stack gives {channels}")
            if isinstance(layer.padding, str):
                raise ValueError(f"{layer}: string padding is not handled here; give integers")
            height = conv_output_size(height, layer.kernel_size[0], layer.stride[0], layer.padding[0],
                                      layer.dilation[0])
            width = conv_output_size(width, layer.kernel_size[1], layer.stride[1], layer.padding[1],
                                     layer.dilation[1])
            channels = layer.out_channels
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            if getattr(layer, "ceil_mode", False):
                raise ValueError(f"{layer}: ceil_mode=True is not handled by the floor formula")
            kernel = _pair(layer.kernel_size, "kernel_size")
            stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size, "stride")
            padding = _pair(layer.padding, "padding")
            dilation = _pair(getattr(layer, "dilation", 1), "dilation")
            height = conv_output_size(height, kernel[0], stride[0], padding[0], dilation[0])
            width = conv_output_size(width, kernel[1], stride[1], padding[1], dilation[1])
        elif isinstance(layer, (nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Dropout2d, nn.Identity, nn.GELU)):
            continue
        else:
            raise ValueError(f"conv_output_shape does not know the layer {type(layer).__name__}")
    return channels, height, width


def _leaf_layers(module: nn.Module) -> list[nn.Module]:
    """The layers of (nested) Sequentials in the order they run."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaf_layers(child)]
    return [module]


@torch.no_grad()
def trace_shapes(layers: nn.Sequential, input_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """Run ``layers`` on one zero input of shape (1, *input_shape) on the meta device (no memory, no
    arithmetic) and return each layer's name and output shape (C, H, W) or (features,)."""
    shapes, x = [], torch.zeros(1, *input_shape, device="meta")
    # Meta copies of the layers: the caller's weights stay where they are.
    for name, layer in layers.named_children():
        layer = _meta_copy(layer)
        x = layer(x)
        shapes.append((f"{name}: {type(layer).__name__}", tuple(x.shape[1:])))
    return shapes


def _meta_copy(layer: nn.Module) -> nn.Module:
    import copy
    clone = copy.deepcopy(layer)
    return clone.to("meta")


# --------------------------------------------------------------------------------------------------
# Data augmentation: random crops (of a zero-padded image) and horizontal flips, on a whole batch
# --------------------------------------------------------------------------------------------------
def crop_and_flip(images: Tensor, tops: Tensor, lefts: Tensor, flips: Tensor, padding: int) -> Tensor:
    """Zero-pad by ``padding``, crop an (H, W) window at (top, left) per image, flip where ``flips``.

    images (B, C, H, W); tops, lefts (B,) ints in [0, 2·padding]; flips (B,) bool.  A crop at
    (padding, padding) without a flip returns the image unchanged.
    """
    images = check_images(images)
    batch, channels, height, width = images.shape
    for name, values in (("tops", tops), ("lefts", lefts), ("flips", flips)):
        if not isinstance(values, Tensor) or values.shape != (batch,):
            raise ValueError(f"{name} must be a tensor of shape ({batch},), got "
                             f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}")
    if (tops.min() < 0) or (lefts.min() < 0) or (tops.max() > 2 * padding) or (lefts.max() > 2 * padding):
        raise ValueError(f"crop offsets must lie in [0, {2 * padding}] for padding {padding}")
    padded = F.pad(images, (padding, padding, padding, padding))                    # (B, C, H + 2p, W + 2p)
    rows = tops.long()[:, None] + torch.arange(height, device=images.device)        # (B, H)
    cols = lefts.long()[:, None] + torch.arange(width, device=images.device)        # (B, W)
    index = torch.arange(batch, device=images.device)[:, None, None]                # (B, 1, 1)
    crops = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]   # (B, H, W, C)
    crops = crops.permute(0, 3, 1, 2)                                               # (B, C, H, W)
    return torch.where(flips.bool()[:, None, None, None], crops.flip(-1), crops)


def random_crop_flip(images: Tensor, padding: int = 2, flip_probability: float = 0.5,
                     generator: torch.Generator | None = None) -> Tensor:
    """Random translation by up to ``padding`` pixels (pad with zeros, crop back) and random horizontal
    flips: torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip(p)``, drawn per image."""
    images = check_images(images)
    if not 0.0 <= flip_probability <= 1.0:
        raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
    batch = images.shape[0]
    tops = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)          # (B,)
    lefts = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)         # (B,)
    flips = torch.rand(batch, generator=generator) < flip_probability               # (B,)
    device = images.device
    return crop_and_flip(images, tops.to(device), lefts.to(device), flips.to(device), padding)


# --------------------------------------------------------------------------------------------------
# A CNN for Fashion-MNIST
# --------------------------------------------------------------------------------------------------
@dataclass
class FashionCNNConfig:
    in_channels: int = 1                         # grey-scale images
    image_size: int = 28                         # height = width of the input
    channels: tuple[int, ...] = (32, 64)         # one block per entry: 3×3 conv, BatchNorm, ReLU, 2×2 max-pool
    hidden: int = 128                            # width of the MLP head (and of embed())
    num_classes: int = 10                        # Fashion-MNIST classes
    dropout: float = 0.25                        # dropout before the last linear layer
    mean: float = FASHION_MNIST_MEAN             # input standardisation, applied inside the model, so it
    std: float = FASHION_MNIST_STD               # takes images in [0, 1] (zero padding stays "black")

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if self.num_classes < 2 or self.hidden < 1 or self.in_channels < 1:
            raise ValueError(f"num_classes >= 2, hidden >= 1 and in_channels >= 1 are needed, got "
                             f"{self.num_classes}, {self.hidden}, {self.in_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if self.image_size < 2 ** len(self.channels):
            raise ValueError(f"image_size={self.image_size} is too small for {len(self.channels)} 2×2 poolings")

    @property
    def feature_size(self) -> int:
        """Flattened size after the conv blocks, from the output-size formula (28 -> 14 -> 7: 64·7·7 = 3,136)."""
        size = self.image_size
        for _ in self.channels:
            size = conv_output_size(size, 3, 1, 1)                      # 3×3 conv, padding 1: size kept
            size = conv_output_size(size, 2, 2)                         # 2×2 max-pool, stride 2: halved (floor)
        return self.channels[-1] * size * size


class FashionCNN(nn.Module):
    """Images (batch, 1, 28, 28) in [0, 1] -> standardise -> conv blocks -> flatten -> MLP -> logits."""

    def __init__(self, config: FashionCNNConfig | None = None):
        super().__init__()
        self.config = config = config or FashionCNNConfig()
        # One conv block per entry of config.channels: 3x3 conv (no bias), BatchNorm, ReLU, 2x2 max-pool.
        self.features = conv_stack(config.in_channels, config.channels, batch_norm=True)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(config.feature_size, config.hidden), nn.ReLU(),
                                  nn.Dropout(config.dropout))
        self.classifier = nn.Linear(config.hidden, config.num_classes)

    def _check(self, images: Tensor) -> Tensor:
        return check_images(images, channels=self.config.in_channels, size=self.config.image_size)

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The output of every conv block: [(B, 32, 14, 14), (B, 64, 7, 7)] for the default config."""
        x = (self._check(images) - self.config.mean) / self.config.std
        maps = []
        for block in self.features:                                     # one map per conv block
            x = block(x)
            maps.append(x)
        return maps

    def embed(self, images: Tensor) -> Tensor:
        """(batch, 1, 28, 28) -> (batch, hidden): the image embedding later chapters reuse."""
        x = (self._check(images) - self.config.mean) / self.config.std
        return self.head(self.features(x))                              # (B, hidden)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.embed(images))                      # (B, num_classes)

    def config_dict(self) -> dict:
        return asdict(self.config)


# --------------------------------------------------------------------------------------------------
# ResNet (He et al. 2016), with torchvision's parameter names
# --------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """y = ReLU(F(x) + shortcut(x)), F = conv3×3 → BN → ReLU → conv3×3 → BN.

    The shortcut is the identity when the shape is kept, else a 1×1 convolution with the block's stride
    and a BatchNorm (torchvision's ``downsample``), so that F(x) and the shortcut can be added.
    """
    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if in_channels < 1 or out_channels < 1 or stride < 1:
            raise ValueError(f"channels and stride must be positive, got {in_channels}, {out_channels}, {stride}")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (batch, {self.in_channels}, height, width), got {tuple(x.shape)}")
        shortcut = x if self.downsample is None else self.downsample(x)           # (B, C_out, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))                                  # (B, C_out, H/s, W/s)
        out = self.bn2(self.conv2(out))                                           # (B, C_out, H/s, W/s)
        return self.relu(out + shortcut)


@dataclass
class ResNetConfig:
    layers: tuple[int, ...] = (2, 2, 2, 2)          # BasicBlocks per stage (ResNet-18: 2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)   # channels per stage; every stage after the first halves H, W
    in_channels: int = 3                            # RGB
    num_classes: int = 1000                         # ImageNet
    small_input: bool = False                       # 3×3 stride-1 stem, no max-pool (for 28–32 px images)

    def __post_init__(self) -> None:
        self.layers, self.widths = tuple(self.layers), tuple(self.widths)
        if len(self.layers) != len(self.widths) or not self.layers:
            raise ValueError(f"layers and widths need one entry per stage, got {self.layers} and {self.widths}")
        if any(n < 1 for n in self.layers) or any(w < 1 for w in self.widths):
            raise ValueError(f"layers and widths must be positive, got {self.layers} and {self.widths}")


class ResNet(nn.Module):
    """Stem → stages of BasicBlocks → global average pool → linear (torchvision's layout and names)."""

    def __init__(self, config: ResNetConfig | None = None):
        super().__init__()
        self.config = config = config or ResNetConfig()
        stem_width = config.widths[0]
        if config.small_input:
            self.conv1 = nn.Conv2d(config.in_channels, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:   # 224 -> 112 (7×7 conv, stride 2) -> 56 (3×3 max-pool, stride 2)
            self.conv1 = nn.Conv2d(config.in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        in_channels = stem_width
        for index, (blocks, width) in enumerate(zip(config.layers, config.widths)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(in_channels, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            in_channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, config.num_classes)
        self.embed_dim = in_channels
        for module in self.modules():      # He initialisation, as torchvision does
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def embed(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, widths[-1]): the pooled feature (512-d for ResNet-18)."""
        images = check_images(images)
        if images.shape[1] != self.config.in_channels:
            raise ValueError(f"expected {self.config.in_channels} input channels, got shape {tuple(images.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))                 # (B, 64, H/4, W/4)
        for index in range(len(self.config.layers)):
            x = getattr(self, f"layer{index + 1}")(x)                               # (B, width, ., .)
        return torch.flatten(self.avgpool(x), 1)                                  # (B, widths[-1])

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(self.embed(images))                                        # (B, num_classes)


def resnet18(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> ResNet:
    """ResNet-18: 11,689,512 parameters with the default ImageNet head, like ``torchvision.models.resnet18``."""
    return ResNet(ResNetConfig((2, 2, 2, 2), (64, 128, 256, 512), in_channels, num_classes, small_input))


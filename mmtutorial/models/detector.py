"""A YOLOS-style detector on the package's ViT, DETR's set-prediction loss, and a phrase grounder.

YOLOS (Fang et al., NeurIPS 2021) turns a plain ViT into a detector with no convolutions and no anchors:
K learned **detection tokens** are appended to the patch tokens, the encoder reads them all together, and
two heads read each detection token's final state:

    z_0 = [x_p^1 E; ...; x_p^N E] + E_pos  ||  [det_1; ...; det_K] + E_det     (N + K tokens)
    z_L = ViT blocks(z_0)                                                        the tower of models/vit.py
    class logits  W_c z_L[N + k]           (K, C + 1)   C classes and one "no object" class
    box           sigmoid(MLP(z_L[N + k])) (K, 4)       (cx, cy, w, h) as fractions of the image side

Training is DETR's set prediction (Carion et al., ECCV 2020): the K predictions are a *set*, so each
ground-truth object is assigned to exactly one prediction by the Hungarian algorithm on the cost

    C[i, j] = - w_class p_i(c_j) + w_L1 ||b_i - b_j||_1 - w_GIoU GIoU(b_i, b_j)

and the loss is cross-entropy on every prediction's class (unmatched ones should say "no object", with
weight ``no_object_weight`` so the K - n empty slots do not swamp the n objects), plus the L1 and
1 - GIoU box losses on the matched pairs.  No duplicates can be rewarded, so no NMS is needed.

:class:`PhraseGrounder` selects, for a referring expression ("the red circle left of the square"), one box
among the detected objects: a small Transformer reads the expression's words and one token per object
(its class probabilities and box) together, and scores each object token.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..checks import check_token_ids
from ..metrics import generalized_box_iou
from ..nn import LearnedPositionalEmbedding, TransformerConfig, TransformerEncoder
from .vit import ViT, ViTConfig

__all__ = ["DetectorConfig", "Detector", "box_cxcywh_to_xyxy", "box_xyxy_to_cxcywh", "matching_cost",
           "hungarian_match", "set_prediction_loss", "postprocess", "GrounderConfig", "PhraseGrounder",
           "pad_targets"]


@dataclass
class DetectorConfig:
    image_size: int = 32               # height = width of the input images in pixels
    patch_size: int = 4                # side of a square patch (8 x 8 = 64 patches at 32 px)
    in_channels: int = 3               # RGB
    num_classes: int = 24              # C object classes; the class head has C + 1 outputs (last = no object)
    num_detection_tokens: int = 8      # K learned detection tokens = at most K objects per image
    dim: int = 64                      # d: width of every token
    num_layers: int = 4                # Transformer blocks of the ViT tower
    num_heads: int = 4                 # attention heads per block
    mlp_ratio: float = 2.0             # MLP hidden size = mlp_ratio * dim
    dropout: float = 0.0               # dropout in the tower
    bias: bool = True                  # biases in linear layers and LayerNorms
    class_weight: float = 1.0          # w_class: matching cost and loss weight of the class term
    l1_weight: float = 5.0             # w_L1: DETR's 5
    giou_weight: float = 2.0           # w_GIoU: DETR's 2
    no_object_weight: float = 0.1      # cross-entropy weight of the "no object" class (DETR's eos_coef)

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 1:
            raise ValueError(f"DetectorConfig.num_classes must be a positive int, got {self.num_classes!r}")
        if not isinstance(self.num_detection_tokens, int) or self.num_detection_tokens < 1:
            raise ValueError(f"DetectorConfig.num_detection_tokens must be a positive int, got "
                             f"{self.num_detection_tokens!r}")
        for name in ("class_weight", "l1_weight", "giou_weight", "no_object_weight"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"DetectorConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        self.vit_config()                  # the tower's own checks (divisible sizes, heads, ...)

    def vit_config(self) -> ViTConfig:
        """The tower: models/vit.py's ViT with no class token, no head and every token out."""
        return ViTConfig(image_size=self.image_size, patch_size=self.patch_size, in_channels=self.in_channels,
                         num_classes=0, dim=self.dim, num_layers=self.num_layers, num_heads=self.num_heads,
                         mlp_ratio=self.mlp_ratio, dropout=self.dropout, bias=self.bias, class_token=False,
                         pool="none")

    def to_dict(self) -> dict:
        return asdict(self)


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre-size boxes -> corner boxes."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) corner boxes -> centre-size boxes."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


class Detector(nn.Module):
    """images (batch, C, H, W) -> (class logits (batch, K, num_classes + 1), boxes (batch, K, 4) cxcywh in [0, 1])."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        if not isinstance(config, DetectorConfig):
            raise TypeError(f"Detector wants a DetectorConfig, got {type(config).__name__}")
        self.config = config
        self.vit = ViT(config.vit_config())
        # The detection tokens play the class token's part K times over: content-free learned queries that
        # can only gather evidence from the patches by attention; their positions tell them apart.
        self.detection_tokens = nn.Parameter(torch.randn(1, config.num_detection_tokens, config.dim) * 0.02)
        self.detection_positions = LearnedPositionalEmbedding(config.num_detection_tokens, config.dim)
        self.class_head = nn.Linear(config.dim, config.num_classes + 1)
        self.box_head = nn.Sequential(nn.Linear(config.dim, config.dim), nn.ReLU(),
                                      nn.Linear(config.dim, config.dim), nn.ReLU(), nn.Linear(config.dim, 4))

    def forward_tokens(self, images: Tensor) -> Tensor:
        """The detection tokens' final states (batch, K, dim)."""
        patches = self.vit.embed_tokens(images)                                       # (batch, N, dim)
        queries = self.detection_positions(self.detection_tokens.to(patches.dtype))   # (1, K, dim)
        tokens = torch.cat([patches, queries.expand(images.size(0), -1, -1)], dim=1)  # (batch, N + K, dim)
        states = self.vit.encoder(tokens)                                             # (batch, N + K, dim)
        return states[:, patches.size(1):]                                            # (batch, K, dim)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        states = self.forward_tokens(images)                                          # (batch, K, dim)
        return self.class_head(states), self.box_head(states).sigmoid()               # (b, K, C+1), (b, K, 4)


# --------------------------------------------------------------------------------------------------
# Hungarian matching and the set-prediction loss
# --------------------------------------------------------------------------------------------------
def pad_targets(targets: list[dict], max_objects: int, image_size: int) -> tuple[Tensor, Tensor]:
    """``[{"boxes": (n, 4) xyxy pixels, "labels": (n,)}, ...]`` -> (boxes (B, M, 4) cxcywh in [0, 1],
    labels (B, M) with -1 for padding): fixed-size tensors that ``fit`` can batch."""
    boxes = torch.zeros(len(targets), max_objects, 4)
    labels = torch.full((len(targets), max_objects), -1, dtype=torch.int64)
    for index, target in enumerate(targets):
        n = len(target["labels"])
        if n > max_objects:
            raise ValueError(f"targets[{index}] has {n} objects, more than max_objects={max_objects}")
        boxes[index, :n] = box_xyxy_to_cxcywh(target["boxes"].float() / image_size)
        labels[index, :n] = target["labels"]
    return boxes, labels


def matching_cost(logits: Tensor, boxes: Tensor, target_labels: Tensor, target_boxes: Tensor,
                  config: DetectorConfig) -> Tensor:
    """One image's (K, n) cost: K predictions (logits (K, C+1), boxes (K, 4) cxcywh) against n objects."""
    probabilities = logits.softmax(dim=-1)[:, target_labels]                          # (K, n): p_i(c_j)
    l1 = torch.cdist(boxes, target_boxes, p=1)                                        # (K, n)
    giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))  # (K, n)
    return -config.class_weight * probabilities + config.l1_weight * l1 - config.giou_weight * giou


@torch.no_grad()
def hungarian_match(logits: Tensor, boxes: Tensor, target_labels: Tensor, target_boxes: Tensor,
                    config: DetectorConfig) -> list[tuple[Tensor, Tensor]]:
    """Per image, (prediction indices, object indices) of the assignment of least total cost
    (``scipy.optimize.linear_sum_assignment``).  Targets are padded: labels (B, M) with -1 for no object."""
    if logits.dim() != 3 or boxes.shape != (*logits.shape[:2], 4):
        raise ValueError(f"expected logits (batch, K, C+1) and boxes (batch, K, 4), got {tuple(logits.shape)} "
                         f"and {tuple(boxes.shape)}")
    if target_labels.dim() != 2 or target_boxes.shape != (*target_labels.shape, 4):
        raise ValueError(f"expected target labels (batch, M) and boxes (batch, M, 4), got "
                         f"{tuple(target_labels.shape)} and {tuple(target_boxes.shape)}")
    batch, num_queries = logits.shape[:2]
    # one batched cost over all predictions and all (padded) objects, then one small assignment per image
    cost = matching_cost(logits.flatten(0, 1).float(), boxes.flatten(0, 1).float(),
                         target_labels.flatten().clamp(min=0), target_boxes.flatten(0, 1).float(), config)
    cost = cost.view(batch, num_queries, batch, -1).cpu()                       # (B, K, B, M)
    matches = []
    for image in range(batch):
        present = (target_labels[image] >= 0).nonzero().squeeze(1).cpu()      # real objects' positions
        rows, columns = linear_sum_assignment(cost[image, :, image, present].numpy())
        matches.append((torch.as_tensor(rows, dtype=torch.int64), present[columns]))
    return matches


def set_prediction_loss(logits: Tensor, boxes: Tensor, target_labels: Tensor, target_boxes: Tensor,
                        config: DetectorConfig, return_parts: bool = False):
    """DETR's loss: w_class CE(all K slots; unmatched -> no object, weighted no_object_weight)
    + (w_L1 L1 + w_GIoU (1 - GIoU)) over matched pairs, each box sum divided by the number of objects."""
    matches = hungarian_match(logits, boxes, target_labels, target_boxes, config)
    num_classes = logits.size(-1) - 1
    classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)  # (B, K)
    batch_index = torch.cat([torch.full_like(rows, image) for image, (rows, _) in enumerate(matches)]).to(logits.device)
    prediction_index = torch.cat([rows for rows, _ in matches]).to(logits.device)
    object_index = torch.cat([columns for _, columns in matches]).to(logits.device)
    classes[batch_index, prediction_index] = target_labels[batch_index, object_index]
    weight = torch.ones(num_classes + 1, device=logits.device, dtype=torch.float32)
    weight[-1] = config.no_object_weight
    class_loss = F.cross_entropy(logits.float().transpose(1, 2), classes, weight=weight)
    num_objects = max(int(object_index.numel()), 1)
    matched_boxes = boxes[batch_index, prediction_index].float()                      # (n, 4)
    true_boxes = target_boxes[batch_index, object_index].float()                      # (n, 4)
    l1_loss = (matched_boxes - true_boxes).abs().sum() / num_objects
    giou = torch.diagonal(generalized_box_iou(box_cxcywh_to_xyxy(matched_boxes), box_cxcywh_to_xyxy(true_boxes)))
    giou_loss = (1 - giou).sum() / num_objects
    total = config.class_weight * class_loss + config.l1_weight * l1_loss + config.giou_weight * giou_loss
    if return_parts:
        return total, {"class": float(class_loss), "l1": float(l1_loss), "giou": float(giou_loss)}
    return total


@torch.no_grad()
def postprocess(logits: Tensor, boxes: Tensor, image_size: int) -> list[dict]:
    """Model outputs -> one dict per image with every slot's ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,)
    (the best real class's probability) and ``labels`` (K,): torchmetrics' prediction format, no NMS."""
    probabilities = logits.float().softmax(dim=-1)[..., :-1]                         # (B, K, C): drop no-object
    scores, labels = probabilities.max(dim=-1)                                       # (B, K)
    corners = box_cxcywh_to_xyxy(boxes.float()).clamp(0, 1) * image_size             # (B, K, 4)
    return [{"boxes": corners[i].cpu(), "scores": scores[i].cpu(), "labels": labels[i].cpu()}
            for i in range(logits.size(0))]


# --------------------------------------------------------------------------------------------------
# Phrase grounding
# --------------------------------------------------------------------------------------------------
@dataclass
class GrounderConfig:
    vocab_size: int = 64               # words of the expression vocabulary (scenes.caption_vocabulary())
    max_seq_len: int = 12              # tokens per expression
    num_classes: int = 24              # object classes described by each object token's probabilities
    max_objects: int = 8               # object tokens per image
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    bias: bool = True
    pad_id: int = 0                    # the vocabulary's <pad>, masked out of attention

    def to_dict(self) -> dict:
        return asdict(self)


class PhraseGrounder(nn.Module):
    """(expression ids (B, L), object classes (B, n, C) probabilities, object boxes (B, n, 4) cxcywh in [0, 1],
    object mask (B, n) True where an object exists) -> scores (B, n); the argmax is the referred object.

    Words and objects share one bidirectional Transformer, so a relation ("left of the square") can
    compare the boxes of two objects while reading the words that name them."""

    def __init__(self, config: GrounderConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.word_positions = LearnedPositionalEmbedding(config.max_seq_len, config.dim)
        self.object_embedding = nn.Sequential(nn.Linear(config.num_classes + 4, config.dim), nn.GELU(),
                                              nn.Linear(config.dim, config.dim))
        self.type_embedding = nn.Embedding(2, config.dim)                           # 0 word, 1 object
        self.encoder = TransformerEncoder(TransformerConfig(
            dim=config.dim, num_heads=config.num_heads, num_layers=config.num_layers, mlp_ratio=config.mlp_ratio,
            dropout=config.dropout, causal=False, norm="pre", bias=config.bias))
        self.score = nn.Linear(config.dim, 1)

    def forward(self, expression: Tensor, object_classes: Tensor, object_boxes: Tensor, object_mask: Tensor) -> Tensor:
        check_token_ids(expression, self.config.vocab_size, name="expression", max_len=self.config.max_seq_len)
        if object_classes.dim() != 3 or object_boxes.shape != (*object_classes.shape[:2], 4):
            raise ValueError(f"expected object classes (B, n, C) and boxes (B, n, 4), got "
                             f"{tuple(object_classes.shape)} and {tuple(object_boxes.shape)}")
        words = self.word_positions(self.word_embedding(expression)) + self.type_embedding.weight[0]  # (B, L, d)
        objects = self.object_embedding(torch.cat([object_classes, object_boxes], dim=-1))            # (B, n, d)
        objects = objects + self.type_embedding.weight[1]
        tokens = torch.cat([words, objects], dim=1)                                  # (B, L + n, d)
        padding = torch.cat([expression == self.config.pad_id, ~object_mask], dim=1)  # (B, L + n) True = ignore
        states = self.encoder(tokens, key_padding_mask=padding)                      # (B, L + n, d)
        scores = self.score(states[:, expression.size(1):]).squeeze(-1)              # (B, n)
        return scores.masked_fill(~object_mask, float("-inf"))

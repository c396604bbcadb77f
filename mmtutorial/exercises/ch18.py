"""Checkers for chapter 18 (detection and grounding).

Each checker calls the learner's function on fixed inputs, compares it with the package version
(``mmtutorial.metrics``, itself tested against torchvision.ops and torchmetrics), raises
:class:`ExerciseError` with a hint when it differs and prints a confirmation when it agrees.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._common import ExerciseError, as_float64 as _as_numpy, call_answer as _call, check_close, passed


def _boxes(n: int, seed: int, size: float = 20.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    sides = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 8 + 0.5
    return torch.cat([corner, corner + sides], dim=1)                   # (n, 4) xyxy


def check_box_iou(box_iou: Callable) -> None:
    """``box_iou(boxes1 (N, 4), boxes2 (M, 4)) -> (N, M)`` intersection over union of xyxy boxes."""
    from ..metrics import box_iou as reference

    name = "box_iou"
    for n, m, seed in ((4, 3, 0), (7, 7, 1)):
        a, b = _boxes(n, seed, size=10.0), _boxes(m, seed + 10, size=10.0)
        got = _call(name, box_iou, a.clone(), b.clone())
        check_close(f"{name} ({n} x {m} boxes)", _as_numpy(got), reference(a, b).numpy(), rtol=1e-6, atol=1e-9,
                    hint="Intersection sides are clamp(min(x1) - max(x0), 0); union = area1 + area2 - intersection; "
                         "compare every box of the first set with every box of the second (broadcast to (N, M)).")
    passed(name)


def check_nms(nms: Callable) -> None:
    """``nms(boxes (N, 4), scores (N,), iou_threshold) -> kept indices`` by decreasing score."""
    from ..metrics import nms as reference

    name = "nms"
    for seed, threshold in ((0, 0.5), (1, 0.3), (2, 0.7)):
        boxes = _boxes(30, seed, size=8.0)
        scores = torch.rand(30, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)
        got = _call(name, nms, boxes.clone(), scores.clone(), threshold)
        if got is None:
            raise ExerciseError(f"{name}: got None. Did you forget to `return` the kept indices?")
        got = [int(i) for i in _as_numpy(got).ravel()]
        expected = reference(boxes, scores, threshold).tolist()
        if got != expected:
            hint = ("Keep the best remaining box, then drop every box whose IoU with it is ABOVE the threshold; "
                    "repeat on what is left.  Return indices into the original boxes, highest score first.")
            if sorted(got) == sorted(expected):
                hint = "The right boxes, in the wrong order: return them by decreasing score. " + hint
            raise ExerciseError(f"{name} (threshold {threshold}): kept {got[:8]}{'...' if len(got) > 8 else ''}, "
                                f"expected {expected[:8]}{'...' if len(expected) > 8 else ''}. {hint}")
    passed(name)


def check_average_precision_11(average_precision_11: Callable) -> None:
    """``average_precision_11(recall, precision) -> float``: PASCAL VOC 2007's 11-point interpolated AP."""
    from ..metrics import average_precision

    name = "average_precision_11"
    generator = np.random.default_rng(0)
    cases = []
    for num_true in (4, 10, 25):
        hits = generator.random(40) < 0.5
        hits[np.cumsum(hits) > num_true] = False                      # never more hits than objects
        true_positives = np.cumsum(hits)
        cases.append((true_positives / num_true, true_positives / np.arange(1, 41)))
    for recall, precision in cases:
        got = _call(name, average_precision_11, recall.copy(), precision.copy())
        expected = average_precision(recall, precision, "11")
        hint = ("At each r in 0, 0.1, ..., 1 take the largest precision among the points with recall >= r "
                "(0 if there is none), then average the 11 values.")
        if got is not None and np.isclose(float(_as_numpy(got)), average_precision(recall, precision, "all")):
            hint = "That is the all-point area; " + hint
        check_close(name, got, expected, rtol=1e-9, atol=1e-12, hint=hint)
    passed(name)

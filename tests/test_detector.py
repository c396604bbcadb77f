"""Chapter 18: box IoU/GIoU and NMS against torchvision.ops, AP interpolations by hand, mAP against
torchmetrics' MeanAveragePrecision (pycocotools) on random and hand-made cases (duplicates, misses, empty
images), Hungarian matching against scipy, the set-prediction loss against transformers' DETR loss, the
detector and grounder shapes, bad inputs, and the chapter 18 exercise checkers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torchvision.ops as ops
from scipy.optimize import linear_sum_assignment
from torch.testing import assert_close

from mmtutorial import metrics
from mmtutorial.data import scenes
from mmtutorial.exercises import ExerciseError, ch18
from mmtutorial.models import detector
from mmtutorial.models.vit import ViTConfig, vit_parameter_count


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def random_boxes(n, generator, size=24.0, dtype=torch.float64):
    corner = torch.rand(n, 2, generator=generator, dtype=dtype) * size
    sides = torch.rand(n, 2, generator=generator, dtype=dtype) * 8 + 0.5
    return torch.cat([corner, corner + sides], dim=1)


# -- boxes -----------------------------------------------------------------------------------------
def test_iou_giou_match_torchvision():
    generator = torch.Generator().manual_seed(0)
    a, b = random_boxes(9, generator), random_boxes(6, generator)
    assert_close(metrics.box_iou(a, b), ops.box_iou(a, b))
    assert_close(metrics.generalized_box_iou(a, b), ops.generalized_box_iou(a, b))
    assert_close(metrics.box_area(a), ops.box_area(a))
    same = metrics.box_iou(a, a)
    assert_close(torch.diagonal(same), torch.ones(9, dtype=torch.float64))


def test_iou_hand_values():
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    shifted = torch.tensor([[1.0, 0.0, 3.0, 2.0]])                  # overlap 2, union 6
    far = torch.tensor([[4.0, 0.0, 6.0, 2.0]])                      # disjoint: enclosing 12, union 8
    assert float(metrics.box_iou(box, shifted)) == pytest.approx(1 / 3)
    assert float(metrics.box_iou(box, far)) == 0.0
    assert float(metrics.generalized_box_iou(box, far)) == pytest.approx(0 - (12 - 8) / 12)


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.8])
def test_nms_matches_torchvision(threshold):
    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(40, generator, size=10.0)
    scores = torch.rand(40, generator=generator, dtype=torch.float64)
    assert metrics.nms(boxes, scores, threshold).tolist() == ops.nms(boxes, scores, threshold).tolist()


@pytest.mark.parametrize("bad, error", [
    (torch.tensor([[2.0, 0.0, 1.0, 1.0]]), "x1 < x0"),
    (torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), "NaN"),
    (torch.zeros(3, 5), "shape"),
])
def test_bad_boxes_refused(bad, error):
    with pytest.raises(ValueError, match=error):
        metrics.box_iou(bad, torch.zeros(1, 4))


def test_nms_bad_scores_refused():
    with pytest.raises(ValueError, match="scores"):
        metrics.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        metrics.nms(torch.zeros(3, 4), torch.zeros(3), 1.5)


# -- average precision -----------------------------------------------------------------------------
def test_average_precision_interpolations_by_hand():
    # 5 detections for 4 objects: hit, miss, hit, hit, miss -> recall and precision down the ranking
    hits = np.array([1, 0, 1, 1, 0])
    recall = np.cumsum(hits) / 4
    precision = np.cumsum(hits) / np.arange(1, 6)
    # envelope: [1, 0.75, 0.75, 0.75, 0.6]; recall rises at points 1, 3, 4 by 0.25 each
    assert metrics.average_precision(recall, precision, "all") == pytest.approx(0.25 * (1 + 0.75 + 0.75))
    # 11-point: r = 0, 0.1, 0.2 -> 1; r = 0.3 ... 0.7 -> 0.75; r = 0.8, 0.9, 1.0 -> 0 (recall never reaches them)
    assert metrics.average_precision(recall, precision, "11") == pytest.approx((3 * 1 + 5 * 0.75) / 11)
    with pytest.raises(ValueError, match="interpolation"):
        metrics.average_precision(recall, precision, "voc")
    with pytest.raises(ValueError, match="non-decreasing"):
        metrics.average_precision(recall[::-1], precision, "all")


def _torchmetrics_map(predictions, targets):
    from torchmetrics.detection import MeanAveragePrecision

    reference = MeanAveragePrecision(class_metrics=True)
    reference.update(predictions, targets)
    return reference.compute()


def _assert_same_map(predictions, targets):
    ours = metrics.mean_average_precision(predictions, targets)
    reference = _torchmetrics_map(predictions, targets)
    for key in ("map", "map_50", "map_75"):
        assert ours[key] == pytest.approx(float(reference[key]), abs=1e-6), key
    return ours


def test_map_matches_torchmetrics_random():
    generator = torch.Generator().manual_seed(2)
    predictions, targets = [], []
    for _ in range(25):
        n = int(torch.randint(0, 4, (1,), generator=generator))
        true_boxes = random_boxes(n, generator, dtype=torch.float32)
        true_labels = torch.randint(0, 3, (n,), generator=generator)
        extra = int(torch.randint(0, 3, (1,), generator=generator))
        noisy = true_boxes + torch.randn(n, 4, generator=generator) * 0.8
        noisy = torch.cat([noisy[:, :2], torch.maximum(noisy[:, 2:], noisy[:, :2] + 0.1)], dim=1)
        boxes = torch.cat([noisy, random_boxes(extra, generator, dtype=torch.float32)])
        labels = torch.cat([true_labels, torch.randint(0, 4, (extra,), generator=generator)])
        predictions.append({"boxes": boxes, "scores": torch.rand(n + extra, generator=generator), "labels": labels})
        targets.append({"boxes": true_boxes, "labels": true_labels})
    ours = _assert_same_map(predictions, targets)
    assert 0 < ours["map"] < 1


def _box(x0, y0, x1, y1):
    return torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32)


def test_map_hand_made_cases():
    target = {"boxes": torch.cat([_box(0, 0, 10, 10), _box(20, 20, 30, 30)]), "labels": torch.tensor([0, 0])}
    perfect = {"boxes": target["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}
    assert _assert_same_map([perfect], [target])["map"] == pytest.approx(1.0)
    # a duplicate of the first object ranked second: a false positive between the two hits
    duplicate = {"boxes": torch.cat([_box(0, 0, 10, 10), _box(0, 0, 10, 10), _box(20, 20, 30, 30)]),
                 "scores": torch.tensor([0.9, 0.85, 0.8]), "labels": torch.tensor([0, 0, 0])}
    assert _assert_same_map([duplicate], [target])["map_50"] < 1.0
    # a miss: half the recall is never reached
    miss = {"boxes": _box(0, 0, 10, 10), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    assert _assert_same_map([miss], [target])["map_50"] == pytest.approx(0.5, abs=0.01)
    # an empty image with a confident false detection, and an image with no detections at all
    empty_target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    false_alarm = {"boxes": _box(5, 5, 9, 9), "scores": torch.tensor([0.99]), "labels": torch.tensor([0])}
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    _assert_same_map([perfect, false_alarm, nothing], [target, empty_target, target])
    # a wrong label is a miss for one class and a false positive for another
    wrong = {"boxes": target["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}
    _assert_same_map([wrong], [target])


def test_map_bad_inputs():
    target = {"boxes": _box(0, 0, 1, 1), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="one prediction dict per target"):
        metrics.mean_average_precision([], [target])
    with pytest.raises(ValueError, match="keys"):
        metrics.mean_average_precision([{"boxes": _box(0, 0, 1, 1)}], [target])
    with pytest.raises(ValueError, match="scores"):
        metrics.mean_average_precision([{"boxes": _box(0, 0, 1, 1), "scores": torch.zeros(2),
                                         "labels": torch.tensor([0])}], [target])


# -- matching and the loss -------------------------------------------------------------------------
def _outputs_and_targets(seed=0, batch=3, queries=5, classes=4):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, queries, classes + 1, generator=generator)
    boxes = torch.rand(batch, queries, 4, generator=generator) * 0.5 + 0.1
    targets = []
    for image in range(batch):
        n = image % 3 + 1
        targets.append({"boxes": random_boxes(n, generator, size=20, dtype=torch.float32),
                        "labels": torch.randint(0, classes, (n,), generator=generator)})
    padded_boxes, padded_labels = detector.pad_targets(targets, 3, 32)
    return logits, boxes, targets, padded_boxes, padded_labels


def test_hungarian_match_is_optimal():
    config = detector.DetectorConfig(num_classes=4, num_detection_tokens=5)
    logits, boxes, targets, padded_boxes, padded_labels = _outputs_and_targets()
    matches = detector.hungarian_match(logits, boxes, padded_labels, padded_boxes, config)
    for image, (rows, columns) in enumerate(matches):
        present = padded_labels[image] >= 0
        cost = detector.matching_cost(logits[image], boxes[image], padded_labels[image][present],
                                      padded_boxes[image][present], config)
        best = min(sum(float(cost[p, j]) for j, p in enumerate(perm))
                   for perm in itertools.permutations(range(5), int(present.sum())))
        assert float(cost[rows, columns].sum()) == pytest.approx(best, abs=1e-5)
        expected_rows, _ = linear_sum_assignment(cost.numpy())
        assert rows.tolist() == expected_rows.tolist()


def test_set_prediction_loss_matches_transformers():
    from transformers import YolosConfig
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    config = detector.DetectorConfig(num_classes=4, num_detection_tokens=5, no_object_weight=0.1)
    logits, boxes, targets, padded_boxes, padded_labels = _outputs_and_targets(seed=3)
    ours = detector.set_prediction_loss(logits, boxes, padded_labels, padded_boxes, config)
    reference_config = YolosConfig(num_labels=4, class_cost=1, bbox_cost=5, giou_cost=2, eos_coefficient=0.1,
                                   bbox_loss_coefficient=5, giou_loss_coefficient=2, auxiliary_loss=False)
    labels = [{"class_labels": t["labels"], "boxes": detector.box_xyxy_to_cxcywh(t["boxes"] / 32)} for t in targets]
    reference, _, _ = ForObjectDetectionLoss(logits, labels, "cpu", boxes, reference_config)
    assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_loss_ignores_prediction_order():
    config = detector.DetectorConfig(num_classes=4, num_detection_tokens=5)
    logits, boxes, _, padded_boxes, padded_labels = _outputs_and_targets(seed=4)
    permutation = torch.tensor([3, 0, 4, 1, 2])
    first = detector.set_prediction_loss(logits, boxes, padded_labels, padded_boxes, config)
    second = detector.set_prediction_loss(logits[:, permutation], boxes[:, permutation], padded_labels,
                                          padded_boxes, config)
    assert_close(first, second)


# -- the models ------------------------------------------------------------------------------------
def test_detector_shapes_and_gradients():
    config = detector.DetectorConfig(image_size=32, patch_size=8, num_classes=5, num_detection_tokens=4, dim=32,
                                     num_layers=1, num_heads=2)
    torch.manual_seed(0)
    model = detector.Detector(config)
    images = torch.randn(2, 3, 32, 32)
    logits, boxes = model(images)
    assert logits.shape == (2, 4, 6) and boxes.shape == (2, 4, 4)
    assert boxes.min() > 0 and boxes.max() < 1
    target_boxes, target_labels = detector.pad_targets(
        [{"boxes": _box(1, 1, 9, 9), "labels": torch.tensor([2])},
         {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], 3, 32)
    loss = detector.set_prediction_loss(logits, boxes, target_labels, target_boxes, config)
    loss.backward()
    assert model.detection_tokens.grad.abs().sum() > 0
    predictions = detector.postprocess(logits, boxes, 32)
    assert predictions[0]["boxes"].shape == (4, 4) and predictions[0]["labels"].max() < 5


def test_detector_bad_inputs():
    with pytest.raises(ValueError, match="num_classes"):
        detector.DetectorConfig(num_classes=0)
    with pytest.raises(ValueError, match="divisible"):
        detector.DetectorConfig(image_size=30, patch_size=8)
    model = detector.Detector(detector.DetectorConfig(dim=32, num_layers=1, num_heads=2))
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(TypeError):
        detector.Detector(ViTConfig())
    with pytest.raises(ValueError, match="more than max_objects"):
        detector.pad_targets([{"boxes": torch.zeros(4, 4), "labels": torch.zeros(4, dtype=torch.int64)}], 3, 32)


def test_vit_b_16_count_untouched():
    assert vit_parameter_count(ViTConfig.vit_b_16()) == 86_567_656


def test_grounder_shapes_and_mask():
    vocab = scenes.caption_vocabulary()
    config = detector.GrounderConfig(vocab_size=len(vocab), max_seq_len=8, num_classes=24, max_objects=3, dim=32,
                                     num_layers=1, num_heads=2)
    model = detector.PhraseGrounder(config)
    words = vocab.encode_batch(["the red circle", "the square left of the circle"], max_len=8)
    classes = torch.rand(2, 3, 24)
    boxes = torch.rand(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = model(words, classes, boxes, mask)
    assert scores.shape == (2, 3) and torch.isinf(scores[0, 2]) and torch.isfinite(scores[1]).all()
    with pytest.raises(ValueError):
        model(words, classes, boxes[:, :2], mask)


# -- exercises -------------------------------------------------------------------------------------
def test_exercise_checkers_accept_right_and_reject_wrong():
    ch18.check_box_iou(lambda a, b: metrics.box_iou(a, b))
    with pytest.raises(ExerciseError):
        ch18.check_box_iou(lambda a, b: metrics.box_iou(a, b) * 0.9)
    ch18.check_nms(lambda boxes, scores, threshold: metrics.nms(boxes, scores, threshold))
    with pytest.raises(ExerciseError):
        ch18.check_nms(lambda boxes, scores, threshold: torch.argsort(scores, descending=True))
    ch18.check_average_precision_11(lambda r, p: metrics.average_precision(r, p, "11"))
    with pytest.raises(ExerciseError):
        ch18.check_average_precision_11(lambda r, p: metrics.average_precision(r, p, "all"))

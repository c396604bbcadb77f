"""mmtutorial.metrics against scikit-learn (float64, several seeds, tied scores), bad input, and the
chapter 4 exercise checkers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import mannwhitneyu
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve as sk_calibration_curve

from mmtutorial import metrics
from mmtutorial.exercises import ExerciseError, ch04

SEEDS = range(6)


def _multiclass(seed: int, n: int = 120, num_classes: int = 4):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, n)                                # (n,)
    # Mostly right, so the metrics are not all near chance.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, num_classes, n))
    return y_true, y_pred


def _binary_scores(seed: int, n: int = 80, decimals: int = 1):
    """Labels and scores rounded so that many scores tie."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    scores = np.round(np.clip(0.3 * y_true + rng.random(n), 0, 1), decimals)
    return y_true, scores


# -- classification ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_confusion_matrix_match_sklearn(seed):
    y_true, y_pred = _multiclass(seed)
    assert metrics.accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
    assert_array_equal(metrics.confusion_matrix(y_true, y_pred, num_classes=4),
                       skm.confusion_matrix(y_true, y_pred, labels=range(4)))


def test_accepts_torch_tensors_and_lists():
    y_true, y_pred = _multiclass(0)
    assert metrics.accuracy(torch.from_numpy(y_true), torch.from_numpy(y_pred)) == \
        metrics.accuracy(y_true.tolist(), y_pred.tolist())
    y_bin, scores = _binary_scores(0)
    assert metrics.roc_auc(torch.from_numpy(y_bin), torch.tensor(scores, requires_grad=True)) == \
        pytest.approx(skm.roc_auc_score(y_bin, scores))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_averages_match_sklearn(seed, average):
    y_true, y_pred = _multiclass(seed)
    expected = skm.precision_recall_fscore_support(y_true, y_pred, average=average)[:3]
    assert_allclose(metrics.precision_recall_f1(y_true, y_pred, average=average), expected, rtol=1e-12)
    assert metrics.f1_score(y_true, y_pred, average=average) == pytest.approx(
        skm.f1_score(y_true, y_pred, average=average), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_and_binary_match_sklearn(seed):
    y_true, y_pred = _multiclass(seed)
    for ours, theirs in zip(metrics.precision_recall_f1(y_true, y_pred, average=None),
                            skm.precision_recall_fscore_support(y_true, y_pred, average=None)):
        assert_allclose(ours, theirs, rtol=1e-12)
    y_bin, y_bin_pred = y_true % 2, y_pred % 2
    for pos_label in (0, 1):
        expected = skm.precision_recall_fscore_support(y_bin, y_bin_pred, average="binary",
                                                       pos_label=pos_label)[:3]
        assert_allclose(metrics.precision_recall_f1(y_bin, y_bin_pred, pos_label=pos_label), expected)


def test_micro_f1_equals_accuracy_for_single_label_data():
    y_true, y_pred = _multiclass(3)
    assert metrics.f1_score(y_true, y_pred, average="micro") == pytest.approx(metrics.accuracy(y_true, y_pred))


def test_zero_division_gives_zero_like_sklearn_and_no_warning():
    y_true = np.array([0, 0, 0, 1, 1])
    y_pred = np.zeros(5, dtype=np.int64)                                    # never predicts 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = metrics.precision_recall_f1(y_true, y_pred)
    assert ours == (0.0, 0.0, 0.0)
    # A class missing from y_true and y_pred when num_classes fixes the label set.
    y_true, y_pred = np.array([0, 1, 1]), np.array([0, 1, 0])
    expected = skm.precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2], average="macro",
                                                   zero_division=0.0)[:3]
    assert_allclose(metrics.precision_recall_f1(y_true, y_pred, "macro", num_classes=3), expected)


def test_f1_worked_example_from_the_chapter():
    # TP=40, FP=10, FN=20, TN=30 (ERRATA E10): F1 is the harmonic mean of precision and recall.
    y_true = np.r_[np.ones(40), np.zeros(10), np.ones(20), np.zeros(30)].astype(int)
    y_pred = np.r_[np.ones(40), np.ones(10), np.zeros(20), np.zeros(30)].astype(int)
    precision, recall, f1 = metrics.precision_recall_f1(y_true, y_pred)
    assert (metrics.accuracy(y_true, y_pred), precision) == (0.7, 0.8)
    assert recall == pytest.approx(2 / 3) and f1 == pytest.approx(8 / 11)


# -- ranking ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("drop_intermediate", [True, False])
def test_roc_curve_matches_sklearn_exactly_with_ties(seed, drop_intermediate):
    y_true, scores = _binary_scores(seed)
    ours = metrics.roc_curve(y_true, scores, drop_intermediate=drop_intermediate)
    theirs = skm.roc_curve(y_true, scores, drop_intermediate=drop_intermediate)
    for a, b in zip(ours, theirs):
        assert_array_equal(a, b)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_matches_sklearn_and_mann_whitney(seed):
    y_true, scores = _binary_scores(seed)
    auc = metrics.roc_auc(y_true, scores)
    assert auc == pytest.approx(skm.roc_auc_score(y_true, scores), abs=1e-12)
    u_statistic = mannwhitneyu(scores[y_true == 1], scores[y_true == 0]).statistic
    assert auc == pytest.approx(u_statistic / ((y_true == 1).sum() * (y_true == 0).sum()), abs=1e-12)
    assert metrics.roc_auc(1 - y_true, scores, pos_label=0) == pytest.approx(auc, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_multiclass_ovr_auc_matches_sklearn(seed, average):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 150)
    logits = rng.normal(size=(150, 5)) + 1.5 * np.eye(5)[y_true]
    probs = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)   # ties after rounding
    probs /= probs.sum(1, keepdims=True)
    expected = skm.roc_auc_score(y_true, probs, multi_class="ovr", average=average)
    assert metrics.roc_auc(y_true, probs, multi_class="ovr", average=average) == pytest.approx(expected,
                                                                                                abs=1e-12)


# -- calibration -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_calibration_curve_matches_sklearn(seed, n_bins):
    y_true, probs = _binary_scores(seed, decimals=2)                        # values on bin edges too
    prob_true, prob_pred, counts = metrics.calibration_curve(y_true, probs, n_bins, return_counts=True)
    expected_true, expected_pred = sk_calibration_curve(y_true, probs, n_bins=n_bins)
    assert_allclose(prob_true, expected_true, rtol=1e-12)
    assert_allclose(prob_pred, expected_pred, rtol=1e-12)
    assert counts.sum() == len(y_true)
    # ECE from the same bins.
    ece = np.sum(counts / len(y_true) * np.abs(expected_true - expected_pred))
    assert metrics.expected_calibration_error(y_true, probs, n_bins) == pytest.approx(ece, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_top_label_ece_matches_torchmetrics_and_sklearn_bins(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) * 2 + 2 * np.eye(4)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)           # (n, 4)
    ours = metrics.expected_calibration_error(y_true, probs, n_bins=10)
    confidence, correct = probs.max(1), (probs.argmax(1) == y_true).astype(int)
    prob_true, prob_pred = sk_calibration_curve(correct, confidence, n_bins=10)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], confidence), minlength=10)
    assert ours == pytest.approx(np.sum(counts[counts > 0] / 200 * np.abs(prob_true - prob_pred)), abs=1e-12)
    torchmetrics = pytest.importorskip("torchmetrics")
    reference = torchmetrics.functional.classification.multiclass_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(y_true), num_classes=4, n_bins=10, norm="l1")
    assert ours == pytest.approx(float(reference), abs=1e-5)


def test_perfectly_calibrated_bins_have_zero_ece():
    probs = np.r_[np.full(10, 0.2), np.full(10, 0.7)]
    y_true = np.r_[np.ones(2), np.zeros(8), np.ones(7), np.zeros(3)].astype(int)
    assert metrics.expected_calibration_error(y_true, probs, n_bins=10) == pytest.approx(0.0, abs=1e-12)


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        metrics.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])
    with pytest.raises(TypeError, match="integer class labels, got dtype float64"):
        metrics.f1_score([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*got label 5"):
        metrics.confusion_matrix([0, 1, 5], [0, 1, 2], num_classes=3)
    with pytest.raises(ValueError, match=">= 0, got -1"):
        metrics.confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="shape \\(n,\\), got shape \\(2, 2\\)"):
        metrics.accuracy([[0, 1], [1, 0]], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="average must be one of"):
        metrics.precision_recall_f1([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="at most two classes, got 3"):
        metrics.precision_recall_f1([0, 1, 2], [0, 1, 2])


def test_roc_and_calibration_bad_input():
    with pytest.raises(ValueError, match="single class"):
        metrics.roc_auc([1, 1, 1], [0.2, 0.5, 0.9])
    # Recent scikit-learn warns and returns NaN instead (older versions raised); we refuse outright.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            assert np.isnan(skm.roc_auc_score([1, 1, 1], [0.2, 0.5, 0.9]))
        except ValueError:
            pass
    with pytest.raises(ValueError, match="two classes for a binary metric, got 3"):
        metrics.roc_curve([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="multi_class='ovr'"):
        metrics.roc_auc([0, 1, 2], np.eye(3))
    with pytest.raises(ValueError, match=r"classes \[2\] are missing"):
        metrics.roc_auc([0, 1, 1], np.eye(3), multi_class="ovr")
    with pytest.raises(ValueError, match="finite"):
        metrics.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match=r"in \[0, 1\], got values in"):
        metrics.calibration_curve([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="0/1 labels"):
        metrics.calibration_curve([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="n_bins must be a positive int, got 0"):
        metrics.expected_calibration_error([0, 1], [0.5, 0.5], n_bins=0)


# -- exercise checkers -----------------------------------------------------------------------------
def _fbeta(y_true, y_pred, beta):
    return skm.fbeta_score(y_true, y_pred, beta=beta, zero_division=0.0)


def _precision_at_k(y_true, scores, k):
    return float(np.asarray(y_true)[np.argsort(-np.asarray(scores))[:k]].mean())


def _best_f1_threshold(y_true, scores):
    candidates = np.unique(scores)
    f1s = [metrics.f1_score(y_true, (scores >= t).astype(int)) for t in candidates]
    return float(candidates[int(np.argmax(f1s))]), float(max(f1s))


def _balanced_accuracy(y_true, y_pred):
    return float(np.mean(metrics.precision_recall_f1(y_true, y_pred, average=None)[1][np.unique(y_true)]))


@pytest.mark.parametrize("checker, right, wrong", [
    (ch04.check_fbeta, _fbeta, lambda y, p, beta: skm.f1_score(y, p)),
    (ch04.check_precision_at_k, _precision_at_k, lambda y, s, k: float(np.mean(y))),
    (ch04.check_best_f1_threshold, _best_f1_threshold, lambda y, s: (0.5, metrics.f1_score(y, (s >= 0.5) * 1))),
    (ch04.check_balanced_accuracy, _balanced_accuracy, lambda y, p: metrics.accuracy(y, p)),
])
def test_exercise_checkers_accept_right_and_reject_wrong(checker, right, wrong, capsys):
    checker(right)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError):
        checker(wrong)


def test_exercise_checker_reports_unwritten_stub():
    def stub(*args):
        raise NotImplementedError  # your code

    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch04.check_balanced_accuracy(stub)


# -- plotting helpers (chapter 4) ---------------------------------------------------------------------
def test_evaluation_plots_return_axes_and_reject_bad_shapes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmtutorial import viz

    y_true, scores = _binary_scores(0)
    fpr, tpr, _ = metrics.roc_curve(y_true, scores)
    assert viz.plot_roc_curve(fpr, tpr, auc=metrics.roc_auc(y_true, scores)) is not None
    ax = viz.plot_confusion_matrix(metrics.confusion_matrix(*_multiclass(0)), normalize=True)
    assert len(ax.get_xticks()) == 4
    ax = viz.plot_reliability_diagram(*metrics.calibration_curve(y_true, scores, return_counts=True))
    viz.plot_reliability_diagram(*metrics.calibration_curve(y_true, scores), ax=ax)
    assert sum(line.get_gid() == "calibration-diagonal" for line in ax.get_lines()) == 1
    with pytest.raises(ValueError, match=r"square \(K, K\) matrix, got shape \(2, 3\)"):
        viz.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same shape|one shape"):
        viz.plot_roc_curve([0, 1], [0, 0.5, 1])
    plt.close("all")



def test_inputs_that_used_to_give_silent_or_obscure_results():
    # pos_label that is none of the labels: every score was 0.0 without a word (scikit-learn refuses it)
    with pytest.raises(ValueError, match=r"pos_label=2 is not one of the labels \[0, 1\]"):
        metrics.precision_recall_f1([0, 1, 1], [0, 1, 0], pos_label=2)
    with pytest.raises(TypeError, match="pos_label must be an int class label, got str '1'"):
        metrics.f1_score([0, 1], [0, 1], pos_label="1")
    assert metrics.precision_recall_f1([0, 0], [0, 0], pos_label=1) == (0.0, 0.0, 0.0)   # one class: as sklearn
    # a stray large label asked for an exabyte-sized confusion matrix (MemoryError)
    with pytest.raises(ValueError, match=r"1000000001\*\*2 entries.*remap"):
        metrics.confusion_matrix([0, 10**9], [0, 0])
    # per-class sigmoid outputs are no distribution: top-label ECE would be meaningless
    with pytest.raises(ValueError, match=r"row sums in \[0.5, 1.8\]"):
        metrics.expected_calibration_error([0, 1], [[0.9, 0.9], [0.2, 0.3]])
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)   # float32 softmax rows still pass
    assert metrics.expected_calibration_error([0, 2], rows) == pytest.approx(0.25)

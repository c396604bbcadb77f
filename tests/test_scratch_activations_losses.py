"""mmtutorial.scratch.activations and .losses against torch.nn.functional and torch.autograd (float64),
extreme logits, bad input, and the chapter 1 exercise checkers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mmtutorial.exercises import ExerciseError, ch01
from mmtutorial.scratch import activations as act
from mmtutorial.scratch import losses

X = np.concatenate([np.linspace(-6, 6, 41), [-1000.0, -50.0, -1e-8, 1e-8, 50.0, 1000.0]])

TORCH_ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": lambda t: F.gelu(t, approximate="none"),
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
}


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# -- activations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(act.ACTIVATIONS))
def test_activation_and_derivative_match_torch(name):
    f, f_grad = act.ACTIVATIONS[name]
    x = _t(X, grad=True)
    y = TORCH_ACTIVATIONS[name](x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    assert_close(torch.from_numpy(f(X)), y.detach(), rtol=1e-12, atol=1e-12)
    assert_close(torch.from_numpy(f_grad(X)), dy, rtol=1e-10, atol=1e-12)


def test_activation_shapes_and_registry():
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    for name, (f, f_grad) in act.ACTIVATIONS.items():
        assert f(x).shape == x.shape and f_grad(x).shape == x.shape, name
        assert f(x).dtype == np.float64
    assert set(act.ACTIVATIONS) == {"sigmoid", "tanh", "relu", "gelu", "gelu_tanh"}
    assert act.get_activation("relu") == (act.relu, act.relu_grad)
    assert act.sigmoid(3).shape == () and act.relu([1, -2]).tolist() == [1.0, 0.0]  # scalars and lists


def test_sigmoid_is_finite_and_exact_at_extremes():
    with np.errstate(over="raise", invalid="raise"):    # the stable form must not even overflow
        s = act.sigmoid(np.array([-1000.0, 1000.0]))
    assert s.tolist() == [0.0, 1.0]


def test_activation_bad_input():
    with pytest.raises(TypeError, match="real numbers.*got dtype"):
        act.relu(np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\), got 'erf'"):
        act.gelu(X, approximate="erf")
    with pytest.raises(ValueError, match="unknown activation 'swish'; expected one of"):
        act.get_activation("swish")


# -- losses ------------------------------------------------------------------------------------------
def test_mse_and_grad_match_torch():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    p = _t(pred, grad=True)
    loss = F.mse_loss(p, _t(target))
    loss.backward()
    assert_close(losses.mse(pred, target), loss.item(), rtol=1e-12, atol=0)
    assert_close(torch.from_numpy(losses.mse_grad(pred, target)), p.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_bce_with_logits_matches_torch_including_extremes(scale):
    rng = np.random.default_rng(2)
    z = np.concatenate([rng.normal(size=10) * scale, [1000.0, -1000.0, 1000.0, -1000.0]])
    y = np.concatenate([rng.random(10).round(), [1.0, 0.0, 0.0, 1.0]])   # right and badly wrong extremes
    zt = _t(z, grad=True)
    loss = F.binary_cross_entropy_with_logits(zt, _t(y))
    loss.backward()
    ours = losses.binary_cross_entropy_with_logits(z, y)
    assert np.isfinite(ours)
    assert_close(ours, loss.item(), rtol=1e-12, atol=0)
    assert_close(torch.from_numpy(losses.binary_cross_entropy_with_logits_grad(z, y)), zt.grad,
                 rtol=1e-12, atol=1e-15)


def test_bce_soft_targets():
    z, y = np.array([0.3, -2.0, 4.0]), np.array([0.25, 0.5, 0.9])
    assert_close(losses.binary_cross_entropy_with_logits(z, y),
                 F.binary_cross_entropy_with_logits(_t(z), _t(y)).item(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_family_matches_torch(scale):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 5)) * scale
    z[0] = [1000.0, -1000.0, 0.0, 999.0, -5.0]                           # extremes in one row
    labels = rng.integers(0, 5, size=6)
    zt = _t(z, grad=True)
    loss = F.cross_entropy(zt, torch.from_numpy(labels))
    loss.backward()
    assert_close(torch.from_numpy(losses.softmax(z)), torch.softmax(zt, -1).detach(), rtol=1e-12, atol=1e-300)
    assert_close(torch.from_numpy(losses.log_softmax(z)), torch.log_softmax(zt, -1).detach(), rtol=1e-12,
                 atol=1e-12)
    assert_close(torch.from_numpy(losses.logsumexp(z)), torch.logsumexp(zt, -1).detach(), rtol=1e-12, atol=0)
    ours = losses.softmax_cross_entropy(z, labels)
    assert np.isfinite(ours)
    assert_close(ours, loss.item(), rtol=1e-12, atol=0)
    assert_close(torch.from_numpy(losses.softmax_cross_entropy_grad(z, labels)), zt.grad, rtol=1e-12, atol=1e-15)


def test_softmax_along_other_axis_and_one_hot():
    z = np.random.default_rng(4).normal(size=(3, 4))
    assert_close(torch.from_numpy(losses.softmax(z, axis=0)), torch.softmax(_t(z), 0), rtol=1e-12, atol=0)
    assert losses.one_hot(np.array([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_loss_bad_input():
    z = np.zeros((4, 3))
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype float64"):
        losses.softmax_cross_entropy(z, np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\] for 3 classes, got values from 0 to 3"):
        losses.softmax_cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        losses.softmax_cross_entropy_grad(z, np.array([-1, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(batch,\) = \(4,\), got \(3,\)"):
        losses.softmax_cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, classes\), got shape \(3,\)"):
        losses.softmax_cross_entropy(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"must have the same shape, got \(4, 3\) and \(4,\)"):
        losses.mse(z, np.zeros(4))
    with pytest.raises(ValueError, match=r"logits and targets must have the same shape, got \(2,\) and \(3,\)"):
        losses.binary_cross_entropy_with_logits(np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="real numbers"):
        losses.mse(np.array(["x"]), np.array(["y"]))


# -- chapter 1 exercise checkers ---------------------------------------------------------------------
def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def test_ch01_checkers_accept_right_answers(capsys):
    ch01.check_softplus(_softplus, act.sigmoid)
    ch01.check_log_sigmoid(lambda x: np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))))
    ch01.check_count_mlp_parameters(lambda sizes: sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])))
    assert capsys.readouterr().out.count("correct") == 3


def test_ch01_checkers_reject_wrong_answers():
    with pytest.raises(ExerciseError, match="inf or nan"):                       # naive overflows
        ch01.check_softplus(lambda x: np.log(1 + np.exp(x)), act.sigmoid)
    with pytest.raises(ExerciseError, match="softplus_grad"):
        ch01.check_softplus(_softplus, lambda x: act.sigmoid(x) * (1 - act.sigmoid(x)))
    with pytest.raises(ExerciseError, match="inf or nan"):
        ch01.check_log_sigmoid(lambda x: np.log(act.sigmoid(x)))
    with pytest.raises(ExerciseError, match="forget the biases"):
        ch01.check_count_mlp_parameters(lambda sizes: sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch01.check_log_sigmoid(lambda x: (_ for _ in ()).throw(NotImplementedError))

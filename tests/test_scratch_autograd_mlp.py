"""mmtutorial.scratch.autograd, .mlp and .gradcheck against torch.autograd (float64), gradient checks,
bad input, and the chapter 2 exercise checkers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mmtutorial.exercises import ExerciseError, ch02
from mmtutorial.scratch import activations as act
from mmtutorial.scratch.autograd import Value
from mmtutorial.scratch.gradcheck import gradient_check, numerical_gradient, relative_error
from mmtutorial.scratch.mlp import MLP, MLPConfig


# -- scalar autograd ---------------------------------------------------------------------------------
def _expression(a, b, c, ops):
    """The same expression for Values and for torch tensors (``ops`` supplies the unary functions)."""
    exp, log, tanh, relu, sigmoid = ops
    d = a * b + c ** 3 - a / (b * b + 1.0)
    e = tanh(d) * sigmoid(a - 2.0 * c) + relu(b - a) + relu(-d * d)
    f = log(exp(e) + 1.5) * (2.0 - a) ** 2 + 3.0 / (1.0 + sigmoid(c)) + d * d
    return f + f * a                                                   # `f` and `a` used twice


@pytest.mark.parametrize("seed", range(5))
def test_value_matches_torch_autograd(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=3)
    a, b, c = (Value(v) for v in values)
    out = _expression(a, b, c, (Value.exp, Value.log, Value.tanh, Value.relu, Value.sigmoid))
    out.backward()
    ta, tb, tc = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values)
    expected = _expression(ta, tb, tc, (torch.exp, torch.log, torch.tanh, torch.relu, torch.sigmoid))
    expected.backward()
    assert_close(out.data, expected.item(), rtol=1e-12, atol=1e-12)
    for ours, theirs in zip((a, b, c), (ta, tb, tc)):
        assert_close(ours.grad, theirs.grad.item(), rtol=1e-10, atol=1e-12)


def test_value_backward_twice_gives_same_grads_and_reverse_ops():
    x = Value(1.5)
    y = 2.0 - x * 3.0 + 1.0 / x
    y.backward()
    first = x.grad
    y.backward()
    assert x.grad == first == pytest.approx(-3.0 - 1.0 / 1.5**2)
    assert (-x).data == -1.5 and Value(0.0).sigmoid().data == 0.5
    assert Value(-1000.0).sigmoid().data == 0.0 and Value(1000.0).sigmoid().data == 1.0


def test_value_deep_graph_does_not_recurse():
    x = Value(0.5)
    y = x
    for _ in range(5000):                                              # deeper than the recursion limit
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def test_value_bad_input():
    with pytest.raises(TypeError, match="Value wants a real number, got str"):
        Value("1.0")
    with pytest.raises(TypeError, match="only a constant int or float exponent"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match="log needs a positive input, got -1.0"):
        Value(-1.0).log()
    assert Value(np.float64(2.0)).data == 2.0


# -- MLP ---------------------------------------------------------------------------------------------
CONFIGS = [
    MLPConfig(5, (7,), 3, activation="relu", seed=0),
    MLPConfig(5, (6, 4), 3, activation="tanh", init="glorot", seed=1),
    MLPConfig(5, (4, 4, 4), 2, activation="sigmoid", init="lecun", seed=2),
    MLPConfig(5, (6,), 4, activation="gelu", seed=3),
    MLPConfig(5, (6, 3), 4, activation="gelu_tanh", seed=4),
    MLPConfig(5, (), 3, seed=5),                                       # a linear softmax classifier
]


def _batch(config, batch=9, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, config.in_features))                   # (batch, in)
    y = rng.integers(0, config.out_features, size=batch)               # (batch,)
    return x, y


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.activation}-{len(c.hidden_sizes)}")
def test_mlp_forward_and_backward_match_torch(config):
    model = MLP(config)
    for b in model.params:                                             # non-zero biases test db too
        if b.startswith("b"):
            model.params[b] += np.random.default_rng(7).normal(size=model.params[b].shape) * 0.1
    x, y = _batch(config)
    reference = model.to_torch()
    logits_torch = reference(torch.from_numpy(x))
    assert_close(torch.from_numpy(model.forward(x)), logits_torch.detach(), rtol=1e-12, atol=1e-12)
    F.cross_entropy(logits_torch, torch.from_numpy(y)).backward()
    loss, grads = model.loss_and_grads(x, y)
    assert list(grads) == list(model.params)
    linears = [m for m in reference if isinstance(m, torch.nn.Linear)]
    for l, linear in enumerate(linears, start=1):
        assert grads[f"W{l}"].shape == model.params[f"W{l}"].shape
        assert_close(torch.from_numpy(grads[f"W{l}"]), linear.weight.grad.T, rtol=1e-10, atol=1e-12)
        assert_close(torch.from_numpy(grads[f"b{l}"]), linear.bias.grad, rtol=1e-10, atol=1e-12)
    assert_close(loss, F.cross_entropy(logits_torch, torch.from_numpy(y)).item(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: c.activation)
def test_mlp_gradient_check(config):
    model = MLP(config)
    x, y = _batch(config)
    errors = gradient_check(model, x, y, per_parameter=True)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < 1e-6
    assert gradient_check(model, x, y) == max(errors.values())


def test_mlp_init_scales_params_and_predict():
    model = MLP(MLPConfig(400, (300,), 10, init="he"))
    assert list(model.params) == ["W1", "b1", "W2", "b2"]
    assert model.params["W1"].shape == (400, 300) and model.params["b2"].shape == (10,)
    assert model.num_parameters == 400 * 300 + 300 + 300 * 10 + 10
    assert abs(model.params["W1"].std() - math.sqrt(2 / 400)) < 0.01 * math.sqrt(2 / 400) * 5
    assert abs(MLP(MLPConfig(400, (300,), 10, init="glorot")).params["W1"].std() - math.sqrt(2 / 700)) < 2e-3
    assert np.all(MLP(MLPConfig(4, (3,), 2, init="zeros")).params["W1"] == 0)
    x = np.random.default_rng(0).normal(size=(5, 400))
    assert model.predict(x).shape == (5,) and np.allclose(model.predict_proba(x).sum(1), 1)
    same = MLP(MLPConfig(400, (300,), 10, init="he"))
    assert all(np.array_equal(same.params[k], model.params[k]) for k in model.params)  # seeded


def test_mlp_bad_input():
    model = MLP(MLPConfig(4, (3,), 2))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\), got \(2, 5\)"):
        model.forward(np.zeros((2, 5)))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        model.forward(np.array([["a"] * 4]))
    with pytest.raises(RuntimeError, match="call forward"):
        MLP(MLPConfig(4, (3,), 2)).backward(np.zeros((1, 2)))
    model.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"dlogits must have the logits' shape \(2, 2\), got \(2, 3\)"):
        model.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPConfig(4, (3,), 2, activation="swish")
    with pytest.raises(ValueError, match=r"init must be one of .*got 'orthogonal'"):
        MLPConfig(4, (3,), 2, init="orthogonal")
    with pytest.raises(ValueError, match="hidden_sizes must be positive ints"):
        MLPConfig(4, (3, 0), 2)
    with pytest.raises(ValueError, match="in_features must be a positive int, got -1"):
        MLPConfig(-1, (3,), 2)
    with pytest.raises(TypeError, match="MLP wants an MLPConfig, got dict"):
        MLP({"in_features": 4})


# -- gradient checking -------------------------------------------------------------------------------
def test_numerical_gradient_of_known_functions():
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    grad = numerical_gradient(lambda p: float(np.sum(np.sin(p))), w)
    assert_close(grad, np.cos(w), rtol=1e-8, atol=1e-10)
    assert np.array_equal(w, np.array([[1.0, -2.0], [0.5, 3.0]]))     # restored
    params = {"a": np.array([1.0, 2.0]), "b": np.array([3.0])}
    grads = numerical_gradient(lambda p: float(p["a"] @ p["a"] * p["b"][0]), params)
    assert_close(grads["a"], np.array([6.0, 12.0]), rtol=1e-8, atol=1e-8)
    assert_close(grads["b"], np.array([5.0]), rtol=1e-8, atol=1e-8)


def test_gradient_check_with_function_and_a_wrong_gradient():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2))}
    x = rng.normal(size=(4, 3))

    def right(p):
        z = x @ p["w"]                                                  # (4, 2)
        return float(np.sum(act.tanh(z))), {"w": x.T @ act.tanh_grad(z)}

    def twice(p):                                                       # sigma' applied twice
        z = x @ p["w"]
        return float(np.sum(act.tanh(z))), {"w": x.T @ (act.tanh_grad(z) ** 2)}

    assert gradient_check(right, params=params) < 1e-8
    assert gradient_check(twice, params=params) > 1e-2


def test_relative_error_and_gradcheck_bad_input():
    assert relative_error(np.ones(3), np.ones(3)) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.ones(2), -np.ones(2)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"arrays of one shape, got \(2,\) and \(3,\)"):
        relative_error(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match="must be a float NumPy array .*got array of int64"):
        numerical_gradient(lambda p: 0.0, np.array([1, 2]))
    with pytest.raises(ValueError, match="eps must be positive"):
        numerical_gradient(lambda p: 0.0, np.zeros(2), eps=0)
    with pytest.raises(ValueError, match="needs the params dict"):
        gradient_check(lambda p: (0.0, {}))
    with pytest.raises(ValueError, match=r"grads must have the keys of params \['w'\], got \['v'\]"):
        gradient_check(lambda p: (0.0, {"v": np.zeros(1)}), params={"w": np.zeros(1)})
    with pytest.raises(TypeError, match="expected a model with loss_and_grads"):
        gradient_check(3)


# -- chapter 2 exercise checkers ---------------------------------------------------------------------
def _sin(v):
    out = Value(math.sin(v.data), (v,), "sin")

    def _backward():
        v.grad += math.cos(v.data) * out.grad
    out._backward = _backward
    return out


def _sin_wrong(v):
    out = Value(math.sin(v.data), (v,), "sin")

    def _backward():
        v.grad += -math.cos(v.data) * out.grad
    out._backward = _backward
    return out


def _lr_grads(X, y, w, b):
    r = X @ w + b - y
    return 2 * X.T @ r / len(y), float(2 * r.sum() / len(y))


def _backprop_3layer(x, y, params, twice=False):
    a0 = x
    z1 = a0 @ params["W1"] + params["b1"]
    a1 = np.tanh(z1)
    z2 = a1 @ params["W2"] + params["b2"]
    a2 = np.tanh(z2)
    z3 = a2 @ params["W3"] + params["b3"]
    p = np.exp(z3 - z3.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d3 = (p - np.eye(z3.shape[1])[y]) / len(y)
    d2 = (d3 @ params["W3"].T) * (1 - a2**2) ** (2 if twice else 1)
    d1 = (d2 @ params["W2"].T) * (1 - a1**2)
    return {"W3": a2.T @ d3, "b3": d3.sum(0), "W2": a1.T @ d2, "b2": d2.sum(0), "W1": a0.T @ d1, "b1": d1.sum(0)}


def test_ch02_checkers_accept_right_answers(capsys):
    ch02.check_value_sin(_sin)
    ch02.check_linear_regression_grads(_lr_grads)
    ch02.check_backprop_3layer(_backprop_3layer)
    assert capsys.readouterr().out.count("correct") == 3


def test_ch02_checkers_reject_wrong_answers():
    with pytest.raises(ExerciseError, match="d/dx"):
        ch02.check_value_sin(_sin_wrong)
    with pytest.raises(ExerciseError, match="expected a Value"):
        ch02.check_value_sin(lambda v: math.sin(v.data))
    with pytest.raises(ExerciseError, match="dw"):
        ch02.check_linear_regression_grads(lambda X, y, w, b: (X.T @ (X @ w + b - y) / len(y), 0.0))
    with pytest.raises(ExerciseError, match="W2"):
        ch02.check_backprop_3layer(lambda x, y, p: _backprop_3layer(x, y, p, twice=True))
    with pytest.raises(ExerciseError, match="expected a dict"):
        ch02.check_backprop_3layer(lambda x, y, p: None)

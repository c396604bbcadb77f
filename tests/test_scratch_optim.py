"""mmtutorial.scratch.optim against torch.optim, lr_scheduler and clip_grad_norm_ in float64;
the chapter 3 exercise checkers accept right answers and reject wrong ones."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from mmtutorial.exercises import ExerciseError, ch03
from mmtutorial.scratch import optim

STEPS = 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------------
# A fixed problem: a 2-layer tanh MLP on random data, gradients from autograd in float64
# --------------------------------------------------------------------------------------------------
def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(32, 6)))                           # (batch, in)
    y = torch.from_numpy(rng.integers(0, 3, size=32))                        # (batch,)
    params = {"W1": rng.normal(size=(6, 8)) * 0.5, "b1": np.zeros(8),
              "W2": rng.normal(size=(8, 3)) * 0.5, "b2": np.zeros(3)}

    def loss(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = torch.tanh(x @ tensors["W1"] + tensors["b1"])               # (batch, hidden)
        return torch.nn.functional.cross_entropy(hidden @ tensors["W2"] + tensors["b2"], y)

    def numpy_grads(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
        loss(tensors).backward()
        return {k: t.grad.numpy() for k, t in tensors.items()}
    return params, loss, numpy_grads


def _compare(ours_factory, torch_factory, steps: int = STEPS, schedule=None) -> None:
    params, loss, numpy_grads = _problem()
    ours = {k: v.copy() for k, v in params.items()}
    theirs = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    our_optimizer = ours_factory(ours)
    torch_optimizer = torch_factory(list(theirs.values()))
    for step in range(steps):
        if schedule is not None:
            our_optimizer.lr = schedule(step)
            for group in torch_optimizer.param_groups:
                group["lr"] = schedule(step)
        our_optimizer.step(numpy_grads(ours))
        torch_optimizer.zero_grad()
        loss(theirs).backward()
        torch_optimizer.step()
        for name in ours:
            assert_close(torch.from_numpy(ours[name]), theirs[name].detach(), rtol=1e-10, atol=1e-12,
                         msg=lambda m, name=name, step=step: f"{name} after step {step + 1}: {m}")


CASES = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_wd": (lambda p: optim.SGD(p, lr=0.1, weight_decay=0.05),
               lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    "momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01)),
    "nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam_l2": (lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": (lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    "adamw_default_decay": (lambda p: optim.AdamW(p, lr=0.01), lambda p: torch.optim.AdamW(p, lr=0.01)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_torch(case):
    ours, theirs = CASES[case]
    _compare(ours, theirs)


def test_optimizers_follow_a_changing_learning_rate_like_torch():
    schedule = lambda step: optim.warmup_cosine(step, STEPS, 5, 0.05, min_lr=0.001)  # noqa: E731
    _compare(lambda p: optim.SGD(p, lr=0.0, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.0, momentum=0.9),
             schedule=schedule)
    _compare(lambda p: optim.AdamW(p, lr=0.0, weight_decay=0.1),
             lambda p: torch.optim.AdamW(p, lr=0.0, weight_decay=0.1), schedule=schedule)


def test_l2_equals_decoupled_decay_for_sgd_but_not_for_adam():
    params, _, numpy_grads = _problem()
    runs = {}
    for name, factory in {"sgd_l2": lambda p: optim.SGD(p, lr=0.1, weight_decay=0.1),
                          "adam_l2": lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1),
                          "adamw": lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1)}.items():
        values = {k: v.copy() for k, v in params.items()}
        optimizer = factory(values)
        for _ in range(STEPS):
            optimizer.step(numpy_grads(values))
        runs[name] = values
    # SGD with decoupled decay: p <- p(1 - lr*wd) - lr*g, written out by hand.
    values = {k: v.copy() for k, v in params.items()}
    for _ in range(STEPS):
        grads = numpy_grads(values)
        for k in values:
            values[k] = values[k] * (1 - 0.1 * 0.1) - 0.1 * grads[k]
    for k in values:
        np.testing.assert_allclose(runs["sgd_l2"][k], values[k], rtol=1e-12, atol=1e-14)
    assert max(np.abs(runs["adam_l2"][k] - runs["adamw"][k]).max() for k in values) > 1e-3


def test_state_dict_round_trip_resumes_identically():
    params, _, numpy_grads = _problem()
    straight = {k: v.copy() for k, v in params.items()}
    optimizer = optim.Adam(straight, lr=0.01)
    for _ in range(10):
        optimizer.step(numpy_grads(straight))
    resumed = {k: v.copy() for k, v in params.items()}
    first = optim.Adam(resumed, lr=0.01)
    for _ in range(5):
        first.step(numpy_grads(resumed))
    second = optim.Adam(resumed, lr=0.01)
    second.load_state_dict(first.state_dict())
    for _ in range(5):
        second.step(numpy_grads(resumed))
    for k in straight:
        np.testing.assert_array_equal(straight[k], resumed[k])


# --------------------------------------------------------------------------------------------------
# Schedule, clipping, dropout
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("warmup, min_lr", [(5, 0.0), (1, 0.0), (8, 1e-3)])
def test_warmup_cosine_matches_sequential_lr(warmup, min_lr):
    total, base_lr = 30, 0.1
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers=[
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0,
                                          total_iters=max(warmup - 1, 0)),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=min_lr)],
        milestones=[warmup])
    for step in range(total + 1):
        assert math.isclose(optim.warmup_cosine(step, total, warmup, base_lr, min_lr),
                            optimizer.param_groups[0]["lr"], rel_tol=1e-9, abs_tol=1e-12), step
        optimizer.step()
        scheduler.step()


def test_warmup_cosine_matches_lambda_lr_and_the_trainer():
    from mmtutorial.training import lr_factor

    total, warmup, base_lr = 25, 4, 0.3
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: optim.warmup_cosine(s, total, warmup, 1.0))
    for step in range(total + 5):
        ours = optim.warmup_cosine(step, total, warmup, base_lr)
        assert math.isclose(ours, optimizer.param_groups[0]["lr"], rel_tol=1e-12)
        assert math.isclose(ours, base_lr * lr_factor(step, total, warmup, "cosine"), rel_tol=1e-12, abs_tol=1e-15)
        optimizer.step()
        scheduler.step()
    assert optim.warmup_cosine(total + 10, total, warmup, base_lr, 0.01) == pytest.approx(0.01)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = np.random.default_rng(1)
    grads = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=5)}
    tensors = [torch.zeros(4, 3, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)]
    for tensor, value in zip(tensors, grads.values()):
        tensor.grad = torch.from_numpy(value.copy())
    expected_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    norm = optim.clip_grad_norm(grads, max_norm)
    assert math.isclose(norm, float(expected_norm), rel_tol=1e-12)
    for tensor, value in zip(tensors, grads.values()):
        assert_close(torch.from_numpy(value), tensor.grad, rtol=1e-12, atol=1e-14)


def test_dropout_is_inverted_and_preserves_the_expectation():
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    out, mask = optim.dropout(x, 0.3, rng)
    np.testing.assert_allclose(out, x * mask / 0.7)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    mean = np.mean([optim.dropout(x, 0.3, rng)[0] for _ in range(20_000)], axis=0)
    np.testing.assert_allclose(mean, x, atol=0.03)
    same, ones = optim.dropout(x, 0.3, rng, training=False)
    np.testing.assert_array_equal(same, x)
    np.testing.assert_array_equal(ones, np.ones_like(x))


def test_dropout_given_torchs_mask_reproduces_torch():
    torch.manual_seed(0)
    x = torch.randn(50, 20, dtype=torch.float64) + 3.0        # no exact zeros, so the mask is readable
    expected = torch.nn.functional.dropout(x, p=0.25, training=True)
    mask = (expected != 0).double().numpy()
    np.testing.assert_allclose(x.numpy() * mask / 0.75, expected.numpy(), rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def test_bad_hyperparameters_raise():
    params = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="lr must be >= 0, got -0.1"):
        optim.SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\), got 1.0"):
        optim.Adam(params, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.AdamW(params, lr=0.1, betas=(0.9,))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        optim.AdamW(params, lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="params must be a non-empty dict"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="floating-point array"):
        optim.SGD({"w": np.zeros(3, dtype=np.int64)}, lr=0.1)


def test_grads_must_match_params():
    optimizer = optim.Adam({"w": np.zeros((2, 3)), "b": np.zeros(3)}, lr=0.1)
    with pytest.raises(ValueError, match=r"expected \['b', 'w'\], got \['w'\]"):
        optimizer.step({"w": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"expected \(2, 3\), got \(3, 2\)"):
        optimizer.step({"w": np.ones((3, 2)), "b": np.ones(3)})


def test_schedule_clip_and_dropout_reject_bad_input():
    with pytest.raises(ValueError, match=r"warmup_steps must be in \[0, total_steps=10\), got 10"):
        optim.warmup_cosine(0, 10, 10, 0.1)
    with pytest.raises(ValueError, match="min_lr must be <= base_lr"):
        optim.warmup_cosine(0, 10, 2, 0.1, min_lr=0.5)
    with pytest.raises(TypeError, match="step must be an int, got float"):
        optim.warmup_cosine(1.5, 10, 2, 0.1)
    with pytest.raises(ValueError, match="max_norm must be a number > 0, got 0"):
        optim.clip_grad_norm({"w": np.ones(2)}, 0)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\), got 1.0"):
        optim.dropout(np.ones(3), 1.0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be a np.random.Generator"):
        optim.dropout(np.ones(3), 0.5, 0)


# --------------------------------------------------------------------------------------------------
# Exercise checkers: right answers pass, wrong ones fail
# --------------------------------------------------------------------------------------------------
def rmsprop_step(param, grad, square_avg, lr, alpha, eps):
    square_avg = alpha * square_avg + (1 - alpha) * grad**2
    return param - lr * grad / (np.sqrt(square_avg) + eps), square_avg


def rmsprop_step_eps_inside(param, grad, square_avg, lr, alpha, eps):
    square_avg = alpha * square_avg + (1 - alpha) * grad**2
    return param - lr * grad / np.sqrt(square_avg + 1e-3), square_avg


def nesterov_step(param, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return param - lr * (grad + momentum * velocity), velocity


def classical_momentum_step(param, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return param - lr * velocity, velocity


def step_decay(step, base_lr, gamma, step_size):
    return base_lr * gamma ** (step // step_size)


def step_decay_continuous(step, base_lr, gamma, step_size):
    return base_lr * gamma ** (step / step_size)


def first_step_decay(p, lr, weight_decay):
    grad = weight_decay * p
    m_hat, v_hat = grad, grad**2                   # bias correction undoes (1 - beta) at step 1
    return p - lr * m_hat / (math.sqrt(v_hat) + 1e-8), p * (1 - lr * weight_decay)


def first_step_decay_same(p, lr, weight_decay):
    return p * (1 - lr * weight_decay), p * (1 - lr * weight_decay)


@pytest.mark.parametrize("checker, right, wrong", [
    (ch03.check_rmsprop_step, rmsprop_step, rmsprop_step_eps_inside),
    (ch03.check_nesterov_step, nesterov_step, classical_momentum_step),
    (ch03.check_step_decay, step_decay, step_decay_continuous),
    (ch03.check_first_step_decay, first_step_decay, first_step_decay_same),
])
def test_exercise_checkers(checker, right, wrong, capsys):
    checker(right)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError):
        checker(wrong)


def test_exercise_checker_reports_a_stub():
    def stub(*args):
        raise NotImplementedError

    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch03.check_step_decay(stub)

"""DP-SGD from scratch (mmtutorial.privacy) against a per-sample loop and opacus; the accountant wrapper
against opacus' accountant; the membership-inference AUC against scikit-learn."""
import copy
import math

import pytest
import sklearn.metrics
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from mmtutorial import privacy

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")   # opacus on inputs without grad


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(5, 6, generator=generator), torch.randint(0, 3, (5,), generator=generator)


def test_per_sample_gradients_equal_a_loop(batch):
    model, (x, y) = mlp(), batch
    grads = privacy.per_sample_gradients(model, F.cross_entropy, x, y)
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for name, p in model.named_parameters():
            assert_close(grads[name][i], p.grad)


def test_per_sample_gradients_equal_opacus_grad_sample(batch):
    from opacus import GradSampleModule
    model, (x, y) = mlp(), batch
    ours = privacy.per_sample_gradients(model, F.cross_entropy, x, y)
    wrapped = GradSampleModule(copy.deepcopy(model), loss_reduction="sum")
    F.cross_entropy(wrapped(x), y, reduction="sum").backward()
    for name, p in wrapped._module.named_parameters():
        assert_close(ours[name], p.grad_sample)


def test_clipping_bounds_each_norm_and_keeps_small_ones(batch):
    model, (x, y) = mlp(), batch
    grads = privacy.per_sample_gradients(model, F.cross_entropy, x, y)
    norms = privacy.per_sample_norms(grads)
    threshold = float(norms.median())
    clipped_norms = privacy.per_sample_norms(privacy.clip_per_sample(grads, threshold))
    assert (clipped_norms <= threshold + 1e-5).all()
    small = norms < threshold
    assert_close(clipped_norms[small], norms[small], rtol=1e-5, atol=1e-6)
    assert_close(clipped_norms[~small], torch.full_like(norms[~small], threshold), rtol=1e-5, atol=1e-6)


def test_without_noise_and_with_a_huge_bound_the_step_is_the_mean_gradient(batch):
    model, (x, y) = mlp(), batch
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()                        # the ordinary mean gradient
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    privacy.dp_sgd_step(model, F.cross_entropy, x, y, optimizer, max_norm=1e6, noise_multiplier=0.0)
    for name, p in model.named_parameters():
        assert_close(before[name] - p.detach(), reference.get_parameter(name).grad)


def test_dp_step_equals_opacus_dp_optimizer_without_noise(batch):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    model, (x, y) = mlp(), batch
    wrapped = GradSampleModule(copy.deepcopy(model))
    optimizer = DPOptimizer(torch.optim.SGD(wrapped.parameters(), lr=1.0), noise_multiplier=0.0, max_grad_norm=0.3,
                            expected_batch_size=len(x))
    F.cross_entropy(wrapped(x), y).backward()
    optimizer.step()
    ours = privacy.noisy_mean_gradient(
        privacy.clip_per_sample(privacy.per_sample_gradients(model, F.cross_entropy, x, y), 0.3), 0.3, 0.0)
    for name, p in wrapped._module.named_parameters():
        assert_close(ours[name], p.grad)


def test_noise_has_standard_deviation_sigma_c_over_batch():
    zero = {"w": torch.zeros(4, 20_000)}                                 # 4 samples, 20,000 coordinates
    noisy = privacy.noisy_mean_gradient(zero, max_norm=2.0, noise_multiplier=1.5,
                                        generator=torch.Generator().manual_seed(0))["w"]
    assert abs(noisy.std().item() - 1.5 * 2.0 / 4) < 0.02 and abs(noisy.mean().item()) < 0.02


def test_epsilon_matches_opacus_and_decreases_with_sigma():
    from opacus.accountants import RDPAccountant
    accountant = RDPAccountant()
    for _ in range(300):
        accountant.step(noise_multiplier=1.1, sample_rate=0.02)
    assert math.isclose(privacy.dp_epsilon(1.1, 0.02, 300, 1e-5), accountant.get_epsilon(1e-5), rel_tol=1e-9)
    epsilons = [privacy.dp_epsilon(sigma, 0.02, 300, 1e-5) for sigma in (0.6, 0.8, 1.1, 2.0, 4.0)]
    assert all(a > b > 0 for a, b in zip(epsilons, epsilons[1:]))
    assert privacy.dp_epsilon(1.1, 0.02, 600, 1e-5) > epsilons[2]            # more steps, more privacy spent
    prv = privacy.dp_epsilon(1.1, 0.02, 300, 1e-5, accountant="prv")
    assert 0 < prv <= epsilons[2] * 1.05                                   # PRV is tighter than RDP


def test_bad_inputs_are_refused(batch):
    model, (x, y) = mlp(), batch
    grads = privacy.per_sample_gradients(model, F.cross_entropy, x, y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clipping norm"):
            privacy.clip_per_sample(grads, bad)
    with pytest.raises(ValueError, match="noise multiplier"):
        privacy.dp_sgd_step(model, F.cross_entropy, x, y, optimizer, max_norm=1.0, noise_multiplier=-0.1)
    with pytest.raises(ValueError, match="one row per example"):
        privacy.per_sample_gradients(model, F.cross_entropy, x, y[:1])
    with pytest.raises(ValueError, match="one row per example"):
        privacy.dp_sgd_step(model, F.cross_entropy, x[:1], y, optimizer, max_norm=1.0, noise_multiplier=1.0)
    for delta in (0.0, 1.0, -1e-5):
        with pytest.raises(ValueError, match="delta"):
            privacy.dp_epsilon(1.0, 0.01, 10, delta)
    with pytest.raises(ValueError, match="sample_rate"):
        privacy.dp_epsilon(1.0, 1.5, 10, 1e-5)
    with pytest.raises(ValueError, match="sigma"):
        privacy.dp_epsilon(0.0, 0.01, 10, 1e-5)
    with pytest.raises(ValueError, match="accountant"):
        privacy.dp_epsilon(1.0, 0.01, 10, 1e-5, accountant="moments")


def test_poisson_batches_have_the_expected_size():
    sizes = [len(privacy.poisson_batch(1000, 0.05, torch.Generator().manual_seed(s))) for s in range(200)]
    assert abs(sum(sizes) / len(sizes) - 50) < 2


def test_membership_auc_equals_sklearn_on_the_losses():
    generator = torch.Generator().manual_seed(2)
    model = mlp()
    members = torch.randn(40, 6, generator=generator), torch.randint(0, 3, (40,), generator=generator)
    others = torch.randn(30, 6, generator=generator), torch.randint(0, 3, (30,), generator=generator)
    scores, truth = privacy.loss_threshold_scores(model, members, others)
    expected = sklearn.metrics.roc_auc_score(truth.numpy(), scores.numpy())
    assert math.isclose(privacy.membership_auc(model, members, others), expected, rel_tol=1e-9)
    assert math.isclose(privacy.membership_auc(model, members, members), 0.5)   # the same examples: no signal


def test_dp_step_applies_the_noisy_clipped_mean(batch):
    model, (x, y) = mlp(), batch
    expected = privacy.noisy_mean_gradient(
        privacy.clip_per_sample(privacy.per_sample_gradients(model, F.cross_entropy, x, y), 0.2), 0.2, 1.3, 8.0,
        torch.Generator().manual_seed(7))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    norms = privacy.dp_sgd_step(model, F.cross_entropy, x, y, optimizer, 0.2, 1.3, expected_batch_size=8.0,
                                generator=torch.Generator().manual_seed(7))
    assert norms.shape == (len(x),) and (norms > 0.2).any()
    for name, p in model.named_parameters():
        assert_close(before[name] - p.detach(), expected[name])
    empty = privacy.dp_sgd_step(model, F.cross_entropy, x[:0], y[:0], optimizer, 0.2, 1.3, expected_batch_size=8.0)
    assert empty.numel() == 0                                                  # an empty Poisson batch: noise only

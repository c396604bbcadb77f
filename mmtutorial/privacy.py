"""Differentially private training (DP-SGD) and a membership-inference attack: chapter 24.

**DP-SGD** (Abadi et al., 2016).  One step on a batch B drawn by Poisson sampling (each of the N training
examples joins independently with probability q):

    g_i   = grad_theta loss(x_i, y_i)                         per-sample gradients (torch.func: vmap(grad))
    g_i  <- g_i / max(1, ||g_i|| / C)                          clip each one to norm <= C
    g     = (sum_i g_i + N(0, sigma^2 C^2 I)) / (q N)          add Gaussian noise, divide by the expected batch

Clipping bounds what any one example can change (the sensitivity), the noise hides it; the accountant
(Rényi DP, Mironov 2017, as implemented in opacus) turns (sigma, q, steps) into a guarantee (epsilon, delta).

**Membership inference** (Yeom et al., 2018).  A model that memorised its training set has a smaller loss on
its members than on other examples from the same distribution; the attacker who scores each example by
minus its loss and thresholds the score has the advantage measured by the ROC-AUC (0.5: no information).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = ["per_sample_gradients", "per_sample_norms", "clip_factors", "clip_per_sample", "noisy_mean_gradient", "dp_sgd_step",
           "poisson_batch", "dp_epsilon", "example_losses", "loss_threshold_scores", "membership_auc"]


def _check_batch(inputs, targets) -> None:
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError(f"inputs and targets must be tensors, got {type(inputs).__name__}, {type(targets).__name__}")
    if inputs.dim() < 1 or targets.dim() < 1 or inputs.size(0) != targets.size(0):
        raise ValueError(f"inputs and targets must have one row per example, got shapes {tuple(inputs.shape)} and "
                         f"{tuple(targets.shape)}")
    if inputs.size(0) < 1:
        raise ValueError("the batch is empty")


def _check_clip_and_noise(max_norm: float, noise_multiplier: float) -> None:
    if not isinstance(max_norm, (int, float)) or isinstance(max_norm, bool) or not math.isfinite(max_norm) \
            or max_norm <= 0:
        raise ValueError(f"the clipping norm C must be a finite number > 0, got {max_norm!r}")
    if not isinstance(noise_multiplier, (int, float)) or isinstance(noise_multiplier, bool) \
            or not math.isfinite(noise_multiplier) or noise_multiplier < 0:
        raise ValueError(f"the noise multiplier sigma must be a finite number >= 0, got {noise_multiplier!r}")


def per_sample_gradients(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor,
                         targets: Tensor) -> dict[str, Tensor]:
    """The gradient of ``loss_fn(model(x_i), y_i)`` for every example: {name: (batch, *param.shape)}.

    ``torch.func``: the model is called as a pure function of its parameters (``functional_call``), ``grad``
    differentiates one example's loss, and ``vmap`` maps it over the batch in one vectorised pass.  The model
    must treat examples independently (no BatchNorm in training mode).  Only parameters with
    ``requires_grad`` are differentiated.
    """
    _check_batch(inputs, targets)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def one_example_loss(trainable, x, y):
        output = functional_call(model, {**trainable, **frozen, **buffers}, (x.unsqueeze(0),))   # (1, ...)
        return loss_fn(output, y.unsqueeze(0))

    return vmap(grad(one_example_loss), in_dims=(None, 0, 0))(params, inputs, targets)


def per_sample_norms(grads: dict[str, Tensor]) -> Tensor:
    """The L2 norm of each example's whole gradient (all parameters together): (batch,)."""
    if not isinstance(grads, dict) or not grads:
        raise ValueError("grads must be a non-empty {name: (batch, ...)} dict, as per_sample_gradients returns")
    batch = {g.size(0) for g in grads.values()}
    if len(batch) != 1:
        raise ValueError(f"every per-sample gradient must have the same batch size, got {sorted(batch)}")
    return torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)   # (batch,)


def clip_factors(norms: Tensor, max_norm: float) -> Tensor:
    """min(1, C / ||g_i||) for each example (batch,); as opacus, C / (||g_i|| + 1e-6) so a zero gradient is safe."""
    _check_clip_and_noise(max_norm, 0.0)
    return (max_norm / (norms + 1e-6)).clamp(max=1.0)


def clip_per_sample(grads: dict[str, Tensor], max_norm: float, norms: Tensor | None = None) -> dict[str, Tensor]:
    """Scale each example's gradient by min(1, C / ||g_i||), so every norm is at most C (flat clipping, as
    opacus clips).  ``norms`` (batch,) may pass :func:`per_sample_norms` already computed."""
    _check_clip_and_noise(max_norm, 0.0)
    factors = clip_factors(per_sample_norms(grads) if norms is None else norms, max_norm)   # (batch,)
    return {name: g * factors.view(-1, *([1] * (g.dim() - 1))) for name, g in grads.items()}


def noisy_mean_gradient(clipped: dict[str, Tensor], max_norm: float, noise_multiplier: float,
                        expected_batch_size: float | None = None,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """(sum_i g_i + N(0, sigma^2 C^2)) / expected_batch_size, per parameter (default: the actual batch size).
    ``clipped`` holds (batch, *param.shape) gradients already clipped by :func:`clip_per_sample`.

    Dividing by the *expected* batch size q N (not the sampled one, which depends on who was sampled) keeps
    the released value's sensitivity C / (q N), as opacus does with Poisson sampling.
    """
    _check_clip_and_noise(max_norm, noise_multiplier)
    if not isinstance(clipped, dict) or not clipped:
        raise ValueError("clipped must be a non-empty {name: (batch, ...)} dict, as clip_per_sample returns")
    batch = next(iter(clipped.values())).size(0)
    sums = {name: g.sum(dim=0) for name, g in clipped.items()}
    return _noisy_average(sums, max_norm, noise_multiplier, batch if expected_batch_size is None else expected_batch_size,
                          generator)


def _noisy_average(sums: dict[str, Tensor], max_norm: float, noise_multiplier: float, expected_batch_size: float,
                   generator: torch.Generator | None) -> dict[str, Tensor]:
    """(sum + N(0, sigma^2 C^2)) / expected_batch_size for each parameter's summed clipped gradient."""
    if not expected_batch_size > 0:
        raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
    out = {}
    for name, total in sums.items():
        noise = torch.randn(total.shape, generator=generator, dtype=total.dtype, device=total.device)
        out[name] = (total + noise_multiplier * max_norm * noise) / expected_batch_size
    return out


def dp_sgd_step(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor,
                optimizer: torch.optim.Optimizer, max_norm: float, noise_multiplier: float,
                expected_batch_size: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One DP-SGD step: per-sample gradients, clip to C, sum, add N(0, sigma^2 C^2), divide by the (expected)
    batch size, write into ``.grad`` and take ``optimizer.step()``.  Returns the per-sample gradient norms
    before clipping (batch,).  An empty Poisson batch still takes a (pure-noise) step."""
    _check_clip_and_noise(max_norm, noise_multiplier)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if inputs.size(0) == 0:                                                   # a Poisson batch can be empty
        if expected_batch_size is None:
            raise ValueError("an empty batch needs expected_batch_size")
        sums = {name: torch.zeros_like(p) for name, p in params.items()}
        norms = torch.zeros(0)
    else:
        grads = per_sample_gradients(model, loss_fn, inputs, targets)
        norms = per_sample_norms(grads)
        factors = clip_factors(norms, max_norm)                               # (batch,)
        # sum_i factor_i g_i in one contraction, without materialising the clipped copies (as opacus does)
        sums = {name: torch.einsum("b,b...->...", factors, g) for name, g in grads.items()}
    noisy = _noisy_average(sums, max_norm, noise_multiplier, expected_batch_size or inputs.size(0), generator)
    for name, p in params.items():
        p.grad = noisy[name]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norms.detach()


def poisson_batch(num_examples: int, sample_rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Indices of a Poisson-sampled batch: each example joins independently with probability ``sample_rate``
    (the sampling that the accountant's amplification assumes)."""
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    return torch.nonzero(torch.rand(num_examples, generator=generator) < sample_rate).flatten()


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
               accountant: str = "rdp") -> float:
    """The epsilon of (epsilon, delta)-DP after ``steps`` DP-SGD steps with noise multiplier sigma and Poisson
    sample rate q, from opacus' accountant (``"rdp"``: Rényi DP, Mironov 2017; ``"prv"``: the PRV accountant)."""
    if not isinstance(noise_multiplier, (int, float)) or not noise_multiplier > 0:
        raise ValueError(f"the noise multiplier sigma must be > 0 for a finite epsilon, got {noise_multiplier!r}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    from opacus.accountants import PRVAccountant, RDPAccountant
    accountants = {"rdp": RDPAccountant, "prv": PRVAccountant}
    if accountant not in accountants:
        raise ValueError(f"accountant must be one of {sorted(accountants)}, got {accountant!r}")
    tracker = accountants[accountant]()
    tracker.history = [(float(noise_multiplier), float(sample_rate), steps)]
    return float(tracker.get_epsilon(delta=delta))


# --------------------------------------------------------------------------------------------------
# Membership inference
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def example_losses(model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int = 1024) -> Tensor:
    """Cross-entropy of every example, (n,), with the model in eval mode."""
    _check_batch(inputs, targets)
    was_training = model.training
    model.eval()
    losses = torch.cat([nn.functional.cross_entropy(model(inputs[i:i + batch_size]), targets[i:i + batch_size],
                                                    reduction="none") for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return losses


def loss_threshold_scores(model: nn.Module, members: tuple[Tensor, Tensor],
                          non_members: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The loss-threshold attack's membership scores (minus the loss) and the truth (1 = member), for the
    members' then the non-members' examples: (scores (n,), is_member (n,))."""
    member_losses, other_losses = example_losses(model, *members), example_losses(model, *non_members)
    scores = -torch.cat([member_losses, other_losses])
    truth = torch.cat([torch.ones(len(member_losses)), torch.zeros(len(other_losses))]).long()
    return scores, truth


def membership_auc(model: nn.Module, members: tuple[Tensor, Tensor], non_members: tuple[Tensor, Tensor]) -> float:
    """ROC-AUC of the loss-threshold attack (:func:`mmtutorial.metrics.roc_auc`): 0.5 means the losses say
    nothing about membership, 1.0 that every member has a smaller loss than every non-member."""
    from .metrics import roc_auc
    scores, truth = loss_threshold_scores(model, members, non_members)
    return roc_auc(truth.numpy(), scores.double().numpy())

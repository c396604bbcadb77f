"""Chapter 22's additions: activation checkpointing, saved-tensor bytes, training FLOPs, bf16 autocast on the
CPU in fit, gradient accumulation against one big batch."""
import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmtutorial.models.gpt import GPT, GPTConfig, matmul_parameters, training_flops
from mmtutorial.nn import TransformerConfig, TransformerEncoder
from mmtutorial.training import TrainConfig, fit, saved_tensor_bytes


def _gpt(checkpointing: bool, dropout: float = 0.1) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, max_seq_len=16, dim=32, num_layers=3, num_heads=4, dropout=dropout,
                         activation_checkpointing=checkpointing)).train()


def _loss_and_grads(model: GPT, tokens: torch.Tensor):
    torch.manual_seed(1)                                   # the same dropout masks for both models
    _, loss = model(tokens, tokens)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    tokens = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    plain_loss, plain_grads = _loss_and_grads(_gpt(False), tokens)
    checkpointed_loss, checkpointed_grads = _loss_and_grads(_gpt(True), tokens)
    torch.testing.assert_close(checkpointed_loss, plain_loss, rtol=0, atol=0)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_activation_checkpointing_keeps_less_for_backward_and_is_off_in_eval():
    tokens = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    sizes = {}
    for checkpointing in (False, True):
        model = _gpt(checkpointing, dropout=0.0)
        sizes[checkpointing], (_, loss) = saved_tensor_bytes(lambda: model(tokens, tokens), model.parameters())
        assert loss.requires_grad
    assert sizes[True] < 0.5 * sizes[False]
    model = _gpt(True, dropout=0.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[0], _gpt(False, dropout=0.0).eval()(tokens)[0])
    encoder = TransformerEncoder(TransformerConfig(dim=16, num_heads=2, num_layers=2, activation_checkpointing=True))
    x = torch.randn(2, 5, 16, requires_grad=True)
    encoder(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_saved_tensor_bytes_counts_what_autograd_keeps():
    weight = torch.randn(8, 4, requires_grad=True)
    x = torch.randn(3, 8)
    size, y = saved_tensor_bytes(lambda: x @ weight, exclude=[weight])       # mm saves x (and weight)
    assert size == x.numel() * 4 and y.shape == (3, 4)
    with torch.no_grad():
        assert saved_tensor_bytes(lambda: x @ weight)[0] == 0


def test_training_flops_match_the_flop_counter():
    config = GPTConfig(vocab_size=96, max_seq_len=24, dim=32, num_layers=2, num_heads=4)
    model = GPT(config)
    for block in model.transformer.blocks:
        block.attn.use_fused = False       # the from-scratch attention: its matmuls are visible to the counter
    tokens = torch.randint(0, 96, (3, 24))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(tokens, tokens)
        loss.backward()
    assert counter.get_total_flops() == training_flops(config, num_tokens=tokens.numel())
    assert training_flops(config, tokens.numel(), attention=False) == 6 * matmul_parameters(config) * 72
    assert matmul_parameters(config) == model.num_parameters(non_embedding=True) - sum(
        p.numel() for name, p in model.named_parameters() if p.dim() == 1) + 96 * 32
    with pytest.raises(ValueError, match="seq_len"):
        training_flops(config, 10, seq_len=25)


def _regression_problem():
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(64, 6, generator=generator)
    return inputs, (inputs @ torch.randn(6, 3, generator=generator)).argmax(dim=1)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def test_fit_bf16_autocast_on_the_cpu_stays_close_to_float32():
    data = _regression_problem()
    losses = {}
    for amp in (False, "bf16"):
        history = fit(_mlp(), data, epochs=3, batch_size=16, lr=0.01, amp=amp, progress=False, device="cpu")
        losses[amp] = history.last("train_loss")
    assert losses["bf16"] != losses[False]                                   # autocast did run in bf16
    assert losses["bf16"] == pytest.approx(losses[False], rel=0.02)
    with pytest.raises(ValueError, match="amp must be True, False or 'auto'"):
        TrainConfig(amp="fp16")


def test_gradient_accumulation_equals_the_big_batch():
    data = _regression_problem()
    big, accumulated = _mlp(), _mlp()
    fit(big, data, config=TrainConfig(epochs=2, batch_size=32, lr=0.1, optimizer="sgd", progress=False),
        device="cpu")
    fit(accumulated, data, config=TrainConfig(epochs=2, batch_size=8, grad_accum_steps=4, lr=0.1, optimizer="sgd",
                                              progress=False), device="cpu")
    for (name, value), other in zip(big.state_dict().items(), accumulated.state_dict().values()):
        torch.testing.assert_close(other, value, rtol=1e-5, atol=1e-6, msg=name)


def test_bad_checkpointing_flag_is_refused():
    with pytest.raises(TypeError, match="activation_checkpointing must be True or False"):
        GPTConfig(activation_checkpointing="yes")
    with pytest.raises(TypeError, match="activation_checkpointing must be True or False"):
        TransformerConfig(dim=8, num_heads=2, activation_checkpointing=1)
    assert copy.deepcopy(GPTConfig()).activation_checkpointing is False


def test_exercise_checkers_accept_solutions_and_catch_the_usual_mistakes(capsys):
    import torch.nn.functional as F

    from mmtutorial.exercises import ExerciseError, ch22

    ch22.check_per_channel_scale(lambda weight: weight.abs().amax(dim=1) / 127.5)
    with pytest.raises(ExerciseError, match="not one for the whole matrix"):
        ch22.check_per_channel_scale(lambda weight: weight.abs().amax() / 127.5)
    ch22.check_training_flops_6nd(lambda config, tokens: training_flops(config, tokens, attention=False))
    with pytest.raises(ExerciseError, match="differ"):
        ch22.check_training_flops_6nd(lambda config, tokens: 6 * GPT(config).num_parameters() * tokens)

    def accumulate(model, micro_batches, divide=True):
        for inputs, targets in micro_batches:
            loss = F.cross_entropy(model(inputs), targets)
            (loss / len(micro_batches) if divide else loss).backward()

    ch22.check_accumulate_gradients(accumulate)
    with pytest.raises(ExerciseError, match="summed the micro-batch losses"):
        ch22.check_accumulate_gradients(lambda model, batches: accumulate(model, batches, divide=False))
    assert capsys.readouterr().out.count("correct") == 3


def test_activation_checkpointing_does_not_change_a_cache_key():
    # recomputation gives the same weights, so a cached model stays valid when the switch is turned on
    from mmtutorial.training import config_fingerprint
    base = {"model": {"dim": 32, "num_layers": 2}, "train": {"lr": 1e-3}}
    switched = {"model": {"dim": 32, "num_layers": 2, "activation_checkpointing": True}, "train": {"lr": 1e-3}}
    assert config_fingerprint(base) == config_fingerprint(switched)
    assert config_fingerprint(base) != config_fingerprint({**base, "train": {"lr": 2e-3}})

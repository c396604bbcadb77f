"""The trainer: resume is exact, DDP equals one process, accumulation equals a big batch, bad input is refused."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _training_problem import make_model, make_problem

from mmtutorial.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmtutorial.training import History, TrainConfig, cached_model_path, fit, load_or_train, lr_factor

HERE = Path(__file__).parent


def train(config: TrainConfig, dropout: float = 0.1, **kwargs):
    model = make_model(dropout=dropout)
    history = fit(model, make_problem(), config=config, device="cpu", **kwargs)
    return model, history


def assert_same_weights(model_a, model_b, **tolerance):
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}", **tolerance)


def test_learns_and_records_history():
    model, history = train(TrainConfig(epochs=10, batch_size=32, lr=1e-2, progress=False), dropout=0.0,
                           val_data=make_problem(128, seed=1))
    assert len(history.epochs) == 10 and len(history.steps) == 10 * 8
    assert history["train_loss"][-1] < 0.6 * history["train_loss"][0]
    assert history.last("val_accuracy") > 0.8


def test_seeded_runs_are_identical():
    model_a, history_a = train(TrainConfig(epochs=2, batch_size=32, progress=False))
    model_b, history_b = train(TrainConfig(epochs=2, batch_size=32, progress=False))
    assert_same_weights(model_a, model_b, rtol=0, atol=0)
    assert history_a.steps == history_b.steps


@pytest.mark.parametrize("accum", [1, 3])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, accum):
    """Stop at step 13 (checkpoint at step 10 exists), resume: same final weights as a run that never stopped."""
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-3, schedule="onecycle", grad_accum_steps=accum,
                         max_grad_norm=1.0, checkpoint_dir=str(tmp_path), checkpoint_every=5, progress=False)
    reference, reference_history = train(TrainConfig(**{**config.__dict__, "checkpoint_dir": None}))

    class Interrupted(Exception):
        pass

    def stop_at_13(step, loss):
        if step == 13:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, callback=stop_at_13)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 10
    resumed, resumed_history = train(config)     # a fresh process would build the model anew, as here
    assert_same_weights(resumed, reference, rtol=0, atol=0)
    assert [row["loss"] for row in resumed_history.steps] == [row["loss"] for row in reference_history.steps]
    assert [row["epoch"] for row in resumed_history.epochs] == [0, 1, 2]


def test_resume_refuses_a_different_configuration(tmp_path):
    train(TrainConfig(epochs=1, batch_size=32, checkpoint_dir=str(tmp_path), progress=False))
    with pytest.raises(ValueError, match="batch_size: 32 -> 64"):
        train(TrainConfig(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path), progress=False))


def test_gradient_accumulation_equals_a_big_batch():
    big, _ = train(TrainConfig(epochs=2, batch_size=64, optimizer="sgd", lr=0.1, progress=False), dropout=0.0)
    accumulated, _ = train(TrainConfig(epochs=2, batch_size=16, grad_accum_steps=4, optimizer="sgd", lr=0.1,
                                       progress=False), dropout=0.0)
    assert_same_weights(big, accumulated, rtol=1e-5, atol=1e-6)


def test_two_gloo_processes_equal_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo), global batch 32, ends with the weights of one process."""
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(HERE / "ddp_worker.py"), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp_state = torch.load(out, weights_only=True)
    single, _ = train(TrainConfig(epochs=2, batch_size=32, lr=0.05, optimizer="momentum", schedule="cosine",
                                  progress=False), dropout=0.0)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6)


def test_schedules_match_torch():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.2, end_factor=1.0, total_iters=4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=16)
    reference = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[5])
    for step in range(20):
        ours = lr_factor(step, total_steps=21, warmup_steps=5, schedule="cosine")
        torch.testing.assert_close(ours, optimizer.param_groups[0]["lr"], rtol=1e-6, atol=1e-9,
                                   msg=f"step {step}")
        optimizer.step()
        reference.step()


def test_bad_config_and_data_are_refused():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(TypeError, match="Dataset or a tuple of tensors"):
        fit(make_model(), [[1, 2], [3, 4]], progress=False)
    with pytest.raises(ValueError, match="same length"):
        fit(make_model(), (torch.randn(10, 10), torch.zeros(9, dtype=torch.long)), progress=False)
    with pytest.raises(TypeError, match="unknown TrainConfig fields"):
        fit(make_model(), make_problem(), epoch=3)


def test_atomic_checkpoint_round_trip(tmp_path):
    state = {"weights": torch.arange(6.0).reshape(2, 3), "step": 7, "history": {"steps": [{"loss": 0.5}]}}
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["weights"], state["weights"])
    assert loaded["step"] == 7 and loaded["history"] == state["history"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]   # no temporary file left behind


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint({"weights": torch.randn(100, 100)}, tmp_path / "ckpt.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would run code: exactly what weights_only=True must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


def test_missing_checkpoint_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_load_or_train_trains_once_then_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    calls = []

    def train_fn(model):
        calls.append(1)
        return fit(model, make_problem(), epochs=1, batch_size=64, progress=False, device="cpu")

    first = make_model()
    history = load_or_train("tiny", first, train_fn, config={"width": 32})
    assert "training it now" in capsys.readouterr().out
    second = make_model(seed=1)
    restored = load_or_train("tiny", second, train_fn, config={"width": 32})
    assert "Found trained model at" in capsys.readouterr().out
    assert len(calls) == 1
    assert_same_weights(first, second, rtol=0, atol=0)
    assert isinstance(restored, History) and restored.steps == history.steps
    # QUICK and full mode, and another configuration, never share a file.
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1")
    assert cached_model_path("tiny", {"width": 32}) != cached_model_path("tiny", {"width": 64})
    assert "quick" in cached_model_path("tiny", {"width": 32}).name


@pytest.mark.parametrize("total_steps", [3, 4, 8])
def test_onecycle_works_on_very_short_runs(total_steps):
    # OneCycleLR divides by zero when one of its two phases is empty; build_scheduler must avoid that.
    from mmtutorial.training import build_scheduler
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = build_scheduler(optimizer, TrainConfig(schedule="onecycle"), total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = max(rates)                                     # rises towards lr, then anneals: finite throughout
    assert all(r == r for r in rates) and peak > 0.6 and rates[0] < peak and rates[-1] < peak


def test_onecycle_refuses_fewer_than_three_steps():
    from mmtutorial.training import build_scheduler
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    with pytest.raises(ValueError, match="at least 3 optimizer steps, got 2"):
        build_scheduler(optimizer, TrainConfig(schedule="onecycle"), 2)

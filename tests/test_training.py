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


# --- bad configurations, targets and checkpoints get clear errors ---------------------------------------

@pytest.mark.parametrize("overrides,error,words", [
    ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0, got inf"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0, got nan"),
    ({"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
    ({"lr": "1e-3"}, TypeError, "lr must be a number > 0, got str '1e-3'"),
    ({"lr": True}, TypeError, "lr must be a number > 0, got bool True"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay must be a finite number >= 0, got nan"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay must be a finite number >= 0, got -0.1"),
    ({"momentum": 1.5}, ValueError, r"momentum must be a finite number in \[0, 1\), got 1.5"),
    ({"max_grad_norm": float("inf")}, ValueError, "max_grad_norm must be a finite number > 0 or None, got inf"),
    ({"checkpoint_every": True}, TypeError, "checkpoint_every must be a positive int or None, got bool True"),
    ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be a positive int or None, got 0"),
    ({"epochs": True}, TypeError, "epochs must be a positive int, got bool True"),
    ({"batch_size": 32.0}, TypeError, "batch_size must be a positive int, got float 32.0"),
    ({"max_steps": False}, TypeError, "max_steps must be a positive int or None, got bool False"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps must be an int >= 0, got -1"),
    ({"num_workers": True}, TypeError, "num_workers must be an int >= 0, got bool True"),
    ({"amp": 1}, ValueError, "amp must be True, False or 'auto', got 1"),
    ({"resume": "yes"}, TypeError, "resume must be True or False, got 'yes'"),
    ({"checkpoint_dir": ""}, ValueError, "checkpoint_dir is an empty string"),
    ({"checkpoint_dir": 3}, TypeError, "checkpoint_dir must be a folder path"),
    ({"schedule": ["cosine"]}, ValueError, r"schedule must be one of .*got \['cosine'\]"),
])
def test_train_config_refuses_bad_values(overrides, error, words):
    with pytest.raises(error, match=words):
        TrainConfig(**overrides)


def test_train_config_normalises_numpy_numbers_and_paths(tmp_path):
    import numpy as np
    config = TrainConfig(epochs=np.int64(2), lr=np.float32(0.5), checkpoint_dir=tmp_path)
    assert type(config.epochs) is int and type(config.lr) is float and config.checkpoint_dir == str(tmp_path)
    # a Path checkpoint_dir used to go into the checkpoint and make it unloadable (weights_only reads no Path)
    train(TrainConfig(epochs=1, batch_size=64, checkpoint_dir=tmp_path, progress=False))
    assert load_checkpoint(tmp_path / "last.pt")["config"]["checkpoint_dir"] == str(tmp_path)


@pytest.mark.parametrize("targets,error,words", [
    (torch.zeros(256), TypeError, "integer class ids as targets .*got dtype torch.float32"),
    (torch.full((256,), 3), ValueError, r"class ids in \[0, 3\) .*got 64 outside, in \[3, 3\]"),
    (torch.full((256,), -1), ValueError, r"class ids in \[0, 3\) \(or -100 to ignore an item\).*\[-1, -1\]"),
    (torch.zeros(256, 3, dtype=torch.long), ValueError, r"targets must have shape \(64,\) .*got \(64, 3\)"),
    (torch.full((256,), -100), ValueError, "every target of this batch is the ignore index -100"),
])
def test_default_loss_checks_targets(targets, error, words):
    inputs, _ = make_problem()
    with pytest.raises(error, match=words):
        fit(make_model(), (inputs, targets), epochs=1, batch_size=64, progress=False, device="cpu")


def test_a_nan_loss_from_ignored_targets_says_so_instead_of_blaming_the_learning_rate():
    inputs, targets = make_problem()
    targets = torch.full_like(targets, -100)                 # e.g. prompts only: no item has a target

    def sequence_loss(model, batch):                         # a custom loss, as GPT's: mean over counted targets
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y, ignore_index=-100)

    with pytest.raises(FloatingPointError, match="no target counted: every target of this batch is the ignore "
                                                 "index -100") as caught:
        fit(make_model(), (inputs, targets), loss_fn=sequence_loss, epochs=1, batch_size=64,
            config=TrainConfig(seed=0), progress=False, device="cpu")
    assert "learning rate" not in str(caught.value)


def test_a_nan_loss_from_diverged_weights_or_bad_data_names_the_cause():
    inputs, targets = make_problem()
    with pytest.raises(FloatingPointError, match="weights are NaN or infinite after the last update: training "
                                                 "diverged.*lower the learning rate"):
        fit(make_model(), (inputs * 1e30, targets), config=TrainConfig(epochs=3, batch_size=64, optimizer="sgd",
                                                                       lr=1e30, progress=False), device="cpu")
    broken = inputs.clone()
    broken[5, 2] = float("nan")
    with pytest.raises(FloatingPointError, match="the batch holds NaN or infinite values .*check the data"):
        fit(make_model(), (broken, targets), epochs=1, batch_size=256, progress=False, device="cpu")


def test_resuming_with_another_architecture_names_the_keys_and_the_file(tmp_path):
    train(TrainConfig(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path), progress=False))
    wider = torch.nn.Sequential(torch.nn.Linear(10, 48), torch.nn.GELU(), torch.nn.Dropout(0.0),
                                torch.nn.Linear(48, 3))
    with pytest.raises(ValueError, match=r"cannot resume from .*last.pt: it was written for another model "
                                         r"\(shape mismatch .*0.weight: ours \(48, 10\), checkpoint .*\(32, 10\).*"
                                         r"Delete .*last.pt"):
        fit(wider, make_problem(), config=TrainConfig(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path),
                                                      progress=False), device="cpu")
    deeper = torch.nn.Sequential(*make_model(), torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"written for another model .*missing keys: \[4.bias, 4.weight\]; "
                                         r"unexpected keys: \[\]"):
        fit(deeper, make_problem(), config=TrainConfig(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path),
                                                       progress=False), device="cpu")


def test_resuming_from_a_file_fit_did_not_write(tmp_path):
    save_checkpoint({"model": make_model().state_dict()}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last.pt is not a training checkpoint written by fit \(it lacks "
                                         r"\['optimizer'"):
        train(TrainConfig(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path), progress=False))


def test_fit_start_removes_temp_files_of_a_killed_save(tmp_path):
    from mmtutorial.checkpoint import _host_tag
    killed_writer = subprocess.Popen([sys.executable, "-c", "pass"])   # its pid is no longer alive afterwards
    killed_writer.wait()
    orphan = tmp_path / f".last.pt.mmtmp-{_host_tag()}-{killed_writer.pid}.abcdef.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train(TrainConfig(epochs=1, batch_size=64, checkpoint_dir=str(tmp_path), progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_load_or_train_rebuilds_a_damaged_or_unverifiable_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    calls = []

    def train_fn(model):
        calls.append(1)
        return fit(model, make_problem(), epochs=1, batch_size=64, progress=False, device="cpu")

    trained = make_model()
    load_or_train("tiny", trained, train_fn)
    path = cached_model_path("tiny")
    data = bytearray(path.read_bytes())
    position = bytes(data).find(trained.state_dict()["0.weight"].numpy().tobytes())  # the stored weights
    assert position > 0
    data[position + 101] ^= 0x04                             # one flipped bit in one weight
    path.write_bytes(bytes(data))
    capsys.readouterr()
    load_or_train("tiny", make_model(), train_fn)
    out = capsys.readouterr().out
    assert "cannot be used" in out and "training it again" in out and len(calls) == 2
    torch.save({"model": make_model().state_dict()}, path)   # a cache from before content hashes
    load_or_train("tiny", make_model(), train_fn)
    assert "not written by mmtutorial's save_checkpoint" in capsys.readouterr().out and len(calls) == 3
    load_or_train("tiny", make_model(), train_fn)            # the rebuilt cache loads
    assert "Found trained model at" in capsys.readouterr().out and len(calls) == 3


def test_load_or_train_with_a_changed_architecture_names_the_file_to_delete(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    train_fn = lambda model: fit(model, make_problem(), epochs=1, batch_size=64, progress=False, device="cpu")  # noqa
    load_or_train("tiny", make_model(), train_fn)
    wider = torch.nn.Sequential(torch.nn.Linear(10, 48), torch.nn.GELU(), torch.nn.Linear(48, 3))
    with pytest.raises(ValueError, match=r"cached model .*tiny-.*\.pt does not fit this Sequential .*delete"):
        load_or_train("tiny", wider, train_fn)
    import numpy as np
    with pytest.raises(TypeError, match=r"the checkpoint\['lr'\] is a numpy.float64"):   # before training, not after
        load_or_train("other", make_model(), lambda model: pytest.fail("trained"), config={"lr": np.float64(0.1)})


def test_fit_refuses_an_optimizer_name_where_an_optimizer_object_goes():
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer or None, got str.*"
                                        "TrainConfig\\(optimizer='sgd'\\)"):
        fit(make_model(), make_problem(), optimizer="sgd", progress=False)


def test_a_training_stopped_by_an_exception_ends_its_progress_bar_line(capsys):
    # the bar is closed on the way out, so what is printed next starts on a line of its own
    class Stop(Exception):
        pass

    def stop_at_3(step, loss):
        if step == 3:
            raise Stop

    try:
        train(TrainConfig(epochs=1, batch_size=16, progress=True), callback=stop_at_3)
    except Stop:
        print("stopped")                          # what a notebook prints about the interruption
    output = capsys.readouterr().out
    assert "training (" in output and "\nstopped\n" in output, repr(output[-200:])

"""Bad input gets a clear error: one table for the whole package.

Each case is a call, the error type it must raise and fragments its message must contain: what was expected
and what came (DESIGN.md section 5).  A case whose call returns, raises another type or says less fails.
Add a row when a new public function takes input; the model cases sit in their own block at the end.
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mmtutorial as mmt
from mmtutorial import checks, metrics, retrieval
from mmtutorial import config as mmt_config
from mmtutorial import data
from mmtutorial.checkpoint import (CheckpointError, atomic_write, load_checkpoint, load_converted_state_dict,
                                   save_checkpoint, verify_sha256)
from mmtutorial.data import scenes
from mmtutorial.nn import (LearnedPositionalEmbedding, MultiHeadAttention, RotaryEmbedding,
                           SinusoidalPositionalEncoding, TransformerConfig, causal_mask, combine_masks, padding_mask,
                           scaled_dot_product_attention)
from mmtutorial.scratch import activations, autograd, gradcheck, losses, mlp, optim
from mmtutorial.training import TrainConfig, build_scheduler, cached_model_path, evaluate_classifier, fit, lr_factor


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Path], object]       # receives a fresh temporary folder
    error: type[BaseException]
    fragments: tuple[str, ...]           # each must appear in the message


CASES: list[Case] = []


def case(name: str, error: type[BaseException], *fragments: str):
    """Register ``call`` (a function of the temporary folder) as a case."""
    def register(call):
        CASES.append(Case(name, call, error, fragments))
        return call
    return register


def row(name: str, call: Callable[[], object], error: type[BaseException], *fragments: str) -> None:
    """Register a call that needs no folder."""
    CASES.append(Case(name, lambda _folder: call(), error, fragments))


@contextmanager
def environment(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def tiny_data(targets: torch.Tensor | None = None):
    inputs = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))          # (items, features)
    return inputs, (torch.arange(16) % 3 if targets is None else targets)


def quiet_fit(model, train_data, **overrides):
    return fit(model, train_data, epochs=1, batch_size=8, progress=False, device="cpu", **overrides)


# ==========================================================================================================
# checkpoint
# ==========================================================================================================
@case("checkpoint: text file", CheckpointError, "cannot read checkpoint", "notes.pt", "truncated or corrupt")
def _(folder):
    (folder / "notes.pt").write_text("epoch,loss\n1,0.5\n")
    return load_checkpoint(folder / "notes.pt")


@case("checkpoint: random bytes", CheckpointError, "cannot read checkpoint", "truncated or corrupt")
def _(folder):
    (folder / "noise.pt").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(2048)))
    return load_checkpoint(folder / "noise.pt")


@case("checkpoint: truncated", CheckpointError, "cannot read checkpoint", "truncated or corrupt")
def _(folder):
    path = save_checkpoint({"w": torch.randn(64, 64)}, folder / "ckpt.pt")
    path.write_bytes(path.read_bytes()[:5000])
    return load_checkpoint(path)


@case("checkpoint: one weight changed on disk", CheckpointError, "is damaged", "SHA-256 of its content is",
      "saved with")
def _(folder):
    path = save_checkpoint({"w": torch.tensor([1000.0, 2.0])}, folder / "ckpt.pt")
    data_bytes = bytearray(path.read_bytes())
    position = bytes(data_bytes).find(torch.tensor([1000.0]).numpy().tobytes())
    data_bytes[position + 3] ^= 0x10
    path.write_bytes(bytes(data_bytes))
    return load_checkpoint(path)


@case("checkpoint: plain torch.save file", CheckpointError, "not written by mmtutorial's save_checkpoint",
      "no content hash", "delete it")
def _(folder):
    torch.save({"w": torch.zeros(2)}, folder / "old.pt")
    return load_checkpoint(folder / "old.pt")


@case("checkpoint: pickled code", CheckpointError, "refused to load", "weights_only", "Unsupported global")
def _(folder):
    torch.save({"w": torch.zeros(1), "code": Path("x")}, folder / "code.pt")
    return load_checkpoint(folder / "code.pt")


row("checkpoint: missing file", lambda: load_checkpoint("/nonexistent/ckpt.pt"), FileNotFoundError,
    "no checkpoint at /nonexistent/ckpt.pt")
case("checkpoint: a folder", CheckpointError, "is a folder, not a file")(lambda folder: load_checkpoint(folder))
case("save_checkpoint: NumPy array", TypeError, "the checkpoint['x'] is a numpy.ndarray", "torch.from_numpy")(
    lambda folder: save_checkpoint({"x": np.zeros(2)}, folder / "a.pt"))
case("save_checkpoint: arbitrary object", TypeError, "stores tensors, numbers, strings", "pathlib")(
    lambda folder: save_checkpoint({"where": folder}, folder / "a.pt"))
case("atomic_write: write is not callable", TypeError, "write must be a callable", "got bytes")(
    lambda folder: atomic_write(folder / "x", b"data"))
row("verify_sha256: not a hash", lambda: verify_sha256(__file__, "abc"), ValueError, "64 hexadecimal digits",
    "got 'abc'")


@case("verify_sha256: different bytes", CheckpointError, "weights at", "is damaged or not the published file",
      "its SHA-256 is", "expected " + "0" * 64)
def _(folder):
    (folder / "w.pth").write_bytes(b"weights")
    return verify_sha256(folder / "w.pth", "0" * 64, what="weights")


row("load_converted_state_dict: missing and unexpected keys",
    lambda: load_converted_state_dict(nn.Linear(3, 2), {"weight": torch.zeros(2, 3), "b": torch.zeros(2)},
                                      source="test", config_name="C"),
    ValueError, "missing keys: [bias]", "unexpected keys: [b]")
row("load_converted_state_dict: wrong shape",
    lambda: load_converted_state_dict(nn.Linear(3, 2), {"weight": torch.zeros(3, 3), "bias": torch.zeros(2)},
                                      source="hub", config_name="C"),
    ValueError, "weight: ours (2, 3), hub (3, 3)", "is the C the hub's")

# ==========================================================================================================
# training: TrainConfig
# ==========================================================================================================
for name, kwargs, error, fragments in [
    ("lr=inf", {"lr": float("inf")}, ValueError, ("TrainConfig.lr", "finite number > 0", "got inf")),
    ("lr=nan", {"lr": float("nan")}, ValueError, ("TrainConfig.lr", "finite number > 0", "got nan")),
    ("lr=-1", {"lr": -1.0}, ValueError, ("TrainConfig.lr", "> 0", "got -1.0")),
    ("lr='0.1'", {"lr": "0.1"}, TypeError, ("TrainConfig.lr must be a number", "got str '0.1'")),
    ("weight_decay=nan", {"weight_decay": float("nan")}, ValueError, ("weight_decay", ">= 0", "got nan")),
    ("weight_decay=-1", {"weight_decay": -1}, ValueError, ("weight_decay", ">= 0", "got -1")),
    ("checkpoint_every=True", {"checkpoint_every": True}, TypeError,
     ("checkpoint_every must be a positive int or None", "got bool True")),
    ("epochs=True", {"epochs": True}, TypeError, ("epochs must be a positive int", "got bool True")),
    ("batch_size=0", {"batch_size": 0}, ValueError, ("batch_size must be a positive int", "got 0")),
    ("batch_size=64.0", {"batch_size": 64.0}, TypeError, ("batch_size must be a positive int", "got float 64.0")),
    ("grad_accum_steps=False", {"grad_accum_steps": False}, TypeError, ("grad_accum_steps", "got bool False")),
    ("optimizer='lamb'", {"optimizer": "lamb"}, ValueError, ("optimizer must be one of", "'adamw'", "got 'lamb'")),
    ("schedule='step'", {"schedule": "step"}, ValueError, ("schedule must be one of", "'cosine'", "got 'step'")),
    ("momentum=1.0", {"momentum": 1.0}, ValueError, ("momentum", "in [0, 1)", "got 1.0")),
    ("max_grad_norm=0", {"max_grad_norm": 0.0}, ValueError, ("max_grad_norm", "> 0 or None", "got 0.0")),
    ("amp='yes'", {"amp": "yes"}, ValueError, ("amp must be True, False or 'auto'", "got 'yes'")),
    ("progress=1", {"progress": 1}, TypeError, ("progress must be True or False", "got 1")),
    ("checkpoint_dir=''", {"checkpoint_dir": ""}, ValueError, ("checkpoint_dir is an empty string", "None")),
    ("seed=-1", {"seed": -1}, ValueError, ("seed must be an int >= 0", "got -1")),
]:
    row(f"TrainConfig({name})", lambda kwargs=kwargs: TrainConfig(**kwargs), error, *fragments)

# ==========================================================================================================
# training: fit and friends
# ==========================================================================================================
row("fit: not a module", lambda: quiet_fit(lambda x: x, tiny_data()), TypeError, "fit wants an nn.Module",
    "got function")
row("fit: data as lists", lambda: quiet_fit(tiny_model(), [[1.0, 2.0]]), TypeError,
    "Dataset or a tuple of tensors", "got list")
row("fit: inputs and targets of different lengths", lambda: quiet_fit(tiny_model(), (torch.randn(8, 4),
                                                                                    torch.zeros(7).long())),
    ValueError, "same length", "[7, 8]")
row("fit: unknown override", lambda: quiet_fit(tiny_model(), tiny_data(), epoch=3), TypeError,
    "unknown TrainConfig fields ['epoch']")
row("fit: config as a dict", lambda: fit(tiny_model(), tiny_data(), config={"epochs": 1}), TypeError,
    "config must be a TrainConfig", "got dict")
row("fit: float targets", lambda: quiet_fit(tiny_model(), tiny_data(torch.rand(16))), TypeError,
    "integer class ids as targets", "got dtype torch.float32", "loss_fn=")
row("fit: target out of range", lambda: quiet_fit(tiny_model(), tiny_data(torch.full((16,), 5))), ValueError,
    "class ids in [0, 3)", "got 8 outside, in [5, 5]")
row("fit: one-hot targets", lambda: quiet_fit(tiny_model(), tiny_data(torch.eye(3)[torch.arange(16) % 3].long())),
    ValueError, "targets must have shape (8,)", "got (8, 3)")
row("fit: every target ignored", lambda: quiet_fit(tiny_model(), tiny_data(torch.full((16,), -100))), ValueError,
    "every target of this batch is the ignore index -100", "0/0 = NaN")
row("fit: loss_fn is not callable", lambda: quiet_fit(tiny_model(), tiny_data(), loss_fn="mse"), TypeError,
    "loss_fn must be a function or None", "got str")
row("fit: optimizer given by name", lambda: quiet_fit(tiny_model(), tiny_data(), optimizer="adam"), TypeError,
    "optimizer must be a torch.optim.Optimizer", "got str", "TrainConfig(optimizer='adam')")
row("fit: val_data of the wrong kind", lambda: quiet_fit(tiny_model(), tiny_data(), val_data=[1, 2]), TypeError,
    "Dataset or a tuple of tensors", "got list")
row("fit: model returns no logits", lambda: quiet_fit(nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)), tiny_data()),
    ValueError, "floating-point logits (batch, classes)", "got shape (8,)")
row("evaluate_classifier: float targets", lambda: evaluate_classifier(tiny_model(), tiny_data(torch.rand(16)),
                                                                      torch.device("cpu")),
    TypeError, "integer class ids", "torch.float32")
row("build_scheduler: onecycle too short",
    lambda: build_scheduler(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0),
                            TrainConfig(schedule="onecycle"), 2),
    ValueError, "at least 3 optimizer steps, got 2")
row("lr_factor: unknown schedule", lambda: lr_factor(0, 10, 0, "step"), ValueError, "unknown schedule 'step'",
    "expected one of")
row("cached_model_path: a path as name", lambda: cached_model_path("models/gpt"), ValueError,
    "plain non-empty file name", "got 'models/gpt'")
row("cached_model_path: not a string", lambda: cached_model_path(3), ValueError, "plain non-empty file name",
    "got 3")

# ==========================================================================================================
# config and utils
# ==========================================================================================================
row("scale: full and quick of two types", lambda: mmt.scale(full=10, quick=0.5), TypeError, "one type",
    "int and float")


def _quick_maybe():
    with environment(MMTUTORIAL_QUICK="maybe"):
        return mmt.is_quick()


row("is_quick: unreadable environment variable", _quick_maybe, ValueError, "MMTUTORIAL_QUICK must be one of",
    "got 'maybe'")
row("get_device: unknown device", lambda: mmt.get_device("tpu9"), ValueError, "prefer='tpu9' is not a device",
    "expected 'cpu'")
row("get_device: not a name", lambda: mmt.get_device(3), TypeError, "device name like 'cpu'", "got int")


def _device_from_environment():
    with environment(MMTUTORIAL_DEVICE="gpu"):
        return mmt.get_device()


row("get_device: bad MMTUTORIAL_DEVICE", _device_from_environment, ValueError, "MMTUTORIAL_DEVICE='gpu'",
    "is not a device")
row("cache_dir: absolute path", lambda: mmt_config.cache_dir("/etc"), ValueError, "relative folder names",
    "got '/etc'")
row("cache_dir: climbing out", lambda: mmt_config.cache_dir("../elsewhere"), ValueError, "relative folder names",
    "got '../elsewhere'")
row("cache_dir: not a string", lambda: mmt_config.cache_dir(3), ValueError, "relative folder names", "got 3")
row("seed_everything: a string", lambda: mmt.seed_everything("3"), TypeError, "seed must be an int", "got str")
row("seed_everything: too large", lambda: mmt.seed_everything(2**70), ValueError, "seed must be in [-2**63, 2**64)",
    str(2**70))
row("count_parameters: not a module", lambda: mmt.count_parameters([1, 2]), TypeError,
    "count_parameters wants an nn.Module", "got list")
row("Timer: name not a string", lambda: mmt.Timer(3), TypeError, "Timer name must be a str", "got int")

# ==========================================================================================================
# metrics
# ==========================================================================================================
row("accuracy: probabilities as predictions", lambda: metrics.accuracy([0, 1], [0.2, 0.9]), TypeError,
    "y_pred must hold integer class labels", "float64", "argmax")
row("accuracy: lengths differ", lambda: metrics.accuracy([0, 1, 1], [0, 1]), ValueError,
    "same length", "got 3 and 2")
row("accuracy: 2-D labels", lambda: metrics.accuracy([[0, 1]], [[0, 1]]), ValueError, "1-D class labels",
    "got shape (1, 2)")
row("accuracy: empty", lambda: metrics.accuracy([], []), ValueError, "y_true is empty")
row("accuracy: negative label", lambda: metrics.accuracy([0, -1], [0, 1]), ValueError, "labels >= 0", "got -1")
row("confusion_matrix: num_classes too small", lambda: metrics.confusion_matrix([0, 3], [0, 1], num_classes=3),
    ValueError, "labels must lie in [0, 3)", "got label 3")
row("confusion_matrix: a label of 10**9", lambda: metrics.confusion_matrix([0, 10**9], [0, 0]), ValueError,
    "1000000001**2 entries", "remap them")
row("confusion_matrix: num_classes=True", lambda: metrics.confusion_matrix([0], [0], num_classes=True), ValueError,
    "num_classes must be a positive int", "got True")
row("precision_recall_f1: unknown average", lambda: metrics.precision_recall_f1([0, 1], [0, 1], average="samples"),
    ValueError, "average must be one of", "got 'samples'")
row("precision_recall_f1: pos_label not a label", lambda: metrics.precision_recall_f1([0, 1], [0, 1], pos_label=2),
    ValueError, "pos_label=2 is not one of the labels [0, 1]")
row("precision_recall_f1: pos_label as a string",
    lambda: metrics.precision_recall_f1([0, 1], [0, 1], pos_label="1"), TypeError,
    "pos_label must be an int class label", "got str '1'")
row("precision_recall_f1: binary with three classes", lambda: metrics.precision_recall_f1([0, 1, 2], [0, 1, 2]),
    ValueError, "average='binary' wants at most two classes", "got 3")
row("roc_auc: multi-class scores without multi_class",
    lambda: metrics.roc_auc([0, 1, 2], np.eye(3)), ValueError, "multi-class: pass multi_class='ovr'",
    "got multi_class=None")
row("roc_curve: a single class", lambda: metrics.roc_curve([1, 1, 1], [0.1, 0.5, 0.9]), ValueError,
    "single class", "needs both positives and negatives")
row("roc_curve: NaN score", lambda: metrics.roc_curve([0, 1], [0.1, float("nan")]), ValueError,
    "scores must be finite")
row("calibration_curve: probability above 1", lambda: metrics.calibration_curve([0, 1], [0.5, 1.5]), ValueError,
    "probabilities must lie in [0, 1]", "[0.5, 1.5]")
row("expected_calibration_error: n_bins=0", lambda: metrics.expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0),
    ValueError, "n_bins must be a positive int", "got 0")
row("expected_calibration_error: rows not distributions",
    lambda: metrics.expected_calibration_error([0, 1], [[0.9, 0.9], [0.2, 0.3]]), ValueError,
    "rows summing to 1", "row sums in [0.5, 1.8]", "softmax outputs")

# ==========================================================================================================
# retrieval
# ==========================================================================================================
row("cosine_similarity_matrix: one vector", lambda: retrieval.cosine_similarity_matrix(np.ones(3)), ValueError,
    "queries must have shape (n, dim)", "got shape (3,)", "x[None]")
row("cosine_similarity_matrix: dims differ",
    lambda: retrieval.cosine_similarity_matrix(np.ones((2, 3)), np.ones((2, 4))), ValueError,
    "same dim", "got 3 and 4")
row("cosine_similarity_matrix: NaN embedding",
    lambda: retrieval.cosine_similarity_matrix(np.array([[np.nan, 1.0]]), np.ones((1, 2))), ValueError,
    "queries must be finite", "1 NaN or infinite values of 2")
row("cosine_similarity_matrix: eps=-1", lambda: retrieval.cosine_similarity_matrix(np.ones((2, 2)), eps=-1),
    ValueError, "eps", "in (0, 1)", "got -1")
row("dot_product_matrix: strings", lambda: retrieval.dot_product_matrix(["ab", "cd"]), TypeError,
    "queries must hold numbers", "got dtype <U2")
row("euclidean_distance_matrix: complex", lambda: retrieval.euclidean_distance_matrix(np.ones((2, 2)) * 1j),
    TypeError, "queries must hold real numbers", "complex")
row("normalize: a scalar", lambda: retrieval.normalize(3.0), ValueError, "at least one axis", "scalar")
row("squared_distance_from_cosine: not a cosine", lambda: retrieval.squared_distance_from_cosine([1.5]), ValueError,
    "cosine values must lie in [-1, 1]", "got values in [1.5, 1.5]")
row("recall_at_k: k=0", lambda: retrieval.recall_at_k(np.eye(3), 0), ValueError,
    "k must be between 1 and num_items=3", "got 0")
row("recall_at_k: k=1.0", lambda: retrieval.recall_at_k(np.eye(3), 1.0), TypeError, "k must be an int",
    "got float")
row("recall_at_k: float positives", lambda: retrieval.recall_at_k(np.eye(3), 1, positives=np.array([0.0, 1, 2])),
    TypeError, "integer indices (num_queries,)", "got dtype float64")
row("recall_at_k: positive out of range", lambda: retrieval.recall_at_k(np.eye(3), 1, positives=[0, 1, 3]),
    ValueError, "item indices in [0, 3)", "from 0 to 3")
row("mean_reciprocal_rank: query without a correct item",
    lambda: retrieval.mean_reciprocal_rank(np.eye(2), positives=np.array([[True, False], [False, False]])),
    ValueError, "at least one correct item", "queries [1]")
row("mean_reciprocal_rank: more queries than items", lambda: retrieval.mean_reciprocal_rank(np.ones((3, 2))),
    ValueError, "num_queries <= num_items", "3 queries and 2 items")
row("rank_items: NaN similarity", lambda: retrieval.rank_items(np.array([[0.1, np.nan]])), ValueError,
    "similarity must be finite")
row("rank_items: 1-D similarity", lambda: retrieval.rank_items(np.ones(3)), ValueError,
    "(num_queries, num_items)", "got shape (3,)")

# ==========================================================================================================
# scratch (NumPy from scratch)
# ==========================================================================================================
row("activations.sigmoid: strings", lambda: activations.sigmoid(["a"]), TypeError, "x must hold real numbers",
    "got dtype <U1")
row("activations.gelu: unknown approximation", lambda: activations.gelu(1.0, approximate="fast"), ValueError,
    "approximate must be one of ('none', 'tanh')", "got 'fast'")
row("activations.get_activation: unknown", lambda: activations.get_activation("swish"), ValueError,
    "unknown activation 'swish'", "expected one of")
row("losses.mse: shapes differ", lambda: losses.mse([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError, "same shape",
    "got (2,) and (3,)")
row("losses.softmax_cross_entropy: float labels", lambda: losses.softmax_cross_entropy([[1.0, 2.0]], [0.5]),
    TypeError, "labels must be integer class indices", "float64")
row("losses.softmax_cross_entropy: label out of range", lambda: losses.softmax_cross_entropy([[1.0, 2.0]], [2]),
    ValueError, "labels must be in [0, 1] for 2 classes", "from 2 to 2")
row("losses.binary_cross_entropy_with_logits: target 2",
    lambda: losses.binary_cross_entropy_with_logits([0.0, 1.0], [1.0, 2.0]), ValueError,
    "targets must be probabilities in [0, 1]", "[1, 2]")
row("losses.one_hot: num_classes=0", lambda: losses.one_hot([0], 0), ValueError,
    "num_classes must be a positive int", "got 0")
row("losses.logsumexp: nothing to sum", lambda: losses.logsumexp(np.zeros((2, 0))), ValueError,
    "at least one value along axis -1", "(2, 0)")
row("losses.logsumexp: axis out of range", lambda: losses.logsumexp(np.zeros(3), axis=2), ValueError,
    "axis must be an int in [-1, 1)", "got 2")
row("optim.SGD: lr=nan", lambda: optim.SGD({"w": np.zeros(2)}, lr=float("nan")), TypeError,
    "lr must be a finite number", "got nan")
row("optim.Adam: beta2=1", lambda: optim.Adam({"w": np.zeros(2)}, betas=(0.9, 1.0)), ValueError,
    "betas[1] must be in [0, 1)", "got 1.0")
row("optim.Adam: beta as a string", lambda: optim.Adam({"w": np.zeros(2)}, betas=("0.9", 0.99)), ValueError,
    "betas[0] must be in [0, 1)", "got 0.9")
row("optim.SGD: integer parameters", lambda: optim.SGD({"w": np.zeros(2, dtype=int)}, lr=0.1), TypeError,
    "params['w'] must be a floating-point array", "int64")
row("optim.step: gradient keys differ", lambda: optim.SGD({"w": np.zeros(2)}, lr=0.1).step({"v": np.zeros(2)}),
    ValueError, "grads must have the keys of params", "expected ['w']", "got ['v']")
row("optim.step: gradient shape differs", lambda: optim.SGD({"w": np.zeros(2)}, lr=0.1).step({"w": np.zeros(3)}),
    ValueError, "shape of params['w']", "expected (2,)", "got (3,)")
row("optim.step: string gradients", lambda: optim.SGD({"w": np.zeros(2)}, lr=0.1).step({"w": np.array(["a", "b"])}),
    TypeError, "grads['w'] must hold real numbers", "<U1")
row("optim.load_state_dict: not a state dict", lambda: optim.SGD({"w": np.zeros(2)}, lr=0.1).load_state_dict({}),
    ValueError, "state_dict must come from Optimizer.state_dict()", "'hyperparameters'")
row("optim.warmup_cosine: warm-up as long as the run", lambda: optim.warmup_cosine(0, 10, 10, 0.1), ValueError,
    "warmup_steps must be in [0, total_steps=10)", "got 10")
row("optim.clip_grad_norm: max_norm=-1", lambda: optim.clip_grad_norm({"w": np.ones(2)}, -1), ValueError,
    "max_norm must be a number > 0", "got -1")
row("optim.dropout: p=1", lambda: optim.dropout(np.ones(2), 1.0, np.random.default_rng(0)), ValueError,
    "p must be a probability in [0, 1)", "got 1.0")
row("optim.dropout: seed instead of a generator", lambda: optim.dropout(np.ones(2), 0.5, 0), TypeError,
    "rng must be a np.random.Generator", "got int")
row("mlp.MLPConfig: in_features=0", lambda: mlp.MLPConfig(in_features=0), ValueError,
    "in_features must be a positive int", "got 0")
row("mlp.MLPConfig: hidden_sizes=5", lambda: mlp.MLPConfig(in_features=2, hidden_sizes=5), TypeError,
    "hidden_sizes must be a sequence of ints", "got int 5")
row("mlp.MLPConfig: integer dtype", lambda: mlp.MLPConfig(in_features=2, dtype=np.int64), TypeError,
    "dtype must be a floating-point NumPy dtype", "int64")
row("mlp.MLPConfig: seed as a string", lambda: mlp.MLPConfig(in_features=2, seed="0"), ValueError,
    "seed must be an int >= 0", "got '0'")
row("mlp.MLP: wrong input width", lambda: mlp.MLP(mlp.MLPConfig(in_features=2))(np.zeros((1, 3))), ValueError,
    "x must have shape (batch, 2)", "got (1, 3)")
row("mlp.MLP: backward before forward",
    lambda: mlp.MLP(mlp.MLPConfig(in_features=2)).backward(np.zeros((1, 10))), RuntimeError,
    "call forward(x) before backward(dlogits)")
row("gradcheck.numerical_gradient: eps=0", lambda: gradcheck.numerical_gradient(lambda p: 0.0, np.zeros(2), eps=0),
    ValueError, "eps must be positive", "got 0")
row("gradcheck.relative_error: shapes differ", lambda: gradcheck.relative_error(np.zeros(2), np.zeros(3)),
    ValueError, "arrays of one shape", "(2,) and (3,)")
row("autograd.Value: a string", lambda: autograd.Value("1.0"), TypeError, "Value wants a real number", "got str")
row("autograd.Value: a Value exponent", lambda: autograd.Value(2.0) ** autograd.Value(2.0), TypeError,
    "constant int or float exponent", "got Value")
row("autograd.Value: log of a negative", lambda: autograd.Value(-1.0).log(), ValueError,
    "log needs a positive input", "got -1.0")
row("autograd.Value: division by zero", lambda: autograd.Value(1.0) / 0, ZeroDivisionError,
    "Value(0.0) ** -1", "divides by zero")
row("autograd.Value: exp overflows", lambda: autograd.Value(1000.0).exp(), OverflowError,
    "exp(1000.0)", "largest float")

# ==========================================================================================================
# data
# ==========================================================================================================
row("load_digits: val_fraction=0", lambda: data.load_digits(val_fraction=0.0), ValueError,
    "val_fraction must be in (0, 1)", "got 0.0")
row("load_digits: fractions leave no training data", lambda: data.load_digits(val_fraction=0.5, test_fraction=0.5),
    ValueError, "val_fraction + test_fraction must be < 1", "got 1.0")
row("photo: unknown name", lambda: data.photo("dog"), ValueError, "unknown photo 'dog'", "expected one of")
row("scenes.generate_scenes: n=-1", lambda: scenes.generate_scenes(-1), ValueError, "n must be an int >= 0",
    "got -1")
row("scenes.generate_scenes: unknown split", lambda: scenes.generate_scenes(1, split="val2"), ValueError,
    "unknown split 'val2'", "expected one of")
row("scenes.SceneConfig: image too small", lambda: scenes.SceneConfig(image_size=2).validate(), ValueError,
    "image_size must be >= 3", "got 2")
row("scenes.pair_label: unknown pair", lambda: scenes.pair_label("pink", "blob"), ValueError,
    "unknown pair ('pink', 'blob')", "colours")
row("scenes.to_tensors: no scenes", lambda: scenes.to_tensors([]), ValueError, "at least one Scene",
    "empty sequence")
row("scenes.tokenize: not text", lambda: scenes.tokenize(3), TypeError, "expected a str", "got int")

# ==========================================================================================================
# nn.attention
# ==========================================================================================================


def qkv(batch=(2, 2, 2), dtypes=(torch.float32,) * 3, seq=(5, 7, 7), dims=(8, 8, 4)):
    return [torch.randn(b, 3, s, d, dtype=t) for b, t, s, d in zip(batch, dtypes, seq, dims)]  # (batch, heads, seq, d)


row("scaled_dot_product_attention: batch 2 queries, batch 3 keys",
    lambda: scaled_dot_product_attention(*qkv(batch=(2, 3, 3))), ValueError,
    "must share their leading (batch, heads, ...) dimensions", "query (2, 3, 5, 8)", "key (3, 3, 7, 8)")
row("scaled_dot_product_attention: float32 queries, float64 keys",
    lambda: scaled_dot_product_attention(*qkv(dtypes=(torch.float32, torch.float64, torch.float64))), TypeError,
    "one dtype", "torch.float32, torch.float64 and torch.float64")
row("scaled_dot_product_attention: key and value lengths differ",
    lambda: scaled_dot_product_attention(*qkv(seq=(5, 7, 6))), ValueError,
    "same number of positions", "key has seq_k=7, value has 6")
row("scaled_dot_product_attention: d_k differs", lambda: scaled_dot_product_attention(*qkv(dims=(8, 6, 4))),
    ValueError, "share d_k", "query has last dim 8, key has 6")
row("scaled_dot_product_attention: integer query",
    lambda: scaled_dot_product_attention(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4), torch.ones(2, 4)),
    TypeError, "query must be a floating-point tensor", "torch.int64")
row("scaled_dot_product_attention: integer mask",
    lambda: scaled_dot_product_attention(*qkv(), attn_mask=torch.ones(5, 7, dtype=torch.long)), TypeError,
    "attn_mask must be bool (True = may attend) or float", "torch.int64")
row("scaled_dot_product_attention: mask that does not broadcast",
    lambda: scaled_dot_product_attention(*qkv(), attn_mask=torch.ones(5, 6, dtype=torch.bool)), ValueError,
    "attn_mask of shape (5, 6) does not broadcast", "(2, 3, 5, 7)")
row("scaled_dot_product_attention: dropout_p=1", lambda: scaled_dot_product_attention(*qkv(), dropout_p=1.0),
    ValueError, "dropout_p must be in [0, 1)", "got 1.0")
row("scaled_dot_product_attention: is_causal='yes'", lambda: scaled_dot_product_attention(*qkv(), is_causal="yes"),
    TypeError, "is_causal must be True or False", "got 'yes'")
row("scaled_dot_product_attention: scale=nan",
    lambda: scaled_dot_product_attention(*qkv(), scale=float("nan")), ValueError,
    "scale must be a finite number or None", "got nan")
row("causal_mask: seq_len=0", lambda: causal_mask(0), ValueError, "seq_len must be a positive int", "got 0")
row("padding_mask: float lengths", lambda: padding_mask(torch.tensor([2.0, 3.0])), TypeError,
    "lengths must be a 1-D integer tensor", "torch.float32")
row("padding_mask: max_len too short", lambda: padding_mask([3, 2], max_len=2), ValueError,
    "max_len=2 is shorter than the longest sequence (3)")
row("combine_masks: integer mask", lambda: combine_masks(torch.ones(2, 2, dtype=torch.long)), TypeError,
    "bool or float tensors", "torch.int64")
row("MultiHeadAttention: width not divisible by heads", lambda: MultiHeadAttention(10, 4), ValueError,
    "embed_dim=10 must be divisible by num_heads=4")
row("MultiHeadAttention: wrong query width", lambda: MultiHeadAttention(8, 2)(torch.randn(2, 3, 6)), ValueError,
    "query must be (batch, seq, embed_dim=8)", "got (2, 3, 6)")

# ==========================================================================================================
# nn.positional
# ==========================================================================================================
row("SinusoidalPositionalEncoding: odd dim", lambda: SinusoidalPositionalEncoding(7), ValueError,
    "dim must be a positive even int", "got 7")
row("SinusoidalPositionalEncoding: max_len=0", lambda: SinusoidalPositionalEncoding(8, max_len=0), ValueError,
    "max_len must be a positive int", "got 0")
row("SinusoidalPositionalEncoding: integer input",
    lambda: SinusoidalPositionalEncoding(8)(torch.zeros(1, 2, 8, dtype=torch.long)), TypeError,
    "wants a floating-point tensor", "torch.int64")
row("SinusoidalPositionalEncoding: positions past max_len",
    lambda: SinusoidalPositionalEncoding(8, max_len=4)(torch.zeros(1, 5, 8)), ValueError,
    "positions 0..4 exceed max_len=4")
row("LearnedPositionalEmbedding: positions past max_len",
    lambda: LearnedPositionalEmbedding(4, 8)(torch.zeros(1, 2, 8), start=3), ValueError,
    "positions 3..4 exceed max_len=4")
row("RotaryEmbedding: odd head_dim", lambda: RotaryEmbedding(5), ValueError, "head_dim must be a positive even int",
    "got 5")
row("RotaryEmbedding: base=1", lambda: RotaryEmbedding(8, base=1.0), ValueError, "base must be a finite number > 1", "got 1.0")
row("RotaryEmbedding: float positions", lambda: RotaryEmbedding(8).cos_sin(torch.tensor([0.5])), TypeError,
    "positions must be an integer tensor", "torch.float32")
row("RotaryEmbedding: wrong head_dim", lambda: RotaryEmbedding(8)(torch.zeros(2, 6), torch.zeros(2, 6)), ValueError,
    "q must have shape (..., seq, head_dim=8)", "got (2, 6)")

# ==========================================================================================================
# nn.transformer configs
# ==========================================================================================================
for name, kwargs, error, fragments in [
    ("num_heads=True", {"dim": 8, "num_heads": True}, TypeError,
     ("TransformerConfig.num_heads must be a positive int", "got bool True")),
    ("dim=0", {"dim": 0, "num_heads": 1}, ValueError, ("TransformerConfig.dim must be a positive int", "got 0")),
    ("dim=8.0", {"dim": 8.0, "num_heads": 2}, TypeError, ("TransformerConfig.dim must be a positive int",
                                                          "got float 8.0")),
    ("dim not divisible", {"dim": 10, "num_heads": 4}, ValueError, ("dim=10 must be divisible by num_heads=4",)),
    ("MLP of width 0", {"dim": 8, "num_heads": 2, "mlp_ratio": 0.1}, ValueError,
     ("mlp_ratio * dim = 0.1 * 8 gives an MLP of width 0", "must be >= 1")),
    ("mlp_ratio=nan", {"dim": 8, "num_heads": 2, "mlp_ratio": float("nan")}, ValueError,
     ("mlp_ratio must be a finite number > 0", "got nan")),
    ("dropout=1", {"dim": 8, "num_heads": 2, "dropout": 1.0}, ValueError, ("dropout must be in [0, 1)", "got 1.0")),
    ("dropout=True", {"dim": 8, "num_heads": 2, "dropout": True}, TypeError,
     ("TransformerConfig.dropout must be a number", "got bool True")),
    ("norm='middle'", {"dim": 8, "num_heads": 2, "norm": "middle"}, ValueError,
     ("norm must be 'pre' or 'post'", "got 'middle'")),
    ("activation='swish'", {"dim": 8, "num_heads": 2, "activation": "swish"}, ValueError,
     ("activation must be one of", "got 'swish'")),
    ("causal='yes'", {"dim": 8, "num_heads": 2, "causal": "yes"}, TypeError,
     ("TransformerConfig.causal must be True or False", "got 'yes'")),
    ("layer_norm_eps=0", {"dim": 8, "num_heads": 2, "layer_norm_eps": 0.0}, ValueError,
     ("layer_norm_eps must be a finite number > 0", "got 0.0")),
]:
    row(f"TransformerConfig({name})", lambda kwargs=kwargs: TransformerConfig(**kwargs), error, *fragments)

# ==========================================================================================================
# checks
# ==========================================================================================================
row("check_token_ids: float ids", lambda: checks.check_token_ids(torch.zeros(1, 3), 10), TypeError,
    "integer token ids (torch.long)", "torch.float32")
row("check_token_ids: a list", lambda: checks.check_token_ids([[1, 2]], 10), TypeError, "must be a torch.Tensor",
    "got list")
row("check_token_ids: no batch axis", lambda: checks.check_token_ids(torch.tensor([1, 2]), 10), ValueError,
    "shape (batch, seq)", "got (2,)", "ids[None]")
row("check_token_ids: id past the vocabulary", lambda: checks.check_token_ids(torch.tensor([[1, 10]]), 10),
    ValueError, "in [0, vocab_size=10)", "got values in [1, 10]")
row("check_token_ids: longer than max_len", lambda: checks.check_token_ids(torch.zeros(1, 9).long(), 10, max_len=8),
    ValueError, "length 9 is longer than max_seq_len=8")
row("check_images: uint8 pixels", lambda: checks.check_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8)),
    TypeError, "floating-point tensor", "torch.uint8", "/ 255")
row("check_images: no batch axis", lambda: checks.check_images(torch.zeros(3, 4, 4)), ValueError,
    "4-D (batch, channels, height, width)", "got shape (3, 4, 4)", "x[None]")
row("check_images: wrong channels", lambda: checks.check_images(torch.zeros(1, 1, 4, 4), channels=3), ValueError,
    "have 1 channels, expected 3")
row("check_images: wrong size", lambda: checks.check_images(torch.zeros(1, 3, 30, 30), size=28), ValueError,
    "30 x 30 pixels", "built for 28 x 28")
row("check_waveform: int16 PCM", lambda: checks.check_waveform(np.zeros(10, dtype=np.int16)), TypeError,
    "floating point", "torch.int16", "/ 32768")
row("check_waveform: stereo (time, channels)", lambda: checks.check_waveform(torch.zeros(100, 2)), ValueError,
    "looks like (time, channels)", "(100, 2)")
row("check_waveform: NaN samples", lambda: checks.check_waveform(torch.tensor([0.0, float("nan")])), ValueError,
    "NaN or infinite samples (1 of 2)")
row("check_waveform: empty", lambda: checks.check_waveform(torch.zeros(0)), ValueError, "is empty", "got shape (0,)")


# ==========================================================================================================
# encoders, models and the zoo
# ==========================================================================================================
from mmtutorial.data import paired  # noqa: E402  (kept next to the cases that use them)
from mmtutorial.encoders import audio as audio_encoders  # noqa: E402
from mmtutorial.encoders import text as text_encoders  # noqa: E402
from mmtutorial.models.bert import BertConfig, BertModel  # noqa: E402
from mmtutorial.models.fusion import SentimentFusionConfig, SentimentFusionModel  # noqa: E402
from mmtutorial.models.gpt import GPT, GPTConfig, sample_next_token  # noqa: E402
from mmtutorial.zoo import torch_nn  # noqa: E402

WAVE = torch.randn(1600)
TINY_GPT = GPTConfig(vocab_size=16, max_seq_len=8, dim=16, num_layers=1, num_heads=2)

row("stft: hop_length=0", lambda: audio_encoders.stft(WAVE, hop_length=0), ValueError,
    "hop_length must be a positive int", "got 0")
row("stft: win_length=0", lambda: audio_encoders.stft(WAVE, win_length=0), ValueError,
    "win_length must be a positive int", "got 0")
row("log_mel_spectrogram: hop_length=0", lambda: audio_encoders.log_mel_spectrogram(WAVE, 16000, hop_length=0),
    ValueError, "hop_length must be a positive int", "got 0")
row("log_mel_spectrogram: NaN samples", lambda: audio_encoders.log_mel_spectrogram(
    torch.full((1600,), float("nan")), 16000), ValueError, "NaN or infinite samples", "1600 of 1600")
row("log_mel_spectrogram: empty", lambda: audio_encoders.log_mel_spectrogram(torch.zeros(0), 16000), ValueError,
    "is empty", "(0,)")
row("mel_filterbank: n_mels=0", lambda: audio_encoders.mel_filterbank(16000, 512, n_mels=0), ValueError,
    "n_mels must be a positive int", "got 0")
row("mel_filterbank: empty filters", lambda: audio_encoders.mel_filterbank(16000, 64, 128), ValueError,
    "70 of 128 mel filters are all zero", "n_fft=64", "fewer mels or a larger n_fft")
row("mfcc_tokens: segments=0", lambda: audio_encoders.mfcc_tokens(torch.zeros(2, 1600), 16000, segments=0),
    ValueError, "segments must be an int >= 1", "got 0")
row("mfcc_tokens: one waveform, not a batch", lambda: audio_encoders.mfcc_tokens(torch.randn(1600), 16000),
    ValueError, "batch (n, samples)", "(1600,)")
row("LogMel: wrong sample rate", lambda: audio_encoders.LogMel(16000)(WAVE[None], sample_rate=22050), ValueError,
    "16000 Hz", "22050 Hz")
row("LSTM: zero time steps", lambda: text_encoders.LSTM(4, 6)(torch.zeros(0, 2, 4)), ValueError,
    "zero time steps", "(0, 2, 4)")
row("lstm_from_torch: bidirectional", lambda: torch_nn.lstm_from_torch(nn.LSTM(2, 3, bidirectional=True)),
    ValueError, "only unidirectional", "bidirectional=True")
row("mha_from_torch: not a MultiheadAttention", lambda: torch_nn.mha_from_torch(nn.Linear(2, 2)), TypeError,
    "torch.nn.MultiheadAttention", "got Linear")
row("GPT: float token ids", lambda: GPT(TINY_GPT)(torch.zeros(1, 4)), TypeError,
    "integer token ids", "torch.float32")
row("GPT: id out of range", lambda: GPT(TINY_GPT)(torch.tensor([[1, 99]])), ValueError,
    "vocab_size=16", "[1, 99]")
row("GPT: longer than max_seq_len", lambda: GPT(TINY_GPT)(torch.zeros(1, 9, dtype=torch.long)), ValueError,
    "length 9", "max_seq_len=8")
row("sample_next_token: NaN logits", lambda: sample_next_token(torch.full((1, 5), float("nan"))), ValueError,
    "NaN")
row("BertModel: 1-D ids", lambda: BertModel(BertConfig(vocab_size=10, max_seq_len=8, dim=8, num_layers=1,
                                                           num_heads=2))(torch.zeros(4, dtype=torch.long)),
    ValueError, "(batch, seq)", "(4,)")
row("SentimentFusionModel: images of the wrong size", lambda: SentimentFusionModel(SentimentFusionConfig(
    modalities=("image",)))(None, None, torch.zeros(2, 1, 24, 24)), ValueError,
    "expected shape (batch, 1, 16, 16)", "got (2, 1, 24, 24)")
row("SentimentFusionModel: NaN pixels", lambda: SentimentFusionModel(SentimentFusionConfig(
    modalities=("image",)))(None, None, torch.full((2, 1, 16, 16), float("nan"))), ValueError,
    "NaN or infinite values", "512 of 512")
row("check_token_ids: fractional vocab_size", lambda: checks.check_token_ids(torch.zeros(1, 2, dtype=torch.long), 2.5),
    TypeError, "vocab_size must be a positive int", "2.5")
row("load_paired_digits: no callable transform", lambda: paired._audio_tokens("mfcc", np.zeros((2, 10)), 16000),
    TypeError, "audio_transform must be a callable", "got str")
row("load_digits: fraction as text", lambda: data.load_digits(val_fraction="0.1"), TypeError,
    "val_fraction must be a number in (0, 1)", "'0.1'")
row("load_digits: seed as text", lambda: data.load_digits(seed="a"), TypeError, "seed must be an int", "'a'")
row("SceneConfig: image too small", lambda: scenes.SceneConfig(image_size=2), ValueError,
    "image_size must be >= 3", "got 2")
row("SinusoidalPositionalEncoding: negative base", lambda: SinusoidalPositionalEncoding(8, base=-1.0), ValueError,
    "base must be a finite number > 1", "-1.0")
row("RotaryEmbedding: NaN base", lambda: RotaryEmbedding(8, base=float("nan")), ValueError,
    "base must be a finite number > 1", "nan")
row("LearnedPositionalEmbedding: fractional start", lambda: LearnedPositionalEmbedding(8, 4)(torch.zeros(1, 2, 4),
                                                                                             start=1.5),
    TypeError, "start must be an int position", "1.5")


# ==========================================================================================================
# the test
# ==========================================================================================================
def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_error(bad: Case, tmp_path, one_torch_thread):
    with pytest.raises(bad.error) as caught:
        bad.call(tmp_path)
    message = str(caught.value)
    missing = [fragment for fragment in bad.fragments if fragment not in message]
    assert not missing, f"the message lacks {missing}: {message!r}"

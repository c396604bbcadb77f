"""The one trainer the whole book uses: :func:`fit`.

What it does, in the order a step happens::

    for each optimizer step:
        for each of `grad_accum_steps` micro-batches:         # gradient accumulation
            with bf16 autocast (CUDA; any device with amp="bf16"):   # mixed precision
                loss = loss_fn(model, batch) / accum
            loss.backward()                                     # DDP all-reduces on the last micro-batch
        clip the global gradient norm                           # optional
        optimizer.step(); scheduler.step()
        every `checkpoint_every` steps: write a checkpoint atomically (rank 0)
    after each epoch: evaluate (validation loss/accuracy, or your callback)

Everything that decides the trajectory (model, optimizer, scheduler, RNG state, the data order, the
step counter and the history) is in the checkpoint, so a run that is interrupted and resumed ends with
exactly the weights of a run that never stopped.  Under ``torchrun`` the same call runs data-parallel
(DDP; gloo on CPU, NCCL on GPUs): ``batch_size`` is the global batch, split evenly over the processes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from .checkpoint import (CheckpointError, content_sha256, describe_keys, load_checkpoint, load_converted_state_dict,
                         remove_stale_temp_files, save_checkpoint)
from .config import cache_dir, get_device, mode_name

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
IGNORE_INDEX = -100          # targets with this value count for nothing (F.cross_entropy's default)
SCHEDULES = ("constant", "cosine", "linear", "onecycle")
# Fields that may change between an interrupted run and its resumption without changing the trajectory.
_RESUMABLE_FIELDS = {"checkpoint_dir", "checkpoint_every", "resume", "progress", "num_workers"}


@dataclass
class TrainConfig:
    """Everything that decides a training run (and is stored in its checkpoints)."""
    epochs: int = 1                      # passes over the training data (ignored when max_steps is set)
    batch_size: int = 64                 # global batch per micro-batch: split over DDP processes
    lr: float = 1e-3                     # peak learning rate
    optimizer: str = "adamw"             # one of OPTIMIZERS ("momentum" = SGD with momentum)
    momentum: float = 0.9                # for "momentum" (and the Nesterov-free SGD convention of torch)
    weight_decay: float = 0.0            # decoupled for AdamW, L2-in-the-gradient for SGD/Adam
    schedule: str = "constant"           # one of SCHEDULES, stepped once per optimizer step
    warmup_steps: int = 0                # linear warm-up from 0 (onecycle: its rising phase)
    grad_accum_steps: int = 1            # micro-batches per optimizer step (effective batch = product)
    max_grad_norm: float | None = None   # clip the global gradient norm to this (None: no clipping)
    amp: bool | str = "auto"             # "auto"/True: bf16 autocast on CUDA; "bf16": on any device (the CPU
                                         # too); False: full precision
    checkpoint_dir: str | None = None    # where last.pt goes; None: no checkpoints
    checkpoint_every: int | None = None  # optimizer steps between checkpoints (None: only at the end)
    resume: bool = True                  # continue from checkpoint_dir/last.pt when it exists
    seed: int = 0                        # seeds the data order (and nothing global)
    progress: bool = True                # show a tqdm progress bar
    max_steps: int | None = None         # stop after this many optimizer steps in total
    num_workers: int = 0                 # DataLoader workers for map-style datasets

    def __post_init__(self) -> None:
        # Values are normalised to Python int/float: the config is stored in every checkpoint, and
        # weights_only loading reads no NumPy scalars.
        for name in ("epochs", "batch_size", "grad_accum_steps"):
            setattr(self, name, _checked_int(name, getattr(self, name), minimum=1))
        for name in ("warmup_steps", "num_workers", "seed"):
            setattr(self, name, _checked_int(name, getattr(self, name), minimum=0))
        for name in ("checkpoint_every", "max_steps"):
            setattr(self, name, _checked_int(name, getattr(self, name), minimum=1, optional=True))
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ValueError(f"TrainConfig.{name} must be one of {choices}, got {value!r}")
        self.lr = _checked_number("lr", self.lr, "> 0", lambda v: v > 0)
        self.weight_decay = _checked_number("weight_decay", self.weight_decay, ">= 0", lambda v: v >= 0)
        self.momentum = _checked_number("momentum", self.momentum, "in [0, 1)", lambda v: 0 <= v < 1)
        if self.max_grad_norm is not None:
            self.max_grad_norm = _checked_number("max_grad_norm", self.max_grad_norm, "> 0 or None",
                                                 lambda v: v > 0)
        if not (isinstance(self.amp, bool) or (isinstance(self.amp, str) and self.amp in ("auto", "bf16"))):
            raise ValueError(f"TrainConfig.amp must be True, False or 'auto', got {self.amp!r} (or 'bf16': bf16 "
                             "autocast on any device, the CPU included)")
        for name in ("resume", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)):
                raise TypeError("TrainConfig.checkpoint_dir must be a folder path (str or Path) or None, got "
                                f"{type(self.checkpoint_dir).__name__}")
            # Stored as str: the config goes into every checkpoint, and weights_only loading reads no Path.
            self.checkpoint_dir = os.fspath(self.checkpoint_dir)
            if not self.checkpoint_dir:
                raise ValueError("TrainConfig.checkpoint_dir is an empty string; use None for no checkpoints "
                                 "or name a folder")


def _checked_int(name: str, value, minimum: int, optional: bool = False) -> int | None:
    """An int field as a Python int: ``TypeError`` for other types (bools included: True is no count),
    ``ValueError`` below ``minimum``."""
    if optional and value is None:
        return None
    wanted = {0: "an int >= 0", 1: "a positive int"}[minimum] + (" or None" if optional else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"TrainConfig.{name} must be {wanted}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"TrainConfig.{name} must be {wanted}, got {value!r}")
    return int(value)


def _checked_number(name: str, value, condition: str, holds: Callable[[float], bool]) -> float:
    """A real-number field as a Python float, finite and satisfying ``condition`` (bools and strings are a
    ``TypeError``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"TrainConfig.{name} must be a number {condition}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or not holds(value):
        raise ValueError(f"TrainConfig.{name} must be a finite number {condition}, got {value!r}")
    return value if type(value) in (int, float) else float(value)    # an int lr stays as the user wrote it


@dataclass
class History:
    """What a run recorded: one dict per optimizer step and one per epoch."""
    steps: list[dict[str, float]] = field(default_factory=list)   # step, epoch, loss, lr
    epochs: list[dict[str, float]] = field(default_factory=list)  # epoch, train_loss, lr, seconds, val_*

    def __getitem__(self, key: str) -> list[float]:
        """Per-epoch values of one metric, e.g. ``history["val_accuracy"]``."""
        values = [row[key] for row in self.epochs if key in row]
        if not values:
            raise KeyError(f"no epoch recorded {key!r}; recorded keys: {sorted(self.keys())}")
        return values

    def keys(self) -> set[str]:
        return {key for row in self.epochs for key in row}

    def last(self, key: str) -> float:
        return self[key][-1]

    def to_dict(self) -> dict[str, list]:
        return {"steps": self.steps, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, state: dict[str, list]) -> "History":
        return cls(steps=list(state.get("steps", [])), epochs=list(state.get("epochs", [])))


# --------------------------------------------------------------------------------------------------
# Distributed helpers (torchrun sets WORLD_SIZE, RANK and LOCAL_RANK)
# --------------------------------------------------------------------------------------------------
def distributed_world() -> tuple[int, int]:
    """(rank, world_size); initialises the process group when started under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------------
# Memory of the backward pass
# --------------------------------------------------------------------------------------------------
def saved_tensor_bytes(compute: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> tuple[int, Any]:
    """Bytes of the tensors autograd keeps for the backward pass while ``compute()`` runs, and its result.

    Every tensor an operation saves for backward passes through a ``saved_tensors_hooks`` pack hook; the
    bytes of their distinct storages are what backward needs in memory on top of the weights (pass the
    parameters as ``exclude``: a Linear saves its weight, which exists anyway).  A portable stand-in for
    peak activation memory that works on the CPU (on CUDA, ``torch.cuda.max_memory_allocated`` measures
    the peak itself).  Inside a non-reentrant ``torch.utils.checkpoint`` region the checkpoint's own hooks
    take over, and only the region's inputs stay alive.
    """
    if not callable(compute):
        raise TypeError(f"compute must be a function of no arguments, got {type(compute).__name__}")
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = compute()
    excluded = {tensor.untyped_storage().data_ptr() for tensor in exclude}
    return sum(size for pointer, size in storages.items() if pointer not in excluded), result


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------
def check_class_targets(logits: torch.Tensor, targets, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets for ``F.cross_entropy(logits, targets)``: integer class ids in ``[0, num_classes)`` (or
    ``ignore_index``), one per row of ``logits`` (batch, classes) or (batch, classes, d1, ...).

    Values are checked at once on the CPU; on an accelerator the check is queued with ``torch._assert_async``
    (no device synchronisation on every step).  Returns ``targets`` unchanged.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 2:
        got = (f"shape {tuple(logits.shape)} and dtype {logits.dtype}" if isinstance(logits, torch.Tensor)
               else type(logits).__name__)
        raise ValueError("the default loss wants the model to return floating-point logits (batch, classes), "
                         f"got {got}; pass loss_fn=... for other outputs")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a tensor of integer class ids, got {type(targets).__name__}")
    if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"the default loss wants integer class ids as targets (torch.long), got dtype "
                        f"{targets.dtype}; convert labels with .long(), or pass loss_fn=... for soft "
                        "(probability) or regression targets")
    expected_shape = logits.shape[:1] + logits.shape[2:]
    if targets.shape != expected_shape:
        raise ValueError(f"targets must have shape {tuple(expected_shape)} (one class id per row of the logits "
                         f"of shape {tuple(logits.shape)}), got {tuple(targets.shape)}")
    num_classes = logits.size(1)
    if targets.numel():
        valid = ((targets >= 0) & (targets < num_classes)) | (targets == ignore_index)
        expected = f"class ids in [0, {num_classes}) (or {ignore_index} to ignore an item)"
        if targets.device.type == "cpu":
            if not bool(valid.all()):
                wrong = targets[~valid]
                raise ValueError(f"targets must be {expected} for logits with {num_classes} classes, got "
                                 f"{wrong.numel()} outside, in [{int(wrong.min())}, {int(wrong.max())}]")
            if bool((targets == ignore_index).all()):
                raise ValueError(f"every target of this batch is the ignore index {ignore_index}: no target counts, "
                                 "so the mean cross-entropy would be 0/0 = NaN")
        else:   # queued on the device: no read-back, so no synchronisation on every step
            torch._assert_async(valid.all(), f"targets must be {expected}")
    return targets


def classification_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Default loss: cross-entropy of ``model(inputs)`` against integer ``targets`` (checked first)."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        size = f" of length {len(batch)}" if isinstance(batch, (tuple, list, dict)) else ""
        raise ValueError("the default loss wants batches of (inputs, targets); pass loss_fn=... for "
                         f"other batches (got {type(batch).__name__}{size})")
    inputs, targets = batch
    logits = model(inputs)                                               # (batch, classes)
    return F.cross_entropy(logits, check_class_targets(logits, targets))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) for LambdaLR."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "onecycle":
        # PyTorch's one-cycle policy (Smith & Topin 2019): warm up to lr, then anneal by cosine.
        # Each of its two phases must span at least one step, or OneCycleLR divides by zero.
        if total_steps < 3:
            raise ValueError(f"the onecycle schedule needs at least 3 optimizer steps, got {total_steps}; "
                             "train for more steps or use schedule='cosine'")
        pct_start = config.warmup_steps / total_steps if config.warmup_steps else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total_steps,
            pct_start=min(max(pct_start, 2.0 / total_steps), 0.99), cycle_momentum=False)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config.warmup_steps, config.schedule))


def _as_dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        sizes = {len(t) for t in data}
        if len(sizes) != 1:
            raise ValueError(f"the tensors of the data tuple must have the same length, got {sorted(sizes)}")
        return TensorDataset(*data)
    raise TypeError("training data must be a torch Dataset or a tuple of tensors (inputs, targets), got "
                    f"{type(data).__name__}")


class _Batches:
    """Micro-batches of one epoch in a seeded order that does not depend on (or touch) the global RNG.

    Each process of a DDP run takes every ``world_size``-th index of the epoch's permutation, so the union
    of the processes' k-th micro-batches is exactly the k-th micro-batch of a single-process run.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int, world_size: int,
                 num_workers: int, shuffle: bool = True):
        self.dataset, self.seed, self.rank, self.world_size = dataset, seed, rank, world_size
        self.shuffle, self.num_workers = shuffle, num_workers
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
        self.local_batch = batch_size // world_size
        usable = len(dataset) - len(dataset) % world_size   # equal shares keep the gradient mean exact
        self.num_batches = math.ceil(usable / batch_size)
        if self.num_batches == 0:
            raise ValueError(f"the dataset has {len(dataset)} items, fewer than the {world_size} processes")
        self._tensors = dataset.tensors if isinstance(dataset, TensorDataset) else None

    def indices(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(len(self.dataset))
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.dataset), generator=generator)
        usable = len(order) - len(order) % self.world_size
        return order[:usable][self.rank::self.world_size]

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Any]:
        local = self.indices(epoch)
        chunks = [local[i:i + self.local_batch] for i in range(0, len(local), self.local_batch)][skip:]
        if self._tensors is not None:                       # fast path: slice the tensors directly
            for chunk in chunks:
                yield tuple(t[chunk] for t in self._tensors)
            return
        loader = DataLoader(self.dataset, batch_sampler=[c.tolist() for c in chunks],
                            num_workers=self.num_workers, generator=torch.Generator().manual_seed(self.seed))
        yield from loader


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


def _autocast(device: torch.device, amp: bool | str):
    if amp == "bf16":           # asked for explicitly: bf16 autocast wherever torch has it (CPU, CUDA, MPS)
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if amp in (True, "auto") and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate_classifier(model: nn.Module, data, device: torch.device | None = None, batch_size: int = 512,
                        loss_fn: Callable | None = None) -> dict[str, float]:
    """Mean loss and accuracy of a classifier over ``(inputs, targets)`` data, in eval mode."""
    device = device or next(model.parameters()).device
    dataset = _as_dataset(data)
    batches = _Batches(dataset, batch_size, seed=0, rank=0, world_size=1, num_workers=0, shuffle=False)
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, targets in batches.epoch(0):
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)                                            # (batch, classes)
        if loss_fn is None:
            check_class_targets(logits, targets)
        loss = loss_fn(model, (inputs, targets)) if loss_fn else F.cross_entropy(logits, targets)
        total_loss += float(loss) * len(targets)
        correct += int((logits.argmax(dim=-1) == targets).sum())
        count += len(targets)
    model.train(was_training)
    return {"val_loss": total_loss / count, "val_accuracy": correct / count}


def _checkpoint_path(config: TrainConfig) -> Path | None:
    return Path(config.checkpoint_dir) / "last.pt" if config.checkpoint_dir else None


_TRAINING_STATE_KEYS = ("model", "optimizer", "scheduler", "rng", "history", "step", "config")


def _check_training_state(state: Any, path: Path) -> None:
    """A checkpoint that ``fit`` wrote: a dict with every key that resuming reads."""
    missing = [key for key in _TRAINING_STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"{path} is not a training checkpoint written by fit (it lacks {missing}); delete it, "
                         "use another checkpoint_dir or pass resume=False")


def _resume(state: dict, path: Path, model: nn.Module, optimizer, scheduler, device: torch.device) -> None:
    """Put model, optimizer, scheduler and RNG back where the checkpoint left them, with clear errors when the
    checkpoint belongs to another model or optimizer."""
    advice = f"Delete {path}, use another checkpoint_dir, or pass resume=False."
    try:
        load_converted_state_dict(model, state["model"], source=f"checkpoint {path}",
                                  config_name=f"{type(model).__name__} configuration")
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot resume from {path}: it was written for another model ({error}). {advice}") \
            from error
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"cannot resume from {path}: its optimizer or scheduler state does not fit this "
                         f"{type(optimizer).__name__} ({type(error).__name__}: {error}). {advice}") from error
    torch.set_rng_state(state["rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def _tensors_in(batch) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, (tuple, list)):
        for item in batch:
            yield from _tensors_in(item)
    elif isinstance(batch, dict):
        for item in batch.values():
            yield from _tensors_in(item)


@torch.no_grad()
def _non_finite_loss_message(value: float, step: int, model: nn.Module, batch) -> str:
    """Why the loss is NaN or infinite, from what can be checked after the fact: the weights, the batch."""
    start = f"the loss became {value} at step {step}"
    broken = [name for name, parameter in model.named_parameters() if not bool(torch.isfinite(parameter).all())]
    if broken:
        when = "before any update (the initial weights)" if step == 0 else "after the last update: training diverged"
        return (f"{start}: weights are NaN or infinite {when} ({describe_keys(broken)}); lower the learning rate "
                "or set max_grad_norm")
    tensors = list(_tensors_in(batch))
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in tensors):
        return f"{start}: the batch holds NaN or infinite values (the weights are finite); check the data"
    if any(not t.is_floating_point() and t.dtype != torch.bool and t.numel() and bool((t == IGNORE_INDEX).all())
           for t in tensors):
        return (f"{start} because no target counted: every target of this batch is the ignore index "
                f"{IGNORE_INDEX}, and cross-entropy's mean over zero targets is 0/0 = NaN (the weights and inputs "
                "are finite). Give every batch at least one real target, or average with "
                "reduction='sum' / max(1, count) in your loss_fn")
    return (f"{start} with finite weights and inputs; lower the learning rate or set max_grad_norm (a NaN "
            f"also comes from a mean over no targets: every target ignored ({IGNORE_INDEX}), or sequences too "
            "short to have a next token)")


def _check_resumable(saved: dict, config: TrainConfig, path: Path) -> None:
    current = asdict(config)
    changed = [f"{name}: {saved[name]!r} -> {current[name]!r}" for name in current
               if name not in _RESUMABLE_FIELDS and name in saved and saved[name] != current[name]]
    if changed:
        raise ValueError(f"the checkpoint {path} was written with a different configuration ("
                         + "; ".join(changed) + "). Use another checkpoint_dir or resume=False.")


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------
def fit(model: nn.Module, train_data, *, config: TrainConfig | None = None,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None, val_data=None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        optimizer: torch.optim.Optimizer | None = None, device: torch.device | str | None = None,
        callback: Callable[[int, float], None] | None = None, **overrides) -> History:
    """Train ``model`` and return its :class:`History`.

    Args:
        model: the network; moved to ``device`` (default: :func:`mmtutorial.get_device`).
        train_data: a torch ``Dataset`` or a tuple of tensors ``(inputs, targets)``.
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields (``fit(m, d, epochs=3)``).
        loss_fn: ``loss_fn(model, batch) -> scalar`` (default: cross-entropy on ``(inputs, targets)``).
        val_data: evaluated after every epoch into ``val_loss`` and ``val_accuracy``.
        evaluate: ``evaluate(model) -> dict`` also called after every epoch; its keys join the history.
        optimizer: a ready optimizer over ``model``'s parameters (then ``config.optimizer`` is unused).
        callback: ``callback(step, loss)`` after every optimizer step (e.g. to stop a run in a test).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit wants an nn.Module, got {type(model).__name__}")
    for name, function in (("loss_fn", loss_fn), ("evaluate", evaluate), ("callback", callback)):
        if function is not None and not callable(function):
            raise TypeError(f"{name} must be a function or None, got {type(function).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        hint = (f"; to choose one by name pass config=TrainConfig(optimizer={optimizer!r})"
                if isinstance(optimizer, str) else "")
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}{hint}")
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise TypeError(f"unknown TrainConfig fields {sorted(unknown)}")
        config = TrainConfig(**{**asdict(config), **overrides})
    loss_fn = loss_fn or classification_loss

    rank, world_size = distributed_world()
    if device is None:
        device = (torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
                  if world_size > 1 and torch.cuda.is_available() else get_device())
    device = torch.device(device)
    model.to(device)
    dataset = _as_dataset(train_data)
    if val_data is not None:
        _as_dataset(val_data)               # refused now, not after the first epoch of training
    batches = _Batches(dataset, config.batch_size, config.seed, rank, world_size, config.num_workers)
    steps_per_epoch = math.ceil(batches.num_batches / config.grad_accum_steps)
    total_steps = config.max_steps or config.epochs * steps_per_epoch

    optimizer = optimizer or build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    history, step = History(), 0
    path = _checkpoint_path(config)
    if path is not None and is_main_process():
        remove_stale_temp_files(path.parent)    # left by a run that was killed while saving
    if path is not None and config.resume and path.exists():
        state = load_checkpoint(path, map_location=device)
        _check_training_state(state, path)
        _check_resumable(state["config"], config, path)
        _resume(state, path, model, optimizer, scheduler, device)
        history, step = History.from_dict(state["history"]), int(state["step"])
        if is_main_process():
            print(f"Resuming from {path} at step {step}/{total_steps}")

    train_model = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model

    def write_checkpoint() -> None:
        if path is None:
            return
        if is_main_process():
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": step, "history": history.to_dict(),
                     "config": asdict(config), "rng": torch.get_rng_state()}
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            save_checkpoint(state, path)
        if world_size > 1:
            dist.barrier()

    def end_of_epoch(epoch: int, seconds: float) -> None:
        losses = [row["loss"] for row in history.steps if row["epoch"] == epoch]
        row = {"epoch": epoch, "step": step, "train_loss": sum(losses) / max(1, len(losses)),
               "lr": optimizer.param_groups[0]["lr"], "seconds": seconds}
        if val_data is not None:
            row.update(evaluate_classifier(model, val_data, device,
                                           loss_fn=None if loss_fn is classification_loss else loss_fn))
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                row.update({key: float(value) for key, value in evaluate(model).items()})
        model.train()
        history.epochs.append(row)

    # a context manager, so that a training stopped by an exception (or a callback) still ends its bar's line
    with tqdm(total=total_steps, initial=step, disable=not (config.progress and is_main_process()),
              desc=f"training ({mode_name()})", file=sys.stdout, mininterval=1.0, ncols=90, leave=True) as bar:
        model.train()
        while step < total_steps:
            epoch = step // steps_per_epoch
            started = time.perf_counter()
            micro_batches = batches.epoch(epoch, skip=(step % steps_per_epoch) * config.grad_accum_steps)
            for _ in range(steps_per_epoch - step % steps_per_epoch):
                if step >= total_steps:
                    break
                group = list(itertools.islice(micro_batches, config.grad_accum_steps))
                group_loss = 0.0
                for index, batch in enumerate(group):
                    batch = _to_device(batch, device)
                    # DDP all-reduces gradients on backward; skip that for all but the last micro-batch.
                    sync = train_model.no_sync() if world_size > 1 and index < len(group) - 1 else nullcontext()
                    with sync:
                        with _autocast(device, config.amp):
                            loss = loss_fn(train_model, batch) / len(group)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(_non_finite_loss_message(float(loss.detach()), step, model, batch))
                        loss.backward()
                    group_loss += float(loss.detach())
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if world_size > 1:
                    mean_loss = torch.tensor([group_loss], device=device)
                    dist.all_reduce(mean_loss)
                    group_loss = float(mean_loss) / world_size
                step += 1
                history.steps.append({"step": step, "epoch": epoch, "loss": group_loss, "lr": lr})
                bar.update(1)
                bar.set_postfix(loss=f"{group_loss:.4f}", refresh=False)
                if step % steps_per_epoch == 0 or step == total_steps:
                    end_of_epoch(epoch, time.perf_counter() - started)
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
                    write_checkpoint()
                if callback is not None:
                    callback(step, group_loss)
    write_checkpoint()
    return history


# --------------------------------------------------------------------------------------------------
# Load if cached, else train
# --------------------------------------------------------------------------------------------------
# Config fields that change how a model runs, not what it computes or learns: left out of cache keys, so that
# switching activation checkpointing on (recomputation gives the same numbers) reuses the cached weights.
RUNTIME_ONLY_FIELDS = frozenset({"activation_checkpointing"})


def _without_runtime_fields(value):
    if isinstance(value, dict):
        return {key: _without_runtime_fields(item) for key, item in value.items() if key not in RUNTIME_ONLY_FIELDS}
    if isinstance(value, (list, tuple)):
        return [_without_runtime_fields(item) for item in value]
    return value


def config_fingerprint(config: dict | None) -> str:
    """Short hash of a JSON-able description of a model and its training, used in cache file names
    (fields in ``RUNTIME_ONLY_FIELDS`` are left out)."""
    text = json.dumps(_without_runtime_fields(config or {}), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def cached_model_path(name: str, config: dict | None = None) -> Path:
    """Where :func:`load_or_train` keeps ``name``: one file per name, QUICK/full mode and configuration."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
        raise ValueError(f"model name must be a plain non-empty file name, got {name!r}")
    return cache_dir("models") / f"{name}-{mode_name().lower()}-{config_fingerprint(config)}.pt"


def load_or_train(name: str, model: nn.Module, train_fn: Callable[[nn.Module], History | None],
                  config: dict | None = None, retrain: bool = False) -> History | None:
    """Load ``model``'s weights from the cache if a run with this name, mode and ``config`` was saved,
    else call ``train_fn(model)`` and save the result.  Says which it did.

    Returns the training :class:`History` (restored from the cache when loading), or ``None`` if
    ``train_fn`` returned none.  QUICK and full mode never share a cached model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_or_train wants an nn.Module, got {type(model).__name__}")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be a function train_fn(model) -> History | None, got {type(train_fn).__name__}")
    content_sha256(config or {})            # a config the cache cannot store is refused now, not after training
    path = cached_model_path(name, config)
    if path.exists() and not retrain:
        try:
            device = next(model.parameters(), torch.empty(0)).device
            state = load_checkpoint(path, map_location=device)
        except CheckpointError as error:    # a damaged or unverifiable cache is rebuilt, and the reader told so
            print(f"The cached model at {path} cannot be used ({error}); training it again")
        else:
            print(f"Found trained model at {path}, loading")
            if not isinstance(state, dict) or "model" not in state:
                raise ValueError(f"{path} is not a model cached by load_or_train (no 'model' entry); delete it")
            try:
                load_converted_state_dict(model, state["model"], source=f"cached model {path}",
                                          config_name=f"{type(model).__name__} configuration")
            except (TypeError, ValueError) as error:
                raise ValueError(f"the cached model {path} does not fit this {type(model).__name__} ({error}). "
                                 "Its architecture changed without the config passed to load_or_train: delete "
                                 f"{path} or pass retrain=True") from error
            return History.from_dict(state["history"]) if state.get("history") else None
    elif path.exists():
        print(f"retrain=True: training {name} again (the cache at {path} will be replaced)")
    else:
        print(f"No trained model at {path}; training it now (it will be cached)")
    history = train_fn(model)
    if history is not None and not isinstance(history, History):
        raise TypeError(f"train_fn must return a History or None, got {type(history).__name__}")
    if is_main_process():
        save_checkpoint({"model": model.state_dict(), "config": config or {},
                         "history": history.to_dict() if history else {}}, path)
    return history

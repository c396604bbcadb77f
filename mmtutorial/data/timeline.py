"""The timeline of chapter 25: one row per model, published figures only, one reference per row.

The rows live in ``timeline.csv`` next to this file (shipped with the package).  Columns:

- ``name``, ``date`` (``YYYY-MM``, first public release), ``organisation``;
- ``parameters``: the published count, empty when it was not published (GPT-4, GPT-4o): never a rumour;
- ``training_flops`` with ``flops_source``: ``published`` (a figure from the reference) or ``estimate 6ND``
  (6 x parameters x ``training_tokens``, both from the reference), both empty when nothing is known;
- ``training_tokens`` (published, or empty), ``inputs`` and ``outputs`` (modalities joined by ``+``);
- ``weights_released`` (``yes``/``no``), ``reference`` (BibTeX keys in book/references.bib, ``;``-separated,
  the first is the row's main reference), ``notes``.

:func:`load_timeline` validates every row and raises :class:`TimelineError` naming the line and the field.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

TIMELINE_CSV = Path(__file__).with_name("timeline.csv")
COLUMNS = ("name", "date", "organisation", "parameters", "training_flops", "flops_source", "training_tokens",
           "inputs", "outputs", "weights_released", "reference", "notes")
MODALITIES = ("text", "image", "video", "audio", "embeddings", "class scores")
FLOPS_SOURCES = ("published", "estimate 6ND")


class TimelineError(ValueError):
    """A malformed row of the timeline file; the message names the line and the field."""


@dataclass(frozen=True)
class Milestone:
    """One row of the timeline."""
    name: str
    year: int
    month: int
    organisation: str
    parameters: float | None          # published count, None when not published
    training_flops: float | None      # FLOPs, None when neither published nor estimable
    flops_source: str                 # "published", "estimate 6ND" or "" (no figure)
    training_tokens: float | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights_released: bool
    references: tuple[str, ...]
    notes: str

    @property
    def date(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def decimal_year(self) -> float:
        """The middle of the release month as a year with a fraction (2020-05 -> 2020.375)."""
        return self.year + (self.month - 0.5) / 12

    @property
    def reference(self) -> str:
        return self.references[0]

    @property
    def multimodal(self) -> bool:
        """True when the model reads or writes more than one modality (embeddings and class scores aside)."""
        kinds = {m for m in self.inputs + self.outputs if m not in ("embeddings", "class scores")}
        return len(kinds) > 1


def _number(text: str, where: str, field: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise TimelineError(f"{where}: {field} must be a number or empty, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise TimelineError(f"{where}: {field} must be positive (or empty when not published), got {text!r}")
    return value


def _modalities(text: str, where: str, field: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split("+"))
    unknown = [part for part in parts if part not in MODALITIES]
    if not text.strip() or unknown:
        raise TimelineError(f"{where}: {field} must be modalities from {MODALITIES} joined by '+', got {text!r}")
    return parts


def parse_row(row: dict[str, str], where: str = "row") -> Milestone:
    """Validate one CSV row (a dict of the :data:`COLUMNS`) and return it as a :class:`Milestone`."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a dict of column -> text, got {type(row).__name__}")
    missing = [column for column in COLUMNS if column not in row or row[column] is None]
    if missing:
        raise TimelineError(f"{where}: missing columns {missing}; expected {list(COLUMNS)}")
    name = row["name"].strip()
    if not name:
        raise TimelineError(f"{where}: name is empty")
    where = f"{where} ({name})"
    match = re.fullmatch(r"(\d{4})-(\d{2})", row["date"].strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or not 1950 <= int(match.group(1)) <= 2100:
        raise TimelineError(f"{where}: date must be YYYY-MM with a month 01-12, got {row['date']!r}")
    parameters = _number(row["parameters"], where, "parameters")
    flops = _number(row["training_flops"], where, "training_flops")
    tokens = _number(row["training_tokens"], where, "training_tokens")
    source = row["flops_source"].strip()
    if (flops is None) != (source == ""):
        raise TimelineError(f"{where}: training_flops and flops_source go together (a figure needs its source "
                            f"{FLOPS_SOURCES}), got {row['training_flops']!r} and {source!r}")
    if source and source not in FLOPS_SOURCES:
        raise TimelineError(f"{where}: flops_source must be one of {FLOPS_SOURCES} or empty, got {source!r}")
    if source == "estimate 6ND":
        if parameters is None or tokens is None:
            raise TimelineError(f"{where}: a 6ND estimate needs published parameters and training_tokens")
        if not math.isclose(flops, 6 * parameters * tokens, rel_tol=0.02):
            raise TimelineError(f"{where}: the 6ND estimate should be {6 * parameters * tokens:.3g}, got {flops:.3g}")
    weights = row["weights_released"].strip()
    if weights not in ("yes", "no"):
        raise TimelineError(f"{where}: weights_released must be 'yes' or 'no', got {weights!r}")
    references = tuple(key.strip() for key in row["reference"].split(";") if key.strip())
    if not references or any(not re.fullmatch(r"[A-Za-z][\w:-]*", key) for key in references):
        raise TimelineError(f"{where}: reference must be BibTeX keys separated by ';', got {row['reference']!r}")
    return Milestone(name=name, year=int(match.group(1)), month=int(match.group(2)),
                     organisation=row["organisation"].strip(), parameters=parameters, training_flops=flops,
                     flops_source=source, training_tokens=tokens, inputs=_modalities(row["inputs"], where, "inputs"),
                     outputs=_modalities(row["outputs"], where, "outputs"), weights_released=weights == "yes",
                     references=references, notes=row["notes"].strip())


def load_timeline(path: str | Path | None = None) -> list[Milestone]:
    """Every row of the timeline file, validated, in date order (the file must already be in that order)."""
    path = TIMELINE_CSV if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(f"timeline file {path} is missing (it ships with mmtutorial as data/timeline.csv)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise TimelineError(f"{path.name}: header must be {list(COLUMNS)}, got {reader.fieldnames}")
        milestones = [parse_row(row, f"{path.name}, line {reader.line_num}") for row in reader]
    if not milestones:
        raise TimelineError(f"{path.name}: no rows")
    names = [m.name for m in milestones]
    if len(set(names)) != len(names):
        raise TimelineError(f"{path.name}: duplicate names {sorted({n for n in names if names.count(n) > 1})}")
    for before, after in zip(milestones, milestones[1:]):
        if (after.year, after.month) < (before.year, before.month):
            raise TimelineError(f"{path.name}: rows must be in date order, {after.name} ({after.date}) comes "
                                f"after {before.name} ({before.date})")
    return milestones


def doubling_time_months(decimal_years, values) -> float:
    """Months for ``values`` to double, from the least-squares line through (year, log2 value)."""
    import numpy as np
    years = np.asarray(decimal_years, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if years.ndim != 1 or years.shape != values.shape or years.size < 2:
        raise ValueError(f"need two 1-D sequences of the same length >= 2, got shapes {years.shape} and {values.shape}")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError("values must be positive and finite")
    logs = np.log2(values)
    if np.ptp(years) == 0:
        raise ValueError("all dates are equal: no growth rate can be fitted")
    slope = np.polyfit(years, logs, 1)[0]                 # doublings per year
    if slope <= 0:
        raise ValueError(f"the values do not grow over time (slope {slope:.3g} doublings per year)")
    return float(12.0 / slope)


def six_nd(parameters: float, tokens: float) -> float:
    """The usual training-compute estimate C ~ 6 N D FLOPs (2ND forward, 4ND backward)."""
    for name, value in (("parameters", parameters), ("tokens", tokens)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return 6.0 * parameters * tokens


def transformer_training_flops(matmul_weights: int, num_layers: int, dim: int, seq_len: int, num_tokens: int,
                               attention: bool = True) -> int:
    """FLOPs (2 per multiply-accumulate) of training a decoder on ``num_tokens`` tokens in sequences of
    ``seq_len``: the one formula that chapter 22 (``models.gpt.training_flops``) and chapter 25 share.

    A weight matrix costs 2 FLOPs per weight and token forward and 4 backward (the gradients with respect to its
    input and to itself), hence 6 N D with N = ``matmul_weights``; attention adds 2 T d (q.k) + 2 T d (the
    weighted values) per token and layer forward, three times that in training: 12 L T d D (computed in full,
    although the causal mask discards half).
    """
    flops = 6 * matmul_weights * num_tokens
    if attention:
        flops += 12 * num_layers * seq_len * dim * num_tokens
    return flops


def gpt_training_flops(num_layers: int, dim: int, vocab_size: int, seq_len: int, num_sequences: int = 1) -> int:
    """Matrix-multiply FLOPs of one forward and backward pass of a GPT-2-style decoder (tied LM head).

    Per token the forward pass multiplies by every weight matrix once (2 FLOPs per weight: 12 dim^2 per layer
    and dim x vocab_size for the head) and attends over ``seq_len`` positions (QK^T and AV: 4 seq_len dim per
    layer); the backward pass costs twice the forward.  So it is 6 N D plus the attention term
    (:func:`transformer_training_flops`).
    """
    for name, value in (("num_layers", num_layers), ("dim", dim), ("vocab_size", vocab_size),
                        ("seq_len", seq_len), ("num_sequences", num_sequences)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    matmul_weights = 12 * num_layers * dim * dim + dim * vocab_size   # 4 d^2 attention + 8 d^2 MLP, and the head
    return transformer_training_flops(matmul_weights, num_layers, dim, seq_len, seq_len * num_sequences)

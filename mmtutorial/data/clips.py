"""Synthetic video clips: coloured shapes that move, for tasks that no single frame can solve (chapter 21).

A clip is ``num_frames`` frames of the shapes of :mod:`mmtutorial.data.scenes`, each redrawn with
:func:`scenes.make_object` / :func:`scenes.render` at a new position in every frame.  Two tasks:

* **direction** (:func:`direction_clips`): one shape moves in a straight line at a constant speed, left,
  right, up or down; the label is the direction and the caption says it ("a red circle moving left");
* **order** (:func:`order_clips`): two shapes, one in the top half and one in the bottom half; one moves
  (left or right) for the first steps, pauses, then the other moves for as many steps.  The label says which
  moved first (0: the top one, 1: the bottom one).

Both are built so that **time is the only clue**:

1. The time reversal of a clip is a clip of the opposite label (left <-> right, up <-> down; the top shape
   moved first <-> the bottom shape moved first), and it is exactly as likely: start positions are uniform
   over every position that keeps the whole path inside the image, so the reversal's start (the original's
   end) is uniform over the same range as every other clip of its label.  Moves are symmetric in time too
   (the order task pauses in the middle step, so both shapes move equally often).
2. Clips come in **reversal pairs** (``paired=True``, the default): clip ``2i + 1`` is clip ``2i`` played
   backwards.  A clip and its reversal hold the same *set* of frames.  So any function of the set of frames
   (temporal mean pooling, a vote over single frames) gives both the same answer, which is right for at
   most one of them: on a paired split, an order-invariant model gets at most half of every pair right,
   exactly, whatever it learnt.  On the direction task it may still see the *axis* of motion (horizontal or
   vertical: the frames spread along it), never its *sense*.

Geometry follows :mod:`scenes`: pixel ``(x, y)`` is ``image[y, x]`` and ``y`` grows downwards, so "up"
means a decreasing ``y``.  Splits draw from their own random streams (``"train"``, ``"val"``, ``"test"``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import scenes

__all__ = ["DIRECTIONS", "OPPOSITE", "VELOCITY", "ORDER_LABELS", "SPLITS", "ClipConfig", "Clip",
           "direction_clips", "order_clips", "reverse_clip", "to_tensors", "caption", "all_captions",
           "caption_vocabulary", "film_strip"]

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "up": "down", "down": "up"}
# (dx, dy) per frame for a speed of 1; y grows downwards, so "up" is dy = -1.
VELOCITY: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
ORDER_LABELS: tuple[str, ...] = ("top first", "bottom first")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_TASK_STREAM = {"direction": 0, "order": 1}


@dataclass
class ClipConfig:
    """How clips are drawn.  Validated on construction."""
    num_frames: int = 8                       # T, frames per clip (>= 2: one frame has no motion)
    image_size: int = 20                      # height = width of a frame in pixels
    radius: int = 2                           # every shape's half-width (a 5 x 5 box at 2)
    speeds: tuple[int, ...] = (1, 2)          # pixels per frame, drawn uniformly per clip (direction task)
    order_steps: int = 3                      # order task: frames each shape moves (then pause, then the other)
    colors: tuple[str, ...] = tuple(scenes.COLORS)   # colour names drawn from
    shapes: tuple[str, ...] = scenes.SHAPES   # shape names drawn from
    noise: float = 0.0                        # std of Gaussian pixel noise (0-255 units)

    def __post_init__(self) -> None:
        for name in ("num_frames", "image_size", "radius", "order_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"ClipConfig.{name} must be an int, got {type(value).__name__} {value!r}")
        if self.num_frames < 2:
            raise ValueError(f"ClipConfig.num_frames must be >= 2 (one frame shows no motion), got {self.num_frames}")
        if self.radius < 1:
            raise ValueError(f"ClipConfig.radius must be >= 1, got {self.radius}")
        if isinstance(self.colors, str) or isinstance(self.shapes, str) or isinstance(self.speeds, (int, str)):
            raise TypeError("ClipConfig.colors, .shapes and .speeds must be sequences, not one value")
        self.colors, self.shapes, self.speeds = tuple(self.colors), tuple(self.shapes), tuple(self.speeds)
        if not self.colors or not self.shapes or not self.speeds:
            raise ValueError("ClipConfig.colors, .shapes and .speeds must not be empty")
        for color in self.colors:
            if color not in scenes.COLORS:
                raise ValueError(f"unknown colour {color!r}; expected one of {tuple(scenes.COLORS)}")
        for shape in self.shapes:
            if shape not in scenes.SHAPES:
                raise ValueError(f"unknown shape {shape!r}; expected one of {scenes.SHAPES}")
        for speed in self.speeds:
            if not isinstance(speed, (int, np.integer)) or isinstance(speed, bool) or speed < 1:
                raise ValueError(f"ClipConfig.speeds must hold ints >= 1, got {self.speeds}")
        if self.noise < 0:
            raise ValueError(f"ClipConfig.noise must be >= 0, got {self.noise}")
        travel = max(self.speeds) * (self.num_frames - 1)
        if self.positions() - travel < 1:
            raise ValueError(f"a shape of radius {self.radius} moving {max(self.speeds)} px a frame for "
                             f"{self.num_frames} frames travels {travel} px: it does not fit in a "
                             f"{self.image_size}-pixel frame ({self.positions()} centre positions)")
        if self.order_steps < 1 or 2 * self.order_steps + 1 > self.num_frames - 1:
            raise ValueError(f"ClipConfig.order_steps must be in [1, (num_frames - 2) / 2] so that both shapes move "
                             f"with a pause between them, got {self.order_steps} for {self.num_frames} frames")
        if self.image_size < 4 * self.radius + 3:
            raise ValueError(f"image_size {self.image_size} is too small for two shapes of radius {self.radius} "
                             "one above the other (order task)")

    def positions(self) -> int:
        """Number of centre positions along an axis that keep a shape fully inside the frame."""
        return self.image_size - 2 * self.radius


@dataclass
class Clip:
    """One clip and its exact ground truth."""
    frames: np.ndarray                 # (T, H, W, 3) uint8
    objects: list[scenes.SceneObject]  # the shapes as drawn in frame 0
    centers: np.ndarray                # (T, num_objects, 2) int: (x, y) of every shape in every frame
    task: str                          # "direction" or "order"
    label: int                         # index in DIRECTIONS (direction) or ORDER_LABELS (order)
    speed: int = 0                     # pixels per frame of the moving shape(s)
    directions: tuple[str, ...] = field(default_factory=tuple)   # each object's direction of motion

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def label_name(self) -> str:
        return DIRECTIONS[self.label] if self.task == "direction" else ORDER_LABELS[self.label]

    def caption(self) -> str:
        """"a red circle moving left" (direction task); "the red circle moves before the blue square" (order)."""
        if self.task == "direction":
            obj = self.objects[0]
            return caption(obj.color, obj.shape, DIRECTIONS[self.label])
        first, second = (self.objects if self.label == 0 else self.objects[::-1])
        return f"the {first.color} {first.shape} moves before the {second.color} {second.shape}"

    def __repr__(self) -> str:                          # the default would print every pixel
        return f"Clip({self.task}, {self.label_name!r}, frames={self.frames.shape}, caption={self.caption()!r})"


def caption(color: str, shape: str, direction: str) -> str:
    """The caption of a direction clip: ``"a {color} {shape} moving {direction}"``."""
    if color not in scenes.COLORS or shape not in scenes.SHAPES or direction not in DIRECTIONS:
        raise ValueError(f"unknown colour, shape or direction: {(color, shape, direction)}; expected colours "
                         f"{tuple(scenes.COLORS)}, shapes {scenes.SHAPES}, directions {DIRECTIONS}")
    return f"a {color} {shape} moving {direction}"


def all_captions(config: ClipConfig | None = None) -> list[str]:
    """Every distinct caption of the direction task (colour-major, then shape, then direction)."""
    config = config or ClipConfig()
    return [caption(c, s, d) for c in config.colors for s in config.shapes for d in DIRECTIONS]


def caption_vocabulary() -> scenes.Vocabulary:
    """The scenes' caption vocabulary plus the words of motion (the ids of the scenes' words are unchanged)."""
    return scenes.Vocabulary(scenes.caption_vocabulary().tokens
                             + ("moving", "moves", "before", "up", "down"))


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------
def _rng(seed: int, split: str, task: str) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS.index(split), _TASK_STREAM[task]]))


def _check_count(n, paired: bool) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if paired and n % 2:
        raise ValueError(f"paired clips come two by two (a clip and its reversal): n must be even, got {n}")
    return int(n)


def _draw(objects: list[scenes.SceneObject], centers: np.ndarray, config: ClipConfig,
          rng: np.random.Generator) -> np.ndarray:
    """Render every frame; ``centers`` (T, num_objects, 2)."""
    frames = np.empty((len(centers), config.image_size, config.image_size, 3), dtype=np.uint8)
    for t, frame_centers in enumerate(centers):
        moved = [scenes.make_object(o.shape, o.color, o.size, tuple(c), o.radius)
                 for o, c in zip(objects, frame_centers.tolist())]
        frames[t] = scenes.render(moved, config.image_size, noise=config.noise, rng=rng)[0]
    return frames


def _random_object(rng: np.random.Generator, config: ClipConfig, center, exclude=None) -> scenes.SceneObject:
    while True:
        color = config.colors[int(rng.integers(len(config.colors)))]
        shape = config.shapes[int(rng.integers(len(config.shapes)))]
        if exclude is None or (color, shape) != exclude or len(config.colors) * len(config.shapes) == 1:
            return scenes.make_object(shape, color, "small", center, config.radius)


def reverse_clip(clip: Clip) -> Clip:
    """The clip played backwards: same frames in reverse order, the opposite label."""
    if not isinstance(clip, Clip):
        raise TypeError(f"expected a Clip, got {type(clip).__name__}")
    centers = clip.centers[::-1].copy()
    objects = [scenes.make_object(o.shape, o.color, o.size, tuple(c), o.radius)
               for o, c in zip(clip.objects, centers[0].tolist())]
    if clip.task == "direction":
        label = DIRECTIONS.index(OPPOSITE[DIRECTIONS[clip.label]])
    else:
        label = 1 - clip.label
    return Clip(clip.frames[::-1].copy(), objects, centers, clip.task, label, clip.speed,
                tuple(OPPOSITE[d] for d in clip.directions))


def _direction_clip(rng: np.random.Generator, config: ClipConfig) -> Clip:
    direction = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
    speed = config.speeds[int(rng.integers(len(config.speeds)))]
    low, high = config.radius, config.image_size - 1 - config.radius        # centre range, inclusive
    travel = speed * (config.num_frames - 1)
    dx, dy = VELOCITY[direction]
    # Uniform start among the centres whose whole path stays inside; the other axis uniform over all.
    along = int(rng.integers(low, high - travel + 1))
    if dx + dy < 0:
        along += travel                                                     # moving towards 0: start high
    across = int(rng.integers(low, high + 1))
    start = np.array([along, across] if dx else [across, along])
    steps = np.arange(config.num_frames)[:, None] * speed * np.array([dx, dy])   # (T, 2)
    centers = (start + steps)[:, None, :]                                        # (T, 1, 2)
    obj = _random_object(rng, config, tuple(start.tolist()))
    frames = _draw([obj], centers, config, rng)
    return Clip(frames, [obj], centers, "direction", DIRECTIONS.index(direction), speed, (direction,))


def _order_clip(rng: np.random.Generator, config: ClipConfig) -> Clip:
    radius, size, steps = config.radius, config.image_size, config.order_steps
    speed = config.speeds[int(rng.integers(len(config.speeds)))]
    travel = speed * steps
    if size - 2 * radius - travel < 1:
        speed, travel = 1, steps
    half = size // 2
    rows = (int(rng.integers(radius, half - radius)), int(rng.integers(half + radius, size - radius)))
    first = int(rng.integers(2))                                    # 0: top moves first, 1: bottom
    # Frame t -> how many steps each shape has taken: the first mover during steps 1..s, a pause, the second
    # mover during the last s steps (symmetric in time: the reversal swaps the movers' roles).
    t = np.arange(config.num_frames)
    second_start = config.num_frames - 1 - steps
    first_steps = np.minimum(t, steps)                               # (T,)
    second_steps = np.clip(t - second_start, 0, steps)               # (T,)
    centers = np.zeros((config.num_frames, 2, 2), dtype=np.int64)
    directions = []
    objects = []
    for k in range(2):
        direction = ("left", "right")[int(rng.integers(2))]
        dx = VELOCITY[direction][0]
        x = int(rng.integers(radius, size - radius - travel))
        if dx < 0:
            x += travel
        taken = first_steps if k == first else second_steps
        centers[:, k, 0] = x + dx * speed * taken
        centers[:, k, 1] = rows[k]
        objects.append(_random_object(rng, config, (x, rows[k]), exclude=objects[0].pair if objects else None))
        directions.append(direction)
    frames = _draw(objects, centers, config, rng)
    return Clip(frames, objects, centers, "order", first, speed, tuple(directions))


def _generate(make, n: int, split: str, seed: int, config: ClipConfig | None, paired: bool, task: str) -> list[Clip]:
    config = config or ClipConfig()
    if not isinstance(config, ClipConfig):
        raise TypeError(f"config must be a ClipConfig, got {type(config).__name__}")
    n = _check_count(n, paired)
    rng = _rng(seed, split, task)
    clips: list[Clip] = []
    while len(clips) < n:
        clip = make(rng, config)
        clips.append(clip)
        if paired:
            clips.append(reverse_clip(clip))
    return clips


def direction_clips(n: int, split: str = "train", seed: int = 0, config: ClipConfig | None = None,
                    paired: bool = True) -> list[Clip]:
    """``n`` clips of one shape moving left, right, up or down (label: index in :data:`DIRECTIONS`).

    With ``paired`` (``n`` even) clip ``2i + 1`` is the reversal of clip ``2i``.
    """
    return _generate(_direction_clip, n, split, seed, config, paired, "direction")


def order_clips(n: int, split: str = "train", seed: int = 0, config: ClipConfig | None = None,
                paired: bool = True) -> list[Clip]:
    """``n`` clips of two shapes that move one after the other (label 0: the top one first, 1: the bottom one)."""
    return _generate(_order_clip, n, split, seed, config, paired, "order")


# --------------------------------------------------------------------------------------------------
# Tensors and figures
# --------------------------------------------------------------------------------------------------
def to_tensors(clips: Sequence[Clip]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(videos (N, T, 3, H, W) float32 in [0, 1], labels (N,) int64)``."""
    clips = scenes.check_stackable(clips, Clip, lambda clip: clip.frames.shape, "clips have different shapes")
    frames = np.stack([clip.frames for clip in clips])                             # (N, T, H, W, 3) uint8
    videos = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float().div_(255.0)   # (N, T, 3, H, W)
    return videos, torch.tensor([clip.label for clip in clips], dtype=torch.int64)


def film_strip(clips: Sequence[Clip], titles: Sequence[str] | None = None, scale: float = 1.2):
    """A matplotlib figure: one row per clip, its frames left to right (time runs along the row)."""
    import matplotlib.pyplot as plt

    clips = list(clips)
    if not clips or not all(isinstance(c, Clip) for c in clips):
        raise TypeError("film_strip wants a non-empty sequence of Clip objects")
    num_frames = max(c.num_frames for c in clips)
    fig, axes = plt.subplots(len(clips), num_frames, figsize=(scale * num_frames, scale * len(clips) + 0.35),
                             squeeze=False)
    for row, clip in enumerate(clips):
        for t in range(num_frames):
            axis = axes[row, t]
            axis.set_xticks([]); axis.set_yticks([])
            if t < clip.num_frames:
                axis.imshow(clip.frames[t], interpolation="nearest")
            if row == len(clips) - 1:
                axis.set_xlabel(f"t = {t}", fontsize=8)
        title = titles[row] if titles is not None else clip.caption()
        axes[row, 0].set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig

"""Synthetic scenes: small images of coloured shapes whose every caption, answer and box is exactly true.

A scene is a few shapes (circle, square, triangle, cross) in a few colours and two sizes, drawn without
overlap on a plain background.  Because the generator places every pixel itself, the ground truth is exact:

* ``Scene.instance_map`` says which object every pixel belongs to, and each object's ``box`` is the tight
  bounding box of its pixels;
* :meth:`Scene.captions` gives several phrasings ("a red circle and a blue square", "there are 2 shapes", …);
* :meth:`Scene.questions` gives question–answer pairs of five kinds (count, color, shape, position,
  relation) whose answers are single words from :data:`ANSWERS`;
* :meth:`Scene.referring_expressions` gives phrases that pick out exactly one object ("the red circle",
  "the circle left of the square").

Splits hold out colour–shape combinations: the ``"train"``, ``"val"`` and ``"test"`` splits never draw a pair
from ``SceneConfig.held_out_pairs``, and every ``"test_heldout"`` scene contains at least one, so zero-shot
generalisation to unseen combinations can be measured.  Each split draws from its own random stream, so
``generate_scenes(n, split="test", seed=0)`` and ``generate_scenes(n, split="train", seed=0)`` differ.

Geometry conventions (used everywhere below):

* pixel ``(x, y)`` is column ``x``, row ``y`` of ``image[y, x]``; ``y`` grows downwards, so "above" means a
  smaller ``y``;
* an object's ``center`` is an integer pixel and its shape lies within ``radius`` pixels of it on each axis,
  so its box is ``2 * radius + 1`` pixels wide;
* boxes are ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive (pixel edges): ``image[y0:y1, x0:x1]`` is the
  tight crop and ``x1 - x0`` is the width in pixels, the ``xyxy`` convention of ``torchvision.ops``;
* "A left of B" means A's box ends before B's box starts (``A.x1 <= B.x0``): the boxes are separated along
  that axis, not merely the centres; likewise right of, above, below;
* "on the left" means the whole box is in the left half (``x1 <= W / 2``); likewise right, top, bottom.

Drawing is a lookup of a precomputed boolean stamp per (shape, radius), pasted at integer centres, so
10,000 scenes of 32×32 take one to two seconds on one core.  :func:`render` and :func:`make_object` are public so
that a sequence generator (moving shapes) can redraw the same objects at new positions.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "COLORS", "SHAPES", "SIZES", "SPLITS", "QUESTION_KINDS", "ANSWERS", "DEFAULT_HELD_OUT_PAIRS", "PAIRS",
    "SceneConfig", "SceneObject", "Scene", "QA", "Vocabulary",
    "shape_stamp", "make_object", "render", "scene_from_objects",
    "generate_scene", "generate_scenes", "single_object_scenes",
    "pair_label", "seen_pairs", "to_tensors", "standardize_images", "SceneDataset", "boxes_and_labels", "detection_targets",
    "tokenize", "caption_vocabulary", "answer_vocabulary", "show_scenes",
]

# --------------------------------------------------------------------------------------------------
# Palette, shapes, sizes
# --------------------------------------------------------------------------------------------------
# Six colours far apart in RGB (every pair differs by at least ~120 in some channel), none close to the
# black background, so a colour can be read back from one pixel even with a little noise.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "purple": (160, 60, 200),
    "cyan": (40, 200, 210),
}
# Four shapes that stay distinguishable at a 3-pixel radius (7×7 pixels): a square fills its box, a
# triangle has a one-pixel apex, a cross has empty corners and a full middle row and column, a circle has
# rounded corners but a filled diagonal.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
_PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
# Radius (half-width, in pixels) of each size at a 32×32 image; other image sizes scale it proportionally.
SIZES: dict[str, int] = {"small": 3, "large": 6}
_REFERENCE_IMAGE_SIZE = 32
MAX_OBJECTS = 9                      # counts are answered with the single tokens "0" … "9"
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_heldout")
_SPLIT_STREAM = {name: index for index, name in enumerate(SPLITS)}   # mixed into the seed per split
# Held out by default: one pair per colour–shape "diagonal", so every colour and every shape is still
# seen in training with three other partners.
DEFAULT_HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("blue", "circle"), ("green", "square"), ("yellow", "cross")})
PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)  # label order, 24 pairs
QUESTION_KINDS: tuple[str, ...] = ("count", "color", "shape", "position", "relation")
ANSWERS: tuple[str, ...] = (tuple(str(k) for k in range(MAX_OBJECTS + 1)) + tuple(COLORS) + SHAPES
                            + ("left", "right", "top", "bottom", "yes", "no"))


# --------------------------------------------------------------------------------------------------
# Configuration and data classes
# --------------------------------------------------------------------------------------------------
@dataclass
class SceneConfig:
    """How scenes are drawn.  Validated by :meth:`validate` (called by every generator)."""
    image_size: int = 32                 # height = width in pixels; 32 keeps CPU training fast
    min_objects: int = 1                 # fewest objects per scene (inclusive)
    max_objects: int = 3                 # most objects per scene (inclusive, at most 9)
    colors: tuple[str, ...] = tuple(COLORS)   # colour names drawn from (keys of COLORS)
    shapes: tuple[str, ...] = SHAPES     # shape names drawn from (members of SHAPES)
    sizes: dict[str, int] | None = None  # size name -> radius in pixels; None: SIZES scaled to image_size
    background: tuple[int, int, int] = (0, 0, 0)  # RGB of every pixel that belongs to no object
    noise: float = 0.0                   # std of Gaussian pixel noise (0-255 units) added after drawing;
                                         # the instance map and boxes stay exact
    allow_overlap: bool = False          # False: boxes never overlap (and keep min_gap apart), so every
                                         # object is fully visible and ground truth equals pixels
    min_gap: int = 1                     # empty pixels between boxes when allow_overlap is False; >= 1 keeps
                                         # objects from touching, so connected components = objects
    held_out_pairs: frozenset[tuple[str, str]] = DEFAULT_HELD_OUT_PAIRS  # (color, shape) never in train
    seed: int = 0                        # default seed of generate_scenes / single_object_scenes
    max_tries: int = 100                 # placement attempts per object and per scene before giving up

    def radii(self) -> dict[str, int]:
        """Size name -> radius in pixels (``sizes`` or :data:`SIZES` scaled to ``image_size``)."""
        if self.sizes is not None:
            return dict(self.sizes)
        scale = self.image_size / _REFERENCE_IMAGE_SIZE
        return {name: max(1, round(radius * scale)) for name, radius in SIZES.items()}

    def __post_init__(self) -> None:
        self.validate()                   # a bad field is reported where the config is made, not later

    def validate(self) -> "SceneConfig":
        """Raise ValueError/TypeError naming the bad field; return ``self`` so calls can chain."""
        for name in ("image_size", "min_objects", "max_objects", "min_gap", "max_tries"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"SceneConfig.{name} must be an int, got {type(value).__name__} {value!r}")
        if self.image_size < 3:
            raise ValueError(f"SceneConfig.image_size must be >= 3, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got "
                             f"min_objects={self.min_objects}, max_objects={self.max_objects}")
        if self.min_gap < 0 or self.max_tries < 1:
            raise ValueError(f"need min_gap >= 0 and max_tries >= 1, got {self.min_gap}, {self.max_tries}")
        if isinstance(self.colors, str) or isinstance(self.shapes, str):
            raise TypeError("SceneConfig.colors and .shapes must be sequences of names, not one string")
        if not self.colors or not self.shapes:
            raise ValueError("SceneConfig.colors and SceneConfig.shapes must not be empty")
        for color in self.colors:
            if color not in COLORS:
                raise ValueError(f"unknown colour {color!r}; expected one of {tuple(COLORS)}")
        for shape in self.shapes:
            if shape not in SHAPES:
                raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
        radii = self.radii()
        if not radii:
            raise ValueError("SceneConfig.sizes must name at least one size")
        for size, radius in radii.items():
            if size not in SIZES:
                raise ValueError(f"unknown size {size!r}; expected names from {tuple(SIZES)}")
            if not isinstance(radius, (int, np.integer)) or radius < 1:
                raise ValueError(f"radius of size {size!r} must be an int >= 1, got {radius!r}")
            if 2 * radius + 1 > self.image_size:
                raise ValueError(f"image_size {self.image_size} is too small for size {size!r}: a shape of "
                                 f"radius {radius} needs {2 * radius + 1} pixels")
        background = np.asarray(self.background)
        if background.shape != (3,) or background.min() < 0 or background.max() > 255:
            raise ValueError(f"SceneConfig.background must be an RGB triple in 0..255, got {self.background!r}")
        for color in self.colors:
            if tuple(int(v) for v in background) == COLORS[color]:
                raise ValueError(f"background {self.background} equals the colour {color!r}")
        if self.noise < 0:
            raise ValueError(f"SceneConfig.noise must be >= 0, got {self.noise}")
        for pair in self.held_out_pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"held_out_pairs must hold (color, shape) tuples, got {pair!r}")
            if pair[0] not in self.colors or pair[1] not in self.shapes:
                raise ValueError(f"held-out pair {pair} is not in the palette: colors={self.colors}, "
                                 f"shapes={self.shapes}")
        if not seen_pairs(self):
            raise ValueError("every (color, shape) pair is held out; the training split would be empty")
        if not self.allow_overlap:
            # Area bound: even the smallest boxes plus their gaps cannot cover more than the image.  It is a
            # necessary condition only; placement can still fail and then raises after max_tries.
            side = 2 * min(radii.values()) + 1 + self.min_gap
            if self.max_objects * side ** 2 > (self.image_size + self.min_gap) ** 2:
                raise ValueError(f"{self.max_objects} objects of radius {min(radii.values())} cannot fit without "
                                 f"overlap in a {self.image_size}×{self.image_size} image; lower max_objects "
                                 f"or the radii, or set allow_overlap=True")
        return self


@dataclass
class SceneObject:
    """One drawn shape.  ``box`` is the exact, tight bounding box of its visible pixels."""
    shape: str                             # one of SHAPES
    color: str                             # one of COLORS
    size: str                              # one of SIZES ("small", "large")
    center: tuple[int, int]                # (x, y) pixel of the shape's centre (column, row)
    radius: int                            # the shape lies within radius pixels of center on each axis
    box: tuple[int, int, int, int]         # (x0, y0, x1, y1), x1/y1 exclusive: image[y0:y1, x0:x1]

    @property
    def pair(self) -> tuple[str, str]:
        """(color, shape): the combination that the held-out splits are about."""
        return (self.color, self.shape)

    @property
    def phrase(self) -> str:
        """"red circle" (no article)."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class QA:
    """A question, its one-word answer (a member of :data:`ANSWERS`) and its kind (:data:`QUESTION_KINDS`)."""
    question: str
    answer: str
    kind: str


@dataclass
class Scene:
    """An image with its objects and exact pixel ownership.

    ``instance_map[y, x] == 0`` on the background and ``== k`` on the pixels of ``objects[k - 1]``.
    """
    image: np.ndarray                      # (H, W, 3) uint8
    objects: list[SceneObject]
    instance_map: np.ndarray               # (H, W) int16, 0 = background, k = objects[k - 1]
    split: str = "train"                   # which split generated it

    @property
    def image_size(self) -> int:
        return int(self.image.shape[0])

    def __repr__(self) -> str:                 # the default would print every pixel
        objects = ", ".join(f"{o.size} {o.phrase} at {o.center}" for o in self.objects)
        return f"Scene({self.image_size}×{self.image_size}, {self.split!r}: {objects})"

    def __len__(self) -> int:
        return len(self.objects)

    def masks(self) -> np.ndarray:
        """(num_objects, H, W) bool, one mask per object."""
        ids = np.arange(1, len(self.objects) + 1)[:, None, None]       # (N, 1, 1)
        return self.instance_map[None] == ids                          # (N, H, W)

    def boxes(self) -> np.ndarray:
        """(num_objects, 4) int64 boxes ``(x0, y0, x1, y1)``."""
        return np.array([o.box for o in self.objects], dtype=np.int64).reshape(-1, 4)

    # ----- text ground truth --------------------------------------------------------------------
    def captions(self) -> list[str]:
        """Several true descriptions; the first is the canonical one (objects listed left to right).

        Always present, in this order: the list ("a red circle and a blue square"), the list with sizes,
        the count ("there are 2 shapes"), grouped counts ("2 red circles and 1 blue square").  Spatial
        phrasings are added only where they are exactly true: one object wholly in a half ("a red circle on
        the left"), two objects separated along an axis ("a red circle left of a blue square"), two objects
        in opposite halves, three or more separated left to right ("from left to right: …").
        """
        objects = _left_to_right(self.objects)
        n, half = len(objects), self.image_size / 2
        listed = _join([f"a {o.phrase}" for o in objects])
        captions = [listed,
                    _join([f"a {o.size} {o.phrase}" for o in objects]),
                    "there is 1 shape" if n == 1 else f"there are {n} shapes"]
        groups = Counter(o.pair for o in objects)                    # insertion order = left to right
        captions.append(_join([f"{count} {color} {shape if count == 1 else _PLURALS[shape]}"
                               for (color, shape), count in groups.items()]))
        if n == 1:
            where = _absolute_position(objects[0], half)
            if where:
                captions.append(f"a {objects[0].phrase} {where}")
        elif n == 2:
            first, second = objects
            if _left_of(first, second):
                captions.append(f"a {first.phrase} left of a {second.phrase}")
            elif _above(first, second) or _above(second, first):
                top, bottom = (first, second) if _above(first, second) else (second, first)
                captions.append(f"a {top.phrase} above a {bottom.phrase}")
            if first.box[2] <= half <= second.box[0]:
                captions.append(f"2 shapes: a {first.phrase} on the left and a {second.phrase} on the right")
        elif all(_left_of(a, b) for a, b in zip(objects, objects[1:])):
            captions.append(f"from left to right: {listed}")
        return captions

    def questions(self) -> list[QA]:
        """Every question the templates can ask of this scene, each with its exact one-word answer.

        * count: "how many shapes are there?", "how many red shapes are there?" (every colour of
          :data:`COLORS`, so absent ones answer "0"), "how many circles are there?" (every shape);
        * color: "what color is the circle?" where the shape (or size and shape) names one object;
        * shape: "what shape is the red object?" where the colour (or size and colour) names one object;
        * position: "is the red circle on the left or the right?" / "… at the top or the bottom?" for an
          object wholly in one half;
        * relation: "is the red circle left of the blue square?" / "is … above …?" for two nameable objects
          whose boxes are separated along that axis (answers "yes"/"no", roughly balanced because object
          order is independent of position).
        """
        objects, half = self.objects, self.image_size / 2
        qas = [QA("how many shapes are there?", str(len(objects)), "count")]
        qas += [QA(f"how many {c} shapes are there?", str(sum(o.color == c for o in objects)), "count")
                for c in COLORS]
        qas += [QA(f"how many {_PLURALS[s]} are there?", str(sum(o.shape == s for o in objects)), "count")
                for s in SHAPES]
        for k, obj in enumerate(objects):
            for attributes in (("shape",), ("size", "shape")):
                if _is_unique(objects, k, attributes):
                    qas.append(QA(f"what color is {_describe(obj, attributes)}?", obj.color, "color"))
            for attributes in (("color",), ("size", "color")):
                if _is_unique(objects, k, attributes):
                    qas.append(QA(f"what shape is {_describe(obj, attributes)}?", obj.shape, "shape"))
        names = [_name(objects, k) for k in range(len(objects))]
        for obj, name in zip(objects, names):
            if name is None:
                continue
            x0, y0, x1, y1 = obj.box
            if x1 <= half or x0 >= half:
                qas.append(QA(f"is {name} on the left or the right?", "left" if x1 <= half else "right",
                              "position"))
            if y1 <= half or y0 >= half:
                qas.append(QA(f"is {name} at the top or the bottom?", "top" if y1 <= half else "bottom",
                              "position"))
        for i in range(len(objects)):
            for j in range(i + 1, len(objects)):
                if names[i] is None or names[j] is None:
                    continue
                a, b = objects[i], objects[j]
                if _left_of(a, b) or _left_of(b, a):
                    qas.append(QA(f"is {names[i]} left of {names[j]}?", "yes" if _left_of(a, b) else "no",
                                  "relation"))
                if _above(a, b) or _above(b, a):
                    qas.append(QA(f"is {names[i]} above {names[j]}?", "yes" if _above(a, b) else "no",
                                  "relation"))
        return qas

    def referring_expressions(self) -> list[tuple[str, int]]:
        """(expression, object index) pairs, each true of exactly that object and no other.

        Attribute expressions use every combination of size, colour and shape that is unique in the scene
        ("the circle", "the red object", "the large blue square").  Relational ones name the target by
        shape, or colour and shape, plus a relation to a uniquely named anchor, kept only when no other
        object matching the target's words stands in that relation ("the circle left of the square").
        """
        objects, expressions = self.objects, []
        for k, obj in enumerate(objects):
            for attributes in _ATTRIBUTE_SUBSETS:
                if _is_unique(objects, k, attributes):
                    expressions.append((_describe(obj, attributes), k))
        names = [_name(objects, k) for k in range(len(objects))]
        for k, target in enumerate(objects):
            for attributes in (("shape",), ("color", "shape")):
                rivals = [o for i, o in enumerate(objects) if i != k and _matches(o, target, attributes)]
                for a, anchor in enumerate(objects):
                    if a == k or names[a] is None:
                        continue
                    for words, relation in _RELATIONS.items():
                        if relation(target, anchor) and not any(relation(r, anchor) for r in rivals):
                            expressions.append((f"{_describe(target, attributes)} {words} {names[a]}", k))
        return expressions


# --------------------------------------------------------------------------------------------------
# Geometry and language helpers (all exact, on integer boxes)
# --------------------------------------------------------------------------------------------------
def _left_of(a: SceneObject, b: SceneObject) -> bool:
    return a.box[2] <= b.box[0]


def _above(a: SceneObject, b: SceneObject) -> bool:
    return a.box[3] <= b.box[1]


_RELATIONS = {"left of": _left_of, "right of": lambda a, b: _left_of(b, a),
              "above": _above, "below": lambda a, b: _above(b, a)}
# Attribute subsets in the order their expressions are listed (shorter first).
_ATTRIBUTE_SUBSETS = (("shape",), ("color",), ("size",), ("color", "shape"), ("size", "shape"),
                      ("size", "color"), ("size", "color", "shape"))
# How questions name an object: the most natural description that is unique.
_NAMING_ORDER = (("color", "shape"), ("shape",), ("color",), ("size", "color", "shape"), ("size", "shape"),
                 ("size", "color"), ("size",))


def _matches(a: SceneObject, b: SceneObject, attributes: Sequence[str]) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in attributes)


def _is_unique(objects: Sequence[SceneObject], k: int, attributes: Sequence[str]) -> bool:
    return sum(_matches(o, objects[k], attributes) for o in objects) == 1


def _describe(obj: SceneObject, attributes: Sequence[str]) -> str:
    """"the large red object", "the circle": size, colour, then the shape or the noun "object"."""
    words = [getattr(obj, name) for name in ("size", "color") if name in attributes]
    words.append(obj.shape if "shape" in attributes else "object")
    return "the " + " ".join(words)


def _name(objects: Sequence[SceneObject], k: int) -> str | None:
    """The first unique description of objects[k] in :data:`_NAMING_ORDER`, or None (an identical twin)."""
    for attributes in _NAMING_ORDER:
        if _is_unique(objects, k, attributes):
            return _describe(objects[k], attributes)
    return None


def _absolute_position(obj: SceneObject, half: float) -> str | None:
    x0, y0, x1, y1 = obj.box
    horizontal = "left" if x1 <= half else "right" if x0 >= half else None
    vertical = "top" if y1 <= half else "bottom" if y0 >= half else None
    if horizontal and vertical:
        return f"in the {vertical} {horizontal}"
    if horizontal:
        return f"on the {horizontal}"
    if vertical:
        return f"at the {vertical}"
    return None


def _left_to_right(objects: Sequence[SceneObject]) -> list[SceneObject]:
    return sorted(objects, key=lambda o: (o.center[0], o.center[1]))


def _join(parts: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def shape_stamp(shape: str, radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool mask of a shape centred in its box (read-only, cached).

    Every shape touches all four sides of its box, so a box is exactly ``center ± radius``.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if not isinstance(radius, (int, np.integer)) or radius < 1:
        raise ValueError(f"radius must be an int >= 1, got {radius!r}")
    offsets = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")               # (2r+1, 2r+1) each
    if shape == "circle":
        # dx² + dy² <= (r + 1/2)² - 1/4, in integers: reaches exactly r along the axes.
        stamp = dx ** 2 + dy ** 2 <= radius * (radius + 1)
    elif shape == "square":
        stamp = np.ones_like(dx, dtype=bool)
    elif shape == "triangle":
        # Apex (one pixel) at the top row, full-width base at the bottom row; half-width grows by 1/2 a row.
        stamp = 2 * np.abs(dx) <= dy + radius
    else:  # cross: a plus sign whose arms are 2t+1 pixels thick; thin (t = r // 5), or at radius 3 its
        # empty corners would make it look like a circle
        thickness = radius // 5
        stamp = (np.abs(dx) <= thickness) | (np.abs(dy) <= thickness)
    stamp.setflags(write=False)
    return stamp


def make_object(shape: str, color: str, size: str, center: tuple[int, int], radius: int) -> SceneObject:
    """A :class:`SceneObject` at ``center`` with its full (unclipped) box ``center ± radius``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; expected one of {tuple(COLORS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {tuple(SIZES)}")
    x, y = int(center[0]), int(center[1])
    return SceneObject(shape, color, size, (x, y), int(radius),
                       (x - radius, y - radius, x + radius + 1, y + radius + 1))


def render(objects: Sequence[SceneObject], image_size: int = 32, background=(0, 0, 0), noise: float = 0.0,
           rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw objects in order (later ones on top); return ``image`` (H, W, 3) uint8 and ``instance_map``
    (H, W) int16 with ``k`` on the visible pixels of ``objects[k - 1]``.

    Objects may stick out of the image (they are clipped), which a moving-shapes generator needs.
    ``noise > 0`` adds Gaussian noise to the image only, drawn from ``rng``.
    """
    image = np.empty((image_size, image_size, 3), dtype=np.uint8)
    image[:] = np.asarray(background, dtype=np.uint8)
    instance_map = np.zeros((image_size, image_size), dtype=np.int16)
    for k, obj in enumerate(objects, start=1):
        stamp = shape_stamp(obj.shape, obj.radius)
        x0, y0 = obj.center[0] - obj.radius, obj.center[1] - obj.radius
        # Intersect the stamp's box with the image; the stamp is indexed from its own top-left corner.
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x0 + stamp.shape[1], image_size), min(y0 + stamp.shape[0], image_size)
        if ix0 >= ix1 or iy0 >= iy1:
            continue                                                   # entirely outside the image
        visible = stamp[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        image[iy0:iy1, ix0:ix1][visible] = COLORS[obj.color]
        instance_map[iy0:iy1, ix0:ix1][visible] = k
    if noise > 0:
        if rng is None:
            raise ValueError("render(noise > 0) needs an rng (a numpy Generator) for the noise")
        noisy = image + rng.normal(0.0, noise, size=image.shape)        # (H, W, 3) float64
        image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return image, instance_map


def _visible_box(instance_map: np.ndarray, k: int) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero((instance_map == k).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((instance_map[rows[0]:rows[-1] + 1] == k).any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def scene_from_objects(objects: Sequence[SceneObject], config: SceneConfig | None = None,
                       rng: np.random.Generator | None = None, split: str = "train") -> Scene:
    """Render objects into a :class:`Scene`, setting each box to the tight box of its visible pixels.

    Objects with no visible pixel (covered or outside the image) are dropped, so the ground truth never
    mentions something that cannot be seen.
    """
    config = config or SceneConfig()
    image, instance_map = render(objects, config.image_size, config.background, config.noise, rng)
    kept = []
    for k, obj in enumerate(objects, start=1):
        box = _visible_box(instance_map, k)
        if box is not None:
            kept.append((k, SceneObject(obj.shape, obj.color, obj.size, obj.center, obj.radius, box)))
    if len(kept) < len(objects):                                       # renumber the instance map
        relabel = np.zeros(len(objects) + 1, dtype=np.int16)
        relabel[[k for k, _ in kept]] = np.arange(1, len(kept) + 1)
        instance_map = relabel[instance_map]
    return Scene(image, [obj for _, obj in kept], instance_map, split)


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------
def seen_pairs(config: SceneConfig | None = None) -> list[tuple[str, str]]:
    """The (color, shape) pairs of the palette that are not held out, in :data:`PAIRS` order."""
    config = config or SceneConfig()
    return [(c, s) for c, s in PAIRS
            if c in config.colors and s in config.shapes and (c, s) not in config.held_out_pairs]


def _split_rng(seed: int, split: str) -> np.random.Generator:
    # One independent stream per (seed, split): the test split never replays the training scenes' draws.
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_STREAM[split]]))


def _place(rng: np.random.Generator, radii: np.ndarray, config: SceneConfig) -> list[tuple[int, int]] | None:
    """Centres for shapes of the given radii (inside the image, boxes min_gap apart), or None.

    All candidate centres come from one draw, ``max_tries`` per object; each object takes the first
    candidate whose box keeps clear of the boxes already placed.  (A plain Python loop: with a handful of
    objects and usually the first candidate accepted, it beats array operations on such tiny sizes.)
    """
    size, gap, tries = config.image_size, config.min_gap, config.max_tries
    positions = size - 2 * radii                                        # (n,) valid centres per axis
    uniform = rng.random((len(radii), tries, 2))                        # (n, tries, 2)
    candidates = radii[:, None, None] + (uniform * positions[:, None, None]).astype(np.int64)  # (n, tries, 2)
    centers: list[tuple[int, int]] = []
    placed: list[tuple[int, int, int, int]] = []                        # boxes x0, y0, x1, y1
    for radius, options in zip(radii.tolist(), candidates):
        box = _first_free(options, radius, placed, gap, config.allow_overlap)
        if box is None:
            return None                                                 # no candidate fits
        centers.append((box[0] + radius, box[1] + radius))
        placed.append(box)
    return centers


def _first_free(options: np.ndarray, radius: int, placed: list, gap: int, allow_overlap: bool):
    """Box of the first candidate centre (rows of ``options``) clear of every placed box, or None."""
    for start in range(0, len(options), 8):                    # usually decided in the first chunk
        for x, y in options[start:start + 8].tolist():
            x0, y0, x1, y1 = x - radius, y - radius, x + radius + 1, y + radius + 1
            if allow_overlap or all(x1 + gap <= a0 or a1 + gap <= x0 or y1 + gap <= b0 or b1 + gap <= y0
                                    for a0, b0, a1, b1 in placed):
                return (x0, y0, x1, y1)
    return None


@dataclass
class _Plan:
    """What a split may draw, resolved once per call rather than once per scene."""
    config: SceneConfig
    split: str
    allowed: list[tuple[str, str]]         # pairs any object may take
    held: list[tuple[str, str]]            # held-out pairs ("test_heldout" forces one on some object)
    size_names: list[str]
    radii: np.ndarray                      # radius of each size name, in size_names order

    @classmethod
    def make(cls, config: SceneConfig, split: str) -> "_Plan":
        config.validate()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        held = [pair for pair in PAIRS if pair in config.held_out_pairs]
        if split == "test_heldout" and not held:
            raise ValueError("split 'test_heldout' needs SceneConfig.held_out_pairs to be non-empty")
        palette = [(c, s) for c, s in PAIRS if c in config.colors and s in config.shapes]
        allowed = palette if split == "test_heldout" else seen_pairs(config)
        radii = config.radii()
        return cls(config, split, allowed, held, list(radii), np.array(list(radii.values()), dtype=np.int64))


def _draw_scene(rng: np.random.Generator, plan: _Plan, num_objects: int,
                pair: tuple[str, str] | None = None) -> Scene:
    """One scene of ``num_objects`` objects (all of ``pair`` if given); resample until it fits."""
    config = plan.config
    for _ in range(config.max_tries):
        if pair is not None:
            chosen = [pair] * num_objects
        else:
            chosen = [plan.allowed[i] for i in rng.integers(len(plan.allowed), size=num_objects)]
            if plan.split == "test_heldout":                          # at least one unseen combination
                chosen[int(rng.integers(num_objects))] = plan.held[int(rng.integers(len(plan.held)))]
        size_index = rng.integers(len(plan.size_names), size=num_objects)
        radii = plan.radii[size_index]
        centers = _place(rng, radii, config)
        if centers is None:
            continue                                                   # resample sizes and try again
        objects = [make_object(shape, color, plan.size_names[s], center, int(r))
                   for (color, shape), s, r, center in zip(chosen, size_index, radii, centers)]
        if config.allow_overlap:
            scene = scene_from_objects(objects, config, rng, plan.split)
            if len(scene.objects) == num_objects:
                return scene
            continue                                                   # one object was fully covered
        image, instance_map = render(objects, config.image_size, config.background, config.noise, rng)
        return Scene(image, objects, instance_map, plan.split)
    raise ValueError(f"could not place {num_objects} objects with radii {config.radii()} in a "
                     f"{config.image_size}×{config.image_size} image (min_gap={config.min_gap}) after "
                     f"{config.max_tries} tries; lower max_objects or the radii, or set allow_overlap=True")


def _check_count(n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return int(n)


def generate_scene(rng: np.random.Generator, config: SceneConfig | None = None, split: str = "train") -> Scene:
    """One random scene drawn from ``rng`` (a ``numpy.random.Generator``).

    ``"train"``, ``"val"`` and ``"test"`` draw only pairs not in ``config.held_out_pairs``; ``"test_heldout"``
    puts one held-out pair on a random object and draws the others from every pair of the palette.
    When the drawn sizes do not fit, sizes and positions are drawn again (so crowded configurations hold
    slightly more small shapes than large ones); after ``config.max_tries`` failures it raises ValueError.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    plan = _Plan.make(config or SceneConfig(), split)
    return _draw_scene(rng, plan, int(rng.integers(plan.config.min_objects, plan.config.max_objects + 1)))


def generate_scenes(n: int, config: SceneConfig | None = None, split: str = "train",
                    seed: int | None = None) -> list[Scene]:
    """``n`` scenes of one split, identical for the same (config, split, seed); seed None: config.seed.

    Each split has its own random stream, so the same seed gives different train and test scenes.  The
    first ``m`` of ``n`` scenes are the ``m`` scenes of a shorter call, so a quick run sees a prefix of the
    full data.
    """
    n = _check_count(n)
    plan = _Plan.make(config or SceneConfig(), split)
    rng = _split_rng(plan.config.seed if seed is None else seed, split)
    low, high = plan.config.min_objects, plan.config.max_objects + 1
    return [_draw_scene(rng, plan, int(rng.integers(low, high))) for _ in range(n)]


def single_object_scenes(n: int, config: SceneConfig | None = None, split: str = "train",
                         seed: int | None = None) -> list[Scene]:
    """``n`` scenes with exactly one object each, for (color, shape) classification and zero-shot tests.

    The classes are balanced: the split's pairs (the seen pairs, or only the held-out pairs for
    ``"test_heldout"``) are repeated to length ``n`` and shuffled, so each appears ``n // classes`` or one
    more times.  A scene's label is ``scene.objects[0].pair`` (index: :func:`pair_label`).  One-object
    scenes have only a few thousand distinct 32×32 images, so "test" can repeat training images exactly;
    "test_heldout" cannot.
    """
    n = _check_count(n)
    plan = _Plan.make(config or SceneConfig(), split)
    rng = _split_rng(plan.config.seed if seed is None else seed, split)
    classes = plan.held if split == "test_heldout" else plan.allowed
    order = rng.permutation(np.resize(np.arange(len(classes)), n))
    return [_draw_scene(rng, plan, 1, pair=classes[i]) for i in order]


def pair_label(color: str, shape: str) -> int:
    """Index of (color, shape) in :data:`PAIRS` (colour-major: ``COLORS`` order × ``SHAPES`` order)."""
    try:
        return PAIRS.index((color, shape))
    except ValueError:
        raise ValueError(f"unknown pair ({color!r}, {shape!r}); colours {tuple(COLORS)}, shapes {SHAPES}") \
            from None


# --------------------------------------------------------------------------------------------------
# Torch helpers
# --------------------------------------------------------------------------------------------------
def check_stackable(items, kind: type, shape_of, what: str) -> list:
    """``items`` as a list, refused unless it is non-empty, all of type ``kind`` and of one shape
    (``shape_of(item)``); ``what`` starts the message for mixed shapes.  Shared by scenes and clips."""
    items = list(items)
    if not items:
        raise ValueError(f"expected at least one {kind.__name__}, got an empty sequence")
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(f"expected {kind.__name__} objects, got {type(item).__name__}")
    shapes = {shape_of(item) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"{what} {sorted(shapes)}; stack one size at a time")
    return items


def _check_scenes(scenes) -> list[Scene]:
    return check_stackable(scenes, Scene, lambda s: s.image.shape, "scenes have different image shapes")


def to_tensors(scenes: Iterable[Scene]):
    """All images as one float32 tensor (N, 3, H, W) in [0, 1]."""
    images = np.stack([s.image for s in _check_scenes(scenes)])              # (N, H, W, 3) uint8
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)


def standardize_images(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the statistics of ``images`` (N, 3, H, W) themselves (the training set):
    returns (standardised images, mean (1, 3, 1, 1), std (1, 3, 1, 1)), the statistics to reuse on new images."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor (N, channels, height, width), got {got}")
    mean = images.mean(dim=(0, 2, 3), keepdim=True)                      # (1, C, 1, 1)
    std = images.std(dim=(0, 2, 3), keepdim=True)                        # (1, C, 1, 1)
    return (images - mean) / std, mean, std


class SceneDataset(Dataset):
    """``dataset[i] == (image (3, H, W) float32 in [0, 1], i)``; the index reaches the scene's ground truth.

    Images are converted once at construction; ``transform`` (if given) is applied to each image tensor.
    """

    def __init__(self, scenes: Sequence[Scene], transform=None):
        self.scenes = _check_scenes(scenes)
        self.images = to_tensors(self.scenes)                   # (N, 3, H, W)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int):
        image = self.images[index]                              # (3, H, W)
        if self.transform is not None:
            image = self.transform(image)
        return image, index


_LABEL_KINDS = ("pair", "shape", "color")


def boxes_and_labels(scene: Scene, label_by: str = "pair"):
    """``(boxes (N, 4) float32 xyxy pixels, labels (N,) int64)`` for torchvision/torchmetrics detection.

    ``label_by``: ``"pair"`` (index in :data:`PAIRS`, 24 classes), ``"shape"`` (index in :data:`SHAPES`) or
    ``"color"`` (index in :data:`COLORS`).  Labels start at 0; add 1 for torchvision models that reserve 0
    for the background.
    """
    if not isinstance(scene, Scene):
        raise TypeError(f"expected a Scene, got {type(scene).__name__}")
    if label_by == "pair":
        labels = [pair_label(o.color, o.shape) for o in scene.objects]
    elif label_by == "shape":
        labels = [SHAPES.index(o.shape) for o in scene.objects]
    elif label_by == "color":
        labels = [list(COLORS).index(o.color) for o in scene.objects]
    else:
        raise ValueError(f"label_by must be one of {_LABEL_KINDS}, got {label_by!r}")
    boxes = torch.as_tensor(scene.boxes(), dtype=torch.float32).reshape(-1, 4)   # (N, 4)
    return boxes, torch.as_tensor(labels, dtype=torch.int64)                     # (N,)


def detection_targets(scenes: Iterable[Scene], label_by: str = "pair") -> list[dict]:
    """``[{"boxes": (N, 4), "labels": (N,)}, …]``, the target format of torchmetrics' MeanAveragePrecision."""
    return [dict(zip(("boxes", "labels"), boxes_and_labels(scene, label_by))) for scene in scenes]


# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[a-z0-9]+|[,:?]")
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
# Every word the caption, question and expression templates above can produce (tested).
_WORDS = (("a", "and", "there", "is", "are", "shape", "shapes", "object", "the", "of", "left", "right",
           "above", "below", "top", "bottom", "on", "at", "in", "from", "to", "how", "many", "what", "color",
           "or", "yes", "no", ",", ":", "?")
          + tuple(str(k) for k in range(MAX_OBJECTS + 1)) + tuple(COLORS) + SHAPES
          + tuple(_PLURALS.values()) + tuple(SIZES))


def tokenize(text: str) -> list[str]:
    """Lower-cased words, digits and the punctuation ``, : ?`` as separate tokens."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


class Vocabulary:
    """A fixed word list with ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3."""

    def __init__(self, words: Sequence[str]):
        self.tokens: tuple[str, ...] = SPECIAL_TOKENS + tuple(w for w in dict.fromkeys(words)
                                                              if w not in SPECIAL_TOKENS)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        """Token ids of ``text`` (unknown words -> ``<unk>``); ``add_special`` wraps them in bos/eos."""
        ids = [self.index.get(token, self.unk_id) for token in tokenize(text)]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids, skip_special: bool = True) -> str:
        """Text of token ids (stops at ``<eos>`` when ``skip_special``); inverse of :meth:`encode`."""
        words = []
        for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
            token = self.tokens[int(i)]
            if skip_special and token == "<eos>":
                break
            if skip_special and token in SPECIAL_TOKENS:
                continue
            words.append(token)
        return re.sub(r" ([,:?])", r"\1", " ".join(words))

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None, add_special: bool = True):
        """(N, L) int64 tensor of ids, right-padded with ``<pad>`` (truncated to ``max_len`` if given)."""
        encoded = [self.encode(t, add_special) for t in texts]
        length = max_len if max_len is not None else max((len(e) for e in encoded), default=0)
        batch = torch.full((len(encoded), length), self.pad_id, dtype=torch.int64)   # (N, L)
        for row, ids in enumerate(encoded):
            ids = ids[:length]
            batch[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.int64)
        return batch


@lru_cache(maxsize=1)
def caption_vocabulary() -> Vocabulary:
    """The fixed vocabulary of every caption, question, answer and referring expression."""
    return Vocabulary(_WORDS)


def answer_vocabulary() -> tuple[str, ...]:
    """All possible answers (:data:`ANSWERS`), for a classification head over answers."""
    return ANSWERS


# --------------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------------
def show_scenes(scenes: Sequence[Scene], ncols: int = 4, titles: Sequence[str] | str | None = "caption",
                boxes: bool = False, scale: float = 2.0):
    """A matplotlib figure of scenes in a grid; ``titles="caption"`` shows each canonical caption,
    a sequence gives one title per scene, None none; ``boxes=True`` outlines every object's box."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    scenes = _check_scenes(scenes)
    ncols = max(1, min(ncols, len(scenes)))
    nrows = -(-len(scenes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.3 * nrows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (scene, ax) in enumerate(zip(scenes, axes.ravel())):
        ax.imshow(scene.image, interpolation="nearest")
        if boxes:
            for obj in scene.objects:
                x0, y0, x1, y1 = obj.box
                # Pixel i covers [i - 0.5, i + 0.5] in imshow coordinates.
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1,
                                       edgecolor="white"))
        title = (scene.captions()[0] if titles == "caption" else None if titles is None else titles[i])
        if title:
            ax.set_title(title, fontsize=7, wrap=True)
    fig.tight_layout()
    return fig

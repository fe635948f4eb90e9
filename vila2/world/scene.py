"""The scene graph of one world image, and how scenes are sampled.

A scene is 1–4 objects (shape, colour, size, box) on a plain background, sometimes with a short
word written on it. Boxes are integers in 0–999 (the grounding convention of docs/METHOD.md), so a
scene does not depend on the pixel size it is rendered at. Within a scene every object has a
distinct (colour, shape) pair, so "the red circle" always names exactly one object.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from typing import Any

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
BACKGROUNDS = ("white", "gray", "beige")
# Short words, none of them a colour or a shape, so text never reads as an object mention.
WORDS = (
    "cat", "dog", "sun", "map", "cup", "hat", "bus", "fox", "owl", "pen",
    "sale", "open", "stop", "exit", "taxi", "cafe", "park", "zoo", "bar", "shop",
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four")

# Side of an object's box, in 0–999 units, per size class (a range, so sizes vary within a class).
SIDES = {"small": (150, 210), "large": (280, 370)}
_WORD_HEIGHT = 190  # a rendered word's box height in 0–999 units (see render.font_size)
_WORD_WIDTH_PER_CHAR = 110
_MARGIN = 30  # empty space kept between boxes, so objects never touch
_COUNT_WEIGHTS = (0.2, 0.3, 0.3, 0.2)  # scenes with 1, 2, 3, 4 objects

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Obj:
    """One object: its box is ``(x0, y0, x1, y1)`` in 0–999 image coordinates."""

    shape: str
    color: str
    size: str
    box: Box

    @property
    def name(self) -> str:
        """``"red circle"``: unique within its scene."""
        return f"{self.color} {self.shape}"

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass(frozen=True)
class Scene:
    """The ground truth of one image."""

    seed: int
    background: str
    objects: tuple[Obj, ...]
    word: str | None = None
    word_box: Box | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        objects = tuple(Obj(o["shape"], o["color"], o["size"], tuple(o["box"])) for o in data["objects"])
        word_box = tuple(data["word_box"]) if data.get("word_box") else None
        return cls(data["seed"], data["background"], objects, data.get("word"), word_box)

    def find(self, color: str, shape: str) -> Obj | None:
        return next((o for o in self.objects if o.color == color and o.shape == shape), None)

    def closest(self) -> Obj | None:
        """The object closest to the camera: the largest, when it is clearly the largest."""
        ranked = sorted(self.objects, key=lambda o: o.area, reverse=True)
        if len(ranked) == 1 or ranked[0].area >= 1.3 * ranked[1].area:
            return ranked[0]
        return None


def scene_seed(world_seed: int, split: str, index: int) -> int:
    """The seed of scene ``index`` of ``split``: a 63-bit hash, so splits never share a scene."""
    digest = hashlib.blake2b(f"{world_seed}/{split}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def region(box: Box) -> str:
    """Where a box's centre falls on a 3×3 grid: ``top left``, ``top``, ..., ``center``, ..."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "top" if cy < 333 else "bottom" if cy >= 666 else ""
    col = "left" if cx < 333 else "right" if cx >= 666 else ""
    return f"{row} {col}".strip() or "center"


def relation(a: Obj, b: Obj) -> str:
    """Where ``a`` is relative to ``b``: ``left``, ``right``, ``above`` or ``below``."""
    (ax, ay), (bx, by) = a.center, b.center
    if abs(ax - bx) >= abs(ay - by):
        return "left" if ax < bx else "right"
    return "above" if ay < by else "below"


def clear_relation(a: Obj, b: Obj, margin: float = 100) -> bool:
    """Whether the relation of ``a`` to ``b`` is plain to see (not nearly diagonal or overlapping)."""
    (ax, ay), (bx, by) = a.center, b.center
    dx, dy = abs(ax - bx), abs(ay - by)
    return max(dx, dy) - min(dx, dy) >= margin


def _overlaps(box: Box, others: list[Box]) -> bool:
    return any(
        box[0] < o[2] + _MARGIN and o[0] < box[2] + _MARGIN
        and box[1] < o[3] + _MARGIN and o[1] < box[3] + _MARGIN
        for o in others
    )


def _place(rng: random.Random, width: int, height: int, taken: list[Box]) -> Box | None:
    for _ in range(60):
        x0 = rng.randint(20, 979 - width)
        y0 = rng.randint(20, 979 - height)
        box = (x0, y0, x0 + width, y0 + height)
        if not _overlaps(box, taken):
            return box
    return None


def sample_scene(seed: int, *, word_rate: float = 0.3) -> Scene:
    """Sample a scene from its seed; the same seed always gives the same scene.

    ``word_rate`` is the chance that a word is written on it (1.0 for OCR benchmarks). An object
    that finds no free space is left out; a word that finds none pushes out the objects placed
    last.
    """
    rng = random.Random(seed)
    count = rng.choices((1, 2, 3, 4), weights=_COUNT_WEIGHTS)[0]
    taken: list[Box] = []
    objects = []
    for color, shape in rng.sample([(c, s) for c in COLORS for s in SHAPES], count):
        size = rng.choice(SIZES)
        side = rng.randint(*SIDES[size])
        box = _place(rng, side, side, taken)  # the first object always fits the empty canvas
        if box is not None:
            taken.append(box)
            objects.append(Obj(shape, color, size, box))
    word = word_box = None
    if rng.random() < word_rate:
        word = rng.choice(WORDS)
        width = _WORD_WIDTH_PER_CHAR * len(word) + 40
        # the word wins over the last-placed objects: OCR sets need their text
        while (word_box := _place(rng, width, _WORD_HEIGHT, taken)) is None and len(objects) > 1:
            objects.pop()
            taken.pop()
        if word_box is None:
            word = None
    return Scene(seed, rng.choice(BACKGROUNDS), tuple(objects), word, word_box)

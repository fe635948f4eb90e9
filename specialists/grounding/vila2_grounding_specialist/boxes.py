"""Bounding boxes in text: parse them through formatting noise, write them one way, compare them.

The canonical form is ``[x0,y0,x1,y1]``: integers on a 0–999 grid over the image (docs/METHOD.md), as
GRIT-derived grounding sets write them. Models and other datasets add noise that must not cost a
correct answer its credit: spaces, parentheses, floats, boxes normalised to 0–1 (as Shikra-style
sets write them), corners as two points ``(x0,y0),(x1,y1)`` (Qwen-VL style), missing brackets, or
swapped corners.
"""

from __future__ import annotations

import re
from itertools import pairwise

Box = tuple[int, int, int, int]

GRID = 999  # largest coordinate on the grid

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
# Between two coordinates of one box: only spaces, commas, semicolons and brackets.
_GAP = re.compile(r"[\s,;()\[\]]+")
# A box written with brackets: [a,b,c,d], (a b c d), (a,b),(c,d) ...
_COMMA = r"\s*(?:,|\s)\s*"
_BRACKETED = re.compile(
    rf"[\[(]\s*({_NUMBER}){_COMMA}({_NUMBER})\s*(?:\)\s*,\s*\(|{_COMMA})\s*"
    rf"({_NUMBER}){_COMMA}({_NUMBER})\s*[\])]"
)


class BoxError(ValueError):
    """A box that cannot be put on the 0–999 grid (for example, pixel coordinates)."""


def to_grid(values: list[str], *, strict: bool = False) -> Box:
    """Four numbers as written -> a box on the 0–999 grid, corners ordered.

    Numbers that are all within 0–1 and written with a decimal point are read as normalised
    coordinates; otherwise they are grid coordinates. Out-of-range values are clipped, unless
    ``strict`` (for training data, where they signal pixel coordinates) makes them an error.
    """
    numbers = [float(v) for v in values]
    if all(0.0 <= n <= 1.0 for n in numbers) and any("." in v for v in values):
        numbers = [n * GRID for n in numbers]
    elif strict and any(n < 0 or n > GRID for n in numbers):
        raise BoxError(
            f"box {values} is outside the 0–{GRID} grid (pixel coordinates?); "
            f"write boxes as integers 0–{GRID} or as floats 0–1"
        )
    x0, y0, x1, y1 = (min(GRID, max(0, round(n))) for n in numbers)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def parse_box(text: str) -> Box | None:
    """The first box in ``text``: four numbers in a row, separated only by spaces, commas or
    brackets. ``None`` if there is none."""
    numbers = list(_NUMBER_RE.finditer(text))
    for start in range(len(numbers) - 3):
        run = numbers[start : start + 4]
        gaps = (text[a.end() : b.start()] for a, b in pairwise(run))
        if all(_GAP.fullmatch(gap) for gap in gaps):
            return to_grid([m.group() for m in run])
    return None


def format_box(box: Box) -> str:
    """``[x0,y0,x1,y1]``."""
    return "[" + ",".join(str(v) for v in box) + "]"


def canonicalise(text: str, *, strict: bool = False) -> str:
    """Rewrite every bracketed box in ``text`` in the canonical form; other text is untouched."""
    return _BRACKETED.sub(lambda m: format_box(to_grid(list(m.groups()), strict=strict)), text)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two grid boxes (0 when both are empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clean_answer(text: str) -> str:
    """A specialist's answer made ready to train on: boxes in the canonical form, and an answer
    that generation cut off inside a box (``... A red circle [131,9,9``) cut back to its last
    full sentence, so the boxes it did finish are kept."""
    text = canonicalise(text)
    opened = text.rfind("[")
    if opened > text.rfind("]"):
        text = text[: text.rfind(".", 0, opened) + 1].rstrip()
    return text


_CANONICAL = re.compile(r"\[(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\]")


def well_formed(text: str) -> bool:
    """Whether ``text`` (already :func:`canonicalise`-d) is usable grounding data: it holds at
    least one box, every box is four grid integers enclosing some area, and no bracket is left
    that is not such a box (a cut-off ``[131,9,9,8`` or a five-number ``[2,8,736,849,819]``).

    A small model writes such boxes while it learns the format; trained on, they would teach the
    next model the same noise.
    """
    boxes = [tuple(int(v) for v in m.groups()) for m in _CANONICAL.finditer(text)]
    # three digits at most: every corner is on the grid already
    if not boxes or any(x0 >= x1 or y0 >= y1 for x0, y0, x1, y1 in boxes):
        return False
    rest = _CANONICAL.sub("", text)
    return "[" not in rest and "]" not in rest

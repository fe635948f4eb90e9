"""Counting answers scored by the number they give.

The benchmark is the embedded world's VQA, which asks colours, shapes and yes/no questions too:
a question counts when its reference answer is a number. A prediction is correct when the first
number it gives (digits or a word up to ten: "There are three.") equals the reference.
:func:`summarise` turns the averages into the accuracy over the count questions alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NUMBER_WORDS = {
    "zero": 0, "no": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
_WORD = re.compile(r"[a-z0-9]+")


def count_in(text: str) -> int | None:
    """The first number ``text`` gives, or None."""
    for word in _WORD.findall(text.lower()):
        if word.isdigit():
            return int(word)
        if word in _NUMBER_WORDS:
            return _NUMBER_WORDS[word]
    return None


def score(prediction: str, reference: str, sample: Mapping[str, Any]) -> dict[str, float]:
    """Per-sample metrics for ``vila2.evaluate.evaluate_conversations``: ``accuracy`` and
    ``counted`` (1 for a count question), both 0 for any other question."""
    if not reference.strip().isdigit():
        return {"accuracy": 0.0, "counted": 0.0}
    return {"accuracy": float(count_in(prediction) == int(reference)), "counted": 1.0}


def summarise(means: Mapping[str, float]) -> dict[str, float]:
    """``accuracy`` over the count questions, from the averaged per-sample metrics."""
    if not means["counted"]:
        raise ValueError("the benchmark asked no count question: give a larger limit")
    return {"accuracy": means["accuracy"] / means["counted"]}

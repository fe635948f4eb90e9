"""Spatial answers scored by normalised match.

Answers to spatial questions are short ("yes", "left", "top left", "the red circle"). A prediction
is correct when, after normalisation, it equals the reference, or its first clause does ("No, it
is on the right." answers "no"): models often elaborate after the answer. A prefix alone is not
enough, since "top left" must not pass for "top".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_WORD = re.compile(r"[a-z0-9]+")
_CLAUSE_END = re.compile(r"[.,;:!?\n]")


def normalise(text: str) -> str:
    """Lower-case words without punctuation or articles, number words as digits."""
    words = _WORD.findall(text.lower())
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def matches(prediction: str, reference: str) -> bool:
    """Whether ``prediction`` gives ``reference`` as its answer (see the module docstring)."""
    ref = normalise(reference)
    if not ref:
        return False
    first_clause = _CLAUSE_END.split(prediction, maxsplit=1)[0]
    return ref in (normalise(prediction), normalise(first_clause))


def score(prediction: str, reference: str, sample: Mapping[str, Any]) -> dict[str, float]:
    """Per-sample metrics for ``vila2.evaluate.evaluate_conversations``."""
    return {"accuracy": float(matches(prediction, reference))}

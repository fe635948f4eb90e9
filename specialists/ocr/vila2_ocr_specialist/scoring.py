"""OCR answers scored by exact match and ANLS.

ANLS (average normalised Levenshtein similarity, as in ST-VQA and DocVQA) gives partial credit
for near-misses: ``1 - distance / max(len)`` when that distance is below 0.5, else 0. Both
metrics compare case-folded text with whitespace collapsed and wrapping quotes and trailing
punctuation removed, so ``"SALE".`` reads as ``sale``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANLS_THRESHOLD = 0.5
_WRAPPING = " \t\n\"'`“”‘’.,;:!?"


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed, wrapping quotes and trailing punctuation stripped."""
    return " ".join(text.casefold().split()).strip(_WRAPPING)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, reference: str, threshold: float = ANLS_THRESHOLD) -> float:
    """Normalised Levenshtein similarity, cut to 0 below ``1 - threshold``."""
    pred, ref = normalise(prediction), normalise(reference)
    if not pred and not ref:
        return 1.0
    distance = levenshtein(pred, ref) / max(len(pred), len(ref))
    return 1.0 - distance if distance < threshold else 0.0


def score(prediction: str, reference: str, sample: Mapping[str, Any]) -> dict[str, float]:
    """Per-sample metrics for ``vila2.evaluate.evaluate_conversations``."""
    return {
        "exact_match": float(normalise(prediction) == normalise(reference)),
        "anls": anls(prediction, reference),
    }

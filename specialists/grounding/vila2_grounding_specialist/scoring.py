"""Grounding answers scored two ways, by what the reference holds.

* A box (``Give the bounding box of the red circle.``): correct when the predicted box overlaps
  the reference with IoU >= 0.5; the box is parsed through formatting noise (see ``boxes``).
* An object name (``What object is at [x0,y0,x1,y1]?``): correct on a normalised match (case,
  punctuation and articles ignored).

Every sample returns the same metrics (the benchmark averages them): ``accuracy``, and for the
box questions alone ``box`` (1 for a box question), ``box_correct``, ``iou`` and ``parsed`` (the
prediction held a box at all), all 0 for a name question. :func:`summarise` turns the averages
into rates over the box questions and over the name questions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vila2_grounding_specialist.boxes import iou, parse_box

IOU_THRESHOLD = 0.5
_ARTICLES = frozenset({"a", "an", "the"})
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Lower-case words without punctuation or articles."""
    return " ".join(w for w in _WORD.findall(text.lower()) if w not in _ARTICLES)


def score(prediction: str, reference: str, sample: Mapping[str, Any]) -> dict[str, float]:
    """Per-sample metrics for ``vila2.evaluate.evaluate_conversations``."""
    truth = parse_box(reference)
    if truth is None:
        if not normalise(reference):
            raise ValueError(
                f"grounding benchmark sample {sample.get('id')!r} has an empty reference answer"
            )
        correct = float(normalise(prediction) == normalise(reference))
        return {"accuracy": correct, "box": 0.0, "box_correct": 0.0, "iou": 0.0, "parsed": 0.0}
    box = parse_box(prediction)
    overlap = iou(box, truth) if box is not None else 0.0
    correct = float(overlap >= IOU_THRESHOLD)
    return {"accuracy": correct, "box": 1.0, "box_correct": correct, "iou": overlap,
            "parsed": float(box is not None)}


def summarise(means: Mapping[str, float]) -> dict[str, float]:
    """Benchmark metrics from the averaged per-sample ones: ``accuracy`` over every question;
    ``box_accuracy`` (IoU >= 0.5), ``iou`` and ``parse_rate`` over the box questions;
    ``name_accuracy`` over the name questions. A rate over no question is left out."""
    out = {"accuracy": means["accuracy"]}
    box_share = means["box"]
    if box_share > 0:
        out |= {"box_accuracy": means["box_correct"] / box_share, "iou": means["iou"] / box_share,
                "parse_rate": means["parsed"] / box_share}
    if box_share < 1:
        out["name_accuracy"] = (means["accuracy"] - means["box_correct"]) / (1 - box_share)
    return out

"""Scoring the world's benchmarks: pure Python, so it is testable without a model.

Each ``*_score(prediction, reference, sample) -> dict[str, float]`` scores one answer;
:func:`vila2.evaluate.evaluate_conversations` averages the dicts over a benchmark.

* **vqa** — ``accuracy``: exact match after :func:`normalize_answer` (case, punctuation,
  articles, number words -> digits).
* **caption** — ``bleu4``: sentence BLEU-4 against the full description (clipped 1–4-gram
  precisions, add-one smoothing for n > 1, brevity penalty; Lin & Och 2004); ``object_recall``:
  share of the scene's objects the caption names with the right colour and shape;
  ``hallucination``: share of the caption's object mentions that match no object in the scene
  (CHAIR-i per caption, 0 when it mentions nothing); ``mentioned`` / ``hallucinated``: the
  counts, whose averages' ratio is the corpus-level CHAIR-i (:func:`chair_i`).

:func:`mention_spans` finds the same mentions as :func:`mentions` with their place in the text
(the report's gallery colours them). :func:`places` checks the places a text gives its objects.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from vila2.world.captions import PLACE_PHRASES, place
from vila2.world.scene import COLORS, NUMBER_WORDS, SHAPES, Scene

_PLURALS = {f"{s}es" if s.endswith("s") else f"{s}s": s for s in SHAPES}
_MODIFIERS = {"small", "large", "big", "tiny", "a", "an", "the", "one", "another"}
_ARTICLES = {"a", "an", "the"}
_QUOTED = re.compile(r'"[^"]*"')
_WORD = re.compile(r"[a-z0-9]+")

Mention = tuple[str | None, str]


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers; punctuation is dropped."""
    return _WORD.findall(text.lower())


def normalize_answer(text: str) -> str:
    """``"The Red."`` -> ``"red"``; ``"three"`` -> ``"3"``."""
    words = [w for w in tokens(text) if w not in _ARTICLES]
    return " ".join(str(NUMBER_WORDS.index(w)) if w in NUMBER_WORDS else w for w in words)


def vqa_score(prediction: str, reference: str, sample: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``{"accuracy": 1.0}`` when the normalised answers are equal."""
    return {"accuracy": float(normalize_answer(prediction) == normalize_answer(reference))}


def mentions(text: str) -> set[Mention]:
    """Objects a text names: ``{("red", "circle"), (None, "square"), ...}``.

    A shape word (singular or plural) is a mention; a colour up to two words before it (past
    size words and articles) is its colour. Quoted text (the written word) is ignored.
    """
    words = tokens(_QUOTED.sub(" ", text))
    found: set[Mention] = set()
    for i, word in enumerate(words):
        shape = word if word in SHAPES else _PLURALS.get(word)
        if shape is None:
            continue
        color = None
        for back in range(i - 1, max(-1, i - 4), -1):
            if words[back] in COLORS:
                color = words[back]
                break
            if words[back] not in _MODIFIERS:
                break
        found.add((color, shape))
    return found


def mention_spans(text: str) -> list[tuple[int, int, Mention]]:
    """Each object mention of ``text`` with its character span: ``[(start, end, (colour, shape))]``.

    The same reading as :func:`mentions` (``set(m for *_, m in mention_spans(t)) == mentions(t)``);
    a span runs from the colour word (when there is one) to the end of the shape word.
    """
    # quoted text is blanked to spaces, not removed, and case is lowered one character at a
    # time, so offsets still point into ``text``
    blanked = _QUOTED.sub(lambda m: " " * len(m.group()), text)
    lowered = "".join(c.lower() if len(c.lower()) == 1 else " " for c in blanked)
    words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(lowered)]
    spans: list[tuple[int, int, Mention]] = []
    for i, (word, _, end) in enumerate(words):
        shape = word if word in SHAPES else _PLURALS.get(word)
        if shape is None:
            continue
        color, start = None, words[i][1]
        for back in range(i - 1, max(-1, i - 4), -1):
            if words[back][0] in COLORS:
                color, start = words[back][0], words[back][1]
                break
            if words[back][0] not in _MODIFIERS:
                break
        spans.append((start, end, (color, shape)))
    return spans


@functools.cache
def _place_pattern() -> re.Pattern[str]:
    phrases = "|".join(sorted(map(re.escape, PLACE_PHRASES), key=len, reverse=True))  # longest first
    # "red circle at the top left" (the description) or "red circle is at the top left" (the
    # spatial specialist's sentences)
    return re.compile(rf"\b({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) (?:is )?({phrases})\b")


def places(text: str, scene: Scene) -> tuple[int, int]:
    """``(right, placed)``: how many of the text's "<colour> <shape> [is] <place>" phrases ("red
    circle at the top left", the description's form; "red circle is at the top left", the
    spatial specialist's) name an object of ``scene`` (``placed``),
    and how many of those give that object's place (``right``). A phrase naming no object of the
    scene is a wrong mention (:func:`hallucinated`), not counted here."""
    right = placed = 0
    for color, shape, where in _place_pattern().findall(_QUOTED.sub(" ", text.lower())):
        obj = scene.find(color, shape)
        if obj is not None:
            placed += 1
            right += place(obj) == where
    return right, placed


def hallucinated(found: set[Mention], scene: Scene) -> set[Mention]:
    """Mentions that match no object of the scene (a bare shape matches any colour)."""
    return {
        (color, shape) for color, shape in found
        if not any(o.shape == shape and (color is None or o.color == color) for o in scene.objects)
    }


def object_recall(found: set[Mention], scene: Scene) -> float:
    """Share of the scene's objects named with their colour and shape."""
    return sum((o.color, o.shape) in found for o in scene.objects) / len(scene.objects)


def bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 with add-one smoothing for 2–4-grams and the brevity penalty."""
    hyp, ref = tokens(prediction), tokens(reference)
    if not hyp or not ref:
        return 0.0
    log_precision = 0.0
    for n in range(1, 5):
        hyp_grams = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
        ref_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        matched = sum(min(count, ref_grams[g]) for g, count in hyp_grams.items())
        total = sum(hyp_grams.values())
        smooth = 0 if n == 1 else 1
        if matched + smooth == 0:
            return 0.0
        log_precision += math.log((matched + smooth) / (total + smooth)) / 4
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(log_precision)


def scene_of(sample: Mapping[str, Any]) -> Scene:
    """The ground-truth scene of a benchmark sample (its ``truth`` layer)."""
    truth = sample.get("truth")
    if not truth:
        raise ValueError(f"sample {sample.get('id')!r} has no 'truth' layer to score a caption against")
    return Scene.from_dict(json.loads(truth))


def caption_score(prediction: str, reference: str, sample: Mapping[str, Any]) -> dict[str, float]:
    """``bleu4``, ``object_recall``, ``hallucination``, ``mentioned``, ``hallucinated``."""
    scene = scene_of(sample)
    found = mentions(prediction)
    wrong = hallucinated(found, scene)
    return {
        "bleu4": bleu4(prediction, reference),
        "object_recall": object_recall(found, scene),
        "hallucination": len(wrong) / len(found) if found else 0.0,
        "mentioned": float(len(found)),
        "hallucinated": float(len(wrong)),
    }


def chair_i(metrics: Mapping[str, float]) -> float:
    """Corpus-level CHAIR-i from averaged ``mentioned`` and ``hallucinated`` counts."""
    return metrics["hallucinated"] / metrics["mentioned"] if metrics.get("mentioned") else 0.0

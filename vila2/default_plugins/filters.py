"""Built-in caption filters: word count, repeated-sentence cut, exact duplicates, garbage.

Each one stores a score with the caption layer and decides with ``keep(score, min=..., max=...)``,
so a new threshold needs no new inference (``vila2.captioning.filters.rethreshold``). A recipe names them
as ``"word_count"`` or ``{"name": "word_count", "min": 8}``.

The caption engine gives every filter call a per-shard scratch dict, ``sample["shard_state"]``,
fresh for each image shard and passed in the shard's order. ``exact_duplicate`` keeps its memory
there, which makes its verdicts a function of the shard alone: the same whether the layer was
written in one go, resumed after a kill, or split across ranks. The price is that it catches
duplicates within a shard (a thousand samples by default), not across shards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import vila2
from vila2.components import Filter

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NORMALISE = re.compile(r"[\W_]+")
# what ordinary prose, numbers and boxes such as [12,40,310,999] are written with
_PUNCTUATION = frozenset(".,;:!?'\"()[]{}-–—/%&+*=<>#@$°’‘“”…")


def _between(score: float, min: float | None = None, max: float | None = None) -> bool:
    return (min is None or score >= min) and (max is None or score <= max)


def word_count(sample: Mapping[str, Any], text: str) -> float:
    """Number of whitespace-separated words."""
    return float(len(text.split()))


def cut_repeated_sentence(text: str) -> str:
    """``text`` up to the first sentence that repeats an earlier one (ignoring case and punctuation).

    Small models fall into loops ("There is a red cube. There is a red cube. ..."); the first
    copy is information, the rest is noise.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        key = _NORMALISE.sub(" ", sentence.lower()).strip()
        if key and key in seen:
            break
        seen.add(key)
        kept.append(sentence)
    return " ".join(kept)


def kept_fraction(sample: Mapping[str, Any], text: str) -> float:
    """Fraction of the characters of ``text`` that survive :func:`cut_repeated_sentence`."""
    text = text.strip()
    return len(cut_repeated_sentence(text)) / len(text) if text else 1.0


def duplicate_count(sample: Mapping[str, Any], text: str) -> float:
    """How many earlier samples of the same shard have this caption (case and spacing ignored)."""
    state = sample.get("shard_state")
    if state is None:
        raise ValueError(
            f"filter 'exact_duplicate' needs sample['shard_state'] (sample {sample.get('id')!r}); "
            "the caption engine provides it, other callers pass a dict shared across one shard"
        )
    counts: dict[str, int] = state.setdefault("exact_duplicate", {})
    key = " ".join(text.lower().split())
    seen = counts.get(key, 0)
    counts[key] = seen + 1
    return float(seen)


def garbage_ratio(sample: Mapping[str, Any], text: str) -> float:
    """Fraction of the non-space characters that are not part of words: anything but letters and
    digits, except ordinary punctuation within two characters of a letter or digit (so
    ``"end."``, ``"(red)"`` and ``[12,40,310,999]`` are clean, ``"::::"`` and ``"\ufffd"`` are not)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    near_word = [False] * len(text)
    for i, c in enumerate(text):
        if c.isalnum():
            for j in range(max(0, i - 2), min(len(text), i + 3)):
                near_word[j] = True
    bad = sum(
        1 for i, c in enumerate(text)
        if not c.isspace() and not c.isalnum() and not (c in _PUNCTUATION and near_word[i])
    )
    return bad / len(chars)


@dataclass(frozen=True)
class CutFilter(Filter):
    """A filter that rewrites the caption with ``clean`` and scores the text *before* the
    rewrite, so the score can say how much the clean-up removed."""

    def apply(self, sample: Mapping[str, Any], text: str, **overrides: Any) -> tuple[str, float | None, bool]:
        assert self.score is not None and self.keep is not None and self.clean is not None
        value = float(self.score(sample, text))
        return self.clean(text), value, bool(self.keep(value, **{**self.settings, **overrides}))


BUILTIN_FILTERS: tuple[Filter, ...] = (
    Filter(
        "word_count", score=word_count, keep=_between, settings={"min": 1, "max": None},
        description="Keep captions with min <= words <= max.",
    ),
    CutFilter(
        "repeated_sentence", score=kept_fraction, keep=_between, clean=cut_repeated_sentence,
        settings={"min": 0.0},
        description="Cut the caption at the first repeated sentence; score = fraction of text kept "
        "(drop below min).",
    ),
    Filter(
        "exact_duplicate", score=duplicate_count, keep=_between, settings={"max": 0},
        description="Score = earlier identical captions in the same image shard; keep while <= max.",
    ),
    Filter(
        "garbage", score=garbage_ratio, keep=_between, settings={"max": 0.2},
        description="Score = ratio of characters outside words and their punctuation; keep while <= max.",
    ),
)


@vila2.hookimpl
def register_filters(register: Any) -> None:
    for component in BUILTIN_FILTERS:
        register(component)

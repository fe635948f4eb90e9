"""Cutting a long caption into pieces a CLIP text encoder sees whole, and pooling their scores.

CLIP's text encoder reads at most 77 tokens (SigLIP's 64); the rest of a detailed recaption is
cut off, so a whole-caption CLIPScore never sees its last sentences. Here a caption is split into
sentences; a sentence too long for the encoder is split again into overlapping windows of words.
Each piece is scored against the image on its own and the scores are pooled (:func:`pool`):

* ``mean`` — the average over pieces: how well the caption as a whole agrees with the image;
* ``min`` — the worst piece: one wrong sentence anywhere (say, an object that is not there, at
  the end of a 100-word caption) pulls it down as much as if it were the only sentence.

Both are computed from the same per-piece similarities, so scoring once gives both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
POOLS = ("mean", "min")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after ``.``, ``!``, ``?`` or ``;`` and whitespace), stripped,
    empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def windows(words: Sequence[str], fits: Callable[[str], bool], overlap: int = 4) -> list[str]:
    """Split ``words`` greedily into runs that each ``fits`` (the encoder sees it whole); each run
    after the first starts ``overlap`` words before the previous one ended, so no phrase is only
    ever seen cut in two. A single word that does not fit on its own is a window by itself (the
    encoder truncates it)."""
    out: list[str] = []
    start = 0
    while start < len(words):
        end = start + 1
        while end < len(words) and fits(" ".join(words[start:end + 1])):
            end += 1
        out.append(" ".join(words[start:end]))
        if end >= len(words):
            break
        start = max(start + 1, end - overlap)
    return out


def segments(text: str, fits: Callable[[str], bool], overlap: int = 4) -> list[str]:
    """The pieces of ``text`` to score: its sentences, each split into :func:`windows` when it does
    not ``fit``. A caption with no words gives ``[]``."""
    pieces: list[str] = []
    for sentence in sentences(text):
        if fits(sentence):
            pieces.append(sentence)
        else:
            pieces.extend(windows(sentence.split(), fits, overlap))
    return pieces


def pool(scores: Sequence[float], how: str) -> float:
    """Pool per-piece scores: ``mean`` or ``min`` (see the module docstring)."""
    if how not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {how!r}")
    if not scores:
        raise ValueError("no pieces to pool: the caption has no words")
    if how == "min":
        return float(min(scores))
    return float(sum(scores) / len(scores))


__all__ = ["POOLS", "pool", "segments", "sentences", "windows"]

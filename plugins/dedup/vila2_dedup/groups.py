"""Which item of each group of near-duplicates is kept, deterministically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("image", "caption")


@dataclass(frozen=True)
class Duplicate:
    """One item that is dropped: the kept item it duplicates, and the evidence."""

    of: str
    by: str  # "image" or "caption"
    score: float  # Hamming distance (image) or estimated Jaccard similarity (caption)

    def meta(self) -> dict[str, Any]:
        key = "image_distance" if self.by == "image" else "caption_jaccard"
        return {"duplicate_of": self.of, "duplicate_by": self.by, key: self.score}


def decide(edges: Iterable[tuple[str, str, str, float]]) -> dict[str, Duplicate]:
    """Given near-duplicate pairs ``(id_a, id_b, by, score)``, return the dropped ids (see
    :func:`decide_ranked`)."""
    edges = list(edges)
    ids = sorted({e[0] for e in edges} | {e[1] for e in edges})
    rank = {id: k for k, id in enumerate(ids)}
    a = np.array([rank[e[0]] for e in edges], dtype=np.int64)
    b = np.array([rank[e[1]] for e in edges], dtype=np.int64)
    by = np.array([KINDS.index(e[2]) for e in edges], dtype=np.uint8)
    score = np.array([e[3] for e in edges], dtype=np.float64)
    return decide_ranked(ids, a, b, by, score)


def decide_ranked(ids: Sequence[str], a: np.ndarray, b: np.ndarray, by: np.ndarray,
                  score: np.ndarray) -> dict[str, Duplicate]:
    """The dropped ids, given pairs as arrays: ``a``, ``b`` index ``ids`` (which is sorted),
    ``by`` indexes :data:`KINDS`, ``score`` is the evidence.

    Ids are visited in sorted order; an id is dropped when it is a near-duplicate of an id kept
    before it, and names the smallest such id. So in every group the smallest id is kept, each
    dropped id names an id it matched directly (never through a chain), and the result does not
    depend on shard order, sharding or how pairs were found. Pairs stay in numpy arrays (a few
    bytes each), so a dense group of near-duplicates costs little memory.
    """
    keep = a != b
    low, high = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    by, score = by[keep], score[keep]
    order = np.lexsort((by, low, high))  # by high, then low, then image before caption
    low, high, by, score = low[order], high[order], by[order], score[order]
    dropped = np.zeros(len(ids), dtype=bool)
    out: dict[str, Duplicate] = {}
    starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]]) if len(high) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(high)] if len(high) else np.zeros(0, int)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        for k in range(start, end):  # lows in increasing order: the first one kept wins
            if not dropped[low[k]]:
                dropped[high[k]] = True
                out[ids[int(high[k])]] = Duplicate(of=ids[int(low[k])], by=KINDS[int(by[k])],
                                                   score=float(score[k]))
                break
    return out


#: how many matches (the smallest ids) each id keeps per kind of evidence; see :func:`smallest_lows`
LOWS_PER_ID = 16


def smallest_lows(low: np.ndarray, high: np.ndarray, score: np.ndarray,
                  limit: int = LOWS_PER_ID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep, for every ``high``, its ``limit`` smallest ``low`` partners (``low < high``, any
    order of pairs; duplicates removed).

    The rule of :func:`decide_ranked` reads an id's partners smallest first and stops at the
    first one kept, so this bounds memory (a group of k near-duplicates costs at most
    ``limit * k`` pairs instead of k²/2) and changes a decision only when all ``limit`` smallest
    partners of an id were themselves dropped while a larger one was kept.
    """
    if not len(low):
        return low, high, score
    order = np.lexsort((low, high))
    low, high, score = low[order], high[order], score[order]
    fresh = np.r_[True, (high[1:] != high[:-1]) | (low[1:] != low[:-1])]
    low, high, score = low[fresh], high[fresh], score[fresh]
    starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]])
    position = np.arange(len(high)) - np.repeat(starts, np.diff(np.r_[starts, len(high)]))
    keep = position < limit
    return low[keep], high[keep], score[keep]

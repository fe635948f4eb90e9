"""Near-duplicate captions: MinHash signatures (``datasketch``) of character 5-gram shingles,
candidates from LSH banding, each candidate confirmed by its estimated Jaccard similarity.

Per caption the index keeps its signature (``num_perm`` 32-bit values, 512 bytes) and one
64-bit key per LSH band.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from vila2_dedup.groups import LOWS_PER_ID

#: default Jaccard similarity (of character 5-gram sets) from which two captions are duplicates
THRESHOLD = 0.7
NUM_PERM = 128
SHINGLE = 5
#: datasketch's 32-bit permutation scheme: signatures are kept as uint32 without loss
SCHEME = "affine32"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: LSH buckets up to this size have all their pairs checked at once; bigger ones row by row
_SMALL_BUCKET = 64
#: candidate pairs confirmed per batch (the comparison holds num_perm bytes per pair: 8 MB)
_BATCH = 1 << 16
#: confirmed pairs gathered before each caption's smallest partners are picked out again
_REDUCE = 1 << 21


def shingles(text: str, n: int = SHINGLE) -> set[bytes]:
    """The set of character ``n``-grams of a caption's words, case-folded, punctuation dropped,
    joined by single spaces (a shorter caption is one shingle; one without words, none).

    Characters rather than words: short captions (web alt-text is about a dozen words) that
    differ by one dropped or repeated word keep most of their character 5-grams (Jaccard about
    0.8) but few of their word 3-grams (about 0.5), while distinct captions stay far apart.
    """
    normal = " ".join(_WORD.findall(text.casefold()))
    if not normal:
        return set()
    if len(normal) <= n:
        return {normal.encode()}
    return {normal[i:i + n].encode() for i in range(len(normal) - n + 1)}


@dataclass
class CaptionIndex:
    """MinHash signatures of the captions seen, in the order seen, and their LSH bands.

    ``datasketch`` computes the signatures (:class:`datasketch.MinHash`) and chooses the banding
    — the ``b`` bands of ``r`` rows that :class:`datasketch.MinHashLSH` would use for this
    threshold. Instead of ``MinHashLSH``'s in-memory dict of sets (a few hundred bytes per
    caption and band: about 600 MB at 100k captions), each band's keys are computed when
    searching, one 64-bit key per caption, and candidates — captions sharing a band key — are
    found by sorting them.
    """

    threshold: float = THRESHOLD
    num_perm: int = NUM_PERM
    ids: list[str] = field(default_factory=list)
    bands: int = 0
    rows: int = 0
    _signatures: list[np.ndarray] = field(default_factory=list)
    #: captions whose shingle sets are identical: ``(first position, later position)``; only the
    #: first takes part in the band search, so a caption repeated k times costs k - 1 pairs
    _same: list[tuple[int, int]] = field(default_factory=list)
    _first: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from datasketch import MinHashLSH

        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"caption threshold must be in (0, 1], got {self.threshold}")
        # datasketch's choice of bands x rows for this threshold (false positives and negatives
        # weighted equally); the LSH object itself holds nothing
        lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        self.bands, self.rows = int(lsh.b), int(lsh.r)

    def add(self, id: str, text: str) -> bool:
        """Index one caption; returns False (and indexes nothing) for a caption without words."""
        from datasketch import MinHash

        grams = shingles(text)
        if not grams:
            return False
        signature = MinHash(num_perm=self.num_perm, seed=1, scheme=SCHEME)
        signature.update_batch(list(grams))
        position = len(self.ids)
        self.ids.append(id)
        # affine32 hash values are below 2**32: half the memory as uint32
        self._signatures.append(signature.hashvalues.astype(np.uint32))
        key = hashlib.blake2b(b"\0".join(sorted(grams)), digest_size=16).digest()
        first = self._first.setdefault(key, position)
        if first != position:
            self._same.append((first, position))
        return True

    def signatures(self) -> np.ndarray:
        """All signatures, one row per caption (uint32)."""
        if len(self._signatures) != 1:
            stacked = (np.stack(self._signatures) if self._signatures
                       else np.zeros((0, self.num_perm), np.uint32))
            self._signatures = [stacked]
        return self._signatures[0]

    def pairs(self) -> Iterator[tuple[int, int, float]]:
        """``(i, j, jaccard)`` for pairs ``i < j`` (positions in :attr:`ids`); see
        :meth:`pair_arrays`."""
        i, j, s = self.pair_arrays()
        yield from zip(i.tolist(), j.tolist(), s.tolist(), strict=True)

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions ``i < j`` and estimated Jaccard similarities of the pairs at or above the
        threshold, as arrays: LSH candidates (a band in common), each confirmed on the full
        signature. A caption whose shingle set repeats an earlier one is paired with that first
        one only; each caption keeps its ``LOWS_PER_ID`` smallest partners
        (:func:`vila2_dedup.groups.smallest_lows`)."""
        from vila2_dedup.groups import smallest_lows

        same = np.array(self._same, dtype=np.int64).reshape(-1, 2)
        signatures = self.signatures()
        firsts = np.array(sorted(set(self._first.values())), dtype=np.int64)
        lows: list[np.ndarray] = [same[:, 0]]
        highs: list[np.ndarray] = [same[:, 1]]
        pending = 0

        def reduce() -> None:
            # keep each caption's smallest partners only: memory stays linear in the corpus
            nonlocal pending
            low, high, _ = smallest_lows(np.concatenate(lows), np.concatenate(highs),
                                         np.zeros(sum(len(x) for x in lows), np.float32))
            lows[:], highs[:] = [low], [high]
            pending = 0

        def keep(i: np.ndarray, j: np.ndarray) -> None:
            nonlocal pending
            for start in range(0, len(i), _BATCH):
                a, b = i[start:start + _BATCH], j[start:start + _BATCH]
                close = (signatures[a] == signatures[b]).mean(axis=1) >= self.threshold
                lows.append(a[close])
                highs.append(b[close])
                pending += int(close.sum())
            if pending >= _REDUCE:
                reduce()

        for band in range(self.bands if len(firsts) > 1 else 0):
            keys = _band_keys(signatures[firsts, band * self.rows:(band + 1) * self.rows])
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
            sizes = np.diff(np.r_[starts, len(keys)])
            small_i: list[np.ndarray] = []
            small_j: list[np.ndarray] = []
            waiting = 0
            for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
                members = np.sort(firsts[order[start:start + size]])
                if size <= _SMALL_BUCKET:  # all pairs at once, confirmed in batches
                    a, b = np.triu_indices(size, 1)
                    small_i.append(members[a])
                    small_j.append(members[b])
                    waiting += len(a)
                    if waiting >= _BATCH:
                        keep(np.concatenate(small_i), np.concatenate(small_j))
                        small_i, small_j, waiting = [], [], 0
                    continue
                # a big bucket (templated captions): each member against the smaller ones, keeping
                # its LOWS_PER_ID smallest matches — memory bounded whatever the bucket's size
                bucket_lows: list[np.ndarray] = []
                bucket_highs: list[np.ndarray] = []
                for k in range(1, size):
                    before = members[:k]
                    close = np.flatnonzero((signatures[before] == signatures[members[k]]).mean(axis=1)
                                           >= self.threshold)[:LOWS_PER_ID]
                    if len(close):
                        bucket_lows.append(before[close])
                        bucket_highs.append(np.full(len(close), members[k]))
                if bucket_lows:
                    lows.append(np.concatenate(bucket_lows))
                    highs.append(np.concatenate(bucket_highs))
                    pending += len(lows[-1])
                if pending >= _REDUCE:
                    reduce()
            if small_i:
                keep(np.concatenate(small_i), np.concatenate(small_j))
        reduce()
        low, high = lows[0], highs[0]
        similarity = np.zeros(len(low), dtype=np.float32)
        for start in range(0, len(low), _BATCH):  # in batches: 2 x 512 bytes per pair gathered
            part = slice(start, start + _BATCH)
            similarity[part] = (signatures[low[part]] == signatures[high[part]]).mean(axis=1)
        return low.astype(np.int32), high.astype(np.int32), similarity


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of a band (its ``r`` 32-bit values mixed; equal rows, equal keys —
    a rare collision only adds a candidate, which the signature check then rejects)."""
    key = np.zeros(len(band), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(band.shape[1]):
            key = (key ^ band[:, column].astype(np.uint64)) * np.uint64(0x100000001B3)
            key ^= key >> np.uint64(29)
    return key


def index_captions(rows: Iterable[tuple[str, str | None]], *, threshold: float = THRESHOLD
                   ) -> CaptionIndex:
    """Index ``(id, text)`` pairs; rows without a text (not kept, empty) are left out."""
    index = CaptionIndex(threshold=threshold)
    for id, text in rows:
        if text:
            index.add(id, text)
    return index

"""Near-duplicate captions: MinHash signatures (``datasketch``) of character 5-gram shingles,
candidate pairs from ``datasketch.MinHashLSH``, each candidate confirmed by its estimated Jaccard
similarity.

Per caption the index keeps its signature (``num_perm`` 32-bit values, 512 bytes); the LSH index
exists only while the pairs are searched.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vila2_dedup.groups import LOWS_PER_ID

#: default Jaccard similarity (of character 5-gram sets) from which two captions are duplicates
THRESHOLD = 0.7
NUM_PERM = 128
SHINGLE = 5
#: the seed of the MinHash permutations (every signature of an index uses the same)
SEED = 1
#: datasketch's 32-bit permutation scheme: signatures are kept as uint32 without loss
SCHEME = "affine32"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: LSH candidates confirmed per step, smallest positions first (each step compares num_perm
#: values per candidate); a caption stops once it has LOWS_PER_ID confirmed partners
_CONFIRM_STEP = 256
#: pairs whose similarity is computed per batch at the end (2 x 512 bytes gathered per pair)
_BATCH = 1 << 16
#: captions whose partners are gathered before they are joined into one array
_JOIN = 4096


def _band_digest(data: bytes) -> bytes:
    """The key ``MinHashLSH`` files a band under: 8 bytes instead of the band's ``r`` 64-bit
    values (a collision only adds a candidate, which the signature check then rejects)."""
    return hashlib.blake2b(data, digest_size=8).digest()


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
    """MinHash signatures of the captions seen, in the order seen, and the near-duplicate pairs
    among them.

    ``datasketch`` computes the signatures (:class:`datasketch.MinHash`) and finds the candidate
    pairs (:class:`datasketch.MinHashLSH`, with the bands × rows it chooses for the threshold);
    each candidate is then confirmed on the full signature.
    """

    threshold: float = THRESHOLD
    num_perm: int = NUM_PERM
    ids: list[str] = field(default_factory=list)
    _signatures: list[np.ndarray] = field(default_factory=list)
    #: captions whose shingle sets are identical: ``(first position, later position)``; only the
    #: first takes part in the LSH search, so a caption repeated k times costs k - 1 pairs
    _same: list[tuple[int, int]] = field(default_factory=list)
    _first: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"caption threshold must be in (0, 1], got {self.threshold}")

    def _lsh(self) -> Any:
        from datasketch import MinHashLSH

        # datasketch's choice of bands x rows for this threshold (false positives and negatives
        # weighted equally); band keys digested to 8 bytes, which keeps its dict of sets smaller
        return MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, hashfunc=_band_digest)

    def add(self, id: str, text: str) -> bool:
        """Index one caption; returns False (and indexes nothing) for a caption without words."""
        from datasketch import MinHash

        grams = shingles(text)
        if not grams:
            return False
        signature = MinHash(num_perm=self.num_perm, seed=SEED, scheme=SCHEME)
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
        threshold, as arrays.

        Captions are visited in the order seen; each one is looked up in a
        :class:`datasketch.MinHashLSH` holding the captions before it (``query``), its candidates
        are confirmed on the full signature (the estimated Jaccard similarity: the share of equal
        MinHash values, as :meth:`datasketch.MinHash.jaccard` computes it), and then it is added
        (``insert``). Candidates are confirmed smallest position first, and each caption keeps its
        ``LOWS_PER_ID`` smallest confirmed partners (see :func:`vila2_dedup.groups.smallest_lows`):
        a dense group of k templated captions costs at most ``LOWS_PER_ID * k`` pairs. A caption
        whose shingle set repeats an earlier one is paired with that first one only.
        """
        from datasketch import LeanMinHash

        from vila2_dedup.groups import smallest_lows

        same = np.array(self._same, dtype=np.int64).reshape(-1, 2)
        signatures = self.signatures()
        firsts = sorted(set(self._first.values()))
        lows: list[np.ndarray] = [same[:, 0].astype(np.int32)]
        highs: list[np.ndarray] = [same[:, 1].astype(np.int32)]
        # each caption's partners are gathered, then joined _JOIN captions at a time: one small
        # array per caption would cost more in array headers than in pairs
        recent_lows: list[np.ndarray] = []
        recent_highs: list[np.ndarray] = []

        def join() -> None:
            if recent_lows:
                lows.append(np.concatenate(recent_lows))
                highs.append(np.concatenate(recent_highs))
                recent_lows.clear()
                recent_highs.clear()

        lsh = self._lsh()
        for position in firsts:
            signature = signatures[position]
            minhash = LeanMinHash(seed=SEED, hashvalues=signature.astype(np.uint64), scheme=SCHEME)
            found = lsh.query(minhash)
            if found:
                partners = self._confirm(np.sort(np.array(found, dtype=np.int64)), signature)
                if len(partners):
                    recent_lows.append(partners.astype(np.int32))
                    recent_highs.append(np.full(len(partners), position, dtype=np.int32))
                    if len(recent_lows) >= _JOIN:
                        join()
            lsh.insert(position, minhash, check_duplication=False)
        join()
        del lsh
        low, high, _ = smallest_lows(np.concatenate(lows), np.concatenate(highs),
                                     np.zeros(sum(len(x) for x in lows), np.float32))
        similarity = np.zeros(len(low), dtype=np.float32)
        for start in range(0, len(low), _BATCH):  # in batches: 2 x 512 bytes per pair gathered
            part = slice(start, start + _BATCH)
            similarity[part] = (signatures[low[part]] == signatures[high[part]]).mean(axis=1)
        return low.astype(np.int32), high.astype(np.int32), similarity

    def _confirm(self, candidates: np.ndarray, signature: np.ndarray) -> np.ndarray:
        """The first ``LOWS_PER_ID`` of ``candidates`` (sorted positions) whose estimated Jaccard
        similarity with ``signature`` reaches the threshold; checked a step at a time, so a
        caption in a big group of templated captions stops early."""
        signatures = self.signatures()
        confirmed: list[np.ndarray] = []
        count = 0
        for start in range(0, len(candidates), _CONFIRM_STEP):
            part = candidates[start:start + _CONFIRM_STEP]
            close = part[(signatures[part] == signature).mean(axis=1) >= self.threshold]
            confirmed.append(close[:LOWS_PER_ID - count])
            count += len(confirmed[-1])
            if count >= LOWS_PER_ID:
                break
        return np.concatenate(confirmed) if confirmed else np.zeros(0, np.int64)


def index_captions(rows: Iterable[tuple[str, str | None]], *, threshold: float = THRESHOLD
                   ) -> CaptionIndex:
    """Index ``(id, text)`` pairs; rows without a text (not kept, empty) are left out."""
    index = CaptionIndex(threshold=threshold)
    for id, text in rows:
        if text:
            index.add(id, text)
    return index

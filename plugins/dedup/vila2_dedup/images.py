"""Near-duplicate images: a 64-bit perceptual hash per image, pairs within a Hamming radius,
each pair confirmed by a small colour thumbnail.

The index holds, per image, the hash (8 bytes) and an 8×8 RGB thumbnail (192 bytes): it grows
with the corpus, the images do not stay in memory (they are decoded one at a time while the
dataset's shards stream past).

Why two tests: a perceptual hash (``imagehash.phash``) is computed on a grey, 32×32 copy of the
image, so it survives resizing, recompression and brightening, and tolerates a small crop within
a radius of about 10 bits of 64; but it is blind to colour, and simple images (a few shapes on a
plain background) that differ only in colour or in a small object fall within that radius. The
colour thumbnail, divided by its mean brightness (so brightening cancels) and compared pixel by
pixel, tells most of those apart: a pair is a duplicate only when both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vila2_dedup.groups import smallest_lows

#: default Hamming radius on the 64-bit pHash (see docs/PLUGINS.md for how it was chosen)
RADIUS = 10
#: default largest distance of the 8×8 colour thumbnails (see :func:`thumb_distance`; 0 turns
#: the test off)
THUMB_DISTANCE = 0.4
THUMB = 8
#: bound on the temporary block of the pairwise search, in hash comparisons
_BLOCK_CELLS = 1 << 22


def image_hash(image: Any) -> int:
    """The 64-bit pHash of a PIL image, as an unsigned integer."""
    import imagehash

    bits = imagehash.phash(image).hash.flatten()
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def thumbnail(image: Any) -> np.ndarray:
    """The image as 8×8 RGB pixels (box-filtered), uint8, flattened."""
    from PIL import Image

    small = image.convert("RGB").resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).reshape(-1)


def thumb_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distance of two stacks of thumbnails: the largest colour difference of any
    pixel, each thumbnail divided by its mean brightness, at the best of the 9 alignments within
    one thumbnail pixel (so a crop of a few percent, which shifts the content, still matches).

    The largest difference, not the mean: two distinct images of a few small objects on the same
    background differ in few pixels, but by a lot in those.
    """
    size = THUMB
    x = a.astype(np.float32).reshape(len(a), size, size, 3)
    y = b.astype(np.float32).reshape(len(b), size, size, 3)
    x /= x.mean(axis=(1, 2, 3), keepdims=True) + 1e-3
    y /= y.mean(axis=(1, 2, 3), keepdims=True) + 1e-3
    inner = x[:, 1:size - 1, 1:size - 1]
    best = np.full(len(a), np.inf, dtype=np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = y[:, 1 + dy:size - 1 + dy, 1 + dx:size - 1 + dx]
            worst = np.sqrt(((inner - moved) ** 2).sum(axis=-1)).reshape(len(a), -1).max(axis=1)
            best = np.minimum(best, worst)
    return best


@dataclass
class ImageIndex:
    """Hashes and thumbnails of every image seen, in the order seen."""

    ids: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    _hashes: list[np.ndarray] = field(default_factory=list)
    _thumbs: list[np.ndarray] = field(default_factory=list)
    _pending_h: list[int] = field(default_factory=list)
    _pending_t: list[np.ndarray] = field(default_factory=list)

    def add(self, id: str, image: Any) -> None:
        """Index one decoded image."""
        value, thumb = image_hash(image), thumbnail(image)  # both, or neither on a bad image
        self._pending_h.append(value)
        self._pending_t.append(thumb)
        self.ids.append(id)
        if len(self._pending_h) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._pending_h:
            self._hashes.append(np.array(self._pending_h, dtype=np.uint64))
            self._thumbs.append(np.stack(self._pending_t))
            self._pending_h, self._pending_t = [], []

    @property
    def hashes(self) -> np.ndarray:
        self._flush()
        if len(self._hashes) > 1:
            self._hashes = [np.concatenate(self._hashes)]
        return self._hashes[0] if self._hashes else np.zeros(0, dtype=np.uint64)

    @property
    def thumbs(self) -> np.ndarray:
        self._flush()
        if len(self._thumbs) > 1:
            self._thumbs = [np.concatenate(self._thumbs)]
        return self._thumbs[0] if self._thumbs else np.zeros((0, 3 * THUMB * THUMB), dtype=np.uint8)

    def nbytes(self) -> int:
        """Memory held by the hashes and thumbnails."""
        return int(self.hashes.nbytes + self.thumbs.nbytes)

    def pairs(self, radius: int = RADIUS, max_thumb_distance: float = THUMB_DISTANCE
              ) -> Iterator[tuple[int, int, int]]:
        """``(i, j, hamming)`` for every pair ``i < j`` (positions in :attr:`ids`); see
        :meth:`pair_arrays`."""
        i, j, d = self.pair_arrays(radius, max_thumb_distance)
        yield from zip(i.tolist(), j.tolist(), d.tolist(), strict=True)

    def pair_arrays(self, radius: int = RADIUS, max_thumb_distance: float = THUMB_DISTANCE
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions ``i < j`` (in :attr:`ids`) and Hamming distances of the pairs within
        ``radius`` whose thumbnails are within ``max_thumb_distance`` (0 skips that test), as
        arrays (12 bytes a pair).

        An exhaustive, vectorised search in blocks whose size keeps the temporary arrays under a
        fixed bound (about 32 MB) whatever the corpus size. Images identical in hash and
        thumbnail are paired with the first of them only (an image repeated k times costs k - 1
        pairs, not k²), and only those first ones are compared with the rest; each image keeps
        its ``LOWS_PER_ID`` smallest partners (:func:`vila2_dedup.groups.smallest_lows`).
        """
        hashes, thumbs = self.hashes, self.thumbs
        empty = np.zeros(0, dtype=np.int32)
        if not len(hashes):
            return empty, empty, empty.astype(np.uint8)
        keys = np.concatenate([hashes.view(np.uint8).reshape(len(hashes), 8), thumbs], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        del keys
        representative = first[inverse.reshape(-1)]  # for every image, the first one identical to it
        later = np.flatnonzero(representative != np.arange(len(hashes)))
        parts_i, parts_j, parts_d = [representative[later]], [later], [np.zeros(len(later), np.uint8)]
        order = np.sort(first)  # distinct images, in the order seen
        pending = 0
        for i, j, d in self._blocks(hashes[order], thumbs[order], radius, max_thumb_distance):
            parts_i.append(order[i])
            parts_j.append(order[j])
            parts_d.append(d)
            pending += len(i)
            if pending >= 1 << 20:  # keep each image's smallest partners: memory stays linear
                low, high, dist = smallest_lows(np.concatenate(parts_i), np.concatenate(parts_j),
                                                np.concatenate(parts_d))
                parts_i, parts_j, parts_d, pending = [low], [high], [dist], 0
        low, high, dist = smallest_lows(np.concatenate(parts_i), np.concatenate(parts_j),
                                        np.concatenate(parts_d))
        return low.astype(np.int32), high.astype(np.int32), dist.astype(np.uint8)

    @staticmethod
    def _blocks(hashes: np.ndarray, thumbs: np.ndarray, radius: int, max_thumb_distance: float
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        n = len(hashes)
        block = max(1, _BLOCK_CELLS // max(n, 1))
        for start in range(0, n, block):
            stop = min(n, start + block)
            xor = hashes[start:stop, None] ^ hashes[None, start:]
            dist = np.bitwise_count(xor)
            del xor
            rows, cols = np.nonzero(dist <= radius)
            keep = cols > rows  # j > i (cols count from start, as rows do)
            rows, cols = rows[keep], cols[keep]
            i, j, d = rows + start, cols + start, dist[rows, cols]
            del dist
            if max_thumb_distance > 0 and len(i):
                close = np.concatenate([  # in batches: each pair gathers two thumbnails
                    thumb_distance(thumbs[i[k:k + 65536]], thumbs[j[k:k + 65536]]) <= max_thumb_distance
                    for k in range(0, len(i), 65536)])
                i, j, d = i[close], j[close], d[close]
            if len(i):
                yield i, j, d


def index_images(
    samples: Iterable[dict[str, Any]],
    load: Callable[[dict[str, Any]], Any],
    *,
    on_error: Callable[[str, BaseException], None] | None = None,
) -> ImageIndex:
    """Hash every sample's image, one at a time; a sample whose image cannot be read is
    recorded in ``index.errors`` (and passed to ``on_error``) and left out of the search."""
    index = ImageIndex()
    for sample in samples:
        try:
            image = load(sample)
            index.add(sample["id"], image)
        except Exception as exc:
            index.errors[sample["id"]] = f"{type(exc).__name__}: {exc}"
            if on_error is not None:
                on_error(sample["id"], exc)
    return index

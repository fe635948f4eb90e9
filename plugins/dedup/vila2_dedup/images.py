"""Near-duplicate images: a 64-bit perceptual hash per image, pairs within a Hamming radius,
each pair confirmed by a small colour thumbnail and, unless the thumbnails agree closely, by the
images' colours.

The index holds, per image, the hash (8 bytes), an 8×8 RGB thumbnail (192 bytes) and a colour
signature (75 bytes): it grows with the corpus, the images do not stay in memory (they are
decoded one at a time while the dataset's shards stream past).

Why three tests: a perceptual hash (``imagehash.phash``) is computed on a grey, 32×32 copy of the
image, so it survives resizing, recompression and brightening, and tolerates a small crop within
a radius of about 10 bits of 64; but it is blind to colour, and simple images (a few shapes on a
plain background) that differ only in colour or in a small object fall within that radius. The
colour thumbnail, divided by its mean brightness (so brightening cancels) and compared pixel by
pixel, tells most of those apart, but not all: divided by its mean, a gray background looks like
a white one, and at 8×8 pixels a small object's colour is mixed with its background's. A crop
(which shifts and scales the content) moves the thumbnail about as far as such a distinct scene
does. So a pair whose thumbnails are not close must also agree in colour
(:func:`colour_agreement`): the same background colour up to a bounded brightness change, as much
saturated colour, and the same hues. A crop keeps all three; another object colour or another
background does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vila2_dedup.groups import smallest_lows

#: default Hamming radius on the 64-bit pHash (see the README for how the defaults were chosen)
RADIUS = 10
#: default largest distance of the 8×8 colour thumbnails (see :func:`thumb_distance`; 0 turns
#: the test off)
THUMB_DISTANCE = 0.33
#: thumbnails at most this far apart make a duplicate without the colour check: resized,
#: recompressed and brightened copies land here, crops (content shifted and scaled) mostly not
CLOSE_THUMB = 0.12
THUMB = 8
#: the colour signature is taken on a 16×16 box-filtered copy (fine enough for a small object's
#: colour to survive, coarse enough that recompression noise averages out)
COLOUR_SIZE = 16
#: hue histogram bins (10 degrees each)
HUE_BINS = 36
#: a pixel counts as coloured from this saturation and brightness (0-255) on
_MIN_SATURATION = 0.35
_MIN_VALUE = 60
#: below this much saturated colour (in fully saturated 16×16 pixels) an image counts as colourless
_MIN_MASS = 1.0
#: the colour check: the darker image's background may be brightened up to MAX_GAIN (clipped at
#: white, as a brightness edit does) and must then lie within BACKGROUND_DISTANCE (a share of
#: 255, per channel); the amounts of saturated colour within a factor MASS_RATIO; the hue
#: histograms within HUE_DISTANCE degrees (earth mover's distance on the hue circle)
MAX_GAIN = 1.3
BACKGROUND_DISTANCE = 0.03
MASS_RATIO = 1.3
HUE_DISTANCE = 15.0
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


def colour_signature(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """The colour signature of a PIL image: its background colour (per-channel median, uint8 ×3)
    and its hue histogram (``HUE_BINS`` bins, each the summed saturation of its coloured pixels,
    float16), both on a ``COLOUR_SIZE``² box-filtered copy.

    Saturation (not chroma) weights the hues because it does not change when the image is
    brightened; the median is the background when objects cover less than half the picture,
    and otherwise still a colour that a crop or a resize leaves in place.
    """
    from PIL import Image

    small = image.convert("RGB").resize((COLOUR_SIZE, COLOUR_SIZE), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float32).reshape(-1, 3)
    background = np.median(pixels, axis=0).round().astype(np.uint8)
    return background, hue_histogram(pixels[None])[0].astype(np.float16)


def hue_histogram(pixels: np.ndarray) -> np.ndarray:
    """Saturation-weighted hue histograms of stacks of RGB pixels (``(n, pixels, 3)``, 0-255),
    ``HUE_BINS`` bins from red; pixels below ``_MIN_SATURATION`` or ``_MIN_VALUE`` count for
    nothing."""
    high, low = pixels.max(axis=-1), pixels.min(axis=-1)
    chroma = high - low
    saturation = chroma / np.maximum(high, 1e-6)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(high == r, ((g - b) / safe) % 6,
                   np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6  # 0..1
    weight = np.where((saturation >= _MIN_SATURATION) & (high >= _MIN_VALUE), saturation, 0.0)
    bins = np.minimum((hue * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    out = np.zeros((len(pixels), HUE_BINS), dtype=np.float32)
    np.add.at(out, (np.repeat(np.arange(len(pixels)), pixels.shape[1]), bins.ravel()), weight.ravel())
    return out


def colour_agreement(background_a: np.ndarray, background_b: np.ndarray, hues_a: np.ndarray,
                     hues_b: np.ndarray) -> np.ndarray:
    """Row-wise: do two stacks of colour signatures (see :func:`colour_signature`) agree?

    Three tests, all needed: (1) the background colours, once the darker is brightened by the
    best gain up to ``MAX_GAIN`` (clipped at 255, as a brightness edit clips), differ by at most
    ``BACKGROUND_DISTANCE`` in every channel; (2) the amounts of saturated colour are within a
    factor ``MASS_RATIO`` (or both images are colourless); (3) the hue histograms, normalised,
    are within ``HUE_DISTANCE`` degrees of earth mover's distance on the hue circle.
    """
    x = background_a.astype(np.float32)
    y = background_b.astype(np.float32)
    darker = (x.sum(axis=1) > y.sum(axis=1))[:, None]
    x, y = np.where(darker, y, x), np.where(darker, x, y)  # x: the darker background
    background = np.full(len(x), np.inf, dtype=np.float32)
    for gain in np.linspace(1.0, MAX_GAIN, 31, dtype=np.float32):
        background = np.minimum(background, np.abs(np.minimum(x * gain, 255) - y).max(axis=1) / 255)

    p = hues_a.astype(np.float32)
    q = hues_b.astype(np.float32)
    mass_p, mass_q = p.sum(axis=1), q.sum(axis=1)
    coloured_p, coloured_q = mass_p >= _MIN_MASS, mass_q >= _MIN_MASS
    ratio = np.maximum(mass_p, mass_q) / np.maximum(np.minimum(mass_p, mass_q), 1e-6)
    mass = np.where(coloured_p & coloured_q, ratio <= MASS_RATIO, coloured_p == coloured_q)
    # circular earth mover's distance: the cumulative difference, less its median, summed
    cumulative = np.cumsum(p / np.maximum(mass_p, 1e-6)[:, None] - q / np.maximum(mass_q, 1e-6)[:, None],
                           axis=1)
    moved = np.abs(cumulative - np.median(cumulative, axis=1, keepdims=True)).sum(axis=1)
    hue = ~(coloured_p & coloured_q) | (moved * (360 / HUE_BINS) <= HUE_DISTANCE)
    return (background <= BACKGROUND_DISTANCE) & mass & hue


def colour_settings() -> dict[str, float]:
    """The colour check's constants, as a layer's provenance records them."""
    return {"close_thumb": CLOSE_THUMB, "size": COLOUR_SIZE, "max_gain": MAX_GAIN,
            "background_distance": BACKGROUND_DISTANCE, "mass_ratio": MASS_RATIO,
            "hue_distance": HUE_DISTANCE}


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
    """Hashes, thumbnails and colour signatures of every image seen, in the order seen."""

    ids: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    _hashes: list[np.ndarray] = field(default_factory=list)
    _thumbs: list[np.ndarray] = field(default_factory=list)
    _backgrounds: list[np.ndarray] = field(default_factory=list)
    _hues: list[np.ndarray] = field(default_factory=list)
    _pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, id: str, image: Any) -> None:
        """Index one decoded image."""
        # all three, or nothing on a bad image
        entry = (image_hash(image), thumbnail(image), *colour_signature(image))
        self._pending.append(entry)
        self.ids.append(id)
        if len(self._pending) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            hashes, thumbs, backgrounds, hues = zip(*self._pending, strict=True)
            self._hashes.append(np.array(hashes, dtype=np.uint64))
            self._thumbs.append(np.stack(thumbs))
            self._backgrounds.append(np.stack(backgrounds))
            self._hues.append(np.stack(hues))
            self._pending = []

    def _joined(self, parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
        self._flush()
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0] if parts else empty

    @property
    def hashes(self) -> np.ndarray:
        """The 64-bit pHashes, one per image (uint64)."""
        return self._joined(self._hashes, np.zeros(0, dtype=np.uint64))

    @property
    def thumbs(self) -> np.ndarray:
        """The 8×8 RGB thumbnails, one flattened row per image (uint8)."""
        return self._joined(self._thumbs, np.zeros((0, 3 * THUMB * THUMB), dtype=np.uint8))

    @property
    def backgrounds(self) -> np.ndarray:
        """The background colours of the colour signatures, one RGB row per image (uint8)."""
        return self._joined(self._backgrounds, np.zeros((0, 3), dtype=np.uint8))

    @property
    def hues(self) -> np.ndarray:
        """The hue histograms of the colour signatures, one row per image (float16)."""
        return self._joined(self._hues, np.zeros((0, HUE_BINS), dtype=np.float16))

    def nbytes(self) -> int:
        """Memory held by the hashes, thumbnails and colour signatures."""
        return int(self.hashes.nbytes + self.thumbs.nbytes + self.backgrounds.nbytes + self.hues.nbytes)

    def pairs(self, radius: int = RADIUS, max_thumb_distance: float = THUMB_DISTANCE,
              colour_check: bool = True) -> Iterator[tuple[int, int, int]]:
        """``(i, j, hamming)`` for every pair ``i < j`` (positions in :attr:`ids`); see
        :meth:`pair_arrays`."""
        i, j, d = self.pair_arrays(radius, max_thumb_distance, colour_check)
        yield from zip(i.tolist(), j.tolist(), d.tolist(), strict=True)

    def pair_arrays(self, radius: int = RADIUS, max_thumb_distance: float = THUMB_DISTANCE,
                    colour_check: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions ``i < j`` (in :attr:`ids`) and Hamming distances of the pairs within
        ``radius`` whose thumbnails are within ``max_thumb_distance`` (0 skips that test and the
        colour check) and — when ``colour_check`` and the thumbnails are further apart than
        ``CLOSE_THUMB`` — whose colours agree (:func:`colour_agreement`), as arrays (12 bytes a
        pair).

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
        colours = (self.backgrounds[order], self.hues[order]) if colour_check else None
        pending = 0
        for i, j, d in self._blocks(hashes[order], thumbs[order], colours, radius, max_thumb_distance):
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
    def _blocks(hashes: np.ndarray, thumbs: np.ndarray, colours: tuple[np.ndarray, np.ndarray] | None,
                radius: int, max_thumb_distance: float) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
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
                    _confirm(thumbs, colours, i[k:k + 65536], j[k:k + 65536], max_thumb_distance)
                    for k in range(0, len(i), 65536)])
                i, j, d = i[close], j[close], d[close]
            if len(i):
                yield i, j, d


def _confirm(thumbs: np.ndarray, colours: tuple[np.ndarray, np.ndarray] | None, i: np.ndarray,
             j: np.ndarray, max_thumb_distance: float) -> np.ndarray:
    """Which pairs ``(i, j)`` the thumbnails (and, when they are not close, the colours) confirm."""
    distance = thumb_distance(thumbs[i], thumbs[j])
    close = distance <= max_thumb_distance
    if colours is not None:
        loose = np.flatnonzero(close & (distance > CLOSE_THUMB))
        if len(loose):
            backgrounds, hues = colours
            a, b = i[loose], j[loose]
            close[loose] = colour_agreement(backgrounds[a], backgrounds[b], hues[a], hues[b])
    return close


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

"""Near-duplicate images: a 64-bit perceptual hash per image, pairs within a Hamming radius,
each pair confirmed by a small colour thumbnail and, unless the thumbnails agree closely, by the
images' colours.

The index holds, per image, the hash (8 bytes), an 8×8 RGB thumbnail (192 bytes), a colour
signature (75 bytes), and for cropped copies five more hashes (40 bytes) and a 16×16 RGB
thumbnail (768 bytes): it grows with the corpus, the images do not stay in memory (they are
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

Why a second path for crops: a crop of a few percent shifts and scales the whole picture, which
moves the full frame's pHash past the radius for about a fifth of such copies, and the 8×8
thumbnail (one pixel is 12.5% of the frame) cannot be aligned finely enough to confirm over a
quarter of them. So every image also keeps the pHashes of five 5% crops of itself (the four corners
and the centre): a copy cropped from its original lands near one of them. Such a pair is a
candidate when one image's crop hash lies within ``CROP_RADIUS`` of the other's full hash; it
must pass the colour check, and then a finer test (:func:`crop_distance`): one 16×16 thumbnail,
cropped and resampled at a few sub-pixel positions and scales, must match the other at every
pixel once both are slightly blurred. Distinct scenes that the colour check lets through mostly
differ at some pixel by more than a crop's resampling error does.
"""

from __future__ import annotations

import itertools
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
#: the crop path: each image keeps the pHashes of these crops (left, top; each ``1 - CROP`` of the
#: width and height): the four corners and the centre, so that a copy cropped by up to about
#: ``CROP`` anywhere lands within a few pixels of one of them
CROP = 0.05
CROP_BOXES = ((0.0, 0.0), (CROP, 0.0), (0.0, CROP), (CROP, CROP), (CROP / 2, CROP / 2))
#: a crop hash within this many bits of another image's full hash makes a crop candidate (tighter
#: than ``RADIUS``: five hashes per image give five times the chances of a chance match)
CROP_RADIUS = 6
#: the crop path's thumbnails are FINE×FINE: at 8×8 one pixel is 12.5% of the frame, coarser than
#: the shift a 5% crop makes
FINE = 16
#: the crops tried when confirming: kept fractions of the side, each at 3×3 positions from one
#: corner to the other (steps of 2–2.5% of the side, under half a fine pixel)
CROP_SCALES = (0.95, 0.96)
CROP_STEPS = 3
#: largest distance (as :func:`thumb_distance` measures it, on the fine thumbnails once smoothed:
#: see :func:`crop_distance`) of a crop candidate that is confirmed (chosen on the tuning sets:
#: see the README)
CROP_DISTANCE = 0.18
#: bound on the temporary block of the pairwise search, in hash comparisons
_BLOCK_CELLS = 1 << 22
#: pairs per batch when confirming crop candidates (a few float arrays of 768 values each)
_CROP_BATCH = 8192


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


def crop_hashes(image: Any) -> np.ndarray:
    """The pHashes (see :func:`image_hash`) of the crops ``CROP_BOXES`` of a PIL image (uint64)."""
    w, h = image.size
    keep = 1 - CROP
    out = []
    for left, top in CROP_BOXES:
        box = (round(left * w), round(top * h), round((left + keep) * w), round((top + keep) * h))
        out.append(image_hash(image.crop(box)))
    return np.array(out, dtype=np.uint64)


def fine_thumbnail(image: Any) -> np.ndarray:
    """The image as ``FINE``×``FINE`` RGB pixels (box-filtered), uint8, flattened."""
    from PIL import Image

    small = image.convert("RGB").resize((FINE, FINE), Image.Resampling.BOX)
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


def colour_settings() -> dict[str, Any]:
    """The colour check's constants (and those of the crop path, which needs the colour check),
    as a layer's provenance records them."""
    return {"close_thumb": CLOSE_THUMB, "size": COLOUR_SIZE, "max_gain": MAX_GAIN,
            "background_distance": BACKGROUND_DISTANCE, "mass_ratio": MASS_RATIO,
            "hue_distance": HUE_DISTANCE,
            "crop": {"boxes": [list(box) for box in CROP_BOXES], "fraction": CROP,
                     "radius": CROP_RADIUS, "fine": FINE, "scales": list(CROP_SCALES),
                     "steps": CROP_STEPS, "smoothing": [1, 2, 1], "distance": CROP_DISTANCE}}


def _taps(start: float, extent: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolation taps that resample ``FINE`` pixels of the span ``[start, start +
    extent]`` (a share of the side) to ``FINE`` pixels: the first source pixel and its weight."""
    centres = (start + (np.arange(FINE) + 0.5) / FINE * extent) * FINE - 0.5
    first = np.clip(np.floor(centres).astype(np.int64), 0, FINE - 2)
    return first, np.clip(centres - first, 0, 1).astype(np.float32)


def _smoothed(x: np.ndarray) -> np.ndarray:
    """Stacks of images (``(n, h, w, channels)``) blurred by a [1, 2, 1] / 4 kernel along both
    axes, edges repeated."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    tall = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    return (tall[:, :, :-2] + 2 * tall[:, :, 1:-1] + tall[:, :, 2:]) / 4


def _normalised(x: np.ndarray) -> np.ndarray:
    # divided by the mean brightness, as thumb_distance does: a brightened copy cancels out
    return x / (x.mean(axis=(1, 2, 3), keepdims=True) + 1e-3)


def crop_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distance of two stacks of fine thumbnails (see :func:`fine_thumbnail`) when one
    may be a crop of the other: the largest colour difference of any pixel, each thumbnail
    divided by its mean brightness, at the best of the crops ``CROP_SCALES`` × ``CROP_STEPS``²
    of either one (resampled linearly to the full size) against the other, both smoothed
    (:func:`_smoothed`) before they are compared.

    The largest difference, as in :func:`thumb_distance`: distinct scenes that pass the colour
    check differ in a small object, so in few pixels, but by a lot in those. The smoothing,
    because a thumbnail resampled from a thumbnail is not the thumbnail of the crop: at a sharp
    edge they differ by up to half the edge's contrast (measured: about three in four exact 5%
    crops of world scenes that the full-frame path misses stay above 0.3 unsmoothed), while a
    small object's difference survives a 3-pixel blur.
    """
    shape = (-1, FINE, FINE, 3)
    best = np.full(len(a), np.inf, dtype=np.float32)
    for x, y in ((a, b), (b, a)):  # which one is the crop is not known
        source = x.astype(np.float32).reshape(shape)
        target = _smoothed(_normalised(y.astype(np.float32).reshape(shape)))
        for extent in CROP_SCALES:
            starts = np.linspace(0, 1 - extent, CROP_STEPS)
            for top in starts:
                rows, fy = _taps(float(top), extent)
                tall = (source[:, rows] * (1 - fy)[None, :, None, None]
                        + source[:, rows + 1] * fy[None, :, None, None])
                for left in starts:
                    cols, fx = _taps(float(left), extent)
                    moved = _smoothed(_normalised(tall[:, :, cols] * (1 - fx)[None, None, :, None]
                                                  + tall[:, :, cols + 1] * fx[None, None, :, None]))
                    worst = np.sqrt(((moved - target) ** 2).sum(axis=-1)).reshape(len(a), -1).max(axis=1)
                    best = np.minimum(best, worst)
    return best


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
    _crops: list[np.ndarray] = field(default_factory=list)
    _fines: list[np.ndarray] = field(default_factory=list)
    _pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list)

    def add(self, id: str, image: Any) -> None:
        """Index one decoded image."""
        # converted once here, not in each of the six pHashes and three resizes (the pixels are
        # the same: a crop of the grey image is the grey of the crop)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        grey = rgb.convert("L")
        entry = (image_hash(grey), thumbnail(rgb), *colour_signature(rgb), crop_hashes(grey), fine_thumbnail(rgb))
        self._pending.append(entry)
        self.ids.append(id)
        if len(self._pending) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            hashes, thumbs, backgrounds, hues, crops, fines = zip(*self._pending, strict=True)
            self._hashes.append(np.array(hashes, dtype=np.uint64))
            self._thumbs.append(np.stack(thumbs))
            self._backgrounds.append(np.stack(backgrounds))
            self._hues.append(np.stack(hues))
            self._crops.append(np.stack(crops))
            self._fines.append(np.stack(fines))
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

    @property
    def crops(self) -> np.ndarray:
        """The pHashes of the crops ``CROP_BOXES``, one row per image (uint64)."""
        return self._joined(self._crops, np.zeros((0, len(CROP_BOXES)), dtype=np.uint64))

    @property
    def fines(self) -> np.ndarray:
        """The ``FINE``×``FINE`` RGB thumbnails, one flattened row per image (uint8)."""
        return self._joined(self._fines, np.zeros((0, 3 * FINE * FINE), dtype=np.uint8))

    def nbytes(self) -> int:
        """Memory held by the hashes, thumbnails and colour signatures."""
        return int(self.hashes.nbytes + self.thumbs.nbytes + self.backgrounds.nbytes + self.hues.nbytes
                   + self.crops.nbytes + self.fines.nbytes)

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

        With the thumbnail test and the colour check on, crop candidates are searched the same
        way (a crop hash within ``CROP_RADIUS`` of the other image's full hash), confirmed by the
        colours and :func:`crop_distance`, and added with their crop-hash distance (a pair found
        both ways keeps its full-hash distance).
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
        found = self._blocks(hashes[order], thumbs[order], colours, radius, max_thumb_distance)
        if colours is not None and max_thumb_distance > 0:  # the crop path needs both checks
            # the fine thumbnails are read through ``order``, not copied (768 bytes an image)
            found = itertools.chain(found, self._crop_blocks(hashes[order], self.crops[order],
                                                             self.fines, order, colours))
        pending = 0
        for i, j, d in found:
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

    @staticmethod
    def _crop_blocks(hashes: np.ndarray, crops: np.ndarray, fines: np.ndarray, order: np.ndarray,
                     colours: tuple[np.ndarray, np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Crop candidates ``i < j`` (positions in ``order``, like ``hashes``, ``crops`` and
        ``colours``; ``fines`` is indexed through ``order``): a crop hash of one within
        ``CROP_RADIUS`` of the other's full hash, either way round; confirmed by
        :func:`colour_agreement` (always: the fine test alone does not see a gray background
        against a white one) and :func:`crop_distance`."""
        n = len(hashes)
        boxes = crops.shape[1]
        # each cell of the block makes 2 × boxes comparisons: fewer rows keep the bound
        block = max(1, _BLOCK_CELLS // max(n * boxes, 1))
        backgrounds, hues = colours
        for start in range(0, n, block):
            stop = min(n, start + block)
            dist = np.full((stop - start, n - start), 255, dtype=np.uint8)
            for k in range(boxes):
                np.minimum(dist, np.bitwise_count(crops[start:stop, k, None] ^ hashes[None, start:]), out=dist)
                np.minimum(dist, np.bitwise_count(hashes[start:stop, None] ^ crops[None, start:, k]), out=dist)
            rows, cols = np.nonzero(dist <= CROP_RADIUS)
            keep = cols > rows
            rows, cols = rows[keep], cols[keep]
            i, j, d = rows + start, cols + start, dist[rows, cols]
            del dist
            if len(i):
                agree = colour_agreement(backgrounds[i], backgrounds[j], hues[i], hues[j])
                i, j, d = i[agree], j[agree], d[agree]
            if len(i):
                close = np.concatenate([
                    crop_distance(fines[order[i[k:k + _CROP_BATCH]]], fines[order[j[k:k + _CROP_BATCH]]])
                    <= CROP_DISTANCE
                    for k in range(0, len(i), _CROP_BATCH)])
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
    """Hash every sample's image, one at a time; a sample whose image cannot be read
    (``OSError``, ``ValueError``: what PIL and :meth:`vila2.data.Dataset.load_image` raise) is
    recorded in ``index.errors`` (and passed to ``on_error``) and left out of the search. Only
    reading is guarded: a failure while hashing a decoded image is a bug, and raises."""
    index = ImageIndex()
    for sample in samples:
        try:
            image = load(sample)
            image.load()  # PIL decodes lazily: a truncated file fails here, not in the hashing
        except (OSError, ValueError) as exc:
            index.errors[sample["id"]] = f"{type(exc).__name__}: {exc}"
            if on_error is not None:
                on_error(sample["id"], exc)
            continue
        index.add(sample["id"], image)
    return index

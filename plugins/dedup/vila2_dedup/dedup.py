"""Deduplicate a whole dataset: index every shard, decide, write one layer.

One process reads every image shard (streaming, one image decoded at a time), so duplicates are
found across shards — and so across the ranks that would each caption a share of the shards —
which the built-in ``exact_duplicate`` filter, fresh per shard, cannot see.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vila2_dedup.captions import THRESHOLD, index_captions
from vila2_dedup.groups import KINDS, Duplicate, decide_ranked
from vila2_dedup.images import RADIUS, THUMB_DISTANCE, colour_settings, index_images

PRODUCER = "vila2-dedup"
#: a bad image is named on stderr; after this many, only counted
_NAMED_ERRORS = 5


class DedupError(ValueError):
    """A request that cannot be carried out (the message names the dataset, layer or option)."""


@dataclass
class DedupReport:
    """What ``vila2 dedup`` did."""

    dataset: str
    layer: str
    samples: int = 0
    images_indexed: int = 0
    image_errors: dict[str, str] = field(default_factory=dict)
    captions_indexed: int = 0
    image_pairs: int = 0
    caption_pairs: int = 0
    dropped_by_image: int = 0
    dropped_by_caption: int = 0
    not_kept_in_source: int = 0
    kept: int = 0
    shards_written: int = 0
    index_bytes: int = 0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"{self.layer}: {self.samples} samples, {self.kept} kept; dropped "
            f"{self.dropped_by_image} as image duplicates, {self.dropped_by_caption} as caption "
            f"duplicates ({self.image_pairs} image pairs, {self.caption_pairs} caption pairs "
            f"within the thresholds) in {self.seconds:.1f} s",
        ]
        if self.image_errors:
            lines.append(f"{len(self.image_errors)} image(s) could not be read and were kept "
                         "unjudged (meta 'error' in their rows)")
        return "\n".join(lines)


def dedup(
    dataset: str | Path,
    out_layer: str,
    *,
    images: bool = False,
    captions: str | None = None,
    radius: int = RADIUS,
    threshold: float = THRESHOLD,
    thumb_distance: float = THUMB_DISTANCE,
    colour_check: bool = True,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> DedupReport:
    """Write layer ``out_layer`` of ``dataset``: every near-duplicate has ``kept = False`` and
    names, in its row's meta, the id it duplicates (``duplicate_of``); the smallest id of each
    group is kept.

    ``images``: compare images (pHash within ``radius`` bits, confirmed by the thumbnails within
    ``thumb_distance`` and, with ``colour_check``, by the colours of a pair whose thumbnails are
    not close; see :mod:`vila2_dedup.images`). ``captions``: compare the kept texts of that
    caption layer (MinHash Jaccard at least ``threshold``); the new layer then carries those
    texts, and rows not kept there stay not kept. Rerunning with the same settings resumes
    (finished shards are kept). ``progress``: a bar (rate, ETA) while the images are indexed, and
    a ``log`` line before each pair search.
    """
    from vila2.data import Dataset
    from vila2.errors import StoreError

    started = time.time()
    if not images and not captions:
        raise DedupError("nothing to compare: pass --images, --captions LAYER, or both")
    if not 0 <= radius <= 64:
        raise DedupError(f"--radius must be between 0 and 64 bits, got {radius}")
    if not 0 < threshold <= 1:
        raise DedupError(f"--threshold must be in (0, 1], got {threshold}")
    try:
        ds = Dataset.open(dataset)
        source = ds.layer(captions) if captions else None
    except StoreError as exc:
        raise DedupError(str(exc)) from None
    if captions == out_layer:
        raise DedupError(f"--out-layer {out_layer!r} is the layer being compared; choose a new name")
    if source is not None and not source.is_complete():
        raise DedupError(f"layer {captions!r} of {ds.path} is not finished; finish it first")
    checks_colour = images and colour_check and thumb_distance > 0
    settings = {"images": images, "captions": captions, "radius": radius if images else None,
                "thumb_distance": thumb_distance if images else None,
                # the colour check's constants: a layer made with other ones is not resumed
                "colour_check": colour_settings() if checks_colour else None,
                "threshold": threshold if captions else None, "hash": "phash-64" if images else None}
    try:
        writer = ds.create_layer(out_layer, "caption", producer=PRODUCER, settings=settings)
    except StoreError as exc:
        raise DedupError(str(exc)) from None
    report = DedupReport(dataset=str(ds.path), layer=out_layer, samples=ds.num_samples,
                         settings=settings)
    pending = writer.pending_shards()
    if not pending:
        log(f"layer {out_layer!r} is already complete with these settings")
        report.seconds = round(time.time() - started, 2)
        return report

    # every id of the dataset, sorted: pairs are kept as arrays of ranks into it
    all_ids = sorted(i for shard in ds.shards() for i in ds.shard_ids(shard))
    rank = {id: k for k, id in enumerate(all_ids)}
    lows: list[np.ndarray] = []
    highs: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    scores: list[np.ndarray] = []

    def add_pairs(ids: list[str], i: np.ndarray, j: np.ndarray, s: np.ndarray, kind: int) -> int:
        ranks = np.fromiter((rank[x] for x in ids), dtype=np.int64, count=len(ids))
        lows.append(ranks[i])
        highs.append(ranks[j])
        kinds.append(np.full(len(i), kind, dtype=np.uint8))
        scores.append(s.astype(np.float32))
        return len(i)

    if images:
        named = 0

        def bad_image(id: str, exc: BaseException) -> None:
            nonlocal named
            named += 1
            if named <= _NAMED_ERRORS:
                print(f"vila2-dedup: sample {id!r}: image unreadable ({type(exc).__name__}: {exc}); "
                      "kept, not compared", file=sys.stderr)

        from vila2.progress import progress_bar

        with progress_bar(ds.iter_samples(), total=ds.num_samples, desc="dedup: index images",
                          unit="img", disable=not progress, dynamic_ncols=True) as samples:
            index = index_images(samples, ds.load_image, on_error=bad_image)
        report.images_indexed, report.image_errors = len(index.ids), dict(index.errors)
        report.index_bytes += index.nbytes()
        if progress:
            log(f"dedup: searching {len(index.ids):,} images for near-duplicate pairs")
        i, j, d = index.pair_arrays(radius, thumb_distance, colour_check)
        report.image_pairs = add_pairs(index.ids, i, j, d, KINDS.index("image"))
        del index, i, j, d
    if source is not None:
        rows = ((row["id"], row["text"] if row["kept"] else None) for row in source.iter_rows())
        caption_index = index_captions(rows, threshold=threshold)
        report.captions_indexed = len(caption_index.ids)
        if progress:
            log(f"dedup: searching {len(caption_index.ids):,} captions for near-duplicate pairs")
        report.index_bytes += caption_index.signatures().nbytes
        i, j, s = caption_index.pair_arrays()
        report.caption_pairs = add_pairs(caption_index.ids, i, j, s, KINDS.index("caption"))
        del caption_index, i, j, s
    empty = [np.zeros(0, dtype=np.int64)]
    dropped = decide_ranked(all_ids, np.concatenate(lows or empty), np.concatenate(highs or empty),
                            np.concatenate(kinds or [np.zeros(0, np.uint8)]),
                            np.concatenate(scores or [np.zeros(0, np.float32)]))
    del all_ids
    for table in (rank, lows, highs, kinds, scores):
        table.clear()  # the pairs are decided: free them before writing

    for shard in pending:
        writer.write_shard(shard, list(_rows(ds, shard, source, dropped, report)))
        report.shards_written += 1
    # counts over the whole layer (a resumed run wrote only some shards)
    report.dropped_by_image = sum(d.by == "image" for d in dropped.values())
    report.dropped_by_caption = sum(d.by == "caption" for d in dropped.values())
    report.not_kept_in_source = 0
    report.kept = 0
    for row in ds.layer(out_layer).iter_rows():
        report.kept += bool(row["kept"])
        report.not_kept_in_source += bool(row["meta"].get("not_kept_in"))
    report.seconds = round(time.time() - started, 2)
    return report


def _rows(ds: Any, shard: str, source: Any, dropped: dict[str, Duplicate],
          report: DedupReport) -> Iterator[dict[str, Any]]:
    """The new layer's rows for one shard, in the image shard's order."""
    texts: dict[str, tuple[str, bool]] = {}
    if source is not None:
        texts = {row["id"]: (row["text"], bool(row["kept"])) for row in source.iter_rows([shard])}
    for id in ds.shard_ids(shard):
        text, kept_before = texts[id] if source is not None else ("", True)
        meta: dict[str, Any] = {}
        scores: dict[str, float] = {}
        duplicate = dropped.get(id)
        if duplicate is not None:
            meta.update(duplicate.meta())
            scores["dedup_" + duplicate.by] = duplicate.score
        if not kept_before:
            meta["not_kept_in"] = source.name
        if id in report.image_errors:
            meta["error"] = report.image_errors[id]
        yield {"id": id, "text": text, "kept": kept_before and duplicate is None,
               "scores": scores, "meta": meta}

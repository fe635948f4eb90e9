"""Score a caption layer that already exists, in batches: ``vila2 clipscore score``.

The filters score one caption at a time, as the recaption engine hands them over. A layer
written without them (the world's alt-text, an earlier round's recaptions) is scored here, a
batch of images at a time, into a new layer: the same rows, with ``clipscore`` and
``clipscore_min`` added to each row's stored scores and ``kept`` decided by the earlier filters
and these two. The new layer records both filters among its scored filters, so
``vila2.captioning.filters.rethreshold`` can choose new thresholds from it without a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vila2_clipscore.filters import FILTERS


def score_layer(dataset: Any, layer: str, new_layer: str, clip: str | os.PathLike[str], *,
                thresholds: Mapping[str, float | str | None] | None = None, batch_size: int = 64,
                device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Write ``new_layer``: ``layer``'s rows scored with ``clip``; ``thresholds`` maps
    ``clipscore`` / ``clipscore_min`` to a ``min`` (``None`` or ``"auto"``: the model's
    calibrated one; a filter not in ``thresholds`` is scored but rejects nothing). Returns counts."""
    from vila2.captioning.filters import FilterStep, decide
    from vila2.data import Dataset, StoreError
    from vila2.progress import progress_bar
    from vila2_clipscore.scorer import get_scorer

    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    source = ds.layer(layer)
    if source.kind != "caption":
        raise StoreError(f"layer {layer!r} of {ds.path} is a {source.kind} layer, not a caption layer")
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - {f.name for f in FILTERS})
    if unknown:
        raise ValueError(f"no clipscore filter named {', '.join(unknown)}; use clipscore or clipscore_min")
    scorer = get_scorer(clip, device=device, batch_size=batch_size)
    clip = str(clip)
    specs = [{"name": f.name, "model": clip, **({"min": thresholds[f.name]} if f.name in thresholds else {})}
             for f in FILTERS]
    steps = [FilterStep(f, {"model": clip, "min": thresholds[f.name]}) for f in FILTERS if f.name in thresholds]
    ours = {f.name for f in FILTERS}
    info = source.info
    old_filters = [f for f in info.get("settings", {}).get("filters", []) if f.get("name") not in ours]
    writer = ds.create_layer(
        new_layer, "caption", producer="vila2_clipscore:score", model=info.get("model"),
        model_hash=info.get("model_hash"), round=info.get("round"), prompt_set=info.get("prompt_set"),
        settings={**info.get("settings", {}), "filters": [*old_filters, *specs], "scored_from": layer},
    )
    counts = {"rows": 0, "scored": 0, "kept": 0}
    for shard in progress_bar(writer.pending_shards(), unit="shard", desc=f"clipscore {new_layer}",
                              disable=not progress):
        rows = list(source.iter_rows([shard]))
        images = {s["id"]: s["image"] for s in ds.iter_samples(shards=[shard])}
        todo = [r for r in rows if r["text"] and "error" not in r["meta"]]
        scored: dict[str, Any] = {}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for row, result in zip(chunk, scorer.score_captions([images[r["id"]] for r in chunk],
                                                                [r["text"] for r in chunk]), strict=True):
                scored[row["id"]] = result
        out = []
        for row in rows:
            result = scored.get(row["id"])
            if result is None:  # an empty or failed caption stays as it was
                out.append(row)
                continue
            meta = {k: v for k, v in row["meta"].items() if k != "rejected_by"}
            earlier = [n for n in row["meta"].get("rejected_by", []) if n not in ours]
            # a row dropped for another reason than these filters stays dropped
            dropped = not row["kept"] and not earlier and not row["meta"].get("rejected_by")
            scores = {**row["scores"], "clipscore": result.mean, "clipscore_min": result.min}
            rejected = earlier + decide(steps, scores, f"layer {layer!r} sample {row['id']!r}")
            if rejected:
                meta["rejected_by"] = rejected
            out.append({**row, "scores": scores, "kept": not rejected and not dropped, "meta": meta})
            counts["scored"] += 1
        counts["rows"] += len(out)
        counts["kept"] += sum(1 for r in out if r["kept"])
        writer.write_shard(shard, out)
    return counts


__all__ = ["score_layer"]

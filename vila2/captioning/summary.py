"""What a caption layer holds: counts, kept share, mean words, errors (``CaptionSummary``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: how many failed samples a summary quotes
ERROR_EXAMPLES = 20


@dataclass
class CaptionSummary:
    """What a caption run produced. Counts cover every finished shard of the layer (earlier runs
    included); ``new`` and ``seconds`` cover this call on this process (captioning time, model
    loading excluded)."""

    dataset: str
    layer: str
    complete: bool
    total: int
    captioned: int
    kept: int
    filtered: dict[str, int]
    errors: int
    error_examples: dict[str, str]
    mean_words: float
    new: int
    seconds: float
    shards_done: int = 0
    shards_total: int = 0

    @property
    def images_per_second(self) -> float:
        """Samples captioned per second by this call."""
        return self.new / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "images_per_second": self.images_per_second}

    def __str__(self) -> str:
        state = "complete" if self.complete else f"{self.shards_done}/{self.shards_total} shards"
        lines = [
            f"layer {self.layer!r} of {self.dataset} ({state})",
            f"  captioned  {self.captioned} of {self.total} samples "
            f"({self.new} now, {self.images_per_second:.1f} images/s)",
            f"  kept       {self.kept}, mean {self.mean_words:.1f} words",
        ]
        for name, count in sorted(self.filtered.items()):
            lines.append(f"  filtered   {count} by {name}")
        if self.errors:
            first_id, first_error = next(iter(self.error_examples.items()))
            lines.append(f"  errors     {self.errors} (first: {first_id}: {first_error})")
        return "\n".join(lines)


def summarize(dataset: Any, layer: str, *, new: int = 0, seconds: float = 0.0) -> CaptionSummary:
    """Count what a caption layer holds so far (finished shards only)."""
    from vila2.data import Dataset  # the store sits below captioning

    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    reader = ds.layer(layer)
    done = set(reader.done_shards())
    finished = [s for s in ds.shards() if s in done]
    total = captioned = kept = words = errors = 0
    filtered: dict[str, int] = {}
    examples: dict[str, str] = {}
    for row in reader.iter_rows(finished):
        total += 1
        if "error" in row["meta"]:
            errors += 1
            if len(examples) < ERROR_EXAMPLES:
                examples[row["id"]] = row["meta"]["error"]
            continue
        captioned += 1
        for name in row["meta"].get("rejected_by", ()):
            filtered[name] = filtered.get(name, 0) + 1
        if row["kept"]:
            kept += 1
            words += len(row["text"].split())
    return CaptionSummary(
        dataset=str(ds.path), layer=layer, complete=reader.is_complete(), total=total,
        captioned=captioned, kept=kept, filtered=filtered, errors=errors, error_examples=examples,
        mean_words=words / kept if kept else 0.0, new=new, seconds=seconds,
        shards_done=len(finished), shards_total=len(ds.shards()),
    )

"""The sample store: image shards plus caption layers, and the formats that go in and out.

::

    from vila2.data import Dataset

    ds = Dataset.open("data/pretrain")
    for sample in ds.iter_samples(layers=["original"]):
        image = ds.load_image(sample)          # PIL RGB
        caption = sample["original"]           # None where no caption was kept

    writer = ds.create_layer("recap-r1", "caption", producer="self", model="out/r0", round=1)
    for shard in writer.pending_shards(rank, world_size):
        writer.write_shard(shard, [{"id": i, "text": caption_of(i)} for i in ds.shard_ids(shard)])

Importing this package loads no pyarrow, Pillow or torch; they load when data is touched.
"""

from __future__ import annotations

from typing import Any

from vila2.data.image import DEFAULT_MAX_PIXELS
from vila2.data.layer import LAYER_KINDS, Layer, LayerWriter
from vila2.data.shards import shard_for_rank
from vila2.data.store import Dataset, ImageWriter
from vila2.errors import BadImage, StoreError

_LAZY = {
    "ingest": "vila2.data.ingester",
    "IngestReport": "vila2.data.ingester",
    "export": "vila2.data.exporter",
    "ExportReport": "vila2.data.exporter",
    "export_mixture": "vila2.data.exporter",
}


def __getattr__(name: str) -> Any:
    # ingest/export pull in every input format; load them only when asked for
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vila2.data' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LAYER_KINDS",
    "BadImage",
    "Dataset",
    "ExportReport",
    "ImageWriter",
    "IngestReport",
    "Layer",
    "LayerWriter",
    "StoreError",
    "export",
    "export_mixture",
    "ingest",
    "shard_for_rank",
]

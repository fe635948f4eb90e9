"""The dataset folder: image shards, caption layers and the manifest that lists them.

See ``docs/INTERNALS.md`` ("The sample store") for the on-disk format. A :class:`Dataset` is
cheap to open (it reads ``manifest.json`` only); pixels and texts are read shard by shard, so
memory stays flat however many samples the dataset holds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vila2.data import atomic, manifest
from vila2.data.image import DEFAULT_MAX_PIXELS, open_rgb
from vila2.data.layer import LAYER_KINDS, SAMPLE_KEYS, Layer, LayerWriter, check_layer_name
from vila2.data.provenance import provenance_record
from vila2.data.shards import shard_name
from vila2.errors import StoreError

#: rows per Parquet row group in image shards: bounds the memory of readers and writers
ROW_GROUP = 64


def image_schema() -> Any:
    """The Arrow schema of an image shard."""
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("image", pa.binary()), ("width", pa.int32()),
        ("height", pa.int32()), ("source", pa.string()),
    ])


class Dataset:
    """A vila2 dataset folder. Use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._manifest = manifest.read(self.path)

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, shards={len(self.shards())}, samples={self.num_samples})"

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, **kwargs: Any) -> Dataset:
        """Create an empty dataset at ``path`` (or open the dataset already there).

        A folder that exists, is not empty and is not a dataset is refused, so nothing of the
        user's is ever mixed into a dataset.
        """
        root = Path(path)
        if (root / manifest.NAME).exists():
            return cls(root, **kwargs)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root} exists and is not an empty folder or a vila2 dataset")
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "layers").mkdir(exist_ok=True)
        with manifest.locked(root):
            if not (root / manifest.NAME).exists():
                atomic.write_json(root / manifest.NAME, manifest.empty())
        return cls(root, **kwargs)

    @classmethod
    def open(cls, path: str | Path, **kwargs: Any) -> Dataset:
        """Open an existing dataset; a folder without ``manifest.json`` is an error."""
        root = Path(path)
        if not root.is_dir():
            raise StoreError(f"{root} is not a vila2 dataset (no such folder)")
        return cls(root, **kwargs)

    def refresh(self) -> None:
        """Re-read the manifest (another process may have added shards or layers)."""
        self._manifest = manifest.read(self.path)

    # -- images ----------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as last read (a copy)."""
        return json.loads(json.dumps(self._manifest))

    def shards(self) -> list[str]:
        """Names of the committed image shards, in order."""
        return [entry["name"] for entry in self._manifest["shards"]]

    @property
    def num_samples(self) -> int:
        """Number of samples in all committed image shards."""
        return sum(int(entry["rows"]) for entry in self._manifest["shards"])

    def image_path(self, shard: str) -> Path:
        """The Parquet file of image shard ``shard``."""
        return self.path / "images" / f"{shard}.parquet"

    def _check_shard(self, shard: str) -> None:
        if shard not in self.shards():
            self.refresh()
            if shard not in self.shards():
                raise StoreError(f"{self.path}: no image shard {shard!r} (have {len(self.shards())})")

    def shard_ids(self, shard: str, *, committed: bool = True) -> list[str]:
        """The sample ids of image shard ``shard``, in order (reads the id column only).

        ``committed=False`` also reads a shard that is in place but not yet in the manifest
        (what an :class:`ImageWriter` ``on_shard`` callback sees).
        """
        import pyarrow.parquet as pq

        if committed or not self.image_path(shard).is_file():
            self._check_shard(shard)
        return pq.read_table(self.image_path(shard), columns=["id"]).column("id").to_pylist()

    def writer(
        self,
        shard_size: int = 1000,
        source: str = "",
        *,
        on_shard: Callable[[str, list[str]], Mapping[str, Any] | None] | None = None,
    ) -> ImageWriter:
        """A context manager that appends image shards; see :class:`ImageWriter`."""
        return ImageWriter(self, shard_size=shard_size, source=source, on_shard=on_shard)

    def iter_samples(
        self, shards: Iterable[str] | None = None, layers: Sequence[str] = (), *,
        images: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Yield samples ``{"id", "image", "width", "height", "source", <layer>: text, ...}``.

        Streams one Parquet row group at a time. A layer's value is its text, or ``None`` where
        the row was not kept (filtered out, or no caption at ingest). Every requested layer
        must be finished for the requested shards. ``images=False`` leaves out the image bytes
        (and does not read them), for work on texts only.
        """
        import pyarrow.parquet as pq

        columns = [c for c in SAMPLE_KEYS if images or c != "image"]
        opened = [self.layer(name) for name in layers]
        for shard in self.shards() if shards is None else list(shards):
            self._check_shard(shard)
            texts = [layer.shard_texts(shard) for layer in opened]
            row = 0
            parquet = pq.ParquetFile(self.image_path(shard))
            for batch in parquet.iter_batches(batch_size=ROW_GROUP, columns=columns):
                for sample in batch.to_pylist():
                    for layer, (ids, values) in zip(opened, texts, strict=True):
                        if row >= len(ids) or ids[row] != sample["id"]:
                            raise StoreError(
                                f"{layer.path}/{shard}.parquet is not aligned with its image "
                                f"shard at row {row} (sample {sample['id']!r})"
                            )
                        sample[layer.name] = values[row]
                    row += 1
                    yield sample

    def load_image(self, sample: Mapping[str, Any]) -> Any:
        """Decode a sample's image to a PIL RGB image (at most ``self.max_pixels`` pixels)."""
        return open_rgb(sample["image"], self.max_pixels)

    # -- layers ----------------------------------------------------------------------------------
    def layers(self) -> list[str]:
        """Names of the layers (finished or not), sorted."""
        folder = self.path / "layers"
        return sorted(p.parent.name for p in folder.glob("*/layer.json")) if folder.is_dir() else []

    def layer(self, name: str) -> Layer:
        """Open layer ``name`` for reading."""
        if not (self.path / "layers" / name / "layer.json").is_file():
            known = ", ".join(self.layers()) or "none"
            raise StoreError(f"{self.path}: no layer {name!r} (layers: {known})")
        return Layer(self, name)

    def create_layer(self, name: str, kind: str = "caption", **provenance: Any) -> LayerWriter:
        """Start a new layer, or resume an unfinished one with the same provenance.

        ``provenance``: ``producer`` (plugin or command), ``model`` (folder or hub id),
        ``model_hash`` (computed from a local model folder when left out), ``round``,
        ``prompt_set`` (the prompts drawn from) and ``settings`` (anything else that shaped the
        texts). A finished layer is never rewritten: creating it again with other provenance is
        refused (delete it first); with the same provenance it returns a writer with nothing
        pending.
        """
        check_layer_name(name)
        if kind not in LAYER_KINDS:
            raise StoreError(f"layer {name!r}: kind must be one of {LAYER_KINDS}, got {kind!r}")
        record = provenance_record(name, kind, provenance, root=self.path)
        folder = self.path / "layers" / name

        def register(value: dict[str, Any]) -> None:
            info_path = folder / "layer.json"
            if info_path.is_file():
                existing = json.loads(info_path.read_text())
                if _comparable(existing) != _comparable(record):
                    state = "finished" if Layer(self, name).is_complete() else "unfinished"
                    raise StoreError(
                        f"layer {name!r} in {self.path} already exists ({state}) with other "
                        f"provenance; delete it with delete_layer({name!r}) to rebuild it\n"
                        f"  existing: {json.dumps(_comparable(existing), sort_keys=True)}\n"
                        f"  new:      {json.dumps(_comparable(record), sort_keys=True)}"
                    )
            else:
                folder.mkdir(parents=True, exist_ok=True)
                atomic.write_json(info_path, record)
            value["layers"][name] = {"kind": kind, "producer": record["producer"]}

        manifest.update(self.path, register)
        self.refresh()
        return LayerWriter(self, name)

    def delete_layer(self, name: str) -> None:
        """Delete layer ``name`` and all its shards (the only way a layer goes away)."""
        folder = self.layer(name).path

        def unregister(value: dict[str, Any]) -> None:
            value["layers"].pop(name, None)
            # rename first: a kill mid-delete leaves a hidden folder, never a half layer
            doomed = folder.with_name(f".deleted-{name}")
            shutil.rmtree(doomed, ignore_errors=True)
            folder.rename(doomed)
            shutil.rmtree(doomed)

        manifest.update(self.path, unregister)
        self.refresh()


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    # JSON round trip so tuples and lists compare equal; "created" is not provenance
    return {k: v for k, v in json.loads(json.dumps(record)).items() if k != "created"}


class ImageWriter:
    """Appends image shards to a dataset; use as ``with ds.writer(...) as w: w.add(...)``.

    Sample ids must be unique across the dataset (``id in writer`` tells). Rows stream into a
    temporary Parquet file one row group at a time; every ``shard_size`` rows the file is
    renamed into ``images/`` and listed in the manifest, so a kill loses at most the shard
    being written. ``on_shard(name, ids)`` runs after a shard is in place and
    before the manifest lists it (write aligned layer shards there); a mapping it returns is
    stored in the shard's manifest entry. Leaving the block commits the last, shorter shard.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        shard_size: int = 1000,
        source: str = "",
        on_shard: Callable[[str, list[str]], Mapping[str, Any] | None] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.dataset = dataset
        self.shard_size = shard_size
        self.source = source
        self.on_shard = on_shard
        self.shards_written = 0
        self.samples_written = 0
        self._rows: list[dict[str, Any]] = []
        self._ids: list[str] = []
        self._seen: set[str] = set()
        self._parquet: Any = None
        self._tmp: Path | None = None

    def __enter__(self) -> ImageWriter:
        self._discard_uncommitted()
        for shard in self.dataset.shards():
            self._seen.update(self.dataset.shard_ids(shard))
        return self

    def __contains__(self, id: object) -> bool:
        """Whether the dataset already holds (or this writer was given) sample ``id``."""
        return id in self._seen

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._abandon()

    def _discard_uncommitted(self) -> None:
        # image files and layer shards past the manifest's last shard come from a killed writer
        ds = self.dataset
        ds.refresh()
        committed = set(ds.shards())
        atomic.remove_stale_temps(ds.path / "images")
        for path in (ds.path / "images").glob("*.parquet"):
            if path.stem not in committed:
                path.unlink()
        for folder in (ds.path / "layers").glob("*"):
            for path in [*folder.glob("*.parquet"), *folder.glob("*.done")]:
                if path.stem not in committed:
                    path.unlink()

    def add(
        self, id: str, image: bytes, width: int, height: int, source: str | None = None
    ) -> None:
        """Append one sample (encoded PNG/JPEG bytes and their size in pixels); ids are unique."""
        if not isinstance(id, str) or not id:
            raise StoreError(f"sample id must be a non-empty string, got {id!r}")
        if id in self._seen:
            raise StoreError(f"{self.dataset.path}: duplicate sample id {id!r}")
        self._seen.add(id)
        self._rows.append({"id": id, "image": bytes(image), "width": int(width),
                           "height": int(height), "source": self.source if source is None else source})
        self._ids.append(id)
        if len(self._rows) >= ROW_GROUP:
            self._write_rows()
        if len(self._ids) >= self.shard_size:
            self.flush()

    def _write_rows(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            name = shard_name(len(self.dataset.shards()))
            self._tmp = atomic.temp_path(self.dataset.image_path(name))
            self._parquet = pq.ParquetWriter(self._tmp, image_schema(), compression="zstd")
        self._parquet.write_table(pa.Table.from_pylist(self._rows, schema=image_schema()))
        self._rows = []

    def flush(self) -> str | None:
        """Commit the rows added so far as a shard (if any); return its name."""
        if not self._ids:
            return None
        if self._rows:
            self._write_rows()
        ds = self.dataset
        name = shard_name(len(ds.shards()))
        self._parquet.close()
        self._parquet = None
        assert self._tmp is not None
        path = ds.image_path(name)
        atomic.commit(self._tmp, path)
        self._tmp = None
        ids, self._ids = self._ids, []
        extra = dict(self.on_shard(name, ids) or {}) if self.on_shard else {}
        entry = {**extra, "name": name, "rows": len(ids), "sha256": atomic.sha256_file(path)}

        def append(value: dict[str, Any]) -> None:
            if [s["name"] for s in value["shards"]] != ds.shards():
                raise StoreError(f"{ds.path}: another process added image shards meanwhile")
            value["shards"].append(entry)

        manifest.update(ds.path, append)
        ds.refresh()
        self.shards_written += 1
        self.samples_written += len(ids)
        return name

    def _abandon(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._rows, self._ids = [], []

    @property
    def counts(self) -> dict[str, int]:
        """``{"shards": ..., "samples": ...}`` written by this writer."""
        return {"shards": self.shards_written, "samples": self.samples_written}

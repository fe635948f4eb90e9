"""Caption and conversation layers: texts keyed by sample id, one shard per image shard.

A layer shard holds exactly the ids of its image shard, in the same order, so reading a layer
next to its images is a positional zip. A shard is finished when its ``.done`` marker exists;
the marker is written after the shard's atomic rename, and the layer is finished when every
image shard has one. Because each rank writes only its own shards and markers, many processes can
write one layer at once without sharing a mutable file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from vila2.data import atomic
from vila2.data.shards import shard_for_rank
from vila2.errors import StoreError


class ImageShards(Protocol):
    """What a layer needs of its dataset (``vila2.data.Dataset``): the folder and its image
    shards. A protocol, so the store imports layers and not the other way round."""

    path: Path

    def refresh(self) -> None: ...

    def shards(self) -> list[str]: ...

    def shard_ids(self, shard: str, *, committed: bool = True) -> list[str]: ...

LAYER_KINDS = ("caption", "conversation")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: the columns of an image shard, hence the keys of every sample: no layer may take these names
SAMPLE_KEYS = ("id", "image", "width", "height", "source")
LAYER_COLUMNS = ("id", "text", "kept", "scores", "prompt", "meta")


def layer_schema() -> Any:
    """The Arrow schema of a layer shard."""
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("kept", pa.bool_()),
        ("scores", pa.string()), ("prompt", pa.string()), ("meta", pa.string()),
    ])


def check_layer_name(name: str) -> None:
    """Refuse a layer name that is not a plain folder name or that shadows a sample key."""
    if not isinstance(name, str) or not _NAME.match(name) or name in SAMPLE_KEYS:
        raise StoreError(f"bad layer name {name!r}: letters, digits, '_', '-', '.' only, "
                         f"not one of {', '.join(SAMPLE_KEYS)}")


def _as_json(value: Any, what: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        json.loads(value)  # must already be JSON
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError as exc:
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from None


class Layer:
    """Read access to one layer of a dataset (``ds.layer(name)``)."""

    def __init__(self, dataset: ImageShards, name: str) -> None:
        self.dataset = dataset
        self.name = name
        self.path = dataset.path / "layers" / name
        self.info: dict[str, Any] = json.loads((self.path / "layer.json").read_text())

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, kind={self.kind!r}, complete={self.is_complete()})"

    @property
    def kind(self) -> str:
        """``caption`` or ``conversation``."""
        return str(self.info["kind"])

    def shard_path(self, shard: str) -> Path:
        """The Parquet file of this layer's shard ``shard``."""
        return self.path / f"{shard}.parquet"

    def done_shards(self) -> list[str]:
        """Shards whose completion marker exists, sorted."""
        return sorted(p.stem for p in self.path.glob("*.done"))

    def is_complete(self) -> bool:
        """True when every image shard of the dataset has a finished layer shard."""
        self.dataset.refresh()
        shards = self.dataset.shards()
        return bool(shards) and set(shards) <= set(self.done_shards())

    def _require(self, shard: str) -> Path:
        if not (self.path / f"{shard}.done").is_file():
            raise StoreError(f"layer {self.name!r} has no finished shard {shard!r} in {self.path}")
        return self.shard_path(shard)

    def iter_rows(self, shards: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield rows ``{"id", "text", "kept", "scores": dict, "prompt", "meta": dict, "shard"}``."""
        import pyarrow.parquet as pq

        for shard in self.dataset.shards() if shards is None else list(shards):
            table = pq.read_table(self._require(shard), columns=list(LAYER_COLUMNS))
            for row in table.to_pylist():
                row["scores"] = json.loads(row["scores"] or "{}")
                row["meta"] = json.loads(row["meta"] or "{}")
                row["shard"] = shard
                yield row

    def shard_texts(self, shard: str) -> tuple[list[str], list[str | None]]:
        """``(ids, texts)`` of one shard, with ``None`` for rows that were not kept."""
        import pyarrow.parquet as pq

        table = pq.read_table(self._require(shard), columns=["id", "text", "kept"])
        ids = table.column("id").to_pylist()
        texts = [t if k else None for t, k in zip(table.column("text").to_pylist(),
                                                   table.column("kept").to_pylist(), strict=True)]
        return ids, texts

    def texts(self, shards: Iterable[str] | None = None) -> dict[str, str]:
        """``{id: text}`` for the kept rows."""
        out: dict[str, str] = {}
        for shard in self.dataset.shards() if shards is None else list(shards):
            ids, texts = self.shard_texts(shard)
            out.update((i, t) for i, t in zip(ids, texts, strict=True) if t is not None)
        return out


class LayerWriter(Layer):
    """Writes the shards of a layer (``ds.create_layer(...)``); resumable and rank-safe."""

    def pending_shards(self, rank: int = 0, world_size: int = 1) -> list[str]:
        """This rank's shards that are not finished yet (shard *i* goes to rank *i* % world_size)."""
        self.dataset.refresh()
        done = set(self.done_shards())
        mine = shard_for_rank(self.dataset.shards(), rank, world_size)
        return [shard for shard in mine if shard not in done]

    def write_shard(self, shard: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write one finished shard: temp file, rename, then the ``.done`` marker.

        ``rows`` must hold the image shard's ids in its order; each row has ``id`` and ``text``
        and optionally ``kept`` (default True), ``scores`` (filter -> score), ``prompt`` and
        ``meta`` (dicts or JSON strings). A finished shard is never rewritten.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        done = self.path / f"{shard}.done"
        if done.exists():
            raise StoreError(f"layer {self.name!r} shard {shard!r} is already finished ({done})")
        expected = self.dataset.shard_ids(shard, committed=False)
        got = [row.get("id") for row in rows]
        if got != expected:
            raise StoreError(_misalignment(self.name, shard, expected, got))
        records = []
        for row in rows:
            where = f"layer {self.name!r} shard {shard!r} sample {row['id']!r}"
            text = row.get("text")
            if not isinstance(text, str):
                raise StoreError(f"{where}: text must be a string, got {type(text).__name__}")
            records.append({
                "id": row["id"], "text": text, "kept": bool(row.get("kept", True)),
                "scores": _as_json(row.get("scores"), f"{where} scores"),
                "prompt": str(row.get("prompt") or ""),
                "meta": _as_json(row.get("meta"), f"{where} meta"),
            })
        path = self.shard_path(shard)
        atomic.remove_stale_temps(self.path)
        with atomic.writing(path) as tmp:
            pq.write_table(pa.Table.from_pylist(records, schema=layer_schema()), tmp,
                           compression="zstd")
        atomic.write_json(done, {"rows": len(records), "sha256": atomic.sha256_file(path)})


def _misalignment(name: str, shard: str, expected: list[str], got: list[Any]) -> str:
    head = f"layer {name!r} shard {shard!r}: rows must be the image shard's ids in order"
    if len(expected) != len(got):
        return f"{head} ({len(got)} rows given, the image shard has {len(expected)})"
    row = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
    return f"{head}; row {row} is {got[row]!r}, expected {expected[row]!r}"

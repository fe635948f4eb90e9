"""Parquet files and Hugging Face ``datasets`` folders (``save_to_disk`` Arrow files).

The image column may hold encoded bytes, ``{"bytes": ..., "path": ...}`` structs (the
``datasets.Image`` feature) or paths relative to the file's folder. Columns are found by their
usual names unless given: image (``image``, ``img``, ``jpg``, ``png``...), id (``id``, ``key``...),
caption (``caption``, ``text``, ``txt``...), ``conversations`` and ``url``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vila2.data.sources import Candidate, read_limited
from vila2.errors import StoreError

IMAGE_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp", "image_bytes", "images")
ID_NAMES = ("id", "key", "sample_id", "uid")
CAPTION_NAMES = ("caption", "text", "txt", "alt_text", "alt", "TEXT", "description")
URL_NAMES = ("url", "URL", "image_url")
BATCH = 64


def _pick(columns: Sequence[str], given: str | None, names: Sequence[str], what: str,
          where: Path) -> str | None:
    if given is not None:
        if given not in columns:
            raise StoreError(f"{where}: no {what} column {given!r} (columns: {', '.join(columns)})")
        return given
    return next((name for name in names if name in columns), None)


def _arrow_batches(path: Path, columns: list[str]) -> Iterator[Any]:
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i).select(columns)
        return
    for batch in reader:
        yield batch.select(columns)


def _columns(path: Path) -> tuple[list[str], int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        meta = pq.ParquetFile(path)
        return meta.schema_arrow.names, meta.metadata.num_rows
    # memory-mapped: counting rows does not pull the images into memory
    try:
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
    except pa.ArrowInvalid:
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    return table.column_names, table.num_rows


@dataclass
class ParquetSource:
    """Rows of Parquet or Arrow files, read a batch at a time."""

    files: list[Path]
    root: Path
    image: str
    id: str | None
    caption: str | None
    conversation: str | None
    url: str | None
    image_root: Path | None
    total: int
    broken: dict[Path, str] = field(default_factory=dict)
    format: str = "parquet"

    @property
    def captions(self) -> bool:
        return self.caption is not None

    @property
    def conversations(self) -> bool:
        return self.conversation is not None

    def __iter__(self) -> Iterator[Candidate]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = [c for c in (self.image, self.id, self.caption, self.conversation, self.url) if c]
        for file in self.files:
            name = file.relative_to(self.root).as_posix() if file != self.root else file.name
            if file in self.broken:
                yield Candidate(None, name, problem=("corrupt file", self.broken[file]))
                continue
            row = 0
            try:
                if file.suffix == ".parquet":
                    batches = pq.ParquetFile(file).iter_batches(batch_size=BATCH, columns=wanted)
                else:
                    batches = _arrow_batches(file, wanted)
                for batch in batches:
                    for record in batch.to_pylist():
                        yield self._candidate(file, name, row, record)
                        row += 1
            except (pa.ArrowException, OSError) as exc:
                # the rows before the damage are in; the rest of this file is lost, the others not
                yield Candidate(None, f"{name}[{row}:]", problem=("corrupt file", str(exc)))

    def _candidate(self, file: Path, name: str, row: int, record: dict[str, Any]) -> Candidate:
        where = f"{name}[{row}]"
        ident = record.get(self.id) if self.id else f"{Path(name).with_suffix('').as_posix()}-{row}"
        conversations = record.get(self.conversation) if self.conversation else None
        if isinstance(conversations, str):
            # left as a string when it is not JSON: the ingester reports bad conversations
            with contextlib.suppress(json.JSONDecodeError):
                conversations = json.loads(conversations)
        url = record.get(self.url) if self.url else None
        candidate = Candidate(None if ident is None else str(ident), where,
                              caption=record.get(self.caption) if self.caption else None,
                              conversations=conversations,
                              origin=url if isinstance(url, str) and url else where)
        value = record.get(self.image)
        if isinstance(value, list):
            if len(value) != 1:
                candidate.problem = ("several images", f"{len(value)} images in column {self.image!r}")
                return candidate
            value = value[0]
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            candidate.image = bytes(value)
        elif isinstance(value, str) and value:
            base = (self.image_root or file.parent).resolve()
            path = (base / value).resolve()
            candidate.origin = value
            if not path.is_relative_to(base):
                candidate.problem = ("unsafe image path", f"{value!r} leaves {base}")
            elif not path.is_file():
                candidate.problem = ("missing image", f"no file {path}")
            else:
                data = read_limited(path)
                if isinstance(data, tuple):
                    candidate.problem = data
                else:
                    candidate.image = data
        else:
            candidate.problem = ("missing image", f"column {self.image!r} is empty")
        return candidate


def _files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    state = src / "state.json"
    if state.is_file():  # datasets.save_to_disk: Arrow files in the order state.json lists
        names = [entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
        return [src / name for name in names]
    return sorted(src.rglob("*.parquet")) or sorted(src.rglob("*.arrow"))


def open(src: Path, image_column: str | None = None, id_column: str | None = None,
         caption_column: str | None = None, image_root: str | Path | None = None) -> ParquetSource:
    """Open a Parquet/Arrow file or a folder of them; columns are checked on every file."""
    import pyarrow as pa

    files = _files(src)
    if not files:
        raise StoreError(f"no .parquet or .arrow files in {src}")
    schemas: dict[Path, list[str]] = {}
    broken: dict[Path, str] = {}
    total = 0
    for file in files:
        try:
            schemas[file], rows = _columns(file)
            total += rows
        except (pa.ArrowException, OSError) as exc:
            broken[file] = f"not a readable Parquet/Arrow file: {exc}"
    if not schemas:
        raise StoreError(f"{src}: no readable Parquet/Arrow file ({next(iter(broken.values()))})")
    first, columns = next(iter(schemas.items()))
    image = _pick(columns, image_column, IMAGE_NAMES, "image", first)
    if image is None:
        raise StoreError(f"{first}: no image column (looked for {', '.join(IMAGE_NAMES)}; "
                         f"columns: {', '.join(columns)}); pass --image-column")
    for file, names in schemas.items():
        if image not in names:
            raise StoreError(f"{file}: no image column {image!r} (columns: {', '.join(names)})")
    return ParquetSource(
        files=files, root=src if src.is_dir() else src.parent, image=image,
        id=_pick(columns, id_column, ID_NAMES, "id", first),
        caption=_pick(columns, caption_column, CAPTION_NAMES, "caption", first),
        conversation="conversations" if "conversations" in columns else None,
        url=_pick(columns, None, URL_NAMES, "url", first),
        image_root=Path(image_root) if image_root is not None else None,
        total=total + len(broken), broken=broken,
    )

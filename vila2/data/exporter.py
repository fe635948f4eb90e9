"""Export: a training mixture of dataset layers, as LLaVA JSON + images or as Parquet.

The conversations are exactly what training sees: each entry goes through
:func:`vila2.data.mixture.entry_examples` (templates ``concat``, ``replace``, ``qa``,
``conversation``). Output formats:

* ``llava``: ``OUT/data.json`` (a list of ``{"id", "image", "conversations"}``) and
  ``OUT/images/<entry>/<id>.jpg|png``, the layout LLaVA-style trainers read with
  ``--image_folder OUT``;
* ``parquet``: ``OUT/data-00000.parquet``... with columns ``id``, ``image``
  (``{"bytes", "path"}``) and ``conversations``, plus the ``datasets`` feature metadata, so
  ``datasets.load_dataset("parquet", data_dir=OUT)`` decodes ``image`` to PIL.

Files are written under temporary names and renamed at the end; an export that did not finish
leaves no ``data.json`` / ``data-*.parquet`` behind.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vila2.data import atomic
from vila2.errors import StoreError

EXPORT_FORMATS = ("llava", "parquet")
ROWS_PER_FILE = 1000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: characters of a sample id kept in its file name (file systems allow 255 bytes a name)
_MAX_STEM = 120
_HF_STRING = {"dtype": "string", "_type": "Value"}
#: ``datasets`` feature metadata: ``image`` is an Image feature, decoded to PIL on access
HF_FEATURES = {"info": {"features": {
    "id": _HF_STRING,
    "image": {"_type": "Image"},
    "conversations": {"feature": {"from": _HF_STRING, "value": _HF_STRING}, "_type": "List"},
}}}


@dataclass
class ExportReport:
    """What an export wrote."""

    out: str
    format: str
    examples: int
    skipped: int
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        return (f"exported {self.examples} examples as {self.format} to {self.out} "
                f"({self.skipped} samples skipped: no usable text, or sampled out by weight)")


def file_stem(sample_id: str) -> str:
    """A file name for a sample id: safe characters only, short enough for any file system,
    unique even when characters changed or were cut."""
    stem = _UNSAFE.sub("_", sample_id)
    if stem != sample_id or stem.startswith(".") or len(stem) > _MAX_STEM:
        stem = f"{stem.lstrip('.')[:_MAX_STEM]}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"
    return stem


def _extension(image: bytes) -> str:
    return ".jpg" if image[:3] == b"\xff\xd8\xff" else ".png"


def export(
    dataset: str | Path,
    out: str | Path,
    *,
    layers: Sequence[str],
    template: str | None = None,
    format: str = "llava",
    prompt: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ExportReport:
    """Export layers of one dataset. ``template`` defaults to ``conversation`` for a conversation
    layer and ``concat`` for caption layers (original + recaption)."""
    if template is None:
        from vila2.data.store import Dataset

        kinds = {Dataset.open(dataset).layer(name).kind for name in layers}
        template = "conversation" if kinds == {"conversation"} else "concat"
    entry = {"dataset": str(dataset), "layers": list(layers), "template": template,
             "prompt": prompt}
    return export_mixture([entry], out, format=format, seed=seed, progress=progress)


def export_mixture(
    mixture: Sequence[Mapping[str, Any]],
    out: str | Path,
    *,
    format: str = "llava",
    seed: int = 0,
    progress: bool = True,
) -> ExportReport:
    """Export every entry of a training mixture (see :mod:`vila2.data.mixture`) to ``out``."""
    from vila2.data.mixture import MixtureEntry, entry_examples
    from vila2.data.store import Dataset
    from vila2.progress import progress_bar

    if format not in EXPORT_FORMATS:
        raise StoreError(f"unknown export format {format!r}; choose {' or '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StoreError(f"{out} exists and is not empty; export into a new folder")
    entries = [MixtureEntry.parse(e, f"mixture entry {i}") for i, e in enumerate(mixture)]
    total = sum(Dataset.open(e.dataset).num_samples for e in entries)
    out.mkdir(parents=True, exist_ok=True)
    sink = _Llava(out) if format == "llava" else _Parquet(out)
    seen = 0
    bar = progress_bar(total=total, unit="sample", desc=f"export {format}", disable=not progress)
    try:
        for index, entry in enumerate(entries):
            folder = f"{index}-{file_stem(Path(entry.dataset).name)}"
            last = None
            for example in entry_examples(entry, seed=seed):
                if example["id"] != last:  # a weighted entry repeats a sample back to back
                    seen += 1
                    bar.update(1)
                    last = example["id"]
                sink.add(folder, example)
        files = sink.close()
    except BaseException:
        sink.abandon()
        raise
    finally:
        bar.close()
    return ExportReport(out=str(out), format=format, examples=sink.count,
                        skipped=total - seen, files=files)


class _Llava:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / "data.json"
        self.tmp = atomic.temp_path(self.path)
        self.file = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115  (closed in close())
        self.file.write("[")
        self.count = 0

    def add(self, folder: str, example: Mapping[str, Any]) -> None:
        relative = f"images/{folder}/{file_stem(example['id'])}{_extension(example['image'])}"
        image = self.out / relative
        if not image.exists():
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(example["image"])
        record = {"id": example["id"], "image": relative, "conversations": example["conversations"]}
        self.file.write(("\n  " if self.count == 0 else ",\n  ") + json.dumps(record, ensure_ascii=False))
        self.count += 1

    def close(self) -> list[str]:
        self.file.write("\n]\n")
        self.file.close()
        atomic.commit(self.tmp, self.path)
        return [str(self.path)]

    def abandon(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class _Parquet:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = 0
        self.rows: list[dict[str, Any]] = []
        self.done: list[tuple[Path, Path]] = []

    def add(self, folder: str, example: Mapping[str, Any]) -> None:
        path = f"{folder}/{file_stem(example['id'])}{_extension(example['image'])}"
        self.rows.append({"id": example["id"], "image": {"bytes": example["image"], "path": path},
                          "conversations": example["conversations"]})
        self.count += 1
        if len(self.rows) >= ROWS_PER_FILE:
            self._write()

    def _write(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        turn = pa.struct([("from", pa.string()), ("value", pa.string())])
        schema = pa.schema(
            [("id", pa.string()),
             ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
             ("conversations", pa.list_(turn))],
            metadata={"huggingface": json.dumps(HF_FEATURES)},
        )
        final = self.out / f"data-{len(self.done):05d}.parquet"
        tmp = atomic.temp_path(final)
        pq.write_table(pa.Table.from_pylist(self.rows, schema=schema), tmp, compression="zstd")
        self.done.append((tmp, final))
        self.rows = []

    def close(self) -> list[str]:
        if self.rows or not self.done:
            self._write()
        # renamed only once all are written: a half export is never mistaken for a whole one
        for tmp, final in self.done:
            atomic.commit(tmp, final)
        return [str(final) for _, final in self.done]

    def abandon(self) -> None:
        for tmp, _ in self.done:
            tmp.unlink(missing_ok=True)

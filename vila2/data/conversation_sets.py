"""Conversation sets that specialists train on: a dataset folder with a ``conversations`` layer,
taken as it is, ingested from LLaVA conversation JSON, or the embedded world's domain set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

LAYER = "conversations"


def checked_conversations(folder: Path, domain: str) -> str:
    """``folder`` if it is a dataset with a finished, non-empty ``conversations`` layer."""
    from vila2.data.store import Dataset
    from vila2.errors import StoreError

    dataset = Dataset.open(folder)
    if LAYER not in dataset.layers():
        raise StoreError(f"{folder}: the {domain} specialist needs a {LAYER!r} layer of "
                         f"LLaVA conversations; layers: {', '.join(dataset.layers()) or 'none'}")
    layer = dataset.layer(LAYER)
    if layer.kind != "conversation" or not layer.is_complete():
        raise StoreError(f"{folder}: layer {LAYER!r} must be a finished conversation layer "
                         f"(kind {layer.kind!r}, finished: {layer.is_complete()})")
    if not layer.texts():
        raise StoreError(f"{folder}: layer {LAYER!r} holds no usable conversation")
    return str(folder)


def ingest_llava(source: Path, out_dir: Path, domain: str, *, image_root: Path | None = None) -> Path:
    """Ingest LLaVA conversation JSON into ``out_dir/<domain>-data`` (resumes a stopped ingest)."""
    from vila2.data.ingester import ingest
    from vila2.errors import StoreError

    out = out_dir / f"{domain}-data"
    report = ingest(source, out, format="llava", image_root=image_root, progress=False)
    if not report.kept:
        raise StoreError(f"{source}: no usable sample for the {domain} specialist; "
                         f"see {out / 'rejects.jsonl'}")
    return out


def prepare_conversations(
    domain: str, source: str | None, world: str | None, out_dir: str,
    *, from_llava: Callable[[Path, Path], Path] | None = None,
) -> str:
    """The dataset folder a specialist of ``domain`` is fine-tuned on.

    ``source`` is a vila2 dataset folder (used as it is), LLaVA conversation JSON/JSONL or a folder
    holding one (ingested with ``from_llava(source, out_dir)``, by default :func:`ingest_llava`),
    or ``None`` for the embedded world's ``<world>/<domain>`` set.
    """
    from vila2.errors import StoreError

    if source is None:
        if world is None:
            raise StoreError(f"the {domain} specialist has no training data: give a dataset "
                             "folder or LLaVA JSON as its source, or run on the embedded world")
        return checked_conversations(Path(world) / domain, domain)
    path = Path(source)
    if (path / "manifest.json").is_file():
        return checked_conversations(path, domain)
    if path.is_dir() or path.suffix.lower() in {".json", ".jsonl"}:
        convert = from_llava or (lambda src, out: ingest_llava(src, out, domain))
        return checked_conversations(convert(path, Path(out_dir)), domain)
    raise StoreError(f"{source}: the {domain} specialist's source must be a vila2 dataset folder "
                     "or LLaVA conversation JSON (a .json/.jsonl file, or a folder holding one)")

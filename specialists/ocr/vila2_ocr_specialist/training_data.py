"""The OCR specialist's training data: a dataset folder with a ``conversations`` layer.

``source`` (a recipe's ``data.specialists.ocr``) is one of:

* a vila2 dataset folder, used as it is;
* LLaVA conversation JSON / JSONL (images relative to its folder) — OCR-VQA or TextCaps-style
  question–answer data, as LLaVA's training mix ships it — or a folder holding one such file and
  its images: ingested into ``out_dir`` by the store's ingest, which checks every image and
  records what it skips in ``rejects.jsonl``;
* ``None``: the embedded world's OCR set, ``<world>/ocr``.
"""

from __future__ import annotations

from pathlib import Path

DOMAIN = "ocr"
LAYER = "conversations"


def checked(folder: Path) -> str:
    """``folder`` if it is a dataset with a finished conversation layer ``conversations``."""
    from vila2.data import Dataset, StoreError

    dataset = Dataset.open(folder)
    if LAYER not in dataset.layers():
        raise StoreError(f"{folder}: the {DOMAIN} specialist needs a {LAYER!r} layer of "
                         f"LLaVA conversations; layers: {', '.join(dataset.layers()) or 'none'}")
    layer = dataset.layer(LAYER)
    if layer.kind != "conversation" or not layer.is_complete():
        raise StoreError(f"{folder}: layer {LAYER!r} must be a finished conversation layer "
                         f"(kind {layer.kind!r}, finished: {layer.is_complete()})")
    if not layer.texts():
        raise StoreError(f"{folder}: layer {LAYER!r} holds no usable conversation")
    return str(folder)


def from_llava(source: Path, out_dir: Path) -> Path:
    """Ingest LLaVA conversation JSON into ``out_dir/<domain>-data`` (resumes a stopped ingest)."""
    from vila2.data import StoreError, ingest

    out = out_dir / f"{DOMAIN}-data"
    report = ingest(source, out, format="llava", progress=False)
    if not report.kept:
        raise StoreError(f"{source}: no usable sample for the {DOMAIN} specialist; "
                         f"see {out / 'rejects.jsonl'}")
    return out


def prepare_data(source: str | None, world: str | None, out_dir: str) -> str:
    """The dataset folder the OCR specialist is fine-tuned on (see the module docstring)."""
    from vila2.data import StoreError

    if source is None:
        if world is None:
            raise StoreError(f"the {DOMAIN} specialist has no training data: give a dataset "
                             "folder or LLaVA JSON as its source, or run on the embedded world")
        return checked(Path(world) / DOMAIN)
    path = Path(source)
    if (path / "manifest.json").is_file():
        return checked(path)
    if path.is_dir() or path.suffix.lower() in {".json", ".jsonl"}:
        return checked(from_llava(path, Path(out_dir)))
    raise StoreError(f"{source}: the {DOMAIN} specialist's source must be a vila2 dataset folder "
                     "or LLaVA conversation JSON (a .json/.jsonl file, or a folder holding one)")

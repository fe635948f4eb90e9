"""LLaVA conversation JSON (or JSONL) plus an image folder.

Each entry is ``{"id", "image": "relative/path.jpg", "conversations": [{"from", "value"}...]}``
as in LLaVA's training files; image paths are relative to ``image_root`` (by default the
folder of the JSON file) and may not leave it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vila2.data.sources import Candidate, read_limited
from vila2.errors import StoreError


@dataclass
class LlavaJson:
    """Entries of one LLaVA JSON file, with images under ``root``."""

    path: Path
    root: Path
    entries: list[Any]
    format: str = "llava"
    captions: bool = False
    conversations: bool = True

    @property
    def total(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Candidate]:
        root = self.root.resolve()
        for index, entry in enumerate(self.entries):
            where = f"{self.path.name}[{index}]"
            if not isinstance(entry, dict):
                yield Candidate(None, where, problem=("bad entry", f"{type(entry).__name__}, not an object"))
                continue
            image = entry.get("image")
            ident = entry.get("id", image if isinstance(image, str) else None)
            candidate = Candidate(None if ident is None else str(ident), where,
                                  conversations=entry.get("conversations"),
                                  meta={k: v for k, v in entry.items()
                                        if k not in {"id", "image", "conversations"}})
            if isinstance(image, list):
                if len(image) != 1:
                    candidate.problem = ("several images", f"{len(image)} images in one entry")
                    yield candidate
                    continue
                image = image[0]
            if not isinstance(image, str) or not image:
                candidate.problem = ("missing image", "entry has no \"image\" (text-only sample)")
                yield candidate
                continue
            file = (root / image).resolve()
            candidate.origin = image
            if not file.is_relative_to(root):
                candidate.problem = ("unsafe image path", f"{image!r} leaves {root}")
            elif not file.is_file():
                candidate.problem = ("missing image", f"no file {file}")
            else:
                data = read_limited(file)
                if isinstance(data, tuple):
                    candidate.problem = data
                else:
                    candidate.image = data
            yield candidate


def read_entries(path: Path) -> list[Any]:
    """The entries of a LLaVA JSON (a list) or JSONL file; bad JSON is an error naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is not UTF-8: {exc}") from None
    if path.suffix.lower() == ".jsonl":
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise StoreError(f"{path} line {number} is not valid JSON: {exc}") from None
        return entries
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise StoreError(f"{path}: a LLaVA file holds a JSON list of entries, got {type(value).__name__}")
    return value


def open(src: Path, image_root: str | Path | None = None) -> LlavaJson:
    """Open a LLaVA JSON/JSONL file, or the single one in a folder."""
    if src.is_dir():
        found = sorted(p for p in src.iterdir() if p.suffix.lower() in {".json", ".jsonl"})
        if len(found) != 1:
            raise StoreError(f"{src}: expected one LLaVA .json/.jsonl file, found {len(found)}; "
                             "pass the file itself")
        src = found[0]
    root = Path(image_root) if image_root is not None else src.parent
    if not root.is_dir():
        raise StoreError(f"image root {root} is not a folder")
    return LlavaJson(src, root, read_entries(src))

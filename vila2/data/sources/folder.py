"""A plain folder of images, with optional sidecar ``NAME.txt`` captions and ``NAME.json`` metadata.

Every file that is not a sidecar is a candidate image, so stray files (notes, archives, 0-byte
files) show up in ``rejects.jsonl`` rather than vanishing. The id is the path relative to the
folder without its extension.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vila2.data.sources import Candidate, read_limited
from vila2.errors import StoreError

SIDECARS = (".txt", ".json")


@dataclass
class ImageFolder:
    """The files of a folder tree, sorted."""

    root: Path
    files: list[Path]
    captions: bool
    orphans: list[Path] = field(default_factory=list)
    format: str = "folder"
    conversations: bool = False

    @property
    def total(self) -> int:
        return len(self.files) + len(self.orphans)

    def __iter__(self) -> Iterator[Candidate]:
        for file in self.files:
            relative = file.relative_to(self.root)
            where = relative.as_posix()
            candidate = Candidate(relative.with_suffix("").as_posix(), where, origin=where)
            if file.is_symlink():
                candidate.problem = ("not a regular file", "symbolic link")
                yield candidate
                continue
            data = read_limited(file)
            if isinstance(data, tuple):
                candidate.problem = data
                yield candidate
                continue
            candidate.image = data
            caption = file.with_suffix(".txt")
            if caption.is_file():
                candidate.caption = caption.read_bytes()
            meta = file.with_suffix(".json")
            if meta.is_file():
                try:
                    candidate.meta = {"json": json.loads(meta.read_text(encoding="utf-8"))}
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    candidate.meta = {"json_error": f"{meta.name}: {exc}"}
            yield candidate
        for orphan in self.orphans:
            where = orphan.relative_to(self.root).as_posix()
            yield Candidate(orphan.relative_to(self.root).with_suffix("").as_posix(), where,
                            problem=("missing image", "caption file without an image"))


def open(src: Path) -> ImageFolder:
    """List the files under ``src``; hidden files and folders (``.DS_Store``, ``.git``) are not
    samples and are left out."""
    if not src.is_dir():
        raise StoreError(f"{src} is not a folder")
    files: list[Path] = []
    captions: list[Path] = []
    for folder, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith("."):
                continue
            if path.suffix.lower() in SIDECARS:
                if path.suffix.lower() == ".txt":
                    captions.append(path)
                continue
            files.append(path)
    stems = {path.with_suffix("") for path in files}
    orphans = [path for path in captions if path.with_suffix("") not in stems]
    if not files and not orphans:
        raise StoreError(f"no files in {src}")
    return ImageFolder(src, files, bool(captions), orphans=orphans)

"""WebDataset tars as img2dataset writes them: ``KEY.jpg`` + ``KEY.txt`` + ``KEY.json``.

Tars are read as streams (never extracted), so a member name cannot place a file anywhere;
members with unsafe names (absolute, ``..``) or that are not regular files (links, devices) are
still reported, since they mark a tar that did not come from a well-behaved writer. A sample is
the run of consecutive members that share a key (the name up to the first dot of the base name).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from vila2.data.sources import IMAGE_EXTENSIONS, MAX_FILE_BYTES, Candidate
from vila2.errors import StoreError

_CAPTION_EXTENSIONS = ("txt", "caption", "text")


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts or "\\" in name or ":" in path.parts[0]


def _split(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


@dataclass
class WebDataset:
    """Reads every ``*.tar`` under a folder (sorted), or one tar file."""

    tars: list[Path]
    format: str = "webdataset"
    captions: bool = True
    conversations: bool = False
    total: int | None = None

    def __iter__(self) -> Iterator[Candidate]:
        for tar in self.tars:
            yield from _read_tar(tar)


def _read_tar(path: Path) -> Iterator[Candidate]:
    key: str | None = None
    parts: dict[str, bytes] = {}
    where = path.name
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                where = f"{path.name}/{member.name}"
                if member.isdir():
                    continue
                if _unsafe(member.name):
                    yield Candidate(None, where, problem=("unsafe member name", member.name))
                    continue
                if not member.isfile():
                    yield Candidate(None, where, problem=("not a regular file",
                                                          f"tar member type {member.type!r}"))
                    continue
                if member.size > MAX_FILE_BYTES:
                    yield Candidate(None, where, problem=("file too large",
                                                          f"{member.size} bytes > {MAX_FILE_BYTES}"))
                    continue
                member_key, ext = _split(member.name)
                if member_key != key:
                    if key is not None:
                        yield _sample(path, key, parts)
                    key, parts = member_key, {}
                handle = archive.extractfile(member)
                data = handle.read() if handle is not None else b""
                if ext in parts:
                    yield Candidate(None, where, problem=("duplicate member", f"second {ext!r} for key {key}"))
                    continue
                parts[ext] = data
    except (tarfile.TarError, EOFError, OSError) as exc:
        # the sample being read when the archive broke is incomplete: it goes with the error
        yield Candidate(None, where, problem=("corrupt tar", f"{type(exc).__name__}: {exc}"))
        return
    if key is not None:
        yield _sample(path, key, parts)


def _sample(tar: Path, key: str, parts: dict[str, bytes]) -> Candidate:
    where = f"{tar.name}/{key}"
    meta: dict[str, Any] = {}
    if "json" in parts:
        try:
            loaded = json.loads(parts["json"])
            meta = loaded if isinstance(loaded, dict) else {"json": loaded}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            meta = {"json_error": str(exc)}
    images = [ext for ext in IMAGE_EXTENSIONS if ext in parts]
    caption: bytes | str | None = next(
        (parts[ext] for ext in _CAPTION_EXTENSIONS if ext in parts), None)
    if caption is None and isinstance(meta.get("caption"), str):
        caption = meta["caption"]
    url = meta.get("url")
    candidate = Candidate(key, where, caption=caption, meta=meta,
                          origin=url if isinstance(url, str) and url else where)
    if not images:
        candidate.problem = ("missing image", f"members: {', '.join(sorted(parts)) or 'none'}")
    elif len(images) > 1:
        candidate.problem = ("several images", f"members: {', '.join(images)}")
    else:
        candidate.image = parts[images[0]]
    return candidate


def open(src: Path) -> WebDataset:
    """Open one tar, or every tar under a folder."""
    tars = [src] if src.is_file() else sorted(src.rglob("*.tar"))
    if not tars:
        raise StoreError(f"no .tar files in {src}")
    return WebDataset(tars)

"""Input formats for ingest. Each reader turns a source into a stream of :class:`Candidate`.

Readers never decode images or captions: they hand over bytes, and the ingester checks them, so
every format gets the same checks and the same reject reasons. A reader reports problems that
only it can see (an unsafe tar member name, a missing image file) as a candidate with
``problem`` set. Readers yield candidates in a deterministic order, which is what lets an
interrupted ingest skip what it already stored.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vila2.errors import StoreError

FORMATS = ("webdataset", "llava", "parquet", "folder")
#: a single file larger than this is refused before it is read into memory
MAX_FILE_BYTES = 256 << 20
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "ppm", "pgm")


@dataclass
class Candidate:
    """One would-be sample, as read from the source.

    ``where`` locates it in the source (for ``rejects.jsonl``); ``origin`` is what the image
    shard's ``source`` column keeps (a URL when the source has one). ``caption`` is raw bytes or
    text (``None``: the source has no caption for it); ``conversations`` is the parsed LLaVA
    turn list; ``problem`` is ``(reason, detail)`` when the reader already knows it is bad.
    """

    id: str | None
    where: str
    image: bytes | None = None
    caption: bytes | str | None = None
    conversations: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None
    problem: tuple[str, str] | None = None


class Source(Protocol):
    """A readable input: iterating yields candidates; the flags say which layers it feeds."""

    format: str
    captions: bool
    conversations: bool
    total: int | None

    def __iter__(self) -> Iterator[Candidate]: ...


def detect_format(src: Path) -> str:
    """Guess the format of ``src`` from its file names."""
    if src.is_file():
        suffix = src.suffix.lower()
        guesses = {".tar": "webdataset", ".json": "llava", ".jsonl": "llava",
                   ".parquet": "parquet", ".arrow": "parquet"}
        if suffix in guesses:
            return guesses[suffix]
        raise StoreError(f"cannot tell the format of {src}; pass --format")
    if not src.is_dir():
        raise StoreError(f"{src} does not exist")
    names = {p.suffix.lower() for p in src.iterdir() if p.is_file()}
    if ".tar" in names:
        return "webdataset"
    if ".parquet" in names or ".arrow" in names or any(src.glob("**/*.parquet")):
        return "parquet"
    if ".json" in names or ".jsonl" in names:
        jsons = [p for p in src.iterdir() if p.suffix.lower() in {".json", ".jsonl"}]
        # an image with a .json sidecar is a plain folder, not LLaVA
        if len(jsons) == 1 and not [p for p in src.iterdir()
                                    if p.stem == jsons[0].stem and p != jsons[0]]:
            return "llava"
    return "folder"


def open_source(src: Path, format: str, **options: Any) -> Source:
    """Open ``src`` as ``format`` (one of :data:`FORMATS`) with reader-specific options."""
    if format not in FORMATS:
        raise StoreError(f"unknown format {format!r}; choose one of auto, {', '.join(FORMATS)}")
    module = importlib.import_module(f"vila2.data.sources.{format}")
    return module.open(src, **options)


def read_limited(path: Path) -> bytes | tuple[str, str]:
    """Read a whole file, or return ``(reason, detail)`` when it is too large to read."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return ("file too large", f"{size} bytes > {MAX_FILE_BYTES}")
    return path.read_bytes()

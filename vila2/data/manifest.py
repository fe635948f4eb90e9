"""``manifest.json``: the dataset's list of image shards (rows, checksum) and its layers.

Several processes may touch one dataset (ranks writing shards of a layer, a layer being created
while another is read), so every read-modify-write of the manifest happens under an exclusive
lock on ``DATASET/.lock`` and lands with an atomic rename. Layer *completeness* is never stored
here: it is derived from the per-shard ``.done`` markers, which each writer creates on its own.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vila2.data import atomic
from vila2.errors import StoreError

FORMAT = "vila2-dataset"
VERSION = 1
NAME = "manifest.json"


def empty() -> dict[str, Any]:
    """The manifest of a dataset with no shards and no layers."""
    return {"format": FORMAT, "version": VERSION, "shards": [], "layers": {}}


def read(root: Path) -> dict[str, Any]:
    """Read and check ``root/manifest.json``."""
    path = root / NAME
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{root} is not a vila2 dataset (no {NAME})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise StoreError(f"{path} is not a vila2 dataset manifest (format != {FORMAT!r})")
    if value.get("version") != VERSION:
        raise StoreError(
            f"{path} has version {value.get('version')!r}; this vila2 reads version {VERSION}"
        )
    value.setdefault("shards", [])
    value.setdefault("layers", {})
    return value


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the dataset's exclusive lock (blocks until other processes release it)."""
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def update(root: Path, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply ``change`` to the manifest under the lock and write it back; return its result."""
    with locked(root):
        value = read(root)
        result = change(value)
        atomic.write_json(root / NAME, value)
    return result

"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file in a dataset is written to a temporary name in the same folder, flushed to disk and
renamed into place, so a kill at any moment leaves either nothing or a whole file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def _owner() -> str:
    # pid@host: ranks on other nodes of a shared file system have their own pid numbers
    return f"{os.getpid()}@{socket.gethostname()}"


def temp_path(path: Path) -> Path:
    """A temporary name next to ``path``, unique to this process (ranks never share one)."""
    return path.with_name(f".{path.name}{TMP_MARK}{_owner()}")


def _fsync_dir(folder: Path) -> None:
    # the rename itself must reach the disk, or a power cut could undo it
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``path``."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` only if the block succeeds."""
    tmp = temp_path(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with writing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(folder: Path, alive: Callable[[int], bool] | None = None) -> None:
    """Delete temporary files left in ``folder`` by killed writers on this machine.

    A temp file whose writer still runs (this process, or another rank) is kept, and so is one
    from another machine, whose processes cannot be checked from here.
    """
    alive = alive or _pid_alive
    host = socket.gethostname()
    for tmp in folder.glob(f".*{TMP_MARK}*"):
        pid, _, owner_host = tmp.name.rsplit(TMP_MARK, 1)[1].partition("@")
        if owner_host == host and not (pid.isdigit() and alive(int(pid))):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""``rejects.jsonl``: one line per input that was skipped, or changed on its way in.

Each line is ``{"source", "id", "reason", "detail", "action"}``. ``reason`` is a short stable
label (``truncated image``, ``duplicate id``...) to count and grep by; ``action`` is
``rejected`` (the sample was skipped), ``normalised`` (kept after a change, e.g. CMYK -> RGB) or
``text dropped`` (the image was kept, its caption or conversation was not).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

ACTIONS = ("rejected", "normalised", "text dropped")
NAME = "rejects.jsonl"


class RejectLog:
    """Appends to ``rejects.jsonl``.

    ``keep_bytes`` truncates the file first: a resumed ingest cuts it back to what was written
    before its last finished shard, so no line is ever written twice.
    """

    def __init__(self, path: Path, keep_bytes: int = 0) -> None:
        self.path = path
        if path.exists():
            with open(path, "rb+") as f:
                f.truncate(keep_bytes)
        self._file = open(path, "ab")  # noqa: SIM115  (closed by close())

    def add(self, source: str, id: str | None, reason: str, detail: str = "",
            action: str = "rejected") -> None:
        """Record one input."""
        assert action in ACTIONS, action
        record: dict[str, Any] = {"source": source, "id": id, "reason": reason,
                                  "detail": detail, "action": action}
        # ASCII escapes keep undecodable names (surrogates) writable
        self._file.write(json.dumps(record).encode("ascii") + b"\n")

    @property
    def offset(self) -> int:
        """Bytes written so far, flushed to disk (a manifest entry is about to point at them)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


def _count(path: Path) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                counts[record["action"], record["reason"]] += 1
    return counts


def read_counts(path: Path) -> dict[str, dict[str, int]]:
    """``{action: {reason: count}}`` of a rejects file, every action present."""
    out: dict[str, dict[str, int]] = {action: {} for action in ACTIONS}
    for (action, reason), n in sorted(_count(path).items()):
        out[action][reason] = n
    return out

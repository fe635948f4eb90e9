"""Where a layer's texts came from: the record stored in ``layers/NAME/layer.json``."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROVENANCE_KEYS = ("producer", "model", "model_hash", "round", "prompt_set", "settings")
#: bytes hashed at each end of a large file: a fingerprint, not a full read of 10 GB of weights
_EDGE = 1 << 20


def model_fingerprint(path: str | Path) -> str:
    """A SHA-256 fingerprint of a local model folder (or file).

    Covers every file's relative path and size, the whole of each small file (configs,
    tokenizer) and the first and last MiB of each large one (weights), so retraining or swapping
    a checkpoint changes it while hashing stays fast.
    """
    root = Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root) if file != root else file.name}\0{size}\0".encode())
        with open(file, "rb") as f:
            if size <= 2 * _EDGE:
                digest.update(f.read())
            else:
                digest.update(f.read(_EDGE))
                f.seek(size - _EDGE)
                digest.update(f.read(_EDGE))
    return digest.hexdigest()


def provenance_record(name: str, kind: str, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The ``layer.json`` record for a new layer; unknown provenance keys are an error."""
    unknown = sorted(set(provenance) - set(PROVENANCE_KEYS))
    if unknown:
        raise TypeError(
            f"layer {name!r}: unknown provenance {unknown}; expected {', '.join(PROVENANCE_KEYS)}"
        )
    if not provenance.get("producer"):
        raise TypeError(f"layer {name!r}: provenance needs producer= (the plugin or command)")
    model = provenance.get("model")
    model_hash = provenance.get("model_hash")
    if model is not None and model_hash is None and Path(str(model)).exists():
        model_hash = model_fingerprint(str(model))
    prompt_set = provenance.get("prompt_set")
    return {
        "name": name,
        "kind": kind,
        "producer": str(provenance["producer"]),
        "model": None if model is None else str(model),
        "model_hash": model_hash,
        "round": provenance.get("round"),
        "prompt_set": list(prompt_set) if isinstance(prompt_set, (list, tuple)) else prompt_set,
        "settings": dict(provenance.get("settings") or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

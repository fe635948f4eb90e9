"""Where a layer's texts came from: the record stored in ``layers/NAME/layer.json``."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROVENANCE_KEYS = ("producer", "model", "model_hash", "round", "prompt_set", "settings")


def provenance_record(name: str, kind: str, provenance: Mapping[str, Any],
                      root: str | Path | None = None) -> dict[str, Any]:
    """The ``layer.json`` record for a new layer; unknown provenance keys are an error.

    A model that is a local folder is recorded relative to ``root`` (the dataset folder), so a
    run folder that is moved or copied still points at its own models; ``model_hash`` (computed
    by the caller, e.g. with ``vila2.models.model_hash``) says which weights they were.
    """
    unknown = sorted(set(provenance) - set(PROVENANCE_KEYS))
    if unknown:
        raise TypeError(
            f"layer {name!r}: unknown provenance {unknown}; expected {', '.join(PROVENANCE_KEYS)}"
        )
    if not provenance.get("producer"):
        raise TypeError(f"layer {name!r}: provenance needs producer= (the plugin or command)")
    model = provenance.get("model")
    if model is not None and root is not None and Path(str(model)).is_absolute() and Path(str(model)).exists():
        model = os.path.relpath(str(model), str(root))
    prompt_set = provenance.get("prompt_set")
    return {
        "name": name,
        "kind": kind,
        "producer": str(provenance["producer"]),
        "model": None if model is None else str(model),
        "model_hash": provenance.get("model_hash"),
        "round": provenance.get("round"),
        "prompt_set": list(prompt_set) if isinstance(prompt_set, (list, tuple)) else prompt_set,
        "settings": dict(provenance.get("settings") or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

"""All the text of a world's training sets, for training tiny tokenizers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

TRAINING_SETS = ("pretrain", "sft", "spatial", "grounding", "ocr")


def world_texts(world_dir: str | os.PathLike[str]) -> Iterator[str]:
    """Yield every alt-text and every conversation turn (without the ``<image>`` placeholder)
    of the training sets of the world in ``world_dir``; the benchmarks are left out."""
    from vila2.data import Dataset

    root = Path(world_dir)
    if not (root / "world.json").is_file():
        raise FileNotFoundError(f"{root} holds no finished world (no world.json); run `vila2 world --out {root}`")
    for name in TRAINING_SETS:
        ds = Dataset.open(root / name)
        for layer_name in ds.layers():
            layer = ds.layer(layer_name)
            for sample_id, text in layer.texts().items():
                if layer.kind == "caption":
                    yield text
                    continue
                try:
                    turns = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{root / name} layer {layer_name!r} sample {sample_id!r}: "
                                     f"conversation is not JSON ({exc})") from None
                for turn in turns:
                    yield turn["value"].replace("<image>", "").strip()

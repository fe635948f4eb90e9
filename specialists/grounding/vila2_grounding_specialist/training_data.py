"""The grounding specialist's training data: a dataset folder with a ``conversations`` layer.

``source`` (a recipe's ``data.specialists.grounding``) is one of:

* a vila2 dataset folder, used as it is;
* LLaVA conversation JSON / JSONL (images relative to its folder), or a folder holding one such
  file and its images, as GRIT-derived grounding sets are shipped. Every bracketed box in the
  turns is rewritten in the canonical ``[x0,y0,x1,y1]`` 0–999 form (0–1 floats are scaled,
  ``(x0,y0),(x1,y1)`` corners joined), so the specialist learns one notation; a box beyond 999
  (pixel coordinates) is an error naming the entry. The rewritten file is ingested into
  ``out_dir`` by the store's ingest, which checks every image and records what it skips;
* ``None``: the embedded world's grounding set, ``<world>/grounding``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vila2_grounding_specialist.boxes import BoxError, canonicalise

DOMAIN = "grounding"


def canonical_entries(entries: list[Any], where: str) -> list[Any]:
    """``entries`` with every box in their turns in the canonical form. Malformed entries pass
    through untouched: ingest rejects them, with the reason, like any other bad input."""
    out = []
    for index, entry in enumerate(entries):
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if isinstance(turns, list):
            entry = dict(entry)
            try:
                entry["conversations"] = [
                    {**turn, "value": canonicalise(turn["value"], strict=True)}
                    if isinstance(turn, dict) and isinstance(turn.get("value"), str) else turn
                    for turn in turns
                ]
            except BoxError as exc:
                from vila2.data import StoreError

                raise StoreError(f"{where} entry {index} (id {entry.get('id')!r}): {exc}") from None
        out.append(entry)
    return out


def from_llava(source: Path, out_dir: Path) -> Path:
    """Canonicalise the boxes of LLaVA JSON and ingest it into ``out_dir/grounding-data``."""
    from vila2.data import StoreError
    from vila2.data.conversation_sets import ingest_llava
    from vila2.data.sources.llava import read_entries as read_llava_entries

    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in {".json", ".jsonl"})
        if len(found) != 1:
            raise StoreError(f"{source}: expected one LLaVA .json/.jsonl file, found {len(found)}")
        file, image_root = found[0], source
    else:
        file, image_root = source, source.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    rewritten = out_dir / f"{DOMAIN}-canonical{file.suffix.lower()}"
    entries = canonical_entries(read_llava_entries(file), str(file))
    if file.suffix.lower() == ".jsonl":
        rewritten.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    else:
        rewritten.write_text(json.dumps(entries, ensure_ascii=False))
    return ingest_llava(rewritten, out_dir, DOMAIN, image_root=image_root)


def prepare_data(source: str | None, world: str | None, out_dir: str) -> str:
    """The dataset folder the grounding specialist is fine-tuned on (see the module docstring)."""
    from vila2.data.conversation_sets import prepare_conversations

    return prepare_conversations(DOMAIN, source, world, out_dir, from_llava=from_llava)

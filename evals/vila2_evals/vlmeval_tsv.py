"""MMMU docs as a VLMEvalKit TSV (the layout of its ``MMMU_DEV_VAL.tsv``).

Columns: ``index`` (int), ``id``, ``question`` (``<image k>`` references kept: VLMEvalKit
interleaves them itself), option columns ``A``.. , ``answer`` (a letter, or the text of an open
question's answer), ``question_type``, ``category`` (the subject), ``split`` and ``image``: base64
PNG, or a Python-literal list of base64 PNGs (``image_1``, ``image_2``... in order) when a
question has several.
"""

from __future__ import annotations

import ast
import base64
import io
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vila2_evals import mmmu


def _b64(image: Any) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mmmu_row(index: int, doc: dict[str, Any]) -> dict[str, Any]:
    """One TSV row for one MMMU doc."""
    present = [key for key in mmmu.IMAGE_KEYS if doc.get(key) is not None]
    if present != list(mmmu.IMAGE_KEYS[: len(present)]):
        # VLMEvalKit finds <image k> at position k-1 of the list: a gap would shift the images
        raise mmmu.MMMUDataError(f"sample {doc['id']!r}: images {present} are not image_1..image_n in order")
    if not present:
        raise mmmu.MMMUDataError(f"sample {doc['id']!r}: no image (image_1 is empty)")
    encoded = [_b64(doc[key]) for key in present]
    row: dict[str, Any] = {
        "index": index,
        "id": doc["id"],
        "question": doc["question"],
        "answer": doc["answer"],
        "question_type": doc["question_type"],
        "category": mmmu.subject(doc),
        "split": str(doc["id"]).split("_", 1)[0],
        "image": encoded[0] if len(encoded) == 1 else repr(encoded),
    }
    options = ast.literal_eval(str(doc["options"])) if doc["question_type"] == "multiple-choice" else []
    for letter, option in zip(string.ascii_uppercase, options, strict=False):
        row[letter] = str(option)
    return row


def write_mmmu_tsv(docs: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``docs`` as a VLMEvalKit MMMU TSV at ``path``; return it."""
    import csv

    import pandas as pd

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([mmmu_row(i, doc) for i, doc in enumerate(docs)])
    letters = [c for c in string.ascii_uppercase if c in frame.columns]
    columns = ["index", "id", "question", *letters, "answer", "question_type", "category", "split", "image"]
    frame[columns].to_csv(out, sep="\t", index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    return out

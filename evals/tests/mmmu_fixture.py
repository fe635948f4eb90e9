"""An MMMU-schema fixture: a Parquet file in the hub's ``MMMU/MMMU`` schema.

Single- and multi-image multiple-choice questions, images referenced out of order and repeated,
images inside options, and open questions. Each image is a solid square whose side is
``10 * k + n`` pixels for ``image_k`` of the n-th doc, so a test can tell which image reached the
model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

IMAGE_KEYS = [f"image_{i}" for i in range(1, 8)]

# (id, question_type, question, options, answer, number of images)
MMMU_DOCS = [
    ("validation_Accounting_1", "multiple-choice", "<image 1> What colour fills the square?",
     ["red", "green", "blue", "yellow"], "B", 1),
    ("validation_Math_2", "multiple-choice",
     "Compare <image 2> with <image 1>. Look again at <image 2>: which is larger?",
     ["the first", "the second", "neither"], "A", 2),
    ("validation_Math_3", "multiple-choice", "Which option shows the same colour as <image 1>?",
     ["<image 2>", "<image 3>"], "B", 3),
    ("validation_Physics_4", "open", "<image 1> How many squares are there?", [], "42", 1),
    ("validation_Art_5", "open", "Name the shape in <image 1> and <image 2>.", [], "circle", 2),
    ("validation_Art_6", "multiple-choice", "What is drawn? <image 1>",
     ["a circle", "a square", "a line", "a star", "a cross"], "E", 1),
]


def square(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (side * 3 % 256, 80, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def mmmu_rows() -> list[dict[str, Any]]:
    rows = []
    for number, (doc_id, kind, question, options, answer, n_images) in enumerate(MMMU_DOCS, start=1):
        row: dict[str, Any] = {
            "id": doc_id, "question": question, "options": repr(options), "explanation": "",
            "img_type": "['Diagrams']", "answer": answer, "topic_difficulty": "Easy",
            "question_type": kind, "subfield": "Synthetic",
        }
        for k, key in enumerate(IMAGE_KEYS, start=1):
            row[key] = {"bytes": square(10 * k + number), "path": None} if k <= n_images else None
        rows.append(row)
    return rows


def write_mmmu(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = ["id", "question", "options", "explanation", *IMAGE_KEYS, "img_type", "answer",
               "topic_difficulty", "question_type", "subfield"]
    schema = pa.schema([pa.field(c, image if c.startswith("image_") else pa.string()) for c in columns])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path

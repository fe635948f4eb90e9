"""bench/mmmu/validation.parquet has MMMU's exact schema, and lm-eval's MMMU task runs on it."""

from __future__ import annotations

import ast
import importlib.util
import io
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from vila2.world.mmmu import COLUMNS

# the columns of the HF MMMU/MMMU dataset, in order
MMMU_COLUMNS = [
    "id", "question", "options", "explanation", "image_1", "image_2", "image_3", "image_4",
    "image_5", "image_6", "image_7", "img_type", "answer", "topic_difficulty", "question_type",
    "subfield",
]


def _rows(world: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(world / "bench" / "mmmu" / "validation.parquet").to_pylist()


def _lm_eval_mmmu_utils() -> ModuleType:
    """lm-eval's ``tasks/mmmu/utils.py``, loaded from its file (importing lm_eval.tasks is slow)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        pytest.fail("lm-eval is a dev dependency and must be installed for this test")
    path = Path(spec.origin).parent / "tasks" / "mmmu" / "utils.py"
    module_spec = importlib.util.spec_from_file_location("lm_eval_mmmu_utils", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_schema_matches_mmmu(tiny_world: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert list(COLUMNS) == MMMU_COLUMNS
    schema = pq.read_schema(tiny_world / "bench" / "mmmu" / "validation.parquet")
    assert schema.names == MMMU_COLUMNS
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for name in MMMU_COLUMNS:
        assert schema.field(name).type == (image_type if name.startswith("image_") else pa.string()), name
    assert b"huggingface" in schema.metadata


def test_rows_are_valid_mmmu_questions(tiny_world: Path) -> None:
    rows = _rows(tiny_world)
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    kinds = {"multi_image": 0, "open": 0, "multiple-choice": 0}
    for row in rows:
        assert re.fullmatch(r"validation_World_\d+", row["id"])
        assert row["question_type"] in ("multiple-choice", "open")
        kinds[row["question_type"]] += 1
        shown = sorted({int(k) for k in re.findall(r"<image (\d)>", row["question"])})
        present = [i for i in range(1, 8) if row[f"image_{i}"] is not None]
        assert shown == present and shown[0] == 1, row["id"]
        kinds["multi_image"] += len(present) > 1
        for i in present:
            image = Image.open(io.BytesIO(row[f"image_{i}"]["bytes"]))
            assert image.size == (64, 64)
        options = ast.literal_eval(row["options"])
        assert isinstance(options, list)
        if row["question_type"] == "multiple-choice":
            assert 2 <= len(options) <= 9 and row["answer"] in "ABCDEFGHI"[: len(options)]
        else:
            assert options == [] and row["answer"]
        assert ast.literal_eval(row["img_type"]) == ["Diagrams"]
        assert row["subfield"] and row["topic_difficulty"] in ("Easy", "Medium", "Hard")
    assert kinds["multi_image"] >= 3 and kinds["open"] >= 5 and kinds["multiple-choice"] >= 20


def test_lm_eval_mmmu_task_functions_run_on_rows(tiny_world: Path) -> None:
    utils = _lm_eval_mmmu_utils()
    import datasets

    path = tiny_world / "bench" / "mmmu" / "validation.parquet"
    docs = datasets.load_dataset("parquet", data_files={"validation": str(path)}, split="validation")
    assert isinstance(docs.features["image_1"], datasets.Image)
    for doc in docs:
        text = utils.doc_to_text(doc)
        visuals = utils.doc_to_image(doc)
        assert "<image>" in text and "<image " not in text
        assert visuals and all(isinstance(v, Image.Image) for v in visuals)
        assert text.count("<image>") == len(visuals)
        if doc["question_type"] == "multiple-choice":
            gold = f"({doc['answer']})"
            wrong_letter = "A" if doc["answer"] != "A" else "B"
            assert utils.process_results(doc, [f"The answer is {gold}."]) == {"acc": 1.0}
            assert utils.process_results(doc, [f"({wrong_letter})"]) == {"acc": 0.0}
        else:
            assert "single word or phrase" in text
            assert utils.process_results(doc, [doc["answer"]]) == {"acc": 1.0}
            assert utils.process_results(doc, ["elephant"]) == {"acc": 0.0}

"""MMMU reading and official scoring, with fake models (no weights)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mmmu_fixture import MMMU_DOCS, mmmu_rows, square, write_mmmu
from vila2_evals import mmmu
from vila2_evals.results import accuracy_result


def key_answer(doc: dict[str, Any]) -> str:
    return doc["answer"]


def answer_with(fn):
    """An answerer that replies ``fn(doc)``, finding each doc by its prompt."""
    def answer(requests):
        return [fn(doc) for doc in requests_docs(requests)]
    return answer


def requests_docs(requests):
    return [_DOCS_BY_PROMPT[prompt] for _, prompt in requests]


_DOCS_BY_PROMPT: dict[str, dict[str, Any]] = {}


@pytest.fixture
def docs(mmmu_file: Path) -> list[dict[str, Any]]:
    loaded = mmmu.read(mmmu_file)
    _DOCS_BY_PROMPT.clear()
    _DOCS_BY_PROMPT.update({mmmu.prompt(d): d for d in loaded})
    return loaded


def test_read_decodes_images_and_keeps_the_schema(docs):
    assert [d["id"] for d in docs] == [d[0] for d in MMMU_DOCS]
    assert docs[1]["image_2"].size == (22, 22)
    assert docs[0]["image_2"] is None
    assert {d["question_type"] for d in docs} == {"multiple-choice", "open"}


def test_subjects_come_from_ids(docs):
    assert [mmmu.subject(d) for d in docs] == ["Accounting", "Math", "Math", "Physics", "Art", "Art"]
    assert mmmu.subject({"id": "validation_Art_Theory_12"}) == "Art_Theory"


def test_a_model_answering_from_the_key_scores_one(docs, tmp_path):
    records = mmmu.ask_and_score(docs, answer_with(key_answer))
    result = accuracy_result("mmmu", records, backend="builtin", out_dir=tmp_path)
    assert result.score == 1.0
    assert result.n == len(MMMU_DOCS)
    assert result.metrics["accuracy/Math"] == 1.0 and result.metrics["accuracy/Physics"] == 1.0
    assert result.details["subjects"] == {"Accounting": 1, "Art": 2, "Math": 2, "Physics": 1}
    lines = Path(result.samples_path).read_text().splitlines()
    assert len(lines) == len(MMMU_DOCS) and '"correct": true' in lines[0]


def test_a_constant_model_scores_what_the_official_parser_gives(docs):
    # by hand: "A" is the key of validation_Math_2 only; the open answers 42 and circle are not in "a"
    records = mmmu.ask_and_score(docs, lambda requests: ["A"] * len(requests))
    result = accuracy_result("mmmu", records, backend="builtin", out_dir=None)
    assert result.score == pytest.approx(1 / 6)
    assert result.metrics["accuracy/Math"] == 0.5
    assert result.metrics["accuracy/Accounting"] == 0.0
    from lm_eval.tasks.mmmu import utils

    assert [r["correct"] for r in records] == [bool(utils.process_results(d, ["A"])["acc"]) for d in docs]


def test_open_answers_are_parsed_the_official_way(docs):
    replies = {"validation_Physics_4": "So the count is 42.", "validation_Art_5": "It is a circle"}
    records = mmmu.ask_and_score(docs, answer_with(lambda d: replies.get(d["id"], "Z")))
    by_id = {r["id"]: r["correct"] for r in records}
    assert by_id["validation_Physics_4"] and by_id["validation_Art_5"]


def test_unparseable_choices_are_scored_repeatably(docs):
    runs = [[r["correct"] for r in mmmu.ask_and_score(docs, lambda q: ["no idea"] * len(q))] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_images_reach_the_model_in_order_one_per_marker(docs):
    seen = []

    def answer(requests):
        seen.extend(requests)
        return [""] * len(requests)

    mmmu.ask_and_score(docs, answer)
    for (images, prompt), doc, number in zip(seen, docs, range(1, len(docs) + 1), strict=True):
        refs = [int(k) for k in re.findall(r"<image (\d)>", f"{doc['question']} {' '.join(eval(doc['options']))}")]
        assert prompt.count("<image>") == len(images) == len(refs)
        assert [img.size[0] for img in images] == [10 * k + number for k in refs]
    # repeated and out-of-order references: <image 2>, <image 1>, <image 2>
    assert [img.size[0] for img in seen[1][0]] == [22, 12, 22]


@pytest.mark.parametrize(("change", "message"), [
    (lambda rows: rows[1].update(question_type="essay"), "validation_Math_2.*question_type 'essay'"),
    (lambda rows: rows[0].update(answer="F"), "validation_Accounting_1.*answer 'F'"),
    (lambda rows: rows[0].update(options="[red, green"), "validation_Accounting_1.*options"),
    (lambda rows: rows[1].update(image_2=None), "validation_Math_2.*<image 2>.*image_2 is empty"),
    (lambda rows: rows[3].update(image_1={"bytes": b"not a png", "path": None}),
     "validation_Physics_4', image_1: cannot decode"),
    (lambda rows: rows[2].update(id="validation_Accounting_1"), "validation_Accounting_1.*duplicate id"),
])
def test_bad_samples_are_named(tmp_path, change, message):
    rows = mmmu_rows()
    change(rows)
    path = write_mmmu(tmp_path / "bad.parquet", rows)
    with pytest.raises(mmmu.MMMUDataError, match=message):
        mmmu.read(path)


def test_missing_columns_and_files_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"id": ["validation_A_1"], "question": ["?"], "image_1": [square(8)]}), path)
    with pytest.raises(mmmu.MMMUDataError, match=r"cols.parquet: missing MMMU column\(s\) options, answer"):
        mmmu.read(path)
    with pytest.raises(mmmu.MMMUDataError, match=r"nowhere\.parquet does not exist"):
        mmmu.read(tmp_path / "nowhere.parquet")


def test_raw_image_bytes_are_accepted(tmp_path):
    rows = mmmu_rows()
    for row in rows:
        for key in mmmu.IMAGE_KEYS:
            row[key] = row[key]["bytes"] if row[key] else None
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "raw.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert mmmu.read(path, limit=2)[1]["image_1"].size == (12, 12)


def test_data_defaults_to_the_world(tmp_path):
    assert mmmu.resolve(None, {"world": str(tmp_path)}) == tmp_path / "bench/mmmu/validation.parquet"
    assert mmmu.resolve("x.parquet", {"world": str(tmp_path)}) == Path("x.parquet")
    with pytest.raises(mmmu.MMMUDataError, match="--data PATH or --world DIR"):
        mmmu.resolve(None, {})

"""The VLMEvalKit back end: MMMU as a VLMEvalKit TSV, run in a child process, exact matching.

The TSV tests need nothing installed; the runs need the ``vlmeval`` extra (CI installs it). This
process never imports ``vlmeval`` (it turns off TLS verification process-wide).
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest
from mmmu_fixture import MMMU_DOCS
from vila2_evals import mmmu, vlmeval_backend
from vila2_evals.vlmeval_tsv import write_mmmu_tsv

needs_vlmeval = pytest.mark.skipif(importlib.util.find_spec("vlmeval") is None,
                                   reason="VLMEvalKit is not installed: pip install 'vila2-evals[vlmeval]'")
TESTS = Path(__file__).parent


def _side(b64: str) -> int:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).size[0]


def test_mmmu_as_a_vlmeval_tsv(mmmu_file, tmp_path):
    import pandas as pd

    path = write_mmmu_tsv(mmmu.read(mmmu_file), tmp_path / "MMMU_x.tsv")
    frame = pd.read_csv(path, sep="\t")
    assert list(frame["index"]) == list(range(6))
    first = frame.iloc[0]
    assert (first["A"], first["B"], first["answer"], first["category"], first["split"]) == (
        "red", "green", "B", "Accounting", "validation")
    assert _side(first["image"]) == 11
    multi = frame.iloc[2]
    assert [_side(b) for b in ast.literal_eval(multi["image"])] == [13, 23, 33]
    assert multi["A"] == "<image 2>" and "<image 1>" in multi["question"]
    open_question = frame.iloc[3]
    assert open_question["answer"] == "42" and pd.isna(open_question["A"])
    assert frame.iloc[5]["E"] == "a cross"


def test_a_gap_in_the_images_is_refused(mmmu_file):
    docs = mmmu.read(mmmu_file)
    docs[2]["image_2"] = None
    with pytest.raises(mmmu.MMMUDataError, match=r"validation_Math_3.*not image_1\.\.image_n"):
        write_mmmu_tsv(docs, "/nonexistent/never-written.tsv")


def test_a_custom_tsv_needs_vlmeval_columns(tmp_path):
    bad = tmp_path / "Mine.tsv"
    bad.write_text("question\tanswer\nwhat?\tA\n")
    with pytest.raises(ValueError, match=r"Mine\.tsv: not a VLMEvalKit TSV, missing column\(s\) index"):
        vlmeval_backend._stage("Mine", str(bad), {}, tmp_path)


def _signature(question: str) -> str:
    return max((part.strip() for part in re.split(r"<image \d>", question)), key=len)


def _run_key_model(mmmu_file: Path, tmp_path: Path, monkeypatch, reply) -> tuple:
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}:{__import__('os').environ.get('PYTHONPATH', '')}")
    log = tmp_path / "calls.jsonl"
    config = tmp_path / "key.json"
    answers = {_signature(question): reply(answer) for _, _, question, _, answer, _ in MMMU_DOCS}
    config.write_text(json.dumps({"answers": answers, "log": str(log)}))
    result = vlmeval_backend.run(str(config), "mmmu", data=str(mmmu_file), out_dir=str(tmp_path / "out"),
                                 settings={"vlmeval_model": "vlmeval_fakes:KeyVLM"})
    return result, [json.loads(line) for line in log.read_text().splitlines()]


@needs_vlmeval
def test_a_model_answering_from_the_key_scores_one_and_sees_images_in_order(mmmu_file, tmp_path, monkeypatch):
    result, calls = _run_key_model(mmmu_file, tmp_path, monkeypatch, lambda answer: answer)
    assert result.score == 1.0 and result.n == 6 and result.backend == "vlmeval"
    assert result.details["vlmeval_table"][0]["Overall"] == 1.0
    assert result.metrics["accuracy/Physics"] == 1.0
    # VLMEvalKit interleaves <image k> itself: repeats and out-of-order references included
    assert [c["sides"] for c in calls] == [[11], [22, 12, 22], [13, 23, 33], [14], [15, 25], [16]]


@needs_vlmeval
def test_a_constant_model_scores_what_vlmeval_exact_matching_gives(mmmu_file, tmp_path, monkeypatch):
    result, _ = _run_key_model(mmmu_file, tmp_path, monkeypatch, lambda answer: "A")
    # VLMEvalKit recasts an open question as "(A) <answer> (B) Other Answers" with key A, so "A"
    # hits both open questions as well as validation_Math_2 (lm-eval's parser gives 1/6)
    assert result.score == 0.5
    records = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    assert [r["correct"] for r in records] == [False, True, False, True, True, False]


@needs_vlmeval
@pytest.mark.slow
def test_a_tiny_model_end_to_end(tiny_model, mmmu_file, tmp_path):
    result = vlmeval_backend.run(str(tiny_model), "mmmu", data=str(mmmu_file), out_dir=str(tmp_path),
                                 settings={"max_new_tokens": 4})
    assert result.n == 6 and result.details["vlmeval_dataset"] == "MMMU_vila2"
    records = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    assert [r["id"] for r in records] == [d[0] for d in MMMU_DOCS]
    assert all(isinstance(r["response"], str) and r["log"].startswith("Match Log") for r in records)
    assert result.score == result.details["vlmeval_table"][0]["Overall"]

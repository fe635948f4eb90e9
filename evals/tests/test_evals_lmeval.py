"""The lm-eval back end: lm-eval's own MMMU task on a local Parquet file.

Fake lm-eval models (registered here) check the task wiring and the official scoring quickly; the
slow tests run a tiny model end to end through ``hf-multimodal`` and through vila2's lm-eval model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval lists its models only while its registry is empty)
import pytest
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from vila2_evals import lmeval_backend, mmmu

SEEN: list[tuple[str, list[Any], dict[str, Any]]] = []


class _Fake(LM):
    MULTIMODAL = True

    def __init__(self, **_: Any) -> None:
        super().__init__()

    def reply(self, doc: dict[str, Any]) -> str:
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm: bool = False):
        for r in requests:
            SEEN.append((r.args[0], list(r.args[2]["visual"]), r.doc))
        return [self.reply(r.doc) for r in requests]

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@register_model("vila2-test-key")
class KeyLM(_Fake):
    def reply(self, doc):
        return doc["answer"]


@register_model("vila2-test-constant")
class ConstantLM(_Fake):
    def reply(self, doc):
        return "A"


def run_fake(kind: str, data: Path, tmp_path: Path, **settings: Any):
    SEEN.clear()
    return lmeval_backend.run("unused-model", "mmmu", data=str(data), out_dir=str(tmp_path),
                              settings={"lm_eval_model": kind, "apply_chat_template": False, **settings})


def test_the_official_template_is_bound_to_the_official_functions():
    from lm_eval.tasks.mmmu import utils

    config = lmeval_backend.official_mmmu_config()
    assert config["doc_to_text"] is utils.doc_to_text
    assert config["process_results"] is utils.process_results
    assert config["output_type"] == "generate_until"


def test_a_model_answering_from_the_key_scores_one(mmmu_file, tmp_path):
    result = run_fake("vila2-test-key", mmmu_file, tmp_path)
    assert result.score == 1.0 and result.n == 6 and result.backend == "lm-eval"
    assert result.metrics["accuracy/Art"] == 1.0
    records = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    assert [r["id"] for r in records] == [doc["id"] for doc in mmmu.read(mmmu_file)]
    assert all(r["correct"] and r["response"] == r["answer"] for r in records)


def test_a_constant_model_scores_what_the_official_parser_gives(mmmu_file, tmp_path):
    result = run_fake("vila2-test-constant", mmmu_file, tmp_path)
    assert result.score == pytest.approx(1 / 6)  # "A" is the key of validation_Math_2 only
    assert result.metrics["accuracy/Math"] == 0.5 and result.metrics["accuracy/Accounting"] == 0.0


def test_images_reach_the_model_in_order_one_per_marker(mmmu_file, tmp_path):
    run_fake("vila2-test-key", mmmu_file, tmp_path)
    assert len(SEEN) == 6
    for prompt, visuals, doc in SEEN:
        number = int(doc["id"].rsplit("_", 1)[1])
        refs = [int(k) for k in re.findall(r"<image (\d)>", f"{doc['question']} {doc['options']}")]
        assert prompt.count("<image>") == len(visuals) == len(refs)
        assert [img.size[0] for img in visuals] == [10 * k + number for k in refs]


def test_limit_and_max_gen_toks_reach_lm_eval(mmmu_file, tmp_path):
    result = run_fake("vila2-test-key", mmmu_file, tmp_path, max_gen_toks=5)
    assert result.n == 6
    result = lmeval_backend.run("unused", "mmmu", data=str(mmmu_file), limit=2,
                                settings={"lm_eval_model": "vila2-test-key", "apply_chat_template": False})
    assert result.n == 2 and result.samples_path is None


def test_hub_mmmu_needs_a_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(mmmu.MMMUDataError, match="HF_HUB_OFFLINE=1: pass --data PATH"):
        lmeval_backend.run("m", "mmmu", settings={"lm_eval_model": "vila2-test-key"})


def test_data_is_refused_for_other_tasks(mmmu_file):
    with pytest.raises(ValueError, match="--data is only read for mmmu"):
        lmeval_backend.run("m", "gsm8k", data=str(mmmu_file))


def test_which_lm_eval_model_drives_a_folder(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert not lmeval_backend.hf_multimodal_can_drive(str(tmp_path / "adapter"))
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "config.json").write_text(json.dumps({"image_token_id": 5}))
    assert not lmeval_backend.hf_multimodal_can_drive(str(stock))  # no chat template
    (stock / "chat_template.jinja").write_text("{{ messages }}")
    assert lmeval_backend.hf_multimodal_can_drive(str(stock))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hf-multimodal", "vila2"])
def test_a_tiny_model_end_to_end(tiny_model, mmmu_file, tmp_path, kind):
    settings = {"max_gen_toks": 4, "batch_size": 6}
    if kind == "vila2":
        settings["lm_eval_model"] = "vila2"
    else:
        assert lmeval_backend.hf_multimodal_can_drive(str(tiny_model))
    result = lmeval_backend.run(str(tiny_model), "mmmu", data=str(mmmu_file), out_dir=str(tmp_path),
                                settings=settings)
    assert result.details["lm_eval_model"] == kind and result.n == 6
    records = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    docs = {doc["id"]: doc for doc in mmmu.read(mmmu_file)}
    for record in records:
        doc = docs[record["id"]]
        refs = re.findall(r"<image \d>", f"{doc['question']} {doc['options']}")
        assert record["prompt"].count("<image>") == len(refs)  # one image token per reference
        if doc["question_type"] == "open":  # (multiple choice may fall back to a seeded random pick)
            assert record["correct"] == mmmu.is_correct(doc, record["response"])
    assert result.score == sum(r["correct"] for r in records) / 6


def test_other_tasks_report_their_own_metrics_first():
    results = {"chartqa": {"alias": "chartqa", "relaxed_accuracy,none": 0.25,
                           "relaxed_accuracy_stderr,none": "N/A", "anls,none": 0.5},
               "sub": {"exact_match,none": 1}}
    assert lmeval_backend._task_metrics(results, "chartqa") == {
        "relaxed_accuracy,none": 0.25, "anls,none": 0.5, "sub/exact_match,none": 1.0}
    with pytest.raises(RuntimeError, match="no numeric metric for 'x'"):
        lmeval_backend._task_metrics({"x": {"alias": "x"}}, "x")

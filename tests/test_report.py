"""The report reads every number from the run's files and lays them out like the paper."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vila2.pipeline.report import (
    collect,
    hallucination_metric,
    image_dependence_table,
    kind_tables,
    markdown_table,
    paired_bootstrap,
    per_sample,
    quality_table,
    specialist_table,
    write_report,
)


def _result(root: Path, rel: str, benchmark: str, metrics: dict, primary: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": benchmark, "metrics": metrics, "primary": primary, "n": 50}))
    return rel


def _stats(root: Path, rel: str, words: float) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mean_words": words}))
    return rel


def _run(root: Path) -> dict:
    return collect(root, _rows(root), name="t", stop={"round": 1, "reason": "caption gain +0.1 < 0.2"},
                   best_round=1, errors=[{"step": "final.eval.caption", "error": "ValueError: boom"}])


def test_collect_reads_the_files(tmp_path: Path) -> None:
    results = _run(tmp_path)
    assert results["benchmarks"] == ["vqa", "caption", "spatial"]
    r1 = results["rows"][1]
    assert r1["scores"]["vqa"] == {"score": 0.46, "metric": "accuracy", "n": 50,
                                   "file": "round1/eval/vqa/result.json"}
    assert r1["hallucination"]["value"] == 0.22
    assert r1["caption_words"] == {"value": 34.25, "file": "round1/caption/caption_stats.json"}
    assert results["rows"][2]["base_scores"]["spatial"]["score"] == 0.5


def test_table_rows_and_columns(tmp_path: Path) -> None:
    table = markdown_table(_run(tmp_path)).splitlines()
    assert table[0] == ("| model | caption words | vqa (accuracy) | caption (cider) | spatial (accuracy) "
                        "| hallucination (hallucination_rate) |")
    assert table[2] == "| round 0 | 11.5 | 40.0 | 20.0 | – | 30.0 |"
    assert table[3] == "| round 1 | 34.2 | 46.0 | 31.0 | – | 22.0 |"
    assert table[4] == "| + spatial specialist | 20.0 | – | – | 55.0 | – |"
    assert table[5] == "| final (VILA²) | – | 47.0 | – | – | – |"
    spec = specialist_table(_run(tmp_path)).splitlines()
    assert spec[2] == "| spatial | spatial | 50.0 | 55.0 | +5.0 |"


def test_write_report_and_every_number_has_a_source(tmp_path: Path) -> None:
    results = _run(tmp_path)
    report = write_report(tmp_path, results)
    text = report.read_text()
    assert (tmp_path / "plots" / "scores.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "caption_length.png").stat().st_size > 1000
    assert "Self-augment stopped after round 1" in text
    assert "`final.eval.caption`: ValueError: boom" in text
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    # every number in the tables is a value of a file the results name, as printed
    sources = set()
    for path in tmp_path.rglob("*.json"):
        data = json.loads(path.read_text())
        for value in [*list(data.get("metrics", {}).values()), data.get("mean_words")]:
            if isinstance(value, float):
                sources |= {f"{100 * value:.1f}", f"{value:.1f}"}
    # the paper's table: from its header to the first blank line
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | caption words"))
    table_lines = [line for line in lines[start:lines.index("", start)] if "---" not in line]
    numbers = [n for line in table_lines[1:] for n in re.findall(r"(?<![\w.])[+-]?\d+\.\d(?![\d])", line)]
    assert numbers
    gains = {"+5.0"}
    assert all(n in sources or n in gains for n in numbers), [n for n in numbers if n not in sources]


def test_hallucination_metric_names() -> None:
    assert hallucination_metric({"cider": 1, "hallucination_rate": 0.1}) == "hallucination_rate"
    assert hallucination_metric({"chair_i": 0.2, "hallucination": 0.3, "hallucinated": 2.0}) == "chair_i"
    assert hallucination_metric({"accuracy": 1}) is None


# ---------------------------------------------------------------------------------------------
# gains with confidence: the paired bootstrap


def _samples(root: Path, rel: str, values: dict[str, float], metric: str = "accuracy") -> None:
    """The per-sample file an evaluator writes beside ``result.json``."""
    benchmark = json.loads((root / rel).read_text())["benchmark"]
    lines = [json.dumps({"id": i, "prediction": "x", "metrics": {metric: v}}) for i, v in values.items()]
    (root / rel).with_name(f"{benchmark}.jsonl").write_text("\n".join(lines) + "\n")


def test_bootstrap_interval_properties() -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    ids = [f"q{i}" for i in range(200)]
    old = {i: float(v) for i, v in zip(ids, rng.random(200) < 0.4, strict=True)}
    same = paired_bootstrap(old, old)
    assert same is not None and same["diff"] == same["low"] == same["high"] == 0.0
    shifted = paired_bootstrap({i: v + 0.1 for i, v in old.items()}, old)
    assert shifted is not None
    assert shifted["diff"] == pytest.approx(0.1) and shifted["low"] == pytest.approx(0.1)
    assert shifted["high"] == pytest.approx(0.1)  # every pair moved alike: no uncertainty

    better = {i: float(v) for i, v in zip(ids, rng.random(200) < 0.7, strict=True)}
    gain = paired_bootstrap(better, old)
    assert gain is not None and gain["n"] == 200 and gain["resamples"] == 1000
    assert gain["low"] < gain["diff"] < gain["high"] and gain["low"] > 0  # a real gain excludes 0
    assert gain["diff"] == pytest.approx(sum(better.values()) / 200 - sum(old.values()) / 200)
    assert paired_bootstrap(better, old) == gain  # deterministic (fixed seed)
    loss = paired_bootstrap(old, better)  # swapping the rows mirrors the interval
    assert loss is not None
    assert (loss["diff"], loss["low"], loss["high"]) == pytest.approx((-gain["diff"], -gain["high"], -gain["low"]))

    noise = {i: float(v) for i, v in zip(ids, rng.random(200) < 0.4, strict=True)}
    null = paired_bootstrap(noise, old)
    assert null is not None and null["low"] < 0 < null["high"]  # no gain: the interval holds 0
    fewer = paired_bootstrap({i: better[i] for i in ids[:50]}, old)  # paired on shared ids only
    assert fewer is not None and fewer["n"] == 50
    assert fewer["high"] - fewer["low"] > gain["high"] - gain["low"]  # fewer samples, wider
    assert paired_bootstrap({"a": 1.0}, {"b": 1.0}) is None


def test_gains_are_paired_against_the_row_before(tmp_path: Path) -> None:
    ids = [f"vqa-{i:05d}" for i in range(50)]
    scores = {"round0": [i % 5 < 2 for i in range(50)], "round1": [i % 5 < 3 for i in range(50)],
              "final": [i % 5 < 3 or i % 7 == 0 for i in range(50)]}
    rows = _rows(tmp_path)
    for name, hits in scores.items():
        _samples(tmp_path, f"{name}/eval/vqa/result.json", {i: float(h) for i, h in zip(ids, hits, strict=True)})
    _samples(tmp_path, "specialists/spatial/eval/spatial/result.json", {i: 1.0 for i in ids[:10]})
    _samples(tmp_path, "round1/eval/spatial/result.json", {i: 0.0 for i in ids[:10]})
    results = collect(tmp_path, rows, name="t", best_round=0)
    r0, r1, spec, final = results["rows"]
    assert r0["gains"] == {}  # nothing before round 0
    vqa = r1["gains"]["vqa"]
    assert vqa["vs"] == "round 0" and vqa["n"] == 50 and vqa["diff"] == pytest.approx(0.2)
    assert vqa["files"] == ["round1/eval/vqa/result.json", "round0/eval/vqa/result.json"]
    assert "caption" not in r1["gains"]  # no per-sample file: no interval
    assert spec["gains"]["spatial"]["vs"] == "round 0" and spec["gains"]["spatial"]["diff"] == 1.0
    assert final["gains"]["vqa"]["vs"] == "round 0"  # the round the specialists started from
    text = write_report(tmp_path, results).read_text()
    assert "## Gains with 95% confidence" in text
    line = next(line for line in text.splitlines() if line.startswith("| round 1 | round 0 |"))
    assert line.startswith(f"| round 1 | round 0 | +20.0 [+{100 * vqa['low']:.1f}, +{100 * vqa['high']:.1f}] | –")


# ---------------------------------------------------------------------------------------------
# caption quality and image dependence


def _rows(root: Path) -> list[dict]:
    """The rows of :func:`_run` (before collect), for tests that add files first."""
    rows = []
    for i, (vqa, cap, hall, words) in enumerate([(0.40, 0.20, 0.30, 11.5), (0.46, 0.31, 0.22, 34.25)]):
        rows.append({
            "name": f"round {i}", "kind": "round", "round": i, "model": f"round{i}/train/model",
            "evals": {
                "vqa": _result(root, f"round{i}/eval/vqa/result.json", "vqa", {"accuracy": vqa}, "accuracy"),
                "caption": _result(root, f"round{i}/eval/caption/result.json", "caption",
                                   {"cider": cap, "hallucination_rate": hall}, "cider"),
            },
            "caption_stats": _stats(root, f"round{i}/caption/caption_stats.json", words),
        })
    rows.append({
        "name": "+ spatial specialist", "kind": "specialist", "specialist": "spatial", "domain": "spatial",
        "model": "specialists/spatial/finetune/model",
        "evals": {"spatial": _result(root, "specialists/spatial/eval/spatial/result.json", "spatial",
                                     {"accuracy": 0.55}, "accuracy")},
        "base_evals": {"spatial": _result(root, "round1/eval/spatial/result.json", "spatial",
                                          {"accuracy": 0.5}, "accuracy")},
        "caption_stats": _stats(root, "specialists/spatial/caption/caption_stats.json", 20.0),
    })
    rows.append({
        "name": "final (VILA²)", "kind": "final", "model": "final/train/model",
        "evals": {"vqa": _result(root, "final/eval/vqa/result.json", "vqa", {"accuracy": 0.47}, "accuracy")},
        "caption_stats": None,
    })
    return rows


def test_quality_and_image_dependence_tables(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    quality = [
        {"captions": 150, "distinct": 1.0, "mean_words": 11.5, "ground_truth": "world", "object_recall": 0.41,
         "wrong_mention_rate": 0.187, "captions_with_wrong_mention": 0.18, "mentions_per_caption": 1.0},
        {"captions": 148, "distinct": 0.52, "mean_words": 34.25, "ground_truth": "world", "object_recall": 0.63,
         "wrong_mention_rate": 0.25, "captions_with_wrong_mention": 0.4, "mentions_per_caption": 2.1,
         "place_accuracy": 0.375, "placed_objects": 80},
        {"captions": 150, "distinct": 0.2, "mean_words": 20.0, "ground_truth": "no ground truth"},
    ]
    for row, q in zip(rows, quality, strict=False):
        path = tmp_path / row["caption_stats"]
        path.write_text(json.dumps({**json.loads(path.read_text()), "layer": f"layer-{row['name']}", "quality": q}))
    _result(tmp_path, "round1/eval/vqa/result.json", "vqa",
            {"accuracy": 0.46, "accuracy_shuffled": 0.21, "answer_loss": 1.25, "answer_loss_shuffled": 2.5,
             "loss_gap": 1.25}, "accuracy")
    results = collect(tmp_path, rows, name="t")
    r1 = results["rows"][1]
    assert r1["caption_quality"]["object_recall"] == 0.63 and r1["caption_quality"]["layer"] == "layer-round 1"
    assert r1["scores"]["vqa"]["image_dependence"] == {"accuracy_shuffled": 0.21, "answer_loss": 1.25,
                                                       "answer_loss_shuffled": 2.5, "loss_gap": 1.25}
    assert results["rows"][3]["caption_quality"] is None

    table = quality_table(results).splitlines()
    assert table[0] == ("| model | trained on | layer | captions | distinct (%) | words | object recall (%) "
                        "| wrong mentions (%) | places right (%) |")
    # round 0's stats predate place scoring: said so, not shown as 0
    assert table[2] == "| round 0 | alt-text | `layer-round 0` | 150 | 100.0 | 11.5 | 41.0 | 18.7 | not measured |"
    assert table[3] == "| round 1 | round 0 recaptions | `layer-round 1` | 148 | 52.0 | 34.2 | 63.0 | 25.0 | 37.5 |"
    assert table[4].endswith("| 150 | 20.0 | 20.0 | no ground truth | no ground truth | no ground truth |")
    dep = image_dependence_table(results).splitlines()
    assert dep[2] == "| round 1 | vqa (accuracy) | 46.0 | 21.0 | +25.0 | 1.250 | 2.500 | +1.250 |"
    assert len(dep) == 3
    text = write_report(tmp_path, results).read_text()
    assert "## Caption quality per layer" in text and "## Image dependence" in text
    assert quality_table(results) in text and image_dependence_table(results) in text
    assert "report.html" not in text  # no caption layer of real images to show: no gallery


def test_a_layer_whose_every_caption_was_rejected_says_so(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    stats = tmp_path / rows[2]["caption_stats"]
    stats.write_text(json.dumps({"mean_words": 0.0, "kept": 0, "layer": "spec-spatial", "quality": {
        "captions": 0, "distinct": 0.0, "mean_words": 0.0, "ground_truth": "world", "object_recall": 0.0,
        "wrong_mention_rate": 0.0, "place_accuracy": 0.0, "placed_objects": 0}}))
    results = collect(tmp_path, rows, name="t")
    assert results["rows"][2]["caption_words"] is None
    assert markdown_table(results).splitlines()[4] == "| + spatial specialist | – | – | – | 55.0 | – |"
    assert quality_table(results).splitlines()[-1] == (
        "| + spatial specialist | spatial specialist's answers (final model's QA turns) | `spec-spatial` | 0 "
        "| none kept | none kept | none kept | none kept | none kept |")


def test_scores_by_question_kind(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    for rel, where, closest in [("round1/eval/vqa/result.json", None, None),
                                ("specialists/spatial/eval/spatial/result.json", 0.125, 0.75)]:
        path = tmp_path / rel
        result = json.loads(path.read_text())
        if where is None:  # one kind only: no table
            result["details"] = {"by_kind": {"color": {"n": 50, "accuracy": 0.46}}}
        else:
            result["details"] = {"by_kind": {"where": {"n": 30, "accuracy": where},
                                             "closest": {"n": 20, "accuracy": closest}}}
        path.write_text(json.dumps(result))
    results = collect(tmp_path, rows, name="t")
    spec = results["rows"][2]["scores"]["spatial"]
    assert spec["by_kind"] == {"where": {"n": 30, "score": 0.125}, "closest": {"n": 20, "score": 0.75}}
    assert "by_kind" not in results["rows"][0]["scores"]["vqa"]  # a result without kinds
    tables = kind_tables(results)
    assert [title for title, _ in tables] == ["spatial (accuracy)"]
    lines = tables[0][1].splitlines()
    assert lines[0] == "| model | where (n=30) | closest (n=20) |"
    assert lines[2] == "| + spatial specialist | 12.5 | 75.0 |"
    text = write_report(tmp_path, results).read_text()
    assert "## By question kind" in text and tables[0][1] in text


def test_per_sample_reads_every_evaluators_file(tmp_path: Path) -> None:
    rel = _result(tmp_path, "round0/eval/mmmu/result.json", "mmmu", {"accuracy": 0.5}, "accuracy")
    result = json.loads((tmp_path / rel).read_text())
    # the vila2-evals back ends: their own file name, a `correct` flag per record
    records = [{"id": "a", "correct": True}, {"id": "b", "correct": False}, {"doc_id": 7, "accuracy": 1.0},
               {"id": "c", "metrics": {"accuracy": float("nan")}}]
    (tmp_path / "round0/eval/mmmu/mmmu.lm-eval.samples.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / rel).write_text(json.dumps({**result, "samples_path": "/elsewhere/mmmu.lm-eval.samples.jsonl"}))
    assert per_sample(tmp_path, rel) == {"a": 1.0, "b": 0.0, "7": 1.0}
    empty = _result(tmp_path, "round1/eval/mmmu/result.json", "mmmu", {"accuracy": 0.5}, "accuracy")
    assert per_sample(tmp_path, empty) is None  # no per-sample file: no interval, no error

"""The report reads every number from the run's files and lays them out like the paper."""

from __future__ import annotations

import json
import re
from pathlib import Path

from vila2.pipeline.report import (
    collect,
    hallucination_metric,
    markdown_table,
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
    return collect(root, rows, name="t", stop={"round": 1, "reason": "caption gain +0.1 < 0.2"},
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
    table_lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    numbers = [n for line in table_lines[1:] for n in re.findall(r"(?<![\w.])[+-]?\d+\.\d(?![\d])", line)]
    assert numbers
    gains = {"+5.0"}
    assert all(n in sources or n in gains for n in numbers), [n for n in numbers if n not in sources]


def test_hallucination_metric_names() -> None:
    assert hallucination_metric({"cider": 1, "hallucination_rate": 0.1}) == "hallucination_rate"
    assert hallucination_metric({"chair_i": 0.2, "hallucination": 0.3, "hallucinated": 2.0}) == "chair_i"
    assert hallucination_metric({"accuracy": 1}) is None

"""The spatial plugin: what it registers, its training data, and its evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_spatial_specialist as plugin

from vila2.data import Dataset, StoreError
from vila2.plugins import PluginError


def human_turns(dataset: Path) -> set[str]:
    texts = Dataset.open(dataset).layer("conversations").texts().values()
    return {t["value"].replace("<image>", "").strip()
            for text in texts for t in json.loads(text) if t["from"] == "human"}


def references(dataset: Path) -> list[str]:
    rows = Dataset.open(dataset).layer("conversations").iter_rows()
    return [json.loads(row["text"])[1]["value"] for row in rows]


def test_registers_the_spatial_specialist_and_evaluator(fresh_host, plugin_registered) -> None:
    plugin_registered(plugin)
    spec = fresh_host.get("specialist", "spatial")
    assert spec.plugin == "vila2_spatial_specialist"
    assert spec.settings["pip"] == "vila2-spatial-specialist"
    assert spec.evaluator == "spatial"
    assert all("spatial relations" in p for p in spec.prompts)
    assert len(spec.questions) >= 3
    assert {"r", "alpha", "dropout"} <= set(spec.lora)
    assert fresh_host.find_evaluator("spatial").plugin == "vila2_spatial_specialist"


def test_the_world_tunes_the_specialist_on_its_own_prompt(tiny_world: Path) -> None:
    # a specialist answers best the prompt it was tuned on
    assert set(plugin.PROMPTS) <= human_turns(tiny_world / "spatial")


def test_training_data_defaults_to_the_world(tiny_world: Path, tmp_path: Path) -> None:
    folder = plugin.prepare_data(None, str(tiny_world), str(tmp_path))
    assert Path(folder) == tiny_world / "spatial"
    assert plugin.prepare_data(folder, None, str(tmp_path)) == folder


def test_training_data_problems_name_the_cause(tiny_world: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no training data"):
        plugin.prepare_data(None, None, str(tmp_path))
    with pytest.raises(StoreError, match=r"pretrain: the spatial specialist needs a 'conversations'"):
        plugin.prepare_data(str(tiny_world / "pretrain"), None, str(tmp_path))
    (tmp_path / "notes.txt").write_text("spatial data")
    with pytest.raises(StoreError, match=r"notes\.txt: the spatial specialist's source must be"):
        plugin.prepare_data(str(tmp_path / "notes.txt"), None, str(tmp_path))


def test_training_data_from_llava_json(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    for name, color in (("a", "red"), ("b", "blue")):
        Image.new("RGB", (32, 32), color).save(src / "images" / f"{name}.png")
    (src / "images" / "broken.png").write_bytes(b"not a png")
    entries = [
        {"id": "a", "image": "images/a.png", "conversations": [
            {"from": "human", "value": "<image>\nIs the cup left of the plate?"},
            {"from": "gpt", "value": "Yes."}]},
        {"id": "b", "image": "images/b.png", "conversations": [
            {"from": "human", "value": "Which object is closest to the camera?"},
            {"from": "gpt", "value": "The chair."}]},
        {"id": "c", "image": "images/broken.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is above the table?"},
            {"from": "gpt", "value": "A lamp."}]},
    ]
    (src / "spatial.json").write_text(json.dumps(entries))

    folder = plugin.prepare_data(str(src / "spatial.json"), None, str(tmp_path / "out"))
    dataset = Dataset.open(folder)
    assert dataset.num_samples == 2
    turns = {k: json.loads(v) for k, v in dataset.layer("conversations").texts().items()}
    assert turns["a"][1]["value"] == "Yes."
    assert turns["b"][0]["value"].startswith("<image>")  # ingest adds the missing image token
    rejects = [json.loads(line) for line in (Path(folder) / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects if r["action"] == "rejected"] == [
        ("c", "not an image")]
    # a second call finds the finished ingest
    assert plugin.prepare_data(str(src / "spatial.json"), None, str(tmp_path / "out")) == folder


class Replay:
    """A "model" that answers the benchmark's questions with given answers, in order."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = iter(answers)
        self.asked: list[str] = []

    def __call__(self, images: list, prompts: list[str]) -> list[str]:
        self.asked += prompts
        return [next(self.answers) for _ in prompts]


def test_evaluator_scores_answers_against_the_benchmark(tiny_world: Path, tmp_path: Path) -> None:
    bench = tiny_world / "bench" / "spatial"
    truth = references(bench)
    right = plugin.evaluate(Replay([f"{a.capitalize()}." for a in truth]), "spatial",
                            settings={"world": str(tiny_world)}, out_dir=str(tmp_path))
    assert right.metrics == {"accuracy": 1.0} and right.n == len(truth)
    lines = (tmp_path / "spatial.jsonl").read_text().splitlines()
    assert len(lines) == len(truth)

    wrong = plugin.evaluate(Replay(["no idea"] * len(truth)), "spatial", data=str(bench), limit=5)
    assert wrong.score == 0.0 and wrong.n == 5


def test_evaluator_needs_data_or_the_world() -> None:
    with pytest.raises(PluginError, match=r"evaluator 'spatial'.*needs its data.*--world"):
        plugin.evaluate(Replay([]), "spatial")

"""The OCR plugin: what it registers, its training data, and its evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_ocr_specialist as plugin

from vila2.data import Dataset, StoreError
from vila2.plugins import PluginError


def human_turns(dataset: Path) -> set[str]:
    texts = Dataset.open(dataset).layer("conversations").texts().values()
    return {t["value"].replace("<image>", "").strip()
            for text in texts for t in json.loads(text) if t["from"] == "human"}


def references(dataset: Path) -> list[str]:
    rows = Dataset.open(dataset).layer("conversations").iter_rows()
    return [json.loads(row["text"])[1]["value"] for row in rows]


def test_registers_the_ocr_specialist_and_evaluator(fresh_host, plugin_registered) -> None:
    plugin_registered(plugin)
    spec = fresh_host.get("specialist", "ocr")
    assert spec.plugin == "vila2_ocr_specialist"
    assert spec.settings["pip"] == "vila2-ocr-specialist"
    assert spec.evaluator == "ocr"
    assert all("describe the text in the image" in p for p in spec.prompts)
    assert {"r", "alpha", "dropout"} <= set(spec.lora)
    assert fresh_host.find_evaluator("ocr").plugin == "vila2_ocr_specialist"


def test_the_world_tunes_the_specialist_on_its_own_prompt(tiny_world: Path) -> None:
    assert set(plugin.PROMPTS) <= human_turns(tiny_world / "ocr")


def test_training_data_defaults_to_the_world(tiny_world: Path, tmp_path: Path) -> None:
    assert Path(plugin.prepare_data(None, str(tiny_world), str(tmp_path))) == tiny_world / "ocr"
    with pytest.raises(StoreError, match="no training data"):
        plugin.prepare_data(None, None, str(tmp_path))
    with pytest.raises(StoreError, match="needs a 'conversations' layer"):
        plugin.prepare_data(str(tiny_world / "pretrain"), None, str(tmp_path))


def test_training_data_from_ocr_vqa_style_llava_json(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    src = tmp_path / "ocr_vqa"
    src.mkdir()
    entries = []
    for i, title in enumerate(["Moby Dick", "Dune"]):
        image = Image.new("RGB", (96, 48), "white")
        ImageDraw.Draw(image).text((4, 16), title, fill="black")
        image.save(src / f"{i}.jpg")
        entries.append({"id": f"book-{i}", "image": f"{i}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the title of this book?"},
            {"from": "gpt", "value": title},
            {"from": "human", "value": "Is this a cookbook?"},
            {"from": "gpt", "value": "No"}]})
    entries.append({"id": "book-2", "image": "2.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWho wrote it?"}, {"from": "gpt", "value": "?"}]})
    (src / "ocr_vqa.json").write_text(json.dumps(entries))

    folder = plugin.prepare_data(str(src / "ocr_vqa.json"), None, str(tmp_path / "out"))
    dataset = Dataset.open(folder)
    assert dataset.num_samples == 2  # book-2 has no image file
    assert json.loads(dataset.layer("conversations").texts()["book-1"])[1]["value"] == "Dune"
    rejects = (Path(folder) / "rejects.jsonl").read_text()
    assert "book-2" in rejects and "missing image" in rejects


class Replay:
    """A "model" that answers the benchmark's questions with given answers, in order."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = iter(answers)

    def __call__(self, images: list, prompts: list[str]) -> list[str]:
        return [next(self.answers) for _ in prompts]


def test_evaluator_reports_exact_match_and_anls(tiny_world: Path) -> None:
    truth = references(tiny_world / "bench" / "ocr")
    right = plugin.evaluate(Replay([f'"{a.upper()}".' for a in truth]), "ocr",
                            settings={"world": str(tiny_world)})
    assert right.primary == "exact_match"
    assert right.metrics == {"exact_match": 1.0, "anls": 1.0}

    # one letter off in every answer: no exact match, yet ANLS credits the near misses
    near = plugin.evaluate(Replay([a[:-1] + "#" for a in truth]), "ocr",
                           data=str(tiny_world / "bench" / "ocr"))
    assert near.metrics["exact_match"] == 0.0
    assert 0.5 < near.metrics["anls"] < 1.0


def test_evaluator_needs_data_or_the_world() -> None:
    with pytest.raises(PluginError, match=r"evaluator 'ocr'.*needs its data.*--world"):
        plugin.evaluate(Replay([]), "ocr")

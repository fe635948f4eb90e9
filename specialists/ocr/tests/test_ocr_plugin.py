"""The OCR plugin: the specialist package contract, its training data, and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_ocr_specialist as plugin
from vila2_ocr_specialist.training_data import prepare_data

from vila2.data import Dataset, StoreError
from vila2.testing import Replay, benchmark_references, check_specialist_package


def test_the_specialist_package_contract(tiny_world: Path, tmp_path: Path) -> None:
    check_specialist_package(plugin, tiny_world, tmp_path)
    assert all("describe the text in the image" in p for p in plugin.KIT.prompts)


def test_training_data_defaults_to_the_world(tiny_world: Path, tmp_path: Path) -> None:
    assert Path(prepare_data(None, str(tiny_world), str(tmp_path))) == tiny_world / "ocr"
    with pytest.raises(StoreError, match="no training data"):
        prepare_data(None, None, str(tmp_path))
    with pytest.raises(StoreError, match="needs a 'conversations' layer"):
        prepare_data(str(tiny_world / "pretrain"), None, str(tmp_path))


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

    folder = prepare_data(str(src / "ocr_vqa.json"), None, str(tmp_path / "out"))
    dataset = Dataset.open(folder)
    assert dataset.num_samples == 2  # book-2 has no image file
    assert json.loads(dataset.layer("conversations").texts()["book-1"])[1]["value"] == "Dune"
    rejects = (Path(folder) / "rejects.jsonl").read_text()
    assert "book-2" in rejects and "missing image" in rejects


def test_the_benchmark_reports_exact_match_and_anls(tiny_world: Path) -> None:
    truth = benchmark_references(tiny_world / "bench" / "ocr")
    right = plugin.KIT.evaluate(Replay([f'"{a.upper()}".' for a in truth]), "ocr",
                                settings={"world": str(tiny_world)})
    assert right.primary == "exact_match"
    assert right.metrics == {"exact_match": 1.0, "anls": 1.0}
    # one letter off in every answer: no exact match, yet ANLS credits the near misses
    near = plugin.KIT.evaluate(Replay([a[:-1] + "#" for a in truth]), "ocr",
                               data=str(tiny_world / "bench" / "ocr"))
    assert near.metrics["exact_match"] == 0.0
    assert 0.5 < near.metrics["anls"] < 1.0

"""The spatial plugin: the specialist package contract, and its training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_spatial_specialist as plugin
from vila2_spatial_specialist.training_data import prepare_data

from vila2.data import Dataset, StoreError
from vila2.testing import check_specialist_package


def test_the_specialist_package_contract(tiny_world: Path, tmp_path: Path) -> None:
    check_specialist_package(plugin, tiny_world, tmp_path)
    assert all("spatial relations" in p for p in plugin.KIT.prompts)


def test_training_data_defaults_to_the_world(tiny_world: Path, tmp_path: Path) -> None:
    folder = prepare_data(None, str(tiny_world), str(tmp_path))
    assert Path(folder) == tiny_world / "spatial"
    assert prepare_data(folder, None, str(tmp_path)) == folder


def test_training_data_problems_name_the_cause(tiny_world: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no training data"):
        prepare_data(None, None, str(tmp_path))
    with pytest.raises(StoreError, match=r"pretrain: the spatial specialist needs a 'conversations'"):
        prepare_data(str(tiny_world / "pretrain"), None, str(tmp_path))
    (tmp_path / "notes.txt").write_text("spatial data")
    with pytest.raises(StoreError, match=r"notes\.txt: the spatial specialist's source must be"):
        prepare_data(str(tmp_path / "notes.txt"), None, str(tmp_path))


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

    folder = prepare_data(str(src / "spatial.json"), None, str(tmp_path / "out"))
    dataset = Dataset.open(folder)
    assert dataset.num_samples == 2
    turns = {k: json.loads(v) for k, v in dataset.layer("conversations").texts().items()}
    assert turns["a"][1]["value"] == "Yes."
    assert turns["b"][0]["value"].startswith("<image>")  # ingest adds the missing image token
    rejects = [json.loads(line) for line in (Path(folder) / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects if r["action"] == "rejected"] == [
        ("c", "not an image")]
    # a second call finds the finished ingest
    assert prepare_data(str(src / "spatial.json"), None, str(tmp_path / "out")) == folder

"""The counting specialist: what it registers, its training data, and a short end-to-end run.

`pytest -m "not slow"` skips the run (it fine-tunes and recaptions with a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_counting_specialist as plugin
from vila2_counting_specialist.training_data import counting_turns

from vila2.captioning.engine import caption_dataset
from vila2.data import Dataset


def test_registers_the_counting_specialist(fresh_host, plugin_registered) -> None:
    plugin_registered(plugin)
    spec = fresh_host.get("specialist", "counting")
    assert spec.plugin == "vila2_counting_specialist"
    assert spec.prompts == plugin.PROMPTS
    assert spec.evaluator == "vqa"
    assert spec.settings["pip"] == "vila2-counting-specialist"


def test_counting_turns_keep_the_count_questions_image_first() -> None:
    conversation = [
        {"from": "human", "value": "<image>\nWhat color is the circle?"},
        {"from": "gpt", "value": "red"},
        {"from": "human", "value": "How many squares are there?"},
        {"from": "gpt", "value": "2"},
    ]
    assert counting_turns(conversation) == [
        {"from": "human", "value": "<image>\nHow many squares are there?"},
        {"from": "gpt", "value": "2"},
    ]
    assert counting_turns(conversation[:2]) == []


def test_training_data_from_the_world(tiny_world: Path, tmp_path: Path) -> None:
    folder = plugin.prepare_data(None, str(tiny_world), str(tmp_path))
    texts = Dataset.open(folder).layer("conversations").texts()
    assert texts
    for text in texts.values():
        turns = json.loads(text)
        assert turns[0]["value"].startswith("<image>\n")
        assert all("how many" in t["value"].lower() for t in turns[::2])
    assert plugin.prepare_data(None, str(tiny_world), str(tmp_path)) == folder  # already there


@pytest.mark.slow
def test_finetune_and_recaption(fresh_host, plugin_registered, tiny_world: Path,
                                tiny_model: Path, tmp_path: Path) -> None:
    plugin_registered(plugin)
    spec = fresh_host.get("specialist", "counting")
    data = spec.prepare_data(None, str(tiny_world), str(tmp_path))
    model = fresh_host.hook.finetune_specialist(
        specialist=spec, base_model=str(tiny_model), data=data, out_dir=str(tmp_path / "model"),
        settings={"max_steps": 2, "batch_size": 4})
    caption_dataset(data, model=model, layer="spec-counting", prompts=spec.prompts,
                    batch_size=16, max_new_tokens=4, progress=False)
    rows = list(Dataset.open(data).layer("spec-counting").iter_rows())
    assert len(rows) == Dataset.open(data).num_samples

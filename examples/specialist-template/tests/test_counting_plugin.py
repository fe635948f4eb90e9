"""The counting plugin: the specialist package contract, and its training data.

`pytest -m "not slow"` skips the end-to-end run (it fine-tunes and recaptions with a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import vila2_counting_specialist as plugin
from vila2_counting_specialist.training_data import counting_turns, prepare_data

from vila2.data import Dataset
from vila2.testing import check_specialist_package


def test_the_specialist_package_contract(tiny_world: Path, tmp_path: Path) -> None:
    check_specialist_package(plugin, tiny_world, tmp_path)


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
    folder = prepare_data(None, str(tiny_world), str(tmp_path))
    for text in Dataset.open(folder).layer("conversations").texts().values():
        turns = json.loads(text)
        assert turns[0]["value"].startswith("<image>\n")
        assert all("how many" in t["value"].lower() for t in turns[::2])
    assert prepare_data(None, str(tiny_world), str(tmp_path)) == folder  # already there

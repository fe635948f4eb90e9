"""Mixture templates: caption layers and conversation sets -> training conversations."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vila2.data.mixture import (
    CAPTION_PROMPTS,
    MixtureEntry,
    MixtureError,
    build_examples,
    conversation_for,
)

IDS = ["s0", "s1", "s2", "s3"]


def _png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four images; ``alt`` (s3 has none), ``recap`` (s1 filtered out), two specialist layers and
    a conversation layer."""
    from vila2.data import Dataset

    ds = Dataset.create(tmp_path_factory.mktemp("mix") / "ds")
    with ds.writer(shard_size=2) as writer:
        for i, sample_id in enumerate(IDS):
            writer.add(sample_id, _png((i * 60, 0, 0)), 8, 8)

    def layer(name: str, rows: dict[str, tuple[str, bool]], kind: str = "caption") -> None:
        writer = ds.create_layer(name, kind, producer="test")
        for shard in writer.pending_shards():
            writer.write_shard(shard, [
                {"id": i, "text": rows[i][0], "kept": rows[i][1]} for i in ds.shard_ids(shard)
            ])

    layer("alt", {"s0": ("red cup", True), "s1": ("blue box", True), "s2": ("green", True), "s3": ("", False)})
    layer("recap", {"s0": ("A red cup on a table.", True), "s1": ("A a a a.", False),
                    "s2": ("A green ball.", True), "s3": ("A yellow star.", True)})
    layer("spatial", {i: (f"{i} is left.", True) for i in IDS})
    layer("ocr", {"s0": ("It says OPEN.", True), "s1": ("", False), "s2": ("It says 7.", True),
                  "s3": ("It says NO.", True)})
    talk = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."}]
    layer("conversations", {i: (json.dumps(talk), True) for i in IDS}, kind="conversation")
    return ds.path


def _by_id(examples: list[dict]) -> dict[str, list[dict]]:
    return {e["id"]: e["conversations"] for e in examples}


def test_concat_joins_original_and_recaption(dataset: Path) -> None:
    got = _by_id(build_examples([{"dataset": str(dataset), "layers": ["alt", "recap"], "template": "concat"}]))
    assert got["s0"][1]["value"] == "red cup A red cup on a table."
    assert got["s1"][1]["value"] == "blue box"  # the recaption was filtered out
    assert got["s3"][1]["value"] == "A yellow star."  # no alt-text
    assert got["s0"][0]["value"].startswith("<image>\n")
    assert got["s0"][0]["value"].split("\n", 1)[1] in CAPTION_PROMPTS


def test_replace_falls_back_to_the_original(dataset: Path) -> None:
    got = _by_id(build_examples([{"dataset": str(dataset), "layers": ["alt", "recap"], "template": "replace",
                                  "prompt": "Describe the image."}]))
    assert got["s0"] == [{"from": "human", "value": "<image>\nDescribe the image."},
                         {"from": "gpt", "value": "A red cup on a table."}]
    assert got["s1"][1]["value"] == "blue box"


def test_qa_appends_specialist_answers_in_seeded_order(dataset: Path) -> None:
    entry = {"dataset": str(dataset), "layers": ["alt", "spatial", "ocr"], "template": "qa",
             "questions": {"spatial": ["Where is it?"], "ocr": ["What does it say?"]}}
    got = _by_id(build_examples([entry], seed=3))
    assert "s3" not in got  # no original caption: nothing to anchor the answers
    s0 = got["s0"]
    assert s0[1]["value"] == "red cup" and len(s0) == 6
    pairs = {(s0[i]["value"], s0[i + 1]["value"]) for i in (2, 4)}
    assert pairs == {("Where is it?", "s0 is left."), ("What does it say?", "It says OPEN.")}
    assert len(got["s1"]) == 4  # the filtered OCR answer is left out
    orders = {tuple(t["value"] for t in c[2::2])
              for s in range(6) for c in _by_id(build_examples([entry], seed=s)).values()}
    assert len(orders) > 1  # shuffled
    assert _by_id(build_examples([entry], seed=3)) == got  # ...deterministically
    capped = _by_id(build_examples([{**entry, "max_turns": 1}], seed=3))
    assert all(len(c) == 4 for c in capped.values())


def test_conversation_layers_are_used_as_they_are(dataset: Path) -> None:
    got = build_examples([{"dataset": str(dataset), "layers": ["conversations"], "template": "conversation"}])
    assert [e["id"] for e in got] == IDS
    assert got[0]["conversations"][1] == {"from": "gpt", "value": "Red."}
    assert isinstance(got[0]["image"], bytes)


def test_weight_repeats_or_subsamples(dataset: Path) -> None:
    def count(weight: float) -> int:
        return len(build_examples([{"dataset": str(dataset), "layers": ["spatial"], "weight": weight}]))

    assert count(2) == 8
    assert count(1) == 4
    assert 0 <= count(0.5) <= 4
    assert count(0.5) == count(0.5)


def test_prompts_are_drawn_per_sample_id() -> None:
    entry = MixtureEntry(dataset="x", layers=["alt"])
    first = conversation_for(entry, {"id": "abc", "alt": "cat"})
    assert first == conversation_for(entry, {"id": "abc", "alt": "cat"})
    prompts = {conversation_for(entry, {"id": f"id{i}", "alt": "cat"})[0]["value"] for i in range(40)}
    assert len(prompts) > 2


def test_errors_name_the_entry_key_and_sample(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(MixtureError, match=r"mixture entry 0: template"):
        build_examples([{"dataset": str(dataset), "layers": ["alt"], "template": "summary"}])
    with pytest.raises(MixtureError, match=r"mixture entry 1: layers"):
        build_examples([{"dataset": str(dataset), "layers": ["alt"]}, {"dataset": str(dataset), "layers": []}])
    with pytest.raises(MixtureError, match="is a caption layer; template 'conversation' needs conversation"):
        build_examples([{"dataset": str(dataset), "layers": ["alt"], "template": "conversation"}])
    with pytest.raises(MixtureError, match="not a vila2 dataset"):
        build_examples([{"dataset": str(tmp_path), "layers": ["alt"]}])
    with pytest.raises(MixtureError, match="questions given for"):
        MixtureEntry.parse({"dataset": "x", "layers": ["alt"], "template": "qa", "questions": {"ocr": ["?"]}})
    entry = MixtureEntry(dataset="d", layers=["conversations"], template="conversation")
    with pytest.raises(MixtureError, match=r"sample 'bad'.*not JSON"):
        conversation_for(entry, {"id": "bad", "conversations": "[{"})
    with pytest.raises(MixtureError, match=r"sample 'odd'.*turn 1"):
        conversation_for(entry, {"id": "odd", "conversations": json.dumps([{"from": "human", "value": "q"},
                                                                            {"from": "human", "value": "q"}])})
    with pytest.raises(MixtureError, match="empty"):
        build_examples([])

"""The grounding plugin: the specialist package contract, its training data (boxes rewritten on
the grid), and its benchmark's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_grounding_specialist as plugin
from vila2_grounding_specialist.boxes import parse_box
from vila2_grounding_specialist.training_data import prepare_data

from vila2.data import Dataset, StoreError
from vila2.testing import Replay, benchmark_references, check_specialist_package


def test_the_specialist_package_contract(tiny_world: Path, tmp_path: Path) -> None:
    check_specialist_package(plugin, tiny_world, tmp_path)
    assert all("[xmin,ymin,xmax,ymax]" in p for p in plugin.KIT.prompts)
    # its recaptions come out with canonical boxes
    clean = plugin.KIT.specialist().clean_answer
    assert clean is not None and clean("A red circle ( 0.1, 0.2 ,0.3,0.4 ).") == "A red circle [100,200,300,400]."
    # an answer whose boxes are malformed is recorded as rejected, not trained on
    layer_filter = plugin.KIT.specialist().clean_filter()
    assert layer_filter is not None and layer_filter.name == "grounding-clean"
    sample = {"id": "pretrain-000001"}
    assert layer_filter.apply(sample, "A red circle ( 0.1, 0.2 ,0.3,0.4 ).") == (
        "A red circle [100,200,300,400].", 1.0, True)
    assert layer_filter.apply(sample, "A red circle [2,8,736,849,819].")[2] is False


def test_training_data_defaults_to_the_world(tiny_world: Path, tmp_path: Path) -> None:
    assert Path(prepare_data(None, str(tiny_world), str(tmp_path))) == tiny_world / "grounding"
    with pytest.raises(StoreError, match="no training data"):
        prepare_data(None, None, str(tmp_path))


def _llava(folder: Path, entries: list[dict], suffix: str = ".json") -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for entry in entries:
        Image.new("RGB", (40, 30), "white").save(folder / entry["image"])
    file = folder / f"grit{suffix}"
    if suffix == ".jsonl":
        file.write_text("".join(json.dumps(e) + "\n" for e in entries))
    else:
        file.write_text(json.dumps(entries))
    return file


def _entry(ident: str, question: str, answer: str) -> dict:
    return {"id": ident, "image": f"{ident}.png", "conversations": [
        {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_llava_boxes_are_rewritten_on_the_grid(tmp_path: Path, suffix: str) -> None:
    file = _llava(tmp_path / "src", [
        _entry("shikra", "Where is the dog?", "The dog [0.100, 0.250, 0.500, 0.750]."),
        _entry("qwen", "Find the cup (10,20),(300,400).", "It is there."),
        _entry("grit", "Describe the image with boxes.", "A man [12, 40, 300, 998] runs."),
    ], suffix)
    folder = prepare_data(str(file), None, str(tmp_path / "out"))
    turns = {k: json.loads(v) for k, v in Dataset.open(folder).layer("conversations").texts().items()}
    assert turns["shikra"][1]["value"] == "The dog [100,250,500,749]."
    assert turns["qwen"][0]["value"] == "<image>\nFind the cup [10,20,300,400]."
    assert turns["grit"][1]["value"] == "A man [12,40,300,998] runs."
    # the folder holding the file and its images is a source too
    again = prepare_data(str(file.parent), None, str(tmp_path / "out2"))
    assert Dataset.open(again).num_samples == 3


def test_pixel_boxes_are_refused_naming_the_entry(tmp_path: Path) -> None:
    file = _llava(tmp_path / "src", [
        _entry("ok", "Where is the cat?", "[1,2,3,4]"),
        _entry("pixels", "Where is the bus?", "[100, 200, 1600, 900]"),
    ])
    with pytest.raises(StoreError, match=r"grit.json entry 1 \(id 'pixels'\): box .* outside the 0–999 grid"):
        prepare_data(str(file), None, str(tmp_path / "out"))


def test_bad_llava_json_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n{not json\n')
    with pytest.raises(StoreError, match=r"bad.jsonl line 2 is not valid JSON"):
        prepare_data(str(tmp_path / "bad.jsonl"), None, str(tmp_path / "out"))


def _noisy(answer: str) -> str:
    """The right answer in another notation: a 0–1 box in parentheses, or a sentence."""
    box = parse_box(answer)
    if box is None:
        return f"The {answer}."
    return "It is at ({:.3f}, {:.3f}, {:.3f}, {:.3f})".format(*(v / 999 for v in box))


def test_evaluator_scores_noisy_but_right_answers(tiny_world: Path) -> None:
    truth = benchmark_references(tiny_world / "bench" / "grounding")
    result = plugin.KIT.evaluate(Replay([_noisy(a) for a in truth]), "grounding",
                                 settings={"world": str(tiny_world)})
    assert result.primary == "accuracy"
    assert result.metrics == pytest.approx({"accuracy": 1.0, "box_accuracy": 1.0, "iou": 1.0,
                                            "parse_rate": 1.0, "name_accuracy": 1.0}, abs=1e-2)


def test_evaluator_scores_wrong_boxes_as_wrong(tiny_world: Path) -> None:
    truth = benchmark_references(tiny_world / "bench" / "grounding")
    far = ["[0,0,5,5]" if parse_box(a) else "green nothing" for a in truth]
    result = plugin.KIT.evaluate(Replay(far), "grounding", data=str(tiny_world / "bench" / "grounding"))
    assert result.metrics["accuracy"] == 0.0
    assert result.metrics["parse_rate"] == 1.0

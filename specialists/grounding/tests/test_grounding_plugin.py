"""The grounding plugin: what it registers, its training data, and its evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_grounding_specialist as plugin
from vila2_grounding_specialist.boxes import parse_box

from vila2.data import Dataset, StoreError
from vila2.plugins import PluginError


def human_turns(dataset: Path) -> set[str]:
    texts = Dataset.open(dataset).layer("conversations").texts().values()
    return {t["value"].replace("<image>", "").strip()
            for text in texts for t in json.loads(text) if t["from"] == "human"}


def references(dataset: Path) -> list[str]:
    rows = Dataset.open(dataset).layer("conversations").iter_rows()
    return [json.loads(row["text"])[1]["value"] for row in rows]


def test_registers_the_grounding_specialist_and_evaluator(fresh_host, plugin_registered) -> None:
    plugin_registered(plugin)
    spec = fresh_host.get("specialist", "grounding")
    assert spec.plugin == "vila2_grounding_specialist"
    assert spec.settings["pip"] == "vila2-grounding-specialist"
    assert spec.evaluator == "grounding"
    assert all("[xmin,ymin,xmax,ymax]" in p for p in spec.prompts)
    assert {"r", "alpha", "dropout"} <= set(spec.lora)
    assert fresh_host.find_evaluator("grounding").plugin == "vila2_grounding_specialist"
    # its recaptions come out with canonical boxes
    assert spec.clean_answer("A red circle ( 0.1, 0.2 ,0.3,0.4 ).") == "A red circle [100,200,300,400]."


def test_the_world_tunes_the_specialist_on_its_own_prompt(tiny_world: Path) -> None:
    assert set(plugin.PROMPTS) <= human_turns(tiny_world / "grounding")


def test_training_data_defaults_to_the_world(tiny_world: Path, tmp_path: Path) -> None:
    assert Path(plugin.prepare_data(None, str(tiny_world), str(tmp_path))) == tiny_world / "grounding"
    with pytest.raises(StoreError, match="no training data"):
        plugin.prepare_data(None, None, str(tmp_path))


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
    folder = plugin.prepare_data(str(file), None, str(tmp_path / "out"))
    turns = {k: json.loads(v) for k, v in Dataset.open(folder).layer("conversations").texts().items()}
    assert turns["shikra"][1]["value"] == "The dog [100,250,500,749]."
    assert turns["qwen"][0]["value"] == "<image>\nFind the cup [10,20,300,400]."
    assert turns["grit"][1]["value"] == "A man [12,40,300,998] runs."
    # the folder holding the file and its images is a source too
    again = plugin.prepare_data(str(file.parent), None, str(tmp_path / "out2"))
    assert Dataset.open(again).num_samples == 3


def test_pixel_boxes_are_refused_naming_the_entry(tmp_path: Path) -> None:
    file = _llava(tmp_path / "src", [
        _entry("ok", "Where is the cat?", "[1,2,3,4]"),
        _entry("pixels", "Where is the bus?", "[100, 200, 1600, 900]"),
    ])
    with pytest.raises(StoreError, match=r"grit.json entry 1 \(id 'pixels'\): box .* outside the 0–999 grid"):
        plugin.prepare_data(str(file), None, str(tmp_path / "out"))


def test_bad_llava_json_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n{not json\n')
    with pytest.raises(StoreError, match=r"bad.jsonl line 2 is not valid JSON"):
        plugin.prepare_data(str(tmp_path / "bad.jsonl"), None, str(tmp_path / "out"))


class Replay:
    """A "model" that answers the benchmark's questions with given answers, in order."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = iter(answers)

    def __call__(self, images: list, prompts: list[str]) -> list[str]:
        return [next(self.answers) for _ in prompts]


def _noisy(answer: str) -> str:
    """The right answer in another notation: a 0–1 box in parentheses, or a sentence."""
    box = parse_box(answer)
    if box is None:
        return f"The {answer}."
    return "It is at ({:.3f}, {:.3f}, {:.3f}, {:.3f})".format(*(v / 999 for v in box))


def test_evaluator_scores_noisy_but_right_answers(tiny_world: Path) -> None:
    truth = references(tiny_world / "bench" / "grounding")
    result = plugin.evaluate(Replay([_noisy(a) for a in truth]), "grounding",
                             settings={"world": str(tiny_world)})
    assert result.primary == "accuracy"
    assert result.metrics == pytest.approx({"accuracy": 1.0, "box_accuracy": 1.0, "iou": 1.0,
                                            "parse_rate": 1.0, "name_accuracy": 1.0}, abs=1e-2)


def test_evaluator_scores_wrong_boxes_as_wrong(tiny_world: Path) -> None:
    truth = references(tiny_world / "bench" / "grounding")
    far = ["[0,0,5,5]" if parse_box(a) else "green nothing" for a in truth]
    result = plugin.evaluate(Replay(far), "grounding", data=str(tiny_world / "bench" / "grounding"))
    assert result.metrics["accuracy"] == 0.0
    assert result.metrics["parse_rate"] == 1.0


def test_evaluator_needs_data_or_the_world() -> None:
    with pytest.raises(PluginError, match=r"evaluator 'grounding'.*needs its data.*--world"):
        plugin.evaluate(Replay([]), "grounding")

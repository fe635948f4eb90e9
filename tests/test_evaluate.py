"""evaluate_conversations and the built-in ``world`` evaluator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from vila2.data import Dataset
from vila2.evaluate import evaluate_conversations, other_images, question_and_reference
from vila2.plugins import Host, PluginError
from vila2.world.scene import Scene
from vila2.world.scoring import vqa_score


class Oracle:
    """Answers every benchmark question with its reference (looked up by pixels and prompt)."""

    def __init__(self, data: Path) -> None:
        ds = Dataset.open(data)
        self.answers: dict[tuple[bytes, str], str] = {}
        for sample in ds.iter_samples(layers=["conversations"]):
            question, reference = question_and_reference(sample["conversations"], sample["id"])
            self.answers[(ds.load_image(sample).tobytes(), question)] = reference
        self.calls: list[int] = []

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        self.calls.append(len(images))
        # a question asked with another image (shuffled) has no reference: the oracle is blind then
        return [self.answers.get((image.tobytes(), prompt), "") for image, prompt in zip(images, prompts, strict=True)]


def _references(data: Path) -> list[str]:
    ds = Dataset.open(data)
    return [question_and_reference(s["conversations"], s["id"])[1] for s in ds.iter_samples(layers=["conversations"])]


def test_an_oracle_scores_one(tiny_world: Path, tmp_path: Path) -> None:
    data = tiny_world / "bench" / "vqa"
    oracle = Oracle(data)
    result = evaluate_conversations(oracle, data, vqa_score, benchmark="vqa", out_dir=tmp_path, batch_size=16)
    assert result.benchmark == "vqa" and result.primary == "accuracy" and result.score == 1.0
    assert result.n == 40 and oracle.calls == [16, 16, 8]
    lines = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    assert Path(result.samples_path) == tmp_path / "vqa.jsonl"
    assert len(lines) == 40 and all(line["prediction"] == line["reference"] for line in lines)
    assert not lines[0]["question"].startswith("<image>") and lines[0]["metrics"] == {"accuracy": 1.0}


def test_a_constant_answer_scores_its_share(tiny_world: Path) -> None:
    data = tiny_world / "bench" / "vqa"
    refs = _references(data)[:30]
    result = evaluate_conversations(lambda images, prompts: ["yes"] * len(images), data, vqa_score,
                                    benchmark="vqa", limit=30)
    assert result.n == 30 and result.samples_path is None
    assert result.score == pytest.approx(refs.count("yes") / 30)
    assert 0 < result.score < 0.5


def test_scores_per_question_kind(tiny_world: Path, tmp_path: Path) -> None:
    """A constant "yes" scores on the existence questions only; the kinds add up to the whole."""
    data = tiny_world / "bench" / "vqa"
    result = evaluate_conversations(lambda images, prompts: ["yes"] * len(images), data, vqa_score,
                                    benchmark="vqa", out_dir=tmp_path)
    by_kind = result.details["by_kind"]
    assert set(by_kind) == {"color", "shape", "count", "exist"}
    assert sum(g["n"] for g in by_kind.values()) == result.n
    assert by_kind["color"]["accuracy"] == by_kind["shape"]["accuracy"] == 0.0
    assert 0 < by_kind["exist"]["accuracy"] < 1
    total = sum(g["n"] * g["accuracy"] for g in by_kind.values()) / result.n
    assert total == pytest.approx(result.score)
    lines = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    assert all(line["kind"] in by_kind for line in lines)
    assert sum(line["kind"] == "exist" for line in lines) == by_kind["exist"]["n"]


def test_bad_benchmark_data_is_named(tiny_world: Path, tmp_path: Path) -> None:
    answer = lambda images, prompts: ["x"] * len(images)  # noqa: E731
    with pytest.raises(ValueError, match="no 'conversations' layer"):
        evaluate_conversations(answer, tiny_world / "pretrain", vqa_score, benchmark="vqa")
    with pytest.raises(ValueError, match="limit"):
        evaluate_conversations(answer, tiny_world / "bench" / "vqa", vqa_score, benchmark="vqa", limit=0)
    with pytest.raises(ValueError, match="returned 1 answers for 2"):
        evaluate_conversations(lambda i, p: ["x"], tiny_world / "bench" / "vqa", vqa_score,
                               benchmark="vqa", batch_size=2)

    source = Dataset.open(tiny_world / "bench" / "vqa")
    broken = Dataset.create(tmp_path / "broken")
    with broken.writer() as writer:
        for sample in source.iter_samples():
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
            if writer.samples_written + len(writer._ids) >= 3:
                break
    layer = broken.create_layer("conversations", "conversation", producer="test")
    ids = broken.shard_ids(broken.shards()[0])
    texts = ['[{"from": "human", "value": "<image>\\nQ?"}, {"from": "gpt", "value": "A"}]',
             "not json", "[]"]
    layer.write_shard(broken.shards()[0], [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)])
    with pytest.raises(ValueError, match=rf"sample '{ids[1]}': conversation is not JSON"):
        evaluate_conversations(answer, tmp_path / "broken", vqa_score, benchmark="vqa")


def test_question_and_reference() -> None:
    turns = [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "<image>\nWhat?"},
             {"from": "gpt", "value": "red"}]
    assert question_and_reference(json.dumps(turns), "s") == ("What?", "red")
    with pytest.raises(ValueError, match="s: the first human turn has no gpt answer"):
        question_and_reference(json.dumps(turns[:2]), "s")
    with pytest.raises(ValueError, match="s: no human turn"):
        question_and_reference("[]", "s")


def test_world_evaluator_is_registered(fresh_host: Host) -> None:
    evaluator = fresh_host.find_evaluator("vqa", "builtin")
    assert evaluator.name == "world" and evaluator.plugin == "vila2.default_plugins.world_evaluator"
    assert fresh_host.find_evaluator("caption", "builtin") is evaluator


def test_world_evaluator_scores_captions(fresh_host: Host, tiny_world: Path, tmp_path: Path) -> None:
    run = fresh_host.get("evaluator", "world").run
    oracle = Oracle(tiny_world / "bench" / "caption")
    perfect = run(oracle, "caption", settings={"world": str(tiny_world)}, out_dir=tmp_path)
    assert perfect.primary == "bleu4" and perfect.score == pytest.approx(1.0)
    assert perfect.metrics["object_recall"] == 1.0 and perfect.metrics["chair_i"] == 0.0
    assert (tmp_path / "caption.jsonl").is_file()

    alts = run(lambda images, prompts: ["red circle stock photo free download"] * len(images), "caption",
               data=tiny_world / "bench" / "caption", limit=20)
    truths = [Scene.from_dict(json.loads(t)) for t in Dataset.open(tiny_world / "bench" / "caption")
              .layer("truth").texts().values()][:20]
    without = sum(s.find("red", "circle") is None for s in truths) / 20
    assert alts.n == 20 and alts.score < 0.05
    assert alts.metrics["chair_i"] == pytest.approx(without) and alts.metrics["object_recall"] < 0.3

    vqa = run(Oracle(tiny_world / "bench" / "vqa"), "vqa", settings={"world": str(tiny_world)})
    assert vqa.primary == "accuracy" and vqa.score == 1.0
    # VQA is asked again with shuffled images by default; an answer function has no loss
    assert vqa.metrics["accuracy_shuffled"] < 0.2 and "loss_gap" not in vqa.metrics
    assert "accuracy_shuffled" not in perfect.metrics  # captions: only when asked


def test_other_images_pairs_each_sample_with_a_different_image() -> None:
    images = [b"A", b"A", b"B", b"C", b"C", b"C", b"D"]
    samples = [{"id": str(i), "image": image} for i, image in enumerate(images)]
    pairs = list(other_images(iter(samples)))
    assert [s["id"] for s, _ in pairs] == [s["id"] for s in samples]  # every sample, in order
    assert all(s["image"] != o["image"] for s, o in pairs)
    assert [o["id"] for _, o in pairs] == ["2", "2", "1", "2", "2", "2", "5"]
    assert list(other_images(iter(samples))) == pairs  # deterministic
    with pytest.raises(ValueError, match="two different images"):
        list(other_images(iter(samples[:2])))


def test_shuffled_images_show_whether_the_answers_use_them(tiny_world: Path, tmp_path: Path) -> None:
    data = tiny_world / "bench" / "vqa"
    oracle = Oracle(data)
    result = evaluate_conversations(oracle, data, vqa_score, benchmark="vqa", out_dir=tmp_path, batch_size=16,
                                    shuffled=True)
    # looks at the image: perfect with the right one, blind with another
    assert result.score == 1.0 and result.metrics["accuracy_shuffled"] == 0.0
    assert list(result.metrics) == ["accuracy", "accuracy_shuffled"] and result.primary == "accuracy"
    lines = [json.loads(line) for line in Path(result.samples_path).read_text().splitlines()]
    assert len(lines) == result.n == 40
    assert all(line["shuffled"]["image_of"] != line["id"] for line in lines)
    assert lines[0]["metrics"] == {"accuracy": 1.0} and lines[0]["shuffled"]["metrics"] == {"accuracy": 0.0}
    # an answer that ignores the image scores the same either way
    blind = evaluate_conversations(lambda images, prompts: ["yes"] * len(images), data, vqa_score,
                                   benchmark="vqa", shuffled=True, limit=30, batch_size=7)
    assert blind.n == 30 and blind.metrics["accuracy_shuffled"] == blind.score > 0
    with pytest.raises(ValueError, match="answer loss needs a model folder"):
        evaluate_conversations(oracle, data, vqa_score, benchmark="vqa", answer_loss=True)


def test_world_evaluator_errors(fresh_host: Host, tiny_world: Path) -> None:
    run = fresh_host.get("evaluator", "world").run
    with pytest.raises(PluginError, match=r"needs data= .* or the setting 'world'"):
        run(lambda i, p: [], "vqa")
    with pytest.raises(PluginError, match="not 'mmmu'"):
        run(lambda i, p: [], "mmmu", settings={"world": str(tiny_world)})


def test_world_evaluator_runs_a_tiny_model(fresh_host: Host, tiny_world: Path, tiny_model: Path,
                                           tmp_path: Path) -> None:
    run = fresh_host.get("evaluator", "world").run
    result = run(str(tiny_model), "vqa", limit=4, out_dir=tmp_path,
                 settings={"world": str(tiny_world), "batch_size": 4, "max_new_tokens": 4})
    assert result.n == 4 and 0.0 <= result.score <= 1.0
    assert result.details["model"] == str(tiny_model)
    lines = (tmp_path / "vqa.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(isinstance(json.loads(line)["prediction"], str) for line in lines)


def test_shuffled_vqa_and_the_loss_gap_on_a_tiny_model(fresh_host: Host, tiny_world: Path, tiny_model: Path,
                                                       tmp_path: Path) -> None:
    run = fresh_host.get("evaluator", "world").run
    settings = {"world": str(tiny_world), "batch_size": 3, "max_new_tokens": 4}
    result = run(str(tiny_model), "vqa", limit=6, out_dir=tmp_path, settings=settings)
    m = result.metrics
    assert result.n == 6 and {"accuracy_shuffled", "answer_loss", "answer_loss_shuffled", "loss_gap"} <= set(m)
    assert m["answer_loss"] > 0 and m["loss_gap"] == pytest.approx(m["answer_loss_shuffled"] - m["answer_loss"])
    lines = [json.loads(line) for line in (tmp_path / "vqa.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(line["answer_loss"] > 0 and "shuffled" in line for line in lines)
    assert m["answer_loss"] == pytest.approx(sum(line["answer_loss"] for line in lines) / 6)
    # the loss does not depend on how the questions were batched (padding is masked)
    again = run(str(tiny_model), "vqa", limit=6, settings={**settings, "batch_size": 6})
    assert again.metrics["answer_loss"] == pytest.approx(m["answer_loss"], rel=1e-4)
    off = run(str(tiny_model), "vqa", limit=2, settings={**settings, "shuffled": "false"})
    assert set(off.metrics) == {"accuracy"}
    loss_only = run(str(tiny_model), "vqa", limit=2, settings={**settings, "shuffled": False, "answer_loss": True})
    assert set(loss_only.metrics) == {"accuracy", "answer_loss"}
    with pytest.raises(PluginError, match="'shuffled' must be true or false"):
        run(str(tiny_model), "vqa", limit=2, settings={**settings, "shuffled": "maybe"})


def test_plugin_and_command_modules_import_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, vila2.default_plugins.world_evaluator, vila2.commands.world, vila2.evaluate, "
            "vila2.world; print(sorted(m for m in ('torch', 'transformers', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""vila2-clipscore end to end: a CLIP trained here (short), the long-caption scoring, the filters in
the recaption engine, rethresholding from stored scores, the evaluator, and other checkpoint kinds.

Nothing is mocked: the CLIP is a real transformers CLIPModel trained for a few seconds on world
scenes, the captions come from a real (random) tiny VLM, and the open_clip / SigLIP checkpoints are
real folders of those libraries (random weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import vila2_clipscore as plugin
from vila2_clipscore import worlddata
from vila2_clipscore.scorer import ClipScorer, checkpoint_kind
from vila2_clipscore.train import TrainSettings, read_calibration, train_clip

from vila2.world.captions import place
from vila2.world.scene import COLORS, SHAPES

#: a training run short enough for a test: 32-px images, a 48-wide CLIP
QUICK = TrainSettings(images=1500, steps=250, batch_size=64, lr=2e-3, hidden_size=48, layers=2, heads=4,
                      patch_size=8, vocab_size=400, calibration_images=60)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny world rendered at 32 px (a quarter of the pixels: the test CLIP trains in seconds)."""
    from vila2.world import write_world

    return write_world(tmp_path_factory.mktemp("world32"), seed=0, size="tiny", image_size=32)


@pytest.fixture(scope="module")
def clip(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLIP trained by the package on scenes disjoint from ``small_world`` (under a minute)."""
    import torch

    torch.set_num_threads(1)
    return train_clip(small_world, tmp_path_factory.mktemp("clip") / "clip", QUICK, log=lambda _: None)


def _hundred_word_caption(scene: Any, last: str) -> str:
    """A true 100+-word caption of ``scene`` (its description, then its object sentences again),
    ending with the sentence ``last``."""
    from vila2_clipscore.segments import sentences

    from vila2.world.captions import describe

    parts = sentences(describe(scene))
    objects = [p for p in parts if p.startswith("A ")]
    text = " ".join(parts)
    while len(text.split()) < 100:
        text += " " + " ".join(objects)
    return f"{text} {last}"


def test_the_trained_clip_is_an_ordinary_hf_folder(clip: Path, small_world: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    assert checkpoint_kind(clip) == "clip"
    model = AutoModel.from_pretrained(clip)
    assert type(model).__name__ == "CLIPModel"
    assert AutoTokenizer.from_pretrained(clip)("A red circle.")["input_ids"][-1] == model.config.text_config.eos_token_id
    record = read_calibration(clip)
    assert record is not None and set(record["thresholds"]) == {"mean", "min"}
    assert record["data"]["train_split"] == worlddata.TRAIN_SPLIT
    assert record["data"]["disjoint_check"]["world_images"] > 0
    # learnt something: true descriptions beat other images' on held-out scenes, above chance
    # with margin (a 250-step CLIP on 60 held-out scenes: 0.84; at 150 steps it was 0.51-0.64
    # depending on the tokenizer's corpus); the AUC >= 0.9 of the full training is measured by
    # benchmarks/clipscore_auc.py
    assert record["calibration"]["mean"]["auc_other_description"] > 0.6


def test_training_continues_from_a_trained_clip(clip: Path, small_world: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    out = train_clip(small_world, tmp_path / "more", replace(QUICK, images=64, steps=3, calibration_images=20,
                                                             init=str(clip), pair_weight=1.0), log=lambda _: None)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(clip).get_vocab()
    assert read_calibration(out)["settings"]["init"] == str(clip)
    with pytest.raises(FileExistsError, match="already holds a model"):
        train_clip(small_world, out, QUICK)


def test_own_scenes_are_disjoint_from_the_world_and_a_world_scene_is_caught(small_world: Path) -> None:
    from vila2.world.scene import sample_scene, scene_seed

    info = worlddata.world_info(small_world)
    own = worlddata.own_scenes(info["seed"], worlddata.TRAIN_SPLIT, 50)
    pngs = [worlddata.render_png(s, 32) for s in own]
    assert worlddata.check_disjoint(small_world, own, pngs)["scenes"] == 50
    leaked = sample_scene(scene_seed(info["seed"], "pretrain", 7))
    with pytest.raises(worlddata.DisjointError, match="share a seed"):
        worlddata.check_disjoint(small_world, [*own, leaked], [*pngs, worlddata.render_png(leaked, 32)])


def test_a_wrong_sentence_at_the_end_of_a_100_word_caption_lowers_its_score(clip: Path, small_world: Path) -> None:
    """Whole-caption CLIPScore is blind past 77 tokens; sentence by sentence it is not."""
    scorer = ClipScorer(clip, device="cpu")
    info = worlddata.world_info(small_world)
    scenes = [s for s in worlddata.own_scenes(info["seed"], worlddata.HELDOUT_SPLIT, 60, start=5000)
              if len(s.objects) >= 2][:30]
    images = [worlddata.render_png(s, 32) for s in scenes]
    right, wrong = [], []
    for scene in scenes:
        obj = scene.objects[-1]
        # the description's sentence about one object, or the same words about an object that is
        # not there (a colour and a shape no object has): the commonest wrong mention
        color = next(c for c in COLORS if all(o.color != c for o in scene.objects))
        shape = next(s for s in SHAPES if all(o.shape != s for o in scene.objects))
        right.append(_hundred_word_caption(scene, f"A {obj.size} {obj.name} {place(obj)}."))
        wrong.append(_hundred_word_caption(scene, f"A {obj.size} {color} {shape} {place(obj)}."))
        assert len(right[-1].split()) >= 100 and scorer.token_count(right[-1]) > scorer.max_tokens
    # the usual view: the caption truncated at 77 tokens never reaches the last sentence
    assert scorer.score_whole(images, right) == pytest.approx(scorer.score_whole(images, wrong), abs=1e-6)
    good, bad = scorer.score_captions(images, right), scorer.score_captions(images, wrong)
    assert all(g.pieces[:-1] == b.pieces[:-1] for g, b in zip(good, bad, strict=True))
    assert all(len(g.pieces) >= 10 for g in good)
    lowered = sum(b.similarities[-1] < g.similarities[-1] for g, b in zip(good, bad, strict=True))
    assert lowered > len(good) / 2  # the wrong last sentence scores lower, for most images...
    assert sum(b.mean for b in bad) < sum(g.mean for g in good)  # so the mean over sentences drops
    assert sum(b.min for b in bad) < sum(g.min for g in good)  # and so does the worst sentence


def _small_dataset(world: Path, out: Path, n: int) -> Path:
    from vila2.data import Dataset

    source = Dataset.open(world / "pretrain")
    target = Dataset.create(out)
    rows = {r["id"]: r for r in source.layer("alt").iter_rows()}
    kept = []
    with target.writer(shard_size=10, source="test") as writer:
        for sample in source.iter_samples():
            if len(kept) == n:
                break
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
            kept.append(sample["id"])
    layer = target.create_layer("alt", "caption", producer="test")
    for shard in layer.pending_shards():
        layer.write_shard(shard, [rows[i] for i in target.shard_ids(shard)])
    return out


def test_filters_store_scores_in_the_layer_and_a_new_threshold_needs_no_model(
        clip: Path, small_world: Path, tmp_path: Path, fresh_host: Any, plugin_registered: Any) -> None:
    from vila2.captioning.engine import caption_dataset
    from vila2.captioning.filters import rethreshold
    from vila2.data import Dataset
    from vila2.models.presets import build
    from vila2.world import world_texts

    plugin_registered(plugin)
    assert {"clipscore", "clipscore_min"} <= set(fresh_host.filters())
    vlm = build("llava-tiny", tmp_path / "vlm", texts=world_texts(small_world), seed=0, image_size=32,
                patch_size=8)
    data = _small_dataset(small_world, tmp_path / "data", 12)
    summary = caption_dataset(
        data, model=str(vlm), layer="recap", max_new_tokens=24, batch_size=12, progress=False,
        filters=["repeated_sentence", {"name": "clipscore", "model": str(clip), "min": -1.0},
                 {"name": "clipscore_min", "model": str(clip)}],
    )
    assert summary.captioned == 12
    rows = list(Dataset.open(data).layer("recap").iter_rows())
    assert all(isinstance(r["scores"]["clipscore"], float) and isinstance(r["scores"]["clipscore_min"], float)
               for r in rows)
    assert all(r["scores"]["clipscore_min"] <= r["scores"]["clipscore"] + 1e-6 for r in rows)
    calibrated = read_calibration(clip)["thresholds"]["min"]
    assert all(r["kept"] == (r["scores"]["clipscore_min"] >= calibrated) for r in rows)
    # a stricter mean threshold, decided from the stored scores alone
    median = sorted(r["scores"]["clipscore"] for r in rows)[len(rows) // 2]
    os.environ.pop("VILA2_CLIPSCORE_MODEL", None)
    rethreshold(data, "recap", "recap-strict", [{"name": "clipscore", "min": median}], progress=False)
    strict = {r["id"]: r["kept"] for r in Dataset.open(data).layer("recap-strict").iter_rows()}
    assert strict == {r["id"]: r["scores"]["clipscore"] >= median for r in rows}


def test_score_an_existing_layer_in_batches(clip: Path, small_world: Path, tmp_path: Path) -> None:
    from vila2_clipscore.filters import FILTERS
    from vila2_clipscore.layers import score_layer

    from vila2.captioning.filters import FilterStep, decide
    from vila2.data import Dataset

    data = _small_dataset(small_world, tmp_path / "data", 20)
    counts = score_layer(data, "alt", "alt-clip", clip, thresholds={"clipscore": "auto"}, batch_size=8,
                         progress=False)
    assert counts["rows"] == counts["scored"] == 20
    rows = list(Dataset.open(data).layer("alt-clip").iter_rows())
    threshold = read_calibration(clip)["thresholds"]["mean"]
    assert all(r["kept"] == (r["scores"]["clipscore"] >= threshold) for r in rows)
    # the same scores as the one-at-a-time filter
    one = FILTERS[0].apply({"id": rows[0]["id"], "image": next(Dataset.open(data).iter_samples())["image"]},
                           rows[0]["text"], model=str(clip))
    assert one[1] == pytest.approx(rows[0]["scores"]["clipscore"], abs=1e-5)
    step = FilterStep(FILTERS[1], {"model": str(clip), "min": 2.0})
    assert decide([step], rows[0]["scores"], "row") == ["clipscore_min"]


def test_the_evaluator_scores_a_models_captions(clip: Path, small_world: Path, tmp_path: Path,
                                                fresh_host: Any, plugin_registered: Any) -> None:
    from vila2.models.presets import build
    from vila2.world import world_texts

    plugin_registered(plugin)
    evaluator = fresh_host.find_evaluator("clipscore")
    vlm = build("llava-tiny", tmp_path / "vlm", texts=world_texts(small_world), seed=0, image_size=32,
                patch_size=8)
    result = evaluator.run(str(vlm), "clipscore", limit=6, out_dir=tmp_path / "eval",
                           settings={"world": str(small_world), "clip": str(clip), "max_new_tokens": 24})
    assert result.n == 6 and result.primary == "clipscore"
    assert {"clipscore", "clipscore_min", "clipscore_whole", "pieces"} <= set(result.metrics)
    lines = (tmp_path / "eval" / "clipscore.jsonl").read_text().splitlines()
    assert len(lines) == 6 and "clipscore_min" in json.loads(lines[0])["metrics"]
    with pytest.raises(Exception, match="needs a CLIP/SigLIP checkpoint"):
        evaluator.run(str(vlm), "clipscore", limit=1, settings={"world": str(small_world)})


def test_a_siglip_folder_scores_too(tmp_path: Path) -> None:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel
    from vila2_clipscore.train import train_tokenizer

    tokenizer = train_tokenizer(["A small red circle on the left.", "The background is white."] * 20, 300, 16)
    config = SiglipConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8})
    SiglipModel(config).save_pretrained(tmp_path / "siglip")
    tokenizer.save_pretrained(tmp_path / "siglip")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "siglip")
    scorer = ClipScorer(tmp_path / "siglip", device="cpu")
    assert scorer.kind == "siglip" and scorer.max_tokens == 16
    from PIL import Image

    long = " ".join(["a small red circle on the left"] * 6) + ". The background is white."
    scores = scorer.score_captions([Image.new("RGB", (32, 32), "red")], [long])[0]
    assert len(scores.pieces) > 2 and all(scorer.fits(p) for p in scores.pieces)
    assert -1.0 <= scores.min <= scores.mean <= 1.0


def test_an_open_clip_folder_scores_too(tmp_path: Path) -> None:
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    folder = tmp_path / "oc"
    folder.mkdir()
    model = open_clip.CLIP(**cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg, "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}}))
    scorer = ClipScorer(folder, device="cpu")
    assert scorer.kind == "open_clip" and scorer.max_tokens == 77
    from PIL import Image

    out = scorer.score_captions([Image.new("RGB", (40, 40), "blue")] * 2, ["A blue square. It is big.", "Red."])
    assert [len(s.pieces) for s in out] == [2, 1]
    assert torch.isfinite(torch.tensor([out[0].mean, out[1].min])).all()


def test_vila2_plugins_lists_the_installed_package() -> None:
    import importlib.metadata as metadata

    try:
        metadata.distribution("vila2-clipscore")
    except metadata.PackageNotFoundError:
        pytest.skip("vila2-clipscore is not installed (pip install -e plugins/clipscore)")
    env = {**os.environ, "VILA2_LOAD_PLUGINS": "vila2_clipscore"}
    out = subprocess.run([sys.executable, "-m", "vila2", "plugins", "--json"], env=env, capture_output=True,
                         text=True, check=True).stdout
    (info,) = [p for p in json.loads(out) if p["distribution"] == "vila2-clipscore"]
    assert info["status"] == "loaded" and info["version"] == plugin.__version__
    assert info["components"] == {"filter": ["clipscore", "clipscore_min"], "evaluator": ["clipscore"]}
    assert "register_commands" in info["hooks"]
    help_text = subprocess.run([sys.executable, "-m", "vila2", "clipscore", "train", "--help"], env=env,
                               capture_output=True, text=True, check=True).stdout
    assert "--world" in help_text and "--out" in help_text

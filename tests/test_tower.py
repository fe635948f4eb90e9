"""The pretrained starting-point tower: its own split, dense labels, a plain HF folder after it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

TEXTS = ["a small red circle", "Describe the image in detail.", "There are two objects."] * 10


def test_cell_labels_follow_the_scene() -> None:
    from vila2.training.tower import TARGETS, cell_labels
    from vila2.world.scene import COLORS, SHAPES, WORDS, Obj, Scene

    scene = Scene(1, "white", (Obj("square", "red", "large", (0, 0, 499, 499)),), "cat", (600, 800, 990, 990))
    labels = cell_labels(scene, 64, 8)
    assert set(labels) == set(TARGETS) and all(len(v) == 64 for v in labels.values())
    red, square = COLORS.index("red") + 1, SHAPES.index("square") + 1
    assert labels["color"][0] == red and labels["shape"][0] == square  # top-left cell
    assert labels["color"][63] == 0 and labels["text"][63] == 1  # bottom-right: the word, no object
    # a reading tower's labels also name the word on the cell and the letter over its centre
    from vila2.training.tower import LETTERS, READING_TARGETS

    reading = cell_labels(scene, 64, 8, read_text=True)
    assert set(reading) == set(TARGETS) | set(READING_TARGETS)
    assert reading["word"][63] == WORDS.index("cat") + 1 and reading["word"][0] == 0
    letters = [LETTERS[k - 1] for k in reading["letter"] if k]
    assert len(letters) >= 2 and set(letters) <= set("cat")  # the word's letters, on its cells only
    assert sum(labels["center"]) == 1
    assert labels["row"][9] == 1 and labels["col"][9] == 1


def test_tower_split_is_disjoint_from_the_world() -> None:
    from vila2.training.tower import TOWER_WORLD_SEED, check_disjoint

    check_disjoint(2000, world_seed=0, size="demo")
    with pytest.raises(ValueError):
        check_disjoint(10, world_seed=TOWER_WORLD_SEED)


def test_short_pretraining_builds_a_plain_hf_model(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from vila2.training.tower import TowerSettings, build_with_tower, pretrain_tower

    torch.set_num_threads(1)
    tower = pretrain_tower(tmp_path / "tower", TowerSettings.short(images=64, steps=5))
    info = json.loads((tower / "tower.json").read_text())
    assert info["split"]["name"] == "tower-pretrain" and info["held_out_accuracy"]["background"] >= 0
    assert (tower / "tower.safetensors").stat().st_size < 2_000_000
    model_dir = build_with_tower("llava-tiny", tmp_path / "base", tower, texts=TEXTS)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir))  # no remote code
    assert model.config.image_seq_length == 64
    weights = load_file(str(tower / "tower.safetensors"))
    state = model.model.vision_tower.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())
    with pytest.raises(ValueError, match="differ"):
        build_with_tower("llava-tiny", tmp_path / "other", tower, texts=TEXTS, patch_size=16)


def test_a_reading_tower_with_rescaled_features(tmp_path: Path) -> None:
    """With ``read_text`` a tower learns the word and letter over each cell too, and with
    ``feature_norm`` its features leave training rescaled to that mean norm; the shipped
    settings (the defaults) do neither."""
    import torch

    from vila2.training.tower import READING_TARGETS, TowerSettings, pretrain_tower

    torch.set_num_threads(1)
    settings = TowerSettings.short(images=64, steps=3, read_text=True, feature_norm=10.0)
    info = json.loads((pretrain_tower(tmp_path / "tower", settings) / "tower.json").read_text())
    assert set(READING_TARGETS) <= set(info["targets"]) and info["settings"]["read_text"] is True
    assert {"word_on_text", "letter_on_text"} <= set(info["held_out_accuracy"])
    assert info["feature_norm"]["shipped"] == pytest.approx(10.0, rel=1e-3) != info["feature_norm"]["trained"]
    with pytest.raises(ValueError, match="post-layernorm"):
        pretrain_tower(tmp_path / "normed", TowerSettings.short(feature="normed", feature_norm=10.0))
    plain = TowerSettings.short(images=64, steps=3)
    info = json.loads((pretrain_tower(tmp_path / "plain", plain) / "tower.json").read_text())
    assert not set(READING_TARGETS) & set(info["targets"]) and set(info["feature_norm"]) == {"trained"}


def test_the_shipped_tower_sees_cells_and_a_recipe_starts_from_it(tmp_path: Path) -> None:
    """The packaged `world-tower` (built by `vila2 preset tower`) reads colour and shape of the
    object cells of held-out tower-split images, and a recipe naming it builds its base model."""
    import torch
    from safetensors.torch import load_file

    from vila2.pipeline.recipe import packaged_recipe, parse_recipe
    from vila2.pipeline.run import Run

    shipped = packaged_recipe("demo").parent / "world-tower"
    info = json.loads((shipped / "tower.json").read_text())
    assert info["split"]["name"] == "tower-pretrain"
    assert info["held_out_accuracy"]["color_on_objects"] > 0.95 and info["held_out_accuracy"]["shape_on_objects"] > 0.9
    recipe = parse_recipe({"data": {"world": {"seed": 0, "size": "tiny"}},
                           "model": {"preset": "llava-tiny", "vision_tower": "world-tower"},
                           "training": {"stages": [{"name": "sft", "data": ["sft"], "steps": 1}]},
                           "evaluators": ["vqa"]}, source="r.yaml", base_dir=tmp_path)
    run = Run(recipe, tmp_path / "run", log=lambda _: None)
    torch.set_num_threads(1)
    src = run.sources()
    run.data_after = ["world"]
    base, _ = run._base_model(src)
    from transformers import AutoModelForImageTextToText

    state = AutoModelForImageTextToText.from_pretrained(base).model.vision_tower.state_dict()
    assert all(torch.equal(state[k], v) for k, v in load_file(str(shipped / "tower.safetensors")).items())


def test_preset_tower_command_builds_a_short_tower(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vila2.cli import cli

    result = CliRunner().invoke(cli, ["preset", "tower", "--out", str(tmp_path / "t"), "--short"])
    assert result.exit_code == 0, result.output
    assert "held-out cell accuracy" in result.output and (tmp_path / "t" / "tower.safetensors").is_file()


def test_starting_point_world_is_disjoint_from_recipes_worlds() -> None:
    from vila2.training.start import START_WORLD_SEED, check_start_disjoint

    for seed in (0, 1, 101, 202, 303):
        check_start_disjoint(seed, size="demo")
    with pytest.raises(ValueError):
        check_start_disjoint(START_WORLD_SEED)


def test_a_shared_scene_is_named_with_its_owner() -> None:
    from vila2.training.tower import check_scenes_disjoint
    from vila2.world.scene import scene_seed

    check_scenes_disjoint({scene_seed(0x57A7, "sft", 3)}, 0, "tiny", "the starting point")
    with pytest.raises(AssertionError, match=r"1 scene\(s\) of the starting point are also scenes of world 0/tiny"):
        check_scenes_disjoint({scene_seed(0, "pretrain", 5)}, 0, "tiny", "the starting point")


def test_preset_start_command_builds_a_short_starting_point(tmp_path: Path) -> None:
    """`vila2 preset start --short` runs every part of the build: its own world, the preset on
    the tower, the training, the image-dependence check; the folder is a plain HF model whose
    tower is the shipped one, and a second build with the same settings is a no-op."""
    import torch
    from click.testing import CliRunner
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from vila2.cli import cli
    from vila2.pipeline.recipe import PACKAGED
    from vila2.training.start import START_WORLD_SEED, start_info

    out = tmp_path / "start"
    result = CliRunner().invoke(cli, ["preset", "start", "--out", str(out), "--short"])
    assert result.exit_code == 0, result.output
    assert "with the right images" in result.output
    info = start_info(out)
    assert info["world_seed"] == START_WORLD_SEED and info["settings"]["steps"] == 4
    assert info["image_dependence"]["questions"] == 8 and "answer_loss" in info["image_dependence"]
    state = AutoModelForImageTextToText.from_pretrained(str(out)).model.vision_tower.state_dict()
    tower = load_file(str(PACKAGED / "world-tower" / "tower.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in tower.items())  # frozen while training
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert CliRunner().invoke(cli, ["preset", "start", "--out", str(out), "--short"]).exit_code == 0
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert info["settings"]["projector_lr"] == 5e-4  # the projector's own rate, recorded
    # another projector learning rate is another starting point: the kept one is not reused
    other = CliRunner().invoke(cli, ["preset", "start", "--out", str(out), "--short", "--projector-lr", "2e-3"])
    assert other.exit_code != 0 and "built with other settings" in other.output
    assert info["disjoint_from"] == {"world_seed": 0, "size": "default"}
    # a folder holding something else is refused before any training, and kept
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(cli, ["preset", "start", "--out", str(kept), "--short"])
    assert refused.exit_code != 0 and "holds files but no starting point" in refused.output
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    assert not list(tmp_path.glob(".*.partial"))  # the finished build left no staging folder
    # a folder without a tower is named, with the command that builds one
    bad = CliRunner().invoke(cli, ["preset", "start", "--out", str(tmp_path / "x"), "--short", "--tower", str(tmp_path)])
    assert bad.exit_code != 0 and "holds no pretrained tower" in bad.output and "vila2 preset tower" in bad.output


def test_the_shipped_starting_point_looks_at_the_image() -> None:
    """The packaged `world-start` (built by `vila2 preset start`): trained on its own world
    only, on the shipped tower, and it answers from the image (VQA of its own world)."""
    from vila2.data.atomic import sha256_file
    from vila2.pipeline.recipe import PACKAGED, load_recipe, packaged_recipe
    from vila2.training.start import START_WORLD_SEED, StartSettings, start_info

    info = start_info(PACKAGED / "world-start")
    assert info["world_seed"] == START_WORLD_SEED and info["settings"] == dataclasses.asdict(StartSettings())
    assert info["tower_sha256"] == sha256_file(PACKAGED / "world-tower" / "tower.safetensors")
    assert info["disjoint_from"] == {"world_seed": 0, "size": "default"}
    seen = info["image_dependence"]
    assert seen["questions"] >= 500 and seen["vqa"] - seen["vqa_shuffled"] >= 0.25 and seen["loss_gap"] >= 0.5
    assert load_recipe(packaged_recipe("demo")).model.checkpoint == "world-start"

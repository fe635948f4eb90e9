"""The recipe schema: valid recipes load, and every mistake is one line naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from vila2.pipeline.recipe import Recipe, RecipeError, load_recipe, packaged_recipe, parse_recipe

MINIMAL = {
    "data": {"world": {"seed": 1, "size": "tiny"}},
    "model": {"preset": "llava-tiny"},
    "training": {"stages": [{"name": "sft", "data": ["captions", "sft"], "steps": 5}]},
    "evaluators": ["vqa", {"name": "caption", "limit": 10}],
}


def _error(change: dict, tmp_path: Path | None = None) -> str:
    raw = copy.deepcopy(MINIMAL)
    raw.update(change)
    with pytest.raises(RecipeError) as info:
        parse_recipe(raw, source="r.yaml")
    return str(info.value)


def test_minimal_recipe_fills_defaults() -> None:
    recipe = parse_recipe(MINIMAL)
    assert recipe.self_augment.rounds == 3
    assert recipe.self_augment.template == "concat"
    assert recipe.on_error == "stop"
    assert [e.name for e in recipe.evaluators] == ["vqa", "caption"]
    assert recipe.evaluators[1].limit == 10
    assert "base_dir" not in recipe.normalised()


def test_per_part_learning_rates_reach_training_and_leave_old_fingerprints_alone() -> None:
    plain = parse_recipe(MINIMAL)
    # unset, the later fields are not in what step fingerprints hash: older run folders resume
    assert "projector_lr" not in plain.normalised()["training"]
    assert "projector_lr" not in plain.normalised()["training"]["stages"][0]
    raw = copy.deepcopy(MINIMAL)
    raw["training"]["projector_lr"] = 5e-4
    raw["training"]["stages"][0]["vision_lr"] = 1e-5
    recipe = parse_recipe(raw)
    assert recipe.normalised()["training"]["projector_lr"] == 5e-4
    settings = recipe.training.train_settings(recipe.training.stages[0])
    assert settings["projector_lr"] == 5e-4 and settings["vision_lr"] == 1e-5


def test_loss_weighting_reaches_training_and_leaves_old_fingerprints_alone() -> None:
    assert "loss_weighting" not in parse_recipe(MINIMAL).normalised()["training"]
    raw = copy.deepcopy(MINIMAL)
    raw["training"]["loss_weighting"] = "square"
    recipe = parse_recipe(raw)
    assert recipe.normalised()["training"]["loss_weighting"] == "square"
    assert recipe.training.train_settings(recipe.training.stages[0])["loss_weighting"] == "square"
    raw["training"]["loss_weighting"] = "mean"
    with pytest.raises(RecipeError, match="loss_weighting"):
        parse_recipe(raw)


@pytest.mark.parametrize("name", ["demo", "demo-quick"])
def test_packaged_recipes_are_valid(name: str) -> None:
    recipe = load_recipe(packaged_recipe(name))
    assert recipe.data.world is not None
    assert recipe.self_augment.rounds >= 2
    assert recipe.specialists is not None and recipe.specialists.names == "installed"


def test_example_recipes_are_valid() -> None:
    examples = sorted((Path(__file__).parent.parent / "examples" / "recipes").glob("*.yaml"))
    assert examples
    for file in examples:
        assert isinstance(load_recipe(file), Recipe), file


@pytest.mark.parametrize(("change", "expected"), [
    ({"bogus": 1}, "r.yaml: bogus: is not a recipe key (accepted: name, seed, on_error"),
    ({"model": {"preset": "llava-tiny", "hiden": 3}},
     "r.yaml: model.hiden: is not a recipe key (accepted: preset, checkpoint, overrides, vision_tower, trust_remote_code)"),
    ({"self_augment": {"template": "both"}},
     "r.yaml: self_augment.template: must be 'concat', 'replace' or 'qa' (got 'both')"),
    ({"self_augment": {"rounds": "three"}}, "r.yaml: self_augment.rounds: must be a valid integer"),
    ({"self_augment": {"rounds": -1}}, "r.yaml: self_augment.rounds: must be greater than or equal to 0"),
    ({"on_error": "ignore"}, "r.yaml: on_error: must be 'skip' or 'stop' (got 'ignore')"),
    ({"training": {"stages": [{"name": "finetune", "data": ["sft"]}]}},
     "r.yaml: training.stages[0].name: must be 'align', 'pretrain' or 'sft' (got 'finetune')"),
    ({"training": {"stages": []}}, "r.yaml: training.stages: list should have at least 1 item"),
    ({"evaluators": [{"name": "vqa", "limit": 0}]}, "r.yaml: evaluators[0].limit: must be greater than or equal to 1"),
    ({"data": {"world": {}, "pretrain": {"dataset": "d", "layer": "alt"}}},
     "r.yaml: data: give exactly one of 'world' or 'pretrain'"),
    ({"model": {}}, "r.yaml: model: give exactly one of 'preset'"),
    ({"specialists": {"names": 3}}, "r.yaml: specialists.names: must be 'installed', or must be a valid list (got 3)"),
    ({"self_augment": {"stop_when": {"benchmark": "mmmu"}}},
     "r.yaml: self_augment.stop_when.benchmark: 'mmmu' is not one of the evaluators (vqa, caption)"),
    ({"self_augment": {"stop_when": {"benchmark": "vqa", "confidence": 95}}},
     "r.yaml: self_augment.stop_when.confidence: must be less than 1"),
    ({"self_augment": {"prompts": "nope.txt"}}, "r.yaml: self_augment.prompts: 'nope.txt' is neither a prompt set"),
    ({"plugins": ["missing.py"]}, "r.yaml: plugins[0]: plugin file 'missing.py' does not exist"),
    ({"self_augment": {"filters": [{"nme": "x"}]}}, "r.yaml: self_augment.filters[0].name: is required"),
])
def test_errors_name_the_key(change: dict, expected: str) -> None:
    assert expected in _error(change)


def test_missing_sections_are_listed_together() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe({"data": {"world": {}}}, source="r.yaml")
    message = str(info.value)
    for key in ("model", "training", "evaluators"):
        assert f"r.yaml: {key}: is required" in message


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data: [1,\n  model: x\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: not valid YAML at line"):
        load_recipe(bad_yaml)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match=r"list\.yaml: a recipe is a mapping"):
        load_recipe(not_mapping)
    with pytest.raises(RecipeError, match=r"absent\.yaml: cannot read the recipe"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(RecipeError, match="no packaged recipe named 'nope'; packaged: demo, demo-quick"):
        packaged_recipe("nope")


def test_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "prompts.txt").write_text("Describe everything.\n")
    raw = {**copy.deepcopy(MINIMAL), "self_augment": {"prompts": "prompts.txt"}}
    file = tmp_path / "sub" / "r.yaml"
    file.write_text(yaml.safe_dump(raw))
    recipe = load_recipe(file)
    assert recipe.path("prompts.txt") == (tmp_path / "sub" / "prompts.txt").resolve()
    assert recipe.path("/abs/x") == Path("/abs/x")


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "-x"])
def test_names_that_become_folders_are_checked(name: str) -> None:
    message = _error({"evaluators": [name]})
    assert "r.yaml: evaluators[0].name: must be a name: letters, digits" in message
    message = _error({"specialists": {"names": [name]}})
    assert "r.yaml: specialists.names[0]: must be a name" in message

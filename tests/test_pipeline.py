"""The loop's decisions and its checks before any step runs (no training here: see test_demo)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import vila2
from vila2.pipeline.recipe import RecipeError, parse_recipe
from vila2.pipeline.run import Run, mean_words, saturated

RECIPE = {
    "data": {"world": {"seed": 0, "size": "tiny"}},
    "model": {"preset": "llava-tiny"},
    "training": {"stages": [{"name": "sft", "data": ["captions", "sft"], "steps": 2}]},
    "self_augment": {"rounds": 1, "filters": ["repeated_sentence"]},
    "evaluators": ["vqa"],
}


def _pipeline(tmp_path: Path, **change: Any) -> Run:
    raw = copy.deepcopy(RECIPE)
    raw.update(change)
    return Run(parse_recipe(raw, source="r.yaml", base_dir=tmp_path), tmp_path / "run", log=lambda _: None)


def test_processes_started_by_a_step_load_every_plugin_file_of_the_run(tmp_path: Path, fresh_host: Any) -> None:
    """The recipe's ``plugins`` and a ``--plugin FILE`` the host loaded both reach the ranks."""
    listed, named = tmp_path / "listed.py", tmp_path / "named.py"
    for file in (listed, named):
        file.write_text("")
    fresh_host.load_file(named)
    raw = {**copy.deepcopy(RECIPE), "plugins": ["listed.py"]}
    run = Run(parse_recipe(raw, source=str(tmp_path / "r.yaml"), base_dir=tmp_path), tmp_path / "run",
              host=fresh_host, log=lambda _: None)
    assert run._plugin_files() == [str(listed.resolve()), str(named.resolve())]
    fresh_host.load_file(listed)  # loaded by the run's check: listed once
    assert run._plugin_files() == [str(listed.resolve()), str(named.resolve())]


def test_a_specialist_clean_filter_the_host_lacks_is_named(fresh_host: Any) -> None:
    from vila2.errors import PipelineError
    from vila2.pipeline.launch import specialist_clean_filter

    with pytest.raises(PipelineError, match="specialist 'nowhere' is not installed here"):
        specialist_clean_filter(fresh_host, "nowhere")


def test_saturation_rule() -> None:
    assert saturated([0.30], 0.01) is None
    assert saturated([0.30, 0.35], 0.01) is None
    assert saturated([0.30, 0.35, 0.355], 0.01) == "gain +0.0050 < 0.01"
    assert saturated([0.30, 0.29], 0.0) == "gain -0.0100 < 0.0"


def _round_result(root: Path, name: str, correct: list[int], *, per_sample: bool = True) -> str:
    """A round's VQA result as an evaluator writes it: result.json and, beside it, vqa.jsonl."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(
        {"benchmark": "vqa", "primary": "accuracy", "metrics": {"accuracy": sum(correct) / len(correct)}}))
    if per_sample:
        (folder / "vqa.jsonl").write_text("".join(
            json.dumps({"id": f"q{i}", "metrics": {"accuracy": c}}) + "\n" for i, c in enumerate(correct)))
    return f"{name}/result.json"


def test_with_a_confidence_a_noise_level_gain_stops_the_rounds(tmp_path: Path) -> None:
    """A round 1 point better on 200 questions (21 gained, 19 lost) continues under the mean rule
    and stops under the interval rule; 10 points better (20 gained) is shown at 95 % and continues.
    The specialists then start from the latest round not shown worse."""
    from types import SimpleNamespace

    from vila2.errors import PipelineError
    from vila2.pipeline.loop import ModelRow, _saturation, best_round
    from vila2.pipeline.recipe import StopWhen

    old = [1] * 100 + [0] * 100
    noisy = [1] * 81 + [0] * 19 + [1] * 21 + [0] * 79  # 19 lost, 21 gained: +1 point
    clear = [1] * 100 + [1] * 20 + [0] * 80  # 20 gained: +10 points
    run = SimpleNamespace(root=tmp_path)
    rows = [ModelRow(f"round {i}", "round", f"m{i}", evals={"vqa": _round_result(tmp_path, f"r{i}", c)}, round=i)
            for i, c in enumerate((old, noisy, clear))]

    assert _saturation(run, rows[:2], StopWhen(benchmark="vqa")) is None
    why = _saturation(run, rows[:2], StopWhen(benchmark="vqa", confidence=0.95))
    assert why is not None and why.startswith("gain +0.0100, 95% interval [-0.0") and why.endswith("not above 0.0")
    assert _saturation(run, [rows[0], rows[2]], StopWhen(benchmark="vqa", confidence=0.95)) is None
    # a required margin the interval does not clear stops the rounds too
    assert _saturation(run, [rows[0], rows[2]], StopWhen(benchmark="vqa", min_gain=0.09, confidence=0.95))

    # the round the specialists start from: the latest not shown worse; by the mean, the best
    worse = [1] * 80 + [0] * 120  # 20 lost: -10 points
    rows.append(ModelRow("round 3", "round", "m3", evals={"vqa": _round_result(tmp_path, "r3", worse)}, round=3))
    by = {"mean": StopWhen(benchmark="vqa"), "interval": StopWhen(benchmark="vqa", confidence=0.95)}

    def best(rule: str, picked: list[int]) -> int | None:
        run.recipe = SimpleNamespace(self_augment=SimpleNamespace(stop_when=by[rule]))
        return best_round(run, [rows[i] for i in picked]).round

    low = ModelRow("round 1", "round", "m1", round=1,
                   evals={"vqa": _round_result(tmp_path, "r1-low", [1] * 79 + [0] * 21 + [1] * 19 + [0] * 81)})
    rows.append(low)  # -1 point, within noise
    assert (best("mean", [0, 4]), best("interval", [0, 4])) == (0, 1)
    assert (best("mean", [0, 3]), best("interval", [0, 3])) == (0, 0)
    assert (best("mean", [0, 1, 2]), best("interval", [0, 1, 2])) == (2, 2)

    bare = ModelRow("round 3", "round", "m3", evals={"vqa": _round_result(tmp_path, "r3-bare", clear, per_sample=False)})
    with pytest.raises(PipelineError, match=r"r3-bare/result\.json: no per-sample scores, which "
                                            r"self_augment\.stop_when\.confidence needs"):
        _saturation(run, [rows[0], bare], StopWhen(benchmark="vqa", confidence=0.95))


def test_mean_words() -> None:
    assert mean_words({}) == 0.0
    assert mean_words({"a": "one two", "b": "one two three four"}) == 3.0


def test_check_accepts_builtins(fresh_host: Any, tmp_path: Path) -> None:
    assert _pipeline(tmp_path).check() == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"evaluators": ["nonesuch"]}, "recipe: no evaluator for benchmark 'nonesuch' with backend 'builtin'"),
    ({"self_augment": {"filters": ["no_such_filter"]}}, "recipe: no filter named 'no_such_filter'"),
    ({"self_augment": {"filters": [{"name": "word_count", "settings": {"mni": 3}}]}},
     "recipe: filter 'word_count' (plugin 'vila2.default_plugins.filters') has no setting mni"),
    ({"self_augment": {"captioner": "gpt9"}}, "recipe: no captioner named 'gpt9'"),
    ({"specialists": {"names": ["ocr"]}},
     "recipe: specialists.names: 'ocr' not installed; installed: none. Install with `pip install vila2-ocr-specialist`"),
])
def test_check_names_what_is_wrong(fresh_host: Any, tmp_path: Path, change: dict, expected: str) -> None:
    with pytest.raises(RecipeError) as info:
        _pipeline(tmp_path, **change).check()
    assert expected in str(info.value)
    assert not (tmp_path / "run" / "steps").exists()  # nothing ran


class _Counting:
    """A plugin with one specialist, as an installed package would register it."""

    @vila2.hookimpl
    def register_specialists(self, register: Any) -> None:
        register(vila2.Specialist("counting", prepare_data=lambda source, world, out: out,
                                  prompts=("Count the objects.",), settings={"pip": "vila2-counting"}))


def test_missing_specialist_lists_installed(fresh_host: Any, plugin_registered: Any, tmp_path: Path) -> None:
    plugin_registered(_Counting(), name="counting-plugin")
    assert [s.name for s in _pipeline(tmp_path, specialists={"names": "installed"}).check()] == ["counting"]
    with pytest.raises(RecipeError, match=r"'spatial' not installed; installed: counting \(vila2-counting\)"):
        _pipeline(tmp_path, specialists={"names": ["counting", "spatial"]}).check()


def test_one_specialist_trains_with_its_own_settings(fresh_host: Any, plugin_registered: Any,
                                                      tmp_path: Path) -> None:
    plugin_registered(_Counting(), name="counting-plugin")
    specialists = {"names": ["counting"], "training": {"steps": 120, "lr": 1e-2},
                   "training_for": {"counting": {"steps": 360}}}
    run = _pipeline(tmp_path, specialists=specialists)
    assert [s.name for s in run.check()] == ["counting"]
    assert run.specialist_training("counting") == {"max_steps": 360, "lr": 1e-2}
    assert run.specialist_training("other") == {"max_steps": 120, "lr": 1e-2}
    # a name the run has no specialist of: named, before anything runs
    with pytest.raises(RecipeError, match=r"specialists.training_for: 'countng' is not one of specialists.names"):
        _pipeline(tmp_path, specialists={**specialists, "training_for": {"countng": {"steps": 1}}}).check()
    # with `names: installed` a plugin that is not installed is left out, and the log says so
    lines: list[str] = []
    raw = {**copy.deepcopy(RECIPE), "specialists": {"names": "installed", "training_for": {"spatial": {"steps": 9}}}}
    installed = Run(parse_recipe(raw, source="r.yaml", base_dir=tmp_path), tmp_path / "run", log=lines.append)
    assert [s.name for s in installed.check()] == ["counting"]
    assert any("specialists.training_for.spatial: no specialist 'spatial' is installed; ignored" in x for x in lines)


def test_shipped_folders_resolve_by_name_and_a_wrong_path_is_named(tmp_path: Path) -> None:
    from vila2.pipeline.recipe import PACKAGED

    shipped = _pipeline(tmp_path, model={"checkpoint": "world-start"})
    assert shipped._checkpoint("world-start") == PACKAGED / "world-start"
    assert shipped._tower("world-tower") == PACKAGED / "world-tower"
    with pytest.raises(RecipeError, match=r"model.checkpoint: .*nowhere is not a model folder"):
        shipped._checkpoint("nowhere")
    with pytest.raises(RecipeError, match=r"model.vision_tower: .*nowhere holds no tower.safetensors"):
        shipped._tower("nowhere")


def test_recipe_plugins_are_loaded(fresh_host: Any, tmp_path: Path) -> None:
    (tmp_path / "shouty.py").write_text(
        "import vila2\n\n@vila2.hookimpl\ndef register_filters(register):\n"
        "    register(vila2.Filter('shouty', check=lambda sample, text: text.isupper()))\n")
    pipeline = _pipeline(tmp_path, plugins=["shouty.py"], self_augment={"filters": ["shouty"]})
    pipeline.check()
    assert "shouty" in fresh_host.filters()


class _Recorder:
    """Observes the lifecycle hooks."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.rounds: list[tuple[int, list[str]]] = []
        self.reports: list[dict] = []

    @vila2.hookimpl
    def on_step_end(self, step: str, run_dir: str, outputs: dict) -> None:
        self.steps.append(step)

    @vila2.hookimpl
    def on_round_end(self, round: int, model: str, results: dict, run_dir: str) -> None:
        assert Path(model).is_dir()
        self.rounds.append((round, sorted(results)))

    @vila2.hookimpl
    def on_run_end(self, run_dir: str, report: dict) -> None:
        self.reports.append(report)


TINY_RUN = {
    "data": {"world": {"seed": 0, "size": "tiny"}, "pretrain_limit": 40},
    "model": {"preset": "llava-tiny", "overrides": {"hidden_size": 64, "intermediate_size": 128}},
    "training": {"batch_size": 8, "max_length": 96, "stages": [{"name": "sft", "data": ["captions", "sft"], "steps": 2}]},
    "self_augment": {"rounds": 1, "filters": ["repeated_sentence"], "max_new_tokens": 8},
    "evaluators": [{"name": "vqa", "limit": 4}, {"name": "caption", "limit": 4, "settings": {"max_new_tokens": 8}}],
}


@pytest.mark.slow
def test_tiny_run_resumes_refuses_changes_and_reruns_them(
    fresh_host: Any, plugin_registered: Any, tmp_path: Path
) -> None:
    from vila2.pipeline.loop import run_recipe
    from vila2.pipeline.steps import StepChanged

    recorder = _Recorder()
    plugin_registered(recorder, name="recorder")
    recipe = parse_recipe(TINY_RUN, source="r.yaml", base_dir=tmp_path)
    out = tmp_path / "run"
    first = run_recipe(recipe, out, log=lambda _: None)

    assert [r["name"] for r in first["rows"]] == ["round 0", "round 1"]
    assert first["benchmarks"] == ["vqa", "caption"]
    assert recorder.rounds == [(0, ["caption", "vqa"]), (1, ["caption", "vqa"])]
    assert recorder.steps[:5] == ["world", "pretrain", "base", "round0.train", "round0.eval.vqa"]
    assert "round1.caption" in recorder.steps and len(recorder.reports) == 1
    assert (out / "report.md").is_file() and (out / "plots" / "scores.png").is_file()

    # the same recipe again: every step is done, the report is the same
    recorder.steps.clear()
    again = run_recipe(recipe, out, log=lambda _: None)
    assert recorder.steps == []
    assert again["rows"] == first["rows"]

    # a changed filter: refused, naming the step and the key
    changed = copy.deepcopy(TINY_RUN)
    changed["self_augment"]["filters"] = ["garbage"]
    changed_recipe = parse_recipe(changed, source="r.yaml", base_dir=tmp_path)
    with pytest.raises(StepChanged, match=r"step 'round1\.caption' depends on filters which changed"):
        run_recipe(changed_recipe, out, log=lambda _: None)
    assert recorder.steps == []

    # explicitly rerun: only the steps downstream of the recaption run again
    run_recipe(changed_recipe, out, rerun_changed=True, log=lambda _: None)
    assert recorder.steps == ["round1.caption", "round1.train", "round1.eval.vqa", "round1.eval.caption"]


@pytest.mark.slow
def test_training_and_recaption_steps_run_on_two_processes(tmp_path: Path, capfd: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``processes: 2``: each training step runs as two DDP ranks (gloo on CPU) with the recipe's
    effective batch, each recaption step as two ranks that share the shards, and the run goes on
    from the model and the layer they wrote."""
    from vila2.data import Dataset
    from vila2.pipeline import run as run_module
    from vila2.pipeline.loop import run_recipe

    monkeypatch.setattr(run_module, "SUBSET_SHARD", 10)  # the 40 images in 4 shards, 2 per rank
    raw = {**copy.deepcopy(TINY_RUN), "processes": 2, "threads": 1, "evaluators": [{"name": "vqa", "limit": 2}]}
    results = run_recipe(parse_recipe(raw, source="r.yaml", base_dir=tmp_path), tmp_path / "run", log=print)
    printed = capfd.readouterr()
    assert "2 steps of 4x1x2" in printed.out + printed.err  # batch 8 = 4 per rank x 2 ranks
    assert [r["name"] for r in results["rows"]] == ["round 0", "round 1"]
    run = tmp_path / "run"
    assert (run / "round0" / "train" / "0-sft" / "model.safetensors").is_file()
    stats = json.loads((run / "round1" / "caption" / "caption_stats.json").read_text())
    summary = stats["summary"]
    assert summary["complete"] and summary["total"] == summary["new"] == 40  # each sample once
    # the two ranks shared the shards
    ranks = [json.loads((run / "round1" / "caption" / f"caption-summary.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["new"] for r in ranks] == [20, 20]
    layer = Dataset.open(run / "pretrain" / "dataset").layer(stats["layer"])
    assert len(layer.texts()) == stats["kept"] and sorted(layer.done_shards()) == sorted(
        Dataset.open(run / "pretrain" / "dataset").shards())

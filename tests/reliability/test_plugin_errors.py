"""Plugins at run time: a captioner, a filter or an evaluator that fails on one sample.

The error names the plugin and the sample. With ``on_error: skip`` the run goes on and the
sample is recorded; with ``on_error: stop`` the run stops with one clear error, finished steps
stay done, and the same command resumes once the plugin is fixed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reliability.harness import write_recipe
from vila2.cli import cli

# A recipe's one-file plugin whose components fail on the sample named by an environment
# variable: FLAKY_CAPTIONER (a digest of the image's pixels: a captioner sees no ids),
# FLAKY_FILTER and FLAKY_EVAL (sample ids).
FLAKY = '''
import hashlib
import os

from PIL import ImageStat

import vila2


def _caption(images, prompts):
    out = []
    for image in images:
        if hashlib.sha256(image.tobytes()).hexdigest() == os.environ.get("FLAKY_CAPTIONER"):
            raise RuntimeError("this image is too hard")
        r, g, b = (round(v) for v in ImageStat.Stat(image).mean)
        out.append(f"A picture of mean colour {r} {g} {b}.")
    return out


def _check(sample, text):
    if sample["id"] == os.environ.get("FLAKY_FILTER"):
        raise ValueError("cannot judge this caption")
    return True


def _score(prediction, reference, sample):
    if sample["id"] == os.environ.get("FLAKY_EVAL"):
        raise ValueError("cannot score this answer")
    return {"accuracy": float(prediction.strip() == reference.strip())}


def _run(model, benchmark, *, data=None, limit=None, out_dir=None, settings=None):
    from vila2.evaluate import evaluate_conversations

    return evaluate_conversations(model, data, _score, benchmark=benchmark, limit=limit,
                                  out_dir=out_dir, max_new_tokens=4)


@vila2.hookimpl
def register_captioners(register):
    register(vila2.Captioner("flaky-captioner", load=lambda model, settings: _caption))


@vila2.hookimpl
def register_filters(register):
    register(vila2.Filter("flaky_filter", check=_check))


@vila2.hookimpl
def register_evaluators(register):
    register(vila2.Evaluator("flaky-eval", run=_run, benchmarks=("flaky",)))
'''
FLAKY_VARS = ("FLAKY_CAPTIONER", "FLAKY_FILTER", "FLAKY_EVAL")


def _recipe(folder: Path, world: Path, model: Path, on_error: str) -> Path:
    (folder / "flaky.py").write_text(FLAKY)
    return write_recipe(folder, {
        "name": f"flaky-{on_error}",
        "on_error": on_error,
        "plugins": ["flaky.py"],
        "data": {"pretrain": {"dataset": str(world / "pretrain"), "layer": "alt"},
                 "sft": [{"dataset": str(world / "sft"), "layer": "conversations"}], "pretrain_limit": 16},
        "model": {"checkpoint": str(model)},
        "training": {"batch_size": 4, "max_length": 96, "stages": [{"name": "sft", "data": ["captions", "sft"],
                                                                    "steps": 1}]},
        "self_augment": {"rounds": 1, "captioner": "flaky-captioner", "filters": ["flaky_filter"],
                         "batch_size": 4},
        "evaluators": [{"name": "flaky", "data": str(world / "bench" / "vqa"), "limit": 4}],
    })


@pytest.fixture
def victims(tiny_world: Path) -> dict[str, str]:
    """The samples each flaky component fails on: ids, and the captioner's image digest."""
    from vila2.data import Dataset

    pretrain = Dataset.open(tiny_world / "pretrain")
    first = [s for _, s in zip(range(16), pretrain.iter_samples(), strict=False)]
    bench = [s["id"] for _, s in zip(range(4), Dataset.open(tiny_world / "bench" / "vqa").iter_samples(),
                                      strict=False)]
    return {
        "captioner": first[2]["id"],
        "FLAKY_CAPTIONER": hashlib.sha256(pretrain.load_image(first[2]).tobytes()).hexdigest(),
        "FLAKY_FILTER": first[5]["id"],
        "FLAKY_EVAL": bench[1],
    }


@pytest.fixture
def flaky_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in FLAKY_VARS:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def _run(recipe: Path, out: Path) -> Result:
    return CliRunner().invoke(cli, ["run", str(recipe), "--out", str(out)])


def _clean_error(result: Result, *names: str) -> str:
    """The one-line error of a stopped run, which must name ``names`` and hold no traceback."""
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (
        f"not a clean error: {result.exception!r}\n{result.output[-2000:]}")
    assert "Traceback" not in result.output
    error = next(line for line in result.output.splitlines() if line.startswith("Error:"))
    for name in names:
        assert name in error, f"{name!r} not in: {error}"
    return error


@pytest.mark.slow
def test_on_error_skip_records_the_sample_and_loses_none(
    fresh_host: Any, tiny_world: Path, tiny_model: Path, tmp_path: Path, victims: dict[str, str],
    flaky_env: pytest.MonkeyPatch, tally: Any,
) -> None:
    import json

    from vila2.data import Dataset
    from vila2.data.mixture import MixtureEntry, build_examples

    for name in FLAKY_VARS:
        flaky_env.setenv(name, victims[name])
    run = tmp_path / "run"
    result = _run(_recipe(tmp_path, tiny_world, tiny_model, "skip"), run)
    assert result.exit_code == 0, f"{result.exception!r}\n{result.output[-3000:]}"

    dataset = Dataset.open(run / "pretrain" / "dataset")
    rows = {row["id"]: row for row in dataset.layer("recap-r1").iter_rows()}
    assert len(rows) == dataset.num_samples == 16
    failed = {i: row["meta"]["error"] for i, row in rows.items() if "error" in row["meta"]}
    assert set(failed) == {victims["captioner"], victims["FLAKY_FILTER"]}
    assert "flaky-captioner" in failed[victims["captioner"]] and "flaky.py" in failed[victims["captioner"]]
    assert "flaky_filter" in failed[victims["FLAKY_FILTER"]] and "flaky.py" in failed[victims["FLAKY_FILTER"]]
    for sample, error in failed.items():
        assert repr(sample) in error

    report = json.loads((run / "results.json").read_text())
    errors = " ".join(e["error"] for e in report["errors"])
    assert "flaky-eval" in errors and "flaky.py" in errors and repr(victims["FLAKY_EVAL"]) in errors

    # the two samples are trained on with their original caption: none is lost
    entry = MixtureEntry.parse({"dataset": str(dataset.path), "layers": ["alt", "recap-r1"], "template": "concat"})
    trained = {example["id"] for example in build_examples([entry], seed=0)}
    lost = 16 - len(trained)
    assert lost == 0
    tally("captioner / filter / evaluator raising on one sample, `on_error: skip`", 3,
          "run finished; each error names plugin + sample, recorded in the layer or results.json", lost)


@pytest.mark.slow
def test_on_error_stop_names_plugin_and_sample_and_resumes(
    fresh_host: Any, tiny_world: Path, tiny_model: Path, tmp_path: Path, victims: dict[str, str],
    flaky_env: pytest.MonkeyPatch, tally: Any,
) -> None:
    recipe = _recipe(tmp_path, tiny_world, tiny_model, "stop")
    run = tmp_path / "run"
    stops = [("FLAKY_CAPTIONER", ("flaky-captioner", "flaky.py", repr(victims["captioner"])), "round1.caption"),
             ("FLAKY_FILTER", ("flaky_filter", "flaky.py", repr(victims["FLAKY_FILTER"])), "round1.caption"),
             ("FLAKY_EVAL", ("flaky-eval", "flaky.py", repr(victims["FLAKY_EVAL"])), "round1.eval.flaky")]
    for variable, names, step in stops:
        flaky_env.setenv(variable, victims[variable])
        _clean_error(_run(recipe, run), *names)
        assert (run / "steps" / "round0.train.json").is_file()  # finished work is kept
        assert not (run / "steps" / f"{step}.json").exists()
        flaky_env.delenv(variable)  # the plugin is fixed; the same command goes on

    result = _run(recipe, run)
    assert result.exit_code == 0, f"{result.exception!r}\n{result.output[-3000:]}"
    assert "done   round0.train" in result.output and "start  round0.train" not in result.output
    from vila2.data import Dataset

    layer = Dataset.open(run / "pretrain" / "dataset").layer("recap-r1")
    lost = 16 - sum(1 for row in layer.iter_rows() if "error" not in row["meta"])
    assert lost == 0
    tally("captioner / filter / evaluator raising on one sample, `on_error: stop`", 3,
          "one-line error naming plugin + sample; finished steps kept; rerun resumed", lost)

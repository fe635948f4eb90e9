"""`vila2 demo --quick` end to end: the report's structure, where every number comes from, and a
kill at a step boundary and in the middle of a step giving the same report as an uninterrupted run.

These run the real loop (world, training, recaptioning, specialists, evaluation) on the quick
recipe, so they take minutes: they are marked ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vila2.pipeline.report import markdown_table

pytestmark = pytest.mark.slow

KILLER = '''
import os, signal
import vila2

MODE, TARGET = os.environ["KILL_MODE"], os.environ["KILL_TARGET"]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


@vila2.hookimpl
def on_step_end(step, run_dir, outputs):
    if MODE == "after-step" and step == TARGET:
        die()


if MODE == "mid-train":  # SIGKILL at the 5th optimizer step of the training run writing TARGET
    import vila2.training.trainer

    real_train = vila2.training.trainer.train

    def train(config, *, on_step=None):
        def step_hook(step, loss):
            if TARGET in str(getattr(config, "out", "")) and step == 5:
                die()
        return real_train(config, on_step=step_hook)

    vila2.training.trainer.train = train

if MODE == "mid-caption":  # SIGKILL right after the first shard of layer TARGET is written
    from vila2.data.layer import LayerWriter

    real_write = LayerWriter.write_shard

    def write_shard(self, shard, rows):
        real_write(self, shard, rows)
        if self.name == TARGET:
            die()

    LayerWriter.write_shard = write_shard
'''


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VILA2_LOAD_PLUGINS", None)  # the demo uses whatever specialists are installed
    env.update(extra)
    return env


def _demo(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vila2", "demo", "--quick", "--out", str(out), *args],
                          env=_env(**env), capture_output=True, text=True, timeout=1800)


def _installed_specialists() -> list[str]:
    code = "from vila2.plugins import Host; print(','.join(sorted(Host().specialists())))"
    names = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                           check=True).stdout.strip()
    return [n for n in names.split(",") if n]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "run"
    result = _demo(out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return out, result.stdout


def test_report_structure(quick_demo: tuple[Path, str]) -> None:
    out, stdout = quick_demo
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    rounds = [r for r in rows if r["kind"] == "round"]
    assert [r["name"] for r in rounds] == [f"round {i}" for i in range(len(rounds))]
    assert len(rounds) == 3  # rounds 0..2: the quick recipe sets no stop rule
    specialists = _installed_specialists()
    assert [r["specialist"] for r in rows if r["kind"] == "specialist"] == specialists
    assert [r["kind"] for r in rows[len(rounds):]] == ["specialist"] * len(specialists) + (["final"] if specialists else [])
    assert results["benchmarks"][:2] == ["vqa", "caption"]
    for row in rows:
        if row["kind"] in {"round", "final"}:
            assert {"vqa", "caption"} <= set(row["scores"])
            assert row["hallucination"]["metric"] == "chair_i"
        if row["kind"] == "final":  # also scored on every specialist's domain
            assert set(row["scores"]) == {"vqa", "caption", *(r["domain"] for r in rows if r["kind"] == "specialist")}
        if row["kind"] == "specialist":
            # its own domain benchmark, next to the self-augmented model's
            assert set(row["scores"]) == set(row["base_scores"]) == {row["domain"]}
        if row["kind"] == "round":
            assert row["caption_words"]["value"] > 0  # every round trained on words
        if row["kind"] == "specialist":
            # it wrote words, or its own check rejected every answer, and the run said so
            words = row["caption_words"]
            layer = row["caption_quality"]["layer"]
            assert (words is not None and words["value"] > 0) or f"{layer}: kept 0 of" in stdout
    report = (out / "report.md").read_text()
    table = markdown_table(results)
    assert table in report
    assert table in stdout  # printed at the end
    assert "| model | caption words | vqa (accuracy) | caption (bleu4) |" in report
    for plot in ("scores.png", "caption_length.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
        assert f"(plots/{plot})" in report


def _printed(value: float, percent: bool = True) -> str:
    return f"{100 * value:.1f}" if percent else f"{value:.1f}"


def test_every_number_comes_from_an_evaluation_file(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    results = json.loads((out / "results.json").read_text())
    sources: set[str] = set()
    for row in results["rows"]:
        cells: list[dict[str, Any]] = [*row["scores"].values(), *(row.get("base_scores") or {}).values()]
        for cell in cells:
            file = out / cell["file"]
            assert file.name == "result.json" and "eval" in file.parts, file
            recorded = json.loads(file.read_text())
            assert recorded["metrics"][recorded["primary"]] == cell["score"]
            assert recorded["model"] == row["model"] or row["kind"] == "specialist"
            samples = file.parent / f"{recorded['benchmark']}.jsonl"  # one line per scored sample
            assert len(samples.read_text().splitlines()) == recorded["n"] > 0
            sources.add(_printed(cell["score"]))
        if row["hallucination"]:
            recorded = json.loads((out / row["hallucination"]["file"]).read_text())
            assert recorded["metrics"]["chair_i"] == row["hallucination"]["value"]
            sources.add(_printed(row["hallucination"]["value"]))
        if row["caption_words"]:
            stats = json.loads((out / row["caption_words"]["file"]).read_text())
            assert stats["mean_words"] == row["caption_words"]["value"]
            sources.add(_printed(row["caption_words"]["value"], percent=False))
    for row in results["rows"]:
        for domain, mine in row["scores"].items() if row["kind"] == "specialist" else ():
            base = row["base_scores"][domain]["score"]
            sources.add(f"{100 * (mine['score'] - base):+.1f}")
    for row in results["rows"]:
        # the derived tables: caption quality (caption_stats.json), paired-bootstrap gains and
        # image dependence (per-sample files and result.json), each traced to its file below
        quality = row.get("caption_quality")
        if quality:
            stats = json.loads((out / quality["file"]).read_text())["quality"]
            assert all(stats[k] == quality[k] for k in ("distinct", "mean_words"))
            sources.update({_printed(quality["distinct"]), _printed(quality["mean_words"], percent=False)})
            for key in ("object_recall", "wrong_mention_rate", "place_accuracy"):
                if quality.get(key) is not None:
                    sources.add(_printed(quality[key]))
        for gain in (row.get("gains") or {}).values():
            sources.update(f"{100 * gain[k]:+.1f}" for k in ("diff", "low", "high"))
        for cell in row["scores"].values():
            dependence = cell.get("image_dependence") or {}
            recorded = json.loads((out / cell["file"]).read_text())["metrics"]
            for key, value in dependence.items():
                assert recorded[key] == value, key
                sources.update({_printed(value), f"{100 * value:+.1f}", f"{value:.3f}", f"{value:+.3f}"})
            by_kind = json.loads((out / cell["file"]).read_text()).get("details", {}).get("by_kind", {})
            for kind, group in (cell.get("by_kind") or {}).items():  # the per-kind tables
                assert by_kind[kind][cell["metric"]] == group["score"] and by_kind[kind]["n"] == group["n"], kind
                sources.add(_printed(group["score"]))
            shuffled = dependence.get(f"{cell['metric']}_shuffled")
            if shuffled is not None:
                sources.add(f"{100 * (cell['score'] - shuffled):+.1f}")
    report = (out / "report.md").read_text()
    table_rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| model")
                  and not line.startswith("| specialist |")]
    numbers = [n for line in table_rows for n in re.findall(r"(?<![\w.+-])[+-]?\d+\.\d(?!\d)", line)]
    assert numbers
    assert [n for n in numbers if n not in sources] == []


def test_kill_at_a_boundary_and_mid_step_gives_the_same_report(
    quick_demo: tuple[Path, str], tmp_path: Path
) -> None:
    reference, _ = quick_demo
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    out = tmp_path / "run"

    # 1. killed right after a step's marker is written
    first = _demo(out, "--plugin", str(killer), KILL_MODE="after-step", KILL_TARGET="round0.train")
    assert first.returncode == -9, first.stderr[-2000:]
    assert (out / "steps" / "round0.train.json").is_file()
    assert not (out / "steps" / "round0.eval.vqa.json").exists()

    # 2. killed in the middle of round 1's training
    second = _demo(out, "--plugin", str(killer), KILL_MODE="mid-train", KILL_TARGET="round1/train")
    assert second.returncode == -9, second.stderr[-2000:]
    assert (out / "steps" / "round1.caption.json").is_file()
    assert not (out / "steps" / "round1.train.json").exists()
    assert (out / "round1" / "train").is_dir()  # the killed attempt left work behind

    # 3. killed in the middle of round 2's recaption, one shard of the layer written
    third = _demo(out, "--plugin", str(killer), KILL_MODE="mid-caption", KILL_TARGET="recap-r2")
    assert third.returncode == -9, third.stderr[-2000:]
    assert not (out / "steps" / "round2.caption.json").exists()
    done_shards = list((out / "pretrain" / "dataset" / "layers" / "recap-r2").glob("*.done"))
    assert len(done_shards) == 1

    # 4. resumed to the end
    last = _demo(out)
    assert last.returncode == 0, last.stderr[-4000:]
    assert "done   round0.train" in last.stdout and "done   round1.train" in last.stdout
    assert (out / "report.md").read_text() == (reference / "report.md").read_text()
    ours = json.loads((out / "results.json").read_text())
    theirs = json.loads((reference / "results.json").read_text())
    assert ours["rows"] == theirs["rows"]


def _fidelity() -> Any:
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "fidelity.py"
    spec = importlib.util.spec_from_file_location("fidelity", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_final_mix_retrains_the_final_model_without_the_recaption(
    quick_demo: tuple[Path, str], tmp_path: Path
) -> None:
    """``benchmarks/final_mix.py``: on a finished run, the final model once more with the
    alt-text alone before the specialists' turns, each score beside the final model's."""
    import shutil

    out, _ = quick_demo
    run = tmp_path / "run"
    shutil.copytree(out, run)
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "final_mix.py"
    done = subprocess.run([sys.executable, str(script), "--recipe", "demo-quick", "--run", str(run)],
                          env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    printed = done.stdout
    assert "| benchmark | final (alt-text + recaption) | alt-text alone | difference [95 %] |" in printed
    assert "| vqa |" in printed and "| caption |" in printed and "| chair_i |" in printed
    trained = json.loads((run / "steps" / "ablation.final-alt.train.json").read_text())["inputs"]["captions"]
    final = json.loads((run / "steps" / "final.train.json").read_text())["inputs"]["captions"]
    # the same specialists' turns after the alt-text, where the loop put alt-text + recaption
    assert trained["layers"] == ["alt", *final["layers"][1:]] and final["layers"][0] != "alt"
    assert trained["questions"] == final["questions"]


def test_fidelity_summarises_runs_over_seeds(quick_demo: tuple[Path, str], tmp_path: Path) -> None:
    """``benchmarks/fidelity.py``: mean ± sd per cell over the seeds' results, written between
    the markers of the docs; seeds a test or recipe uses are refused."""
    fidelity = _fidelity()
    out, _ = quick_demo
    results = json.loads((out / "results.json").read_text())
    text = fidelity.table([{"seed": 101, "seconds": 60.0, "results": results},
                           {"seed": 202, "seconds": 70.0, "results": results}])
    for row in results["rows"]:
        assert f"| {row['name']} |" in text
    vqa = results["rows"][0]["scores"]["vqa"]["score"]
    assert f"{100 * vqa:.1f} ± 0.0" in text  # the same run twice: sd 0
    assert "of 2)" in text and "seeds 101, 202" in text
    kinds = results["rows"][0]["scores"]["vqa"]["by_kind"]  # the per-kind table, one column a kind
    assert "vqa by question kind:" in text
    assert all(f"{100 * cell['score']:.1f} ± 0.0" in text for cell in kinds.values())
    docs = tmp_path / "DEMO.md"
    docs.write_text(f"before\n{fidelity.START}\nold\n{fidelity.END}\nafter\n")
    fidelity.write_docs(text, docs)
    assert docs.read_text() == f"before\n{fidelity.START}\n{text}\n{fidelity.END}\nafter\n"
    assert fidelity.recipe_for("demo", 101)["data"]["world"]["seed"] == 101
    with pytest.raises(SystemExit):
        fidelity.main(["--out", str(tmp_path), "--seeds", "0", "101"])


def test_fidelity_with_training_seeds_splits_the_spread(quick_demo: tuple[Path, str]) -> None:
    """With several training seeds per world, every run counts in the cells and each gain's
    spread is split into the part training alone gives and the part the worlds add; a gain some
    runs lack (a round the stop rule did not reach) is left out of that split."""
    import copy

    fidelity = _fidelity()
    out, _ = quick_demo
    results = json.loads((out / "results.json").read_text())
    gained = [row for row in results["rows"] if row.get("gains")]
    assert len(gained) >= 2
    first, second = gained[0], gained[1]
    benchmark = next(iter(first["gains"]))
    runs = []
    for world, shift in ((101, 0.0), (202, 0.04), (303, 0.08)):
        for train, step in ((0, 0.0), (1, 0.02)):
            copied = copy.deepcopy(results)
            row = next(r for r in copied["rows"] if r["name"] == first["name"])
            row["gains"][benchmark]["diff"] += shift + step
            runs.append({"seed": world, "train_seed": train, "seconds": 1.0, "results": copied})
    text = fidelity.table(runs)
    assert "over 6 runs: world seeds 101, 202, 303, with training seeds 0, 1" in text
    assert "seed 202/train 1:" in text
    gains = text.split("Gains against the row", 1)[1].split("\n\n", 2)[1]
    gain_line = next(ln for ln in gains.splitlines() if ln.startswith(f"| {first['name']} |"))
    assert " of 6)" in gain_line and " of 3)" not in gain_line  # every run counts in a gain
    noise = text.split("Where a gain's spread comes from", 1)[1].split("\n\n", 2)[1]
    line = next(ln for ln in noise.splitlines() if ln.startswith(f"| {first['name']} |"))
    # within each world the two seeds differ by 2 points: pooled sd 1.41; the worlds' means
    # 4 points apart (sd 4.0), less the 1.41² / 2 that training noise puts there: sd 3.87
    assert "training 1.4, worlds 3.9" in line
    # a gain one run lacks has no split: the second row dropped from one run of world 303
    del runs[-1]["results"]["rows"][[r["name"] for r in runs[-1]["results"]["rows"]].index(second["name"])]
    noise = fidelity.table(runs).split("Where a gain's spread comes from", 1)[1].split("\n\n", 2)[1]
    named = [ln.split(" | ")[0] for ln in noise.splitlines()]
    assert f"| {first['name']}" in named and f"| {second['name']}" not in named
    assert "Where a gain's spread" not in fidelity.table(runs[::2])  # one training seed per world
    assert fidelity.spread({1: [0.1, 0.2], 2: [0.3]}) is None  # unequal runs per world
    recipe = fidelity.recipe_for("demo", 101, 1)
    assert (recipe["seed"], recipe["data"]["world"]["seed"], recipe["name"]) == (1, 101, "demo-seed101-train1")


def test_a_failed_fidelity_run_names_its_seed_and_log(tmp_path: Path) -> None:
    import yaml

    recipe = tmp_path / "broken.yaml"
    recipe.write_text(yaml.safe_dump({"name": "broken", "data": {"world": {"seed": 0}}, "no_such_key": 1}))
    with pytest.raises(SystemExit) as failed:
        _fidelity().run_seed(tmp_path / "out", str(recipe), 101)
    message = str(failed.value)
    assert "seed 101: vila2 run failed" in message and str(tmp_path / "out" / "seed-101" / "log.txt") in message
    assert "no_such_key" in message  # the run's own error, from the end of its log

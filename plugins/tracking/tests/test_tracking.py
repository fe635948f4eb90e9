"""vila2-tracking end to end: a real ``vila2 run`` of a tiny recipe, then the runs read back with
MLflow's own client and from W&B's own run files (an offline run's transaction log holds
wandb's protobuf records); and a run whose MLflow store, or W&B folder, cannot be written still
finishes, the failure named once."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vila2.testing import quick_recipe

NAME = "tracking-test"


def vila2_run(folder: Path, model: Path, **env: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(quick_recipe(model, name=NAME), sort_keys=False))
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MLFLOW_", "WANDB_")) and k != "VILA2_TRACKING"}
    clean.update({"VILA2_LOAD_PLUGINS": "vila2_tracking", "WANDB_MODE": "offline",
                  "HF_HUB_OFFLINE": "1", **env})
    return subprocess.run([sys.executable, "-m", "vila2", "run", str(recipe), "--out", str(folder / "run")],
                          cwd=folder, env=clean, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tracked_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("tracked")
    done = vila2_run(folder, tiny_model)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run", done.stderr


def test_the_plugin_is_listed_once_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "vila2", "plugins", "--json"], capture_output=True,
                         text=True, env={**os.environ, "VILA2_LOAD_PLUGINS": "vila2_tracking"},
                         timeout=120)
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    info = plugins["vila2_tracking"]
    assert info["distribution"] == "vila2-tracking" and info["status"] == "loaded"
    assert info["hooks"] == ["on_round_end", "on_run_end", "on_step_end"]


@pytest.mark.slow
def test_mlflow_holds_the_run(tracked_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    run_dir, stderr = tracked_run
    assert "vila2-tracking:" not in stderr
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("vila2")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # one run per `vila2 run`
    run = runs[0]
    assert run.info.run_name == NAME and run.info.status == "FINISHED"
    recipe = json.loads((run_dir / "recipe.json").read_text())
    params = run.data.params
    assert params["name"] == NAME and params["training.batch_size"] == str(recipe["training"]["batch_size"])
    assert params["self_augment.rounds"] == "1"
    # each step's metrics
    metrics = run.data.metrics
    for step in ("round0.train", "round1.caption", "round1.eval.vqa"):
        assert metrics[f"{step}/seconds"] > 0
    assert "round0.eval.vqa/accuracy" in metrics and "round1.caption/kept" in metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "round0.train/loss")] == [3]
    # each round's scores, by round
    history = client.get_metric_history(run.info.run_id, "round/vqa/score")
    assert sorted(m.step for m in history) == [0, 1]
    results = json.loads((run_dir / "results.json").read_text())
    assert metrics["final/round 1/vqa"] == results["rows"][1]["scores"]["vqa"]["score"]
    # the final table, report.md and the plots
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "results.json", "recipe.json", "final_table.json", "final_table.md", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/scores.png", "plots/caption_length.png"} <= plots
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "final_table.json",
                                                      str(run_dir.parent / "dl"))).read_text())
    assert [row[0] for row in table["data"]] == ["round 0", "round 1"]
    assert "vqa" in table["columns"]


def read_wandb_records(path: Path) -> list[Any]:
    """The records of an offline W&B run: LevelDB-log framed ``wandb_internal_pb2.Record``s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full
            records.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            records.append(pending + chunk)
    out = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        out.append(record)
    return out


@pytest.mark.slow
def test_wandb_holds_the_run(tracked_run: tuple[Path, str]) -> None:
    run_dir, _ = tracked_run
    folders = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 1  # one run per `vila2 run`
    records = read_wandb_records(next(folders[0].glob("run-*.wandb")))
    kinds = [r.WhichOneof("record_type") for r in records]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == NAME and run.project == "vila2"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["name"] == NAME and config["training"]["batch_size"] == 8
    history: dict[str, list[Any]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = "/".join(item.nested_key) or item.key
                history.setdefault(key, []).append(json.loads(item.value_json))
    assert history["round/index"] == [0, 1] and len(history["round/vqa/score"]) == 2
    assert history["round0.train/loss"] and history["round0.train/train_step"] == [3]
    assert history["round1.eval.vqa/seconds"][0] > 0
    assert "final/round 0/vqa" in history
    assert any(k.startswith("final_table/") for k in history)  # a wandb.Table
    assert any(k.startswith("plots/scores/") for k in history)  # a wandb.Image
    exit_record = next(r.exit for r in records if r.WhichOneof("record_type") == "exit")
    assert exit_record.exit_code == 0 and kinds.count("run") == 1
    files = folders[0] / "files"
    assert (files / "report.md").read_text() == (run_dir / "report.md").read_text()
    assert (files / "results.json").is_file()
    assert list((files / "media" / "table").glob("final_table*.table.json"))
    assert len(list((files / "media" / "images" / "plots").glob("*.png"))) == 2


def the_one_warning(done: subprocess.CompletedProcess[str], run_dir: Path) -> str:
    """The run finished with its results and report, and the plugin said exactly one line,
    although every step, round and the run's end reached the tracker."""
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "results.json").is_file() and (run_dir / "report.md").is_file()
    lines = [line for line in done.stderr.splitlines() if line.startswith("vila2-tracking:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_an_unwritable_store_is_named_once_and_the_run_goes_on(tiny_model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the MLflow store should be")
    done = vila2_run(tmp_path / "x", tiny_model, MLFLOW_TRACKING_URI=(blocker / "mlruns").as_uri())
    run_dir = tmp_path / "x" / "run"
    line = the_one_warning(done, run_dir)
    assert "MLflow failed while starting the run" in line and "the run goes on" in line
    # the other tracker is unaffected
    assert list((run_dir / "wandb").glob("offline-run-*/files/report.md"))


@pytest.mark.slow
def test_an_unwritable_wandb_folder_is_named_once_and_the_run_goes_on(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the W&B folder should be")  # unwritable even for root
    done = vila2_run(tmp_path / "x", tiny_model, WANDB_DIR=str(blocker / "wandb"))
    run_dir = tmp_path / "x" / "run"
    line = the_one_warning(done, run_dir)
    assert "W&B failed while starting the run" in line and "the run goes on" in line
    assert str(blocker / "wandb") in line  # the folder is named
    assert "Falling back to temporary directory" not in done.stderr  # wandb was not left to guess
    # the other tracker is unaffected
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("vila2").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert "round/vqa/score" in runs[0].data.metrics

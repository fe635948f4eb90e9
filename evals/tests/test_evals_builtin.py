"""The built-in ``mmmu`` evaluator: a tiny model on the embedded world's MMMU-schema benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vila2_evals.plugin
from click.testing import CliRunner
from vila2_evals import mmmu

from vila2.cli import cli


@pytest.mark.slow
def test_vila2_eval_scores_a_tiny_model_on_the_world(fresh_host, plugin_registered, tiny_model, tiny_world, tmp_path):
    plugin_registered(vila2_evals.plugin, name="evals")
    out = tmp_path / "mmmu.json"
    result = CliRunner().invoke(cli, ["eval", "--model", str(tiny_model), "--benchmark", "mmmu", "--world",
                                      str(tiny_world), "--limit", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:2] == ["mmmu", "accuracy"]
    saved = json.loads(out.read_text())
    assert saved["evaluator"] == "mmmu" and saved["backend"] == "builtin" and saved["n"] == 6
    assert saved["details"]["data"] == str(tiny_world / mmmu.WORLD_FILE)
    records = [json.loads(line) for line in Path(saved["samples_path"]).read_text().splitlines()]
    docs = {d["id"]: d for d in mmmu.read(tiny_world / mmmu.WORLD_FILE, limit=6)}
    assert [r["id"] for r in records] == list(docs)
    assert any(r["n_images"] > 1 for r in records)  # the world asks multi-image questions too
    with mmmu.seeded():
        assert [r["correct"] for r in records] == [mmmu.is_correct(docs[r["id"]], r["response"]) for r in records]
    assert saved["metrics"]["accuracy"] == sum(r["correct"] for r in records) / 6

"""The plugin's registrations and ``vila2 eval`` (with a one-file evaluator plugin: no weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import vila2_evals.plugin
from click.testing import CliRunner

from vila2.cli import cli

TOY_PLUGIN = '''
import vila2

def run(model, benchmark, *, data=None, limit=None, out_dir=None, settings=None):
    n = limit or 4
    return vila2.EvalResult(benchmark, {"accuracy": 0.75, "accuracy/Toys": 0.5}, "accuracy", n=n,
                            details={"model": model, "data": data, "settings": settings, "out_dir": out_dir})

@vila2.hookimpl
def register_evaluators(register):
    register(vila2.Evaluator("toy", run=run, benchmarks=("toy",)))
'''


@pytest.fixture
def toy_plugin(tmp_path: Path) -> Path:
    path = tmp_path / "toy_plugin.py"
    path.write_text(TOY_PLUGIN)
    return path


def test_the_plugin_registers_three_evaluators(fresh_host, plugin_registered):
    plugin_registered(vila2_evals.plugin, name="evals")
    assert fresh_host.find_evaluator("mmmu", "builtin").name == "mmmu"
    assert fresh_host.find_evaluator("mmmu", "lm-eval").name == "lm-eval"
    assert fresh_host.find_evaluator("gsm8k", "lm-eval").name == "lm-eval"
    assert fresh_host.find_evaluator("MMBench_DEV_EN", "vlmeval").name == "vlmeval"
    assert {e.plugin for e in fresh_host.evaluators().values() if e.name in {"mmmu", "lm-eval", "vlmeval"}} == {"evals"}


def test_the_entry_point_names_the_plugin_module():
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="vila2") if ep.name == "evals"]
    assert ep.load() is vila2_evals.plugin


def test_loading_the_plugin_imports_nothing_heavy():
    code = "import sys, vila2_evals.plugin; print(sorted(m for m in ('torch', 'transformers', 'lm_eval', 'vlmeval') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_eval_prints_a_table_and_writes_json(fresh_host, toy_plugin, tmp_path):
    fresh_host.load_file(toy_plugin)
    out = tmp_path / "res" / "toy.json"
    result = CliRunner().invoke(cli, ["eval", "--model", "m1", "--benchmark", "toy", "--limit", "3",
                                      "--out", str(out), "--world", str(tmp_path),
                                      "--set", "batch_size=4", "--set", "lm_eval_model=vila2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["benchmark", "metric", "value", "n"]
    assert lines[1].split() == ["toy", "accuracy", "0.7500", "3"]
    assert lines[2].split() == ["toy", "accuracy/Toys", "0.5000"]
    saved = json.loads(out.read_text())
    assert saved["evaluator"] == "toy" and saved["metrics"]["accuracy"] == 0.75 and saved["n"] == 3
    assert saved["details"]["settings"] == {"world": str(tmp_path), "batch_size": 4, "lm_eval_model": "vila2"}
    assert saved["details"]["out_dir"] == str(tmp_path / "res" / "toy.samples")


def test_eval_refuses_a_malformed_setting(fresh_host, toy_plugin):
    fresh_host.load_file(toy_plugin)
    result = CliRunner().invoke(cli, ["eval", "--model", "m", "--benchmark", "toy", "--set", "batch_size"])
    assert result.exit_code == 2 and "'batch_size' is not KEY=VALUE" in result.output


def test_eval_names_what_exists_for_an_unknown_benchmark(fresh_host, toy_plugin):
    fresh_host.load_file(toy_plugin)
    result = CliRunner().invoke(cli, ["eval", "--model", "m", "--benchmark", "nope"], standalone_mode=False)
    assert "no evaluator for benchmark 'nope' with backend 'builtin'" in str(result.exception)
    assert "toy (builtin)" in str(result.exception)


def test_eval_reports_bad_data_naming_the_file(fresh_host, plugin_registered, tmp_path):
    plugin_registered(vila2_evals.plugin, name="evals")
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    result = CliRunner().invoke(cli, ["eval", "--model", str(tmp_path), "--benchmark", "mmmu", "--data", str(bad)])
    assert result.exit_code == 1
    assert "mmmu (evals) on 'mmmu'" in result.output and "broken.parquet: not a readable Parquet file" in result.output


def test_the_cli_finds_the_installed_plugin(tmp_path):
    env = {**os.environ, "VILA2_LOAD_PLUGINS": "evals"}
    out = subprocess.run([sys.executable, "-m", "vila2", "plugins", "--json"], capture_output=True, text=True,
                         env=env, check=True)
    (info,) = [p for p in json.loads(out.stdout) if p["name"] == "evals"]
    assert info["status"] == "loaded" and info["distribution"] == "vila2-evals"
    assert info["components"] == {"evaluator": ["mmmu", "lm-eval", "vlmeval"]}

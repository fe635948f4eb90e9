"""`vila2 run` turns every recipe mistake into one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _vila2(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VILA2_LOAD_PLUGINS": ""}
    return subprocess.run([sys.executable, "-m", "vila2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("recipe", "expected"), [
    ({"data": {"world": {}}, "model": {"preset": "llava-tiny"}, "evaluators": ["vqa"],
      "training": {"stages": [{"name": "sft", "data": ["captions"]}]}, "self_augment": {"template": "both"}},
     "bad.yaml: self_augment.template: must be 'concat', 'replace' or 'qa' (got 'both')"),
    ({"data": {"world": {}}, "model": {"preset": "llava-tiny"}, "evaluators": ["nonesuch"],
      "training": {"stages": [{"name": "sft", "data": ["captions"]}]}},
     "no evaluator for benchmark 'nonesuch'"),
    ({"data": {"world": {}}, "model": {"preset": "llava-tiny"}, "evaluators": ["vqa"],
      "training": {"stages": [{"name": "sft", "data": ["captions"]}]}, "specialists": {"names": ["ocr"]}},
     "specialists.names: 'ocr' not installed; installed: none. Install with `pip install vila2-ocr-specialist`"),
])
def test_bad_recipe_is_one_clear_error(tmp_path: Path, recipe: dict, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    result = _vila2("run", "bad.yaml", "--out", "run", cwd=tmp_path)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run" / "steps").exists()


def test_unknown_recipe_name_lists_packaged(tmp_path: Path) -> None:
    result = _vila2("run", "nonesuch", cwd=tmp_path)
    assert result.returncode == 1
    assert "nonesuch: no such recipe file, and no packaged recipe named 'nonesuch'; packaged: demo, demo-quick" in result.stderr


def test_help_describes_resume() -> None:
    result = _vila2("run", "--help", cwd=Path.cwd())
    assert result.returncode == 0
    assert "--rerun-changed" in result.stdout and "resumes" in result.stdout
    demo = _vila2("demo", "--help", cwd=Path.cwd())
    assert "--quick" in demo.stdout

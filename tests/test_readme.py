"""The README's two commands are the ones users and CI run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    return {m.group(2): m.group(1) for m in re.finditer(r"^(.+?)\s+# (the demo|the tests)$", text, re.M)}


def test_readme_has_exactly_two_quick_start_commands():
    commands = quick_start_commands()
    assert set(commands) == {"the demo", "the tests"}
    assert commands["the demo"].endswith("vila2 demo")
    assert "pytest" in commands["the tests"]


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    ci_commands = [m.group(1) for m in re.finditer(r"^(.+?)\s+# the tests$", script, re.M)]
    assert ci_commands == [quick_start_commands()["the tests"]]


def test_readme_plugin_example_is_the_shipped_file():
    example = (ROOT / "examples" / "custom_filter.py").read_text()
    body = example.split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text()

"""Meta-tests, as datasette has them: every hook is documented and every hook is tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from vila2 import hookspecs
from vila2.plugins import Host

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name for name, obj in vars(hookspecs).items()
    if inspect.isfunction(obj) and hasattr(obj, "vila2_spec")
)


def test_hooks_are_found():
    assert {"register_captioners", "register_filters", "register_specialists",
            "register_evaluators", "register_commands", "finetune_specialist",
            "on_round_end"} <= set(HOOKS)
    assert Host(entry_points=False, builtins=False).hook_names() == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_an_example(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc.splitlines()[0]) > 20, f"{hook} needs a one-line summary"
    assert "Example::" in doc and "@vila2.hookimpl" in doc, f"{hook} needs an example"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    test_files = [p for p in ROOT.glob("**/test_*.py")
                  if ".venv" not in p.parts and p.name != Path(__file__).name]
    assert any(f"def {hook}(" in p.read_text() for p in test_files), (
        f"no test implements the hook {hook}"
    )


def test_finetune_specialist_is_firstresult():
    assert hookspecs.finetune_specialist.vila2_spec["firstresult"] is True

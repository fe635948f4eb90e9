"""The house rules of docs/INTERNALS.md: few files at the top, imports that flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vila2"

#: what each package may import of vila2 (besides itself and the public surface at the top)
ALLOWED = {
    "data": set(),
    "world": {"data", "captioning"},  # the SFT seed asks the recaption prompts
    "models": {"data"},
    "training": {"data", "models", "world"},  # the tower pretrains on its own world split
    "captioning": {"data", "models"},
    "pipeline": {"data", "world", "models", "training", "captioning", "default_plugins"},
    "default_plugins": {"data", "world", "models", "training", "captioning"},
    "commands": {"data", "world", "models", "training", "captioning", "pipeline"},
}
SURFACE = {"vila2", "vila2.components", "vila2.errors", "vila2.plugins", "vila2.hookspecs",
           "vila2.distributed", "vila2.evaluate", "vila2.cli", "vila2.progress"}


def _modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = file
    return found


def _imports(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """vila2 modules imported anywhere in ``file`` (inside functions too)."""
    package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[: len(package) - node.level + 1], node.module or ""]) if node.level else node.module or ""
            base = base.rstrip(".")
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_few_files_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 11, top


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, file, modules) for name, file in modules.items()}

    def is_package_of(a: str, b: str) -> bool:  # a package's __init__ re-exporting its own modules
        return b.startswith(a + ".")

    cycles = []
    for a, targets in graph.items():
        for b in targets:
            if a in graph.get(b, ()) and not is_package_of(a, b) and not is_package_of(b, a):
                cycles.append(tuple(sorted((a, b))))
    assert not sorted(set(cycles))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package: str) -> None:
    modules = _modules()
    wrong = []
    for name, file in modules.items():
        if not name.startswith(f"vila2.{package}"):
            continue
        for target in _imports(name, file, modules):
            top = target.split(".")[1] if target.count(".") >= 1 else None
            if target in SURFACE or top == package or top in ALLOWED[package]:
                continue
            wrong.append(f"{name} imports {target}")
    assert not wrong

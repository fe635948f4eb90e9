"""Specialist packages are ordinary pip packages: installed, `vila2 plugins` lists them; uninstalled,
they are gone.

The check runs in a fresh virtual environment. Building one with the whole ML stack would take
minutes, so its site-packages links every entry of this environment's site-packages *except*
the distributions that plug into vila2 (so the specialists installed here for development stay
invisible), and the package under test is built and installed into it with pip, for real.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "spatial": ROOT / "specialists" / "spatial",
    "grounding": ROOT / "specialists" / "grounding",
    "ocr": ROOT / "specialists" / "ocr",
    "template": ROOT / "examples" / "specialist-template",
}


def _plugin_entries(site: Path) -> set[str]:
    """Top-level names in ``site`` that belong to distributions with a ``vila2`` entry point,
    vila2 itself excepted."""
    hidden: set[str] = set()
    for dist in metadata.distributions(path=[str(site)]):
        if dist.metadata["Name"] == "vila2" or not dist.entry_points.select(group="vila2"):
            continue
        hidden.update(Path(str(f)).parts[0] for f in dist.files or ())
    hidden.discard("__pycache__")
    return hidden


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"VILA2_LOAD_PLUGINS", "VILA2_DISABLE_PLUGINS", "VILA2_STRICT_PLUGINS",
                        "PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_env(),
                            cwd=cwd, timeout=120, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh virtual environment that has vila2 and its dependencies but no
    vila2 plugin."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    for key in ("purelib", "platlib"):
        shared = Path(sysconfig.get_paths()[key])
        hidden = _plugin_entries(shared)
        for entry in shared.iterdir():
            if entry.name not in hidden and not (site / entry.name).exists():
                (site / entry.name).symlink_to(entry)
    return python


# The specialists a `vila2 run` of the quick demo recipe would use (`names: installed`, or the
# names given), as its pre-flight check resolves them.
_RUN_SPECIALISTS = """
import sys, tempfile
from vila2.pipeline.run import Run
from vila2.pipeline.recipe import load_recipe, packaged_recipe

recipe = load_recipe(packaged_recipe("demo-quick"))
if sys.argv[1:]:
    names = recipe.specialists.model_copy(update={"names": sys.argv[1:]})
    recipe = recipe.model_copy(update={"specialists": names})
with tempfile.TemporaryDirectory() as out:
    print(",".join(s.name for s in Run(recipe, out, log=lambda _: None).check()))
"""


def _plugins(python: Path) -> dict[str, dict]:
    listed = json.loads(_run(python, "-m", "vila2", "plugins", "--json").stdout)
    return {p["distribution"]: p for p in listed}


def _install(python: Path, package: Path, tmp_path: Path) -> Path:
    """pip-install ``package`` from a copy (pip builds in the source tree, which must stay
    clean); returns the copy."""
    source = tmp_path / package.name
    shutil.copytree(package, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", source)
    return source


def _project(package: Path) -> dict:
    return tomllib.loads((package / "pyproject.toml").read_text())["project"]


def _version(package: Path) -> str:
    module = next(iter(_project(package)["entry-points"]["vila2"].values()))
    init = (package / module / "__init__.py").read_text()
    line = next(x for x in init.splitlines() if x.startswith("__version__ = "))
    return line.split("=", 1)[1].strip().strip('"')


def test_the_fresh_environment_has_vila2_but_no_specialist(fresh_python: Path) -> None:
    assert _run(fresh_python, "-m", "vila2", "--version").stdout.strip().endswith(
        metadata.version("vila2"))
    installed = _plugins(fresh_python)
    assert not {_project(p)["name"] for p in PACKAGES.values()} & set(installed)


def test_pip_install_then_uninstall_the_ocr_specialist(fresh_python: Path, tmp_path: Path) -> None:
    _install(fresh_python, PACKAGES["ocr"], tmp_path)
    try:
        listed = _plugins(fresh_python)["vila2-ocr-specialist"]
        assert listed["version"] == _version(PACKAGES["ocr"])
        assert listed["status"] == "loaded", listed["reason"]
        assert listed["components"] == {"specialist": ["ocr"], "evaluator": ["ocr"]}
        assert set(listed["hooks"]) == {"register_specialists", "register_evaluators"}
        assert _run(fresh_python, "-c", _RUN_SPECIALISTS).stdout.split() == ["ocr"]
        # the pip name of an installed specialist is its plugin's distribution
        asked = subprocess.run([str(fresh_python), "-c", _RUN_SPECIALISTS, "ocr", "spatial"],
                               capture_output=True, text=True, env=_env(), timeout=120, check=False)
        assert "'spatial' not installed; installed: ocr (vila2-ocr-specialist)" in asked.stderr
    finally:
        _run(fresh_python, "-m", "pip", "uninstall", "--yes", "vila2-ocr-specialist")
    assert "vila2-ocr-specialist" not in _plugins(fresh_python)
    assert _run(fresh_python, "-c", _RUN_SPECIALISTS).stdout.split() == []
    asked = subprocess.run([str(fresh_python), "-c", _RUN_SPECIALISTS, "ocr"], capture_output=True,
                           text=True, env=_env(), timeout=120, check=False)
    assert asked.returncode != 0
    assert "'ocr' not installed" in asked.stderr
    assert "pip install vila2-ocr-specialist" in asked.stderr
    gone = subprocess.run([str(fresh_python), "-c", "import vila2_ocr_specialist"],
                          capture_output=True, text=True, env=_env(), check=False)
    assert "ModuleNotFoundError" in gone.stderr


def test_the_specialist_template_installs_as_a_plugin(fresh_python: Path, tmp_path: Path) -> None:
    template = PACKAGES["template"]
    name = _project(template)["name"]
    copy = _install(fresh_python, template, tmp_path)
    try:
        listed = _plugins(fresh_python)[name]
        assert listed["version"] == _version(template)
        assert listed["status"] == "loaded", listed["reason"]
        assert listed["components"] == {"specialist": ["counting"], "evaluator": ["counting"]}
        assert set(listed["hooks"]) == {"register_specialists", "register_evaluators"}
        text = _run(fresh_python, "-m", "vila2", "plugins").stdout
        assert f"[{name} {listed['version']}]  loaded" in text
        assert "specialists: counting" in text and "evaluators: counting" in text
        assert _run(fresh_python, "-c", _RUN_SPECIALISTS).stdout.split() == ["counting"]
        # the template's own tests, the specialist package contract among them, pass where it
        # is installed (the slow run is left out)
        tests = _run(fresh_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                     "--rootdir", copy, copy / "tests", cwd=copy)
        assert " passed" in tests.stdout and "failed" not in tests.stdout
    finally:
        _run(fresh_python, "-m", "pip", "uninstall", "--yes", name)
    assert name not in _plugins(fresh_python)


@pytest.mark.parametrize("domain", sorted(PACKAGES))
def test_every_package_has_one_layout(domain: str) -> None:
    """A domain package is its prompts, its scoring, its data and one registration; its tests
    run the specialist package contract of ``vila2.testing``."""
    package = PACKAGES[domain]
    module = package / _project(package)["name"].replace("-", "_")
    assert {"__init__.py", "prompts.py", "scoring.py", "training_data.py"} <= {
        f.name for f in module.glob("*.py")}
    assert "vila2.DomainSpecialist(" in (module / "__init__.py").read_text()
    tests = " ".join(f.read_text() for f in (package / "tests").glob("test_*.py"))
    assert "check_specialist_package(" in tests and "check_specialist_run(" in tests


@pytest.mark.parametrize("domain", sorted(PACKAGES))
def test_every_package_declares_its_entry_point_and_version(domain: str) -> None:
    package = PACKAGES[domain]
    project = _project(package)
    assert project["name"].startswith("vila2-") and project["name"].endswith("-specialist")
    module = project["name"].replace("-", "_")
    assert project["entry-points"]["vila2"] == {module: module}
    assert "version" in project["dynamic"] and _version(package)
    assert (package / "README.md").is_file()
    assert "vila2" in " ".join(project["dependencies"])

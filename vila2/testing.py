"""Pytest fixtures for plugin authors (and vila2's own tests).

In your top-level ``conftest.py``::

    pytest_plugins = ["vila2.testing"]

then::

    def test_my_filter(fresh_host, plugin_registered):
        plugin_registered(my_plugin_module)
        assert "my_filter" in fresh_host.filters()

    def test_my_captioner(tiny_world, tiny_model):
        ...  # a small embedded world and a random tiny LLaVA-style model, built once per session

A specialist package keeps one contract, checked from its own tests::

    from vila2.testing import check_specialist_package, check_specialist_run

    def test_the_specialist_contract(tiny_world, tmp_path):
        check_specialist_package("vila2_ocr_specialist", tiny_world, tmp_path)

    @pytest.mark.slow
    def test_finetune_recaption_and_evaluate(tiny_world, tiny_model, tmp_path):
        check_specialist_run("vila2_ocr_specialist", tiny_world, tiny_model, tmp_path)

Everything is local and seeded; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vila2.plugins import ENTRY_POINT_GROUP, Host, PluginError, set_host

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def _sandbox() -> Iterator[Host]:
    """A process-wide host with the built-ins only, for the duration of the block."""
    host = Host(entry_points=False, builtins=True)
    previous = set_host(host)
    try:
        yield host
    finally:
        set_host(previous)


@pytest.fixture
def fresh_host() -> Iterator[Host]:
    """A plugin host with the built-ins only (nothing installed is loaded), made process-wide
    for the duration of the test."""
    with _sandbox() as host:
        yield host


@pytest.fixture
def plugin_registered(fresh_host: Host) -> Iterator[Callable[..., str]]:
    """``plugin_registered(obj, name=None)`` registers a plugin object for this test only."""
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = fresh_host.register(plugin, name=name)
        names.append(registered)
        return registered

    try:
        yield register
    finally:
        for name in names:
            fresh_host.unregister(name)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    a tiny model on a shared machine runs faster so, and every process (a rank, a Ray actor)
    then sums floats in the same order as the reference run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small embedded world (datasets + benchmarks), built once per test session."""
    from vila2.world import write_world

    return write_world(tmp_path_factory.mktemp("world"), seed=0, size="tiny")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path) -> Path:
    """A random tiny LLaVA-style model (tokenizer trained on the tiny world), saved as an ordinary
    HF folder, so it loads through the same path as a real checkpoint."""
    from vila2.models.presets import build
    from vila2.world import world_texts

    return build("llava-tiny", tmp_path_factory.mktemp("models") / "llava-tiny",
                 texts=world_texts(tiny_world), seed=0)


def quick_recipe(model: str | Path, **changes: Any) -> dict[str, Any]:
    """A recipe for a whole loop in seconds from the model folder ``model``: the tiny world, 64
    images, one self-augment round, few steps; ``changes`` replace top-level keys."""
    recipe: dict[str, Any] = {
        "name": "reliability",
        "seed": 0,
        "data": {"world": {"seed": 0, "size": "tiny"}, "pretrain_limit": 64},
        "model": {"checkpoint": str(model)},
        "training": {"batch_size": 8, "max_length": 96, "lr": 2.0e-3,
                     "stages": [{"name": "sft", "data": ["captions", "sft"], "steps": 3}]},
        "self_augment": {"rounds": 1, "filters": ["repeated_sentence"], "batch_size": 8,
                         "max_new_tokens": 8},
        "evaluators": [{"name": "vqa", "limit": 4},
                       {"name": "caption", "limit": 4, "settings": {"max_new_tokens": 8}}],
    }
    recipe.update(changes)
    return recipe


# ------------------------------------------------------------------ the specialist package contract
def _module(plugin: ModuleType | str) -> ModuleType:
    """``plugin`` itself, the module a distribution's ``vila2`` entry point names, or a module name."""
    if isinstance(plugin, ModuleType):
        return plugin
    with contextlib.suppress(metadata.PackageNotFoundError):
        points = metadata.distribution(plugin).entry_points.select(group=ENTRY_POINT_GROUP)
        if points:
            return importlib.import_module(next(iter(points)).module)
    return importlib.import_module(plugin)


class Replay:
    """A "model" for evaluators: answers a benchmark's questions with the given answers, in
    order (``""`` once they run out), and records the questions in ``asked``."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = iter(answers)
        self.asked: list[str] = []

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        self.asked += prompts
        return [next(self.answers, "") for _ in prompts]


def benchmark_references(folder: PathLike) -> list[str]:
    """The reference answers of a benchmark dataset, in the order an evaluator asks them."""
    from vila2.data import Dataset
    from vila2.evaluate import question_and_reference

    rows = Dataset.open(folder).layer("conversations").iter_rows()
    return [question_and_reference(row["text"], f"{folder} {row['id']}")[1] for row in rows]


def _check_data(spec: Any, world: Path, out: Path) -> None:
    from vila2.data import Dataset

    folder = spec.prepare_data(None, str(world), str(out))
    dataset = Dataset.open(folder)
    assert "conversations" in dataset.layers(), (
        f"{spec.name}: prepare_data gave {folder}, which has no 'conversations' layer")
    layer = dataset.layer("conversations")
    assert layer.is_complete(), f"{spec.name}: the 'conversations' layer of {folder} is unfinished"
    asked = set()
    for text in layer.texts().values():
        turns = json.loads(text)
        assert turns and all(t["from"] in ("human", "gpt") for t in turns), text
        asked |= {t["value"].replace("<image>", "").strip() for t in turns if t["from"] == "human"}
    # a specialist answers best the prompt it was tuned on
    untrained = [p for p in spec.prompts if not any(p in question for question in asked)]
    assert not untrained, f"{spec.name}: the world's data never asks the prompts {untrained}"


def _check_evaluator(host: Host, spec: Any, world: Path, out: Path, best: float) -> None:
    assert spec.evaluator, f"{spec.name}: names no benchmark (Specialist.evaluator)"
    evaluator = host.find_evaluator(spec.evaluator)
    with pytest.raises(PluginError, match="needs its data"):
        evaluator.run(Replay([]), spec.evaluator)

    blank = evaluator.run(Replay([]), spec.evaluator, settings={"world": str(world)},
                          out_dir=str(out / "blank"))
    assert blank.benchmark == spec.evaluator and blank.primary in blank.metrics
    assert blank.samples_path, f"evaluator {evaluator.name!r} wrote no samples file to out_dir"
    samples = [json.loads(line) for line in Path(blank.samples_path).read_text().splitlines()]
    assert blank.n == len(samples) > 0

    # the reference answers, given back in the benchmark's order, score the most there is
    replay = Replay([s["reference"] for s in samples])
    right = evaluator.run(replay, spec.evaluator, settings={"world": str(world)})
    assert replay.asked == [s["question"] for s in samples]
    assert right.n == blank.n and right.primary == blank.primary
    assert right.score == pytest.approx(best), (
        f"{spec.evaluator}: the reference answers score {right.metrics}, not {right.primary}={best}")
    assert blank.score < right.score, f"{spec.evaluator}: empty answers score {blank.metrics}"


def _check_installed(module: ModuleType, components: dict[str, list[str]], out: Path) -> None:
    """The ``vila2`` entry point names ``module`` and ``vila2 plugins --json`` lists what it
    registers. A source checkout that is not installed is checked as ``pip install -e`` would
    install it: its ``pyproject.toml`` metadata, on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k not in {"VILA2_DISABLE_PLUGINS", "VILA2_STRICT_PLUGINS"}}
    points = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.module == module.__name__]
    if points:
        name, dist = points[0].name, points[0].dist.name if points[0].dist else None
    else:
        name, dist, paths = _source_install(module, out / "site")
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VILA2_LOAD_PLUGINS"] = name
    done = subprocess.run([sys.executable, "-m", "vila2", "plugins", "--json"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    listed = {p["name"]: p for p in json.loads(done.stdout)}
    assert name in listed, f"`vila2 plugins` does not list the entry point {name!r}: {sorted(listed)}"
    assert listed[name]["status"] == "loaded", listed[name]["reason"]
    assert listed[name]["distribution"] == dist
    assert listed[name]["components"] == components


def _source_install(module: ModuleType, site: Path) -> tuple[str, str, list[str]]:
    """``(entry point, distribution, sys.path entries)`` of an uninstalled source checkout."""
    import tomllib

    root = Path(module.__file__ or ".").resolve().parent.parent
    pyproject = root / "pyproject.toml"
    assert pyproject.is_file(), f"{module.__name__} is not installed and {root} has no pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    points = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    names = [n for n, target in points.items() if target.split(":")[0].strip() == module.__name__]
    assert names, f"{pyproject}: [project.entry-points.{ENTRY_POINT_GROUP}] does not name {module.__name__}"
    version = getattr(module, "__version__", "0")
    info = site / f"{project['name'].replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{names[0]} = {points[names[0]]}\n")
    return names[0], project["name"], [str(site), str(root)]


def check_specialist_package(plugin: ModuleType | str, world: PathLike, tmp_path: PathLike,
                             *, best: float = 1.0) -> None:
    """The contract of a specialist package (a module, its name, or its distribution's name),
    checked on a tiny embedded ``world`` (see the ``tiny_world`` fixture):

    * its ``vila2`` entry point names it, and ``vila2 plugins --json`` lists it, loaded, with the
      specialists and evaluators it registers;
    * each specialist has a description, prompts and QA questions; ``prepare_data`` on the world
      gives a dataset with a finished ``conversations`` layer that asks its prompts;
    * the evaluator of its benchmark needs data or the world, scores a model there, and scores
      the reference answers ``best`` (its primary metric's maximum).
    """
    module, out = _module(plugin), Path(tmp_path)
    with _sandbox() as host:
        name = host.register(module)
        components = {k: list(v) for k, v in host.infos[name].components.items()}
        assert components.get("specialist"), f"plugin {name!r} registers no specialist"
        for spec in (host.get("specialist", n) for n in components["specialist"]):
            assert spec.description.strip(), f"{spec.name}: no description"
            assert all(isinstance(p, str) and p.strip() for p in spec.prompts), spec.prompts
            assert spec.questions, f"{spec.name}: no QA questions"
            assert all(isinstance(q, str) and q.strip() for q in spec.questions), spec.questions
            _check_data(spec, Path(world), out / spec.name / "data")
            _check_evaluator(host, spec, Path(world), out / spec.name / "eval", best)
    _check_installed(module, components, out)


def check_specialist_run(plugin: ModuleType | str, world: PathLike, model: PathLike,
                         tmp_path: PathLike) -> None:
    """A specialist package end to end on the tiny ``world`` with the tiny ``model``: each
    specialist is fine-tuned (2 steps, with its LoRA settings), recaptions 8 pretraining images
    with its prompts (its answers cleaned as a run cleans them) and is evaluated on its benchmark."""
    from vila2.captioning.engine import caption_dataset
    from vila2.data import Dataset

    module, out = _module(plugin), Path(tmp_path)
    with _sandbox() as host:
        name = host.register(module)
        for spec_name in host.infos[name].components["specialist"]:
            spec = host.get("specialist", spec_name)
            data = spec.prepare_data(None, str(world), str(out / spec.name / "data"))
            tuned = host.hook.finetune_specialist(
                specialist=spec, base_model=str(model), data=data, out_dir=str(out / spec.name / "model"),
                settings={"max_steps": 2, "batch_size": 4, "seed": 0})
            config = json.loads((Path(tuned) / "adapter_config.json").read_text())
            assert config["r"] == spec.lora.get("r", config["r"])
            assert config["lora_alpha"] == spec.lora.get("alpha", config["lora_alpha"])

            pretrain = Dataset.open(Path(world) / "pretrain")
            images = Dataset.create(out / spec.name / "images")
            with images.writer(source="tiny world pretrain") as writer:
                for _, sample in zip(range(8), pretrain.iter_samples(), strict=False):
                    writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
            clean = spec.clean_filter()
            caption_dataset(images.path, model=tuned, layer=f"spec-{spec.name}", prompts=spec.prompts,
                            filters=[clean] if clean else [], batch_size=8, max_new_tokens=12, progress=False)
            rows = list(Dataset.open(images.path).layer(f"spec-{spec.name}").iter_rows())
            assert len(rows) == 8 and {row["prompt"] for row in rows} <= set(spec.prompts)
            if spec.clean_answer is not None:
                assert all(spec.clean_answer(row["text"]) == row["text"] for row in rows)

            result = host.find_evaluator(spec.evaluator).run(
                tuned, spec.evaluator, settings={"world": str(world), "batch_size": 8}, limit=8)
            assert result.n == 8 and result.primary in result.metrics

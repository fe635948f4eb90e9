"""Pytest fixtures for plugin authors (and vila2's own tests).

In your top-level ``conftest.py``::

    pytest_plugins = ["vila2.testing"]

then::

    def test_my_filter(fresh_host, plugin_registered):
        plugin_registered(my_plugin_module)
        assert "my_filter" in fresh_host.filters()

    def test_my_captioner(tiny_world, tiny_model):
        ...  # a small embedded world and a random tiny LLaVA-style model, built once per session

Everything is local and seeded; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vila2.plugins import Host, set_host


@pytest.fixture
def fresh_host() -> Iterator[Host]:
    """A plugin host with the built-ins only (nothing installed is loaded), made process-wide
    for the duration of the test."""
    host = Host(entry_points=False, builtins=True)
    previous = set_host(host)
    try:
        yield host
    finally:
        set_host(previous)


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

"""Test fixtures: vila2's plugin-host sandbox, and a tiny embedded world built once per session.
Everything is local and seeded: no hub access."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VILA2_LOAD_PLUGINS", "")  # tests register the plugin under test themselves

from pathlib import Path

import pytest

from vila2.testing import fresh_host, plugin_registered  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small embedded world (datasets + benchmarks), built in a few seconds."""
    from vila2.world import write_world

    return write_world(tmp_path_factory.mktemp("world"), seed=0, size="tiny")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path) -> Path:
    """A random tiny LLaVA-style model saved as an ordinary HF folder."""
    from vila2.models.presets import build
    from vila2.world import world_texts

    out = tmp_path_factory.mktemp("models") / "llava-tiny"
    return build("llava-tiny", out, texts=world_texts(tiny_world), seed=0)

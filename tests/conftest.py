"""Shared fixtures. Everything is local and seeded: no hub access, tiny models, tiny data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VILA2_LOAD_PLUGINS", "")  # tests opt in to installed plugins explicitly

from pathlib import Path

import pytest

from vila2.testing import fresh_host, plugin_registered  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small embedded world (datasets + benchmarks), built once per test session."""
    from vila2.world import write_world

    out = tmp_path_factory.mktemp("world")
    write_world(out, seed=0, size="tiny")
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path) -> Path:
    """A random tiny LLaVA-style model saved as an ordinary HF folder."""
    from vila2.presets import build
    from vila2.world import world_texts

    out = tmp_path_factory.mktemp("models") / "llava-tiny"
    return build("llava-tiny", out, texts=world_texts(tiny_world), seed=0)

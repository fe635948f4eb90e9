"""Fixtures for the specialist packages' tests (``tiny_world``, ``tiny_model`` and the plugin-host
fixtures come from ``vila2.testing`` through the repository's top-level conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def few_images(tiny_world: Path, tmp_path: Path) -> Path:
    """A fresh dataset of the first 8 pretraining images of the tiny world, to recaption."""
    from vila2.data import Dataset

    pretrain = Dataset.open(tiny_world / "pretrain")
    out = Dataset.create(tmp_path / "few-images")
    with out.writer(source="tiny world pretrain") as writer:
        for i, sample in enumerate(pretrain.iter_samples()):
            if i == 8:
                break
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
    return out.path

"""Fixtures for the evals plugin: everything local, seeded and tiny (see ``mmmu_fixture``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmmu_fixture import mmmu_rows, write_mmmu


@pytest.fixture
def mmmu_file(tmp_path: Path) -> Path:
    """The MMMU-schema fixture as a local Parquet file."""
    return write_mmmu(tmp_path / "validation.parquet", mmmu_rows())

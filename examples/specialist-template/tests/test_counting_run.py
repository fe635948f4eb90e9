"""The counting specialist end to end on the tiny world: fine-tune, recaption, evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest

from vila2.testing import check_specialist_run


@pytest.mark.slow
def test_finetune_recaption_and_evaluate(tiny_world: Path, tiny_model: Path, tmp_path: Path) -> None:
    check_specialist_run("vila2_counting_specialist", tiny_world, tiny_model, tmp_path)

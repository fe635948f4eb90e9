"""The ``spatial`` benchmark: spatial questions answered by the model, scored by normalised match."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vila2 import EvalResult
from vila2_spatial_specialist.scoring import score


def evaluate(
    model: Any,
    benchmark: str,
    *,
    data: str | None = None,
    limit: int | None = None,
    out_dir: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Score ``model`` on ``data`` (a benchmark dataset with a ``conversations`` layer), by default
    the embedded world's ``<settings["world"]>/bench/spatial``.

    ``settings`` may set ``batch_size`` and ``max_new_tokens``.
    """
    from vila2.evaluate import benchmark_data, evaluate_conversations

    settings = settings or {}
    data = benchmark_data('spatial', benchmark, data, settings)
    return evaluate_conversations(
        model, data, score, benchmark=benchmark, limit=limit, out_dir=out_dir,
        batch_size=int(settings.get("batch_size", 32)),
        # answers are a word or two ("left", "top left", "red circle")
        max_new_tokens=int(settings.get("max_new_tokens", 16)),
        primary="accuracy",
    )

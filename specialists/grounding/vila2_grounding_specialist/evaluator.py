"""The ``grounding`` benchmark: boxes scored at IoU >= 0.5, object names by normalised match."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vila2 import EvalResult
from vila2_grounding_specialist.scoring import score, summarise


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
    the embedded world's ``<settings["world"]>/bench/grounding``.

    ``settings`` may set ``batch_size`` and ``max_new_tokens``.
    """
    from vila2.evaluate import benchmark_data, evaluate_conversations

    settings = settings or {}
    data = benchmark_data('grounding', benchmark, data, settings)
    result = evaluate_conversations(
        model, data, score, benchmark=benchmark, limit=limit, out_dir=out_dir,
        batch_size=int(settings.get("batch_size", 32)),
        # "[123,456,789,999]" is about a dozen tokens
        max_new_tokens=int(settings.get("max_new_tokens", 32)),
        primary="accuracy",
    )
    return dataclasses.replace(result, metrics=summarise(result.metrics))

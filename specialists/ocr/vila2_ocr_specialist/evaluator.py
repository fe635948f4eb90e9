"""The ``ocr`` benchmark: the model reads the text in images; exact match and ANLS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vila2 import EvalResult
from vila2_ocr_specialist.scoring import score


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
    the embedded world's ``<settings["world"]>/bench/ocr``.

    ``settings`` may set ``batch_size`` and ``max_new_tokens``.
    """
    from vila2.evaluate import benchmark_data, evaluate_conversations

    settings = settings or {}
    data = benchmark_data('ocr', benchmark, data, settings)
    return evaluate_conversations(
        model, data, score, benchmark=benchmark, limit=limit, out_dir=out_dir,
        batch_size=int(settings.get("batch_size", 32)),
        # OCR answers here are a word or a short line of text
        max_new_tokens=int(settings.get("max_new_tokens", 24)),
        primary="exact_match",
    )

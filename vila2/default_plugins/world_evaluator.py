"""Built-in evaluator ``world``: the embedded world's VQA and caption benchmarks.

* ``vqa`` — exact-match ``accuracy`` on colour, shape, count and existence questions;
* ``caption`` — ``bleu4`` against the full description (headline), ``object_recall``,
  per-caption ``hallucination`` and corpus-level ``chair_i``.

See :mod:`vila2.world.scoring` for each metric. Settings: ``world`` (the world folder; the
benchmark data is ``<world>/bench/<benchmark>`` unless ``data`` is given), ``batch_size``,
``max_new_tokens``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import vila2

BENCHMARKS = ("vqa", "caption")
PRIMARY = {"vqa": "accuracy", "caption": "bleu4"}
# a VQA answer is a word or two; a full description is 30–80 words
MAX_NEW_TOKENS = {"vqa": 16, "caption": 160}


def run(
    model: Any,
    benchmark: str,
    *,
    data: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> vila2.EvalResult:
    """Score ``model`` on the world benchmark ``benchmark`` (``vqa`` or ``caption``)."""
    from vila2.evaluate import benchmark_data, evaluate_conversations
    from vila2.plugins import PluginError
    from vila2.world import scoring

    settings = settings or {}
    if benchmark not in BENCHMARKS:
        raise PluginError(f"evaluator 'world' scores {', '.join(BENCHMARKS)}, not {benchmark!r}")
    data = benchmark_data('world', benchmark, data, settings)
    score = scoring.vqa_score if benchmark == "vqa" else scoring.caption_score
    result = evaluate_conversations(
        model, data, score, benchmark=benchmark, limit=limit, out_dir=out_dir,
        batch_size=int(settings.get("batch_size", 32)),
        max_new_tokens=int(settings.get("max_new_tokens", MAX_NEW_TOKENS[benchmark])),
        primary=PRIMARY[benchmark],
    )
    if benchmark == "caption":
        metrics = {**result.metrics, "chair_i": scoring.chair_i(result.metrics)}
        result = dataclasses.replace(result, metrics=metrics)
    return result


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    register(vila2.Evaluator(
        name="world", run=run, benchmarks=BENCHMARKS, backend="builtin",
        description="The embedded world's VQA (exact match) and caption (BLEU-4, object recall, "
                    "CHAIR-style hallucination) benchmarks.",
        settings={"batch_size": 32},
    ))

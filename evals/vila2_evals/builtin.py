"""The built-in MMMU evaluator: a vila2 model answers a local MMMU file, lm-eval's parser scores.

This is what ``vila2 eval --benchmark mmmu --data FILE`` and a recipe's ``evaluators: [mmmu]`` run;
with no ``data`` it reads the embedded world's ``bench/mmmu/validation.parquet`` (``settings["world"]``).
Settings: ``batch_size`` (8), ``max_new_tokens`` (32: the prompts ask for a letter or a short
phrase), ``device``, ``dtype``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vila2 import EvalResult
from vila2_evals import mmmu
from vila2_evals.results import accuracy_result


def run(model: str, benchmark: str, *, data: str | None = None, limit: int | None = None,
        out_dir: str | None = None, settings: Mapping[str, Any] | None = None) -> EvalResult:
    """Score ``model`` (a model folder) on MMMU from a local Parquet file."""
    from vila2_evals.answerer import Answerer

    settings = dict(settings or {})
    path = mmmu.resolve(data, settings)
    docs = mmmu.read(path, limit=limit)
    answerer = Answerer(model, batch_size=int(settings.get("batch_size", 8)),
                        device=settings.get("device"), dtype=settings.get("dtype"))
    max_new_tokens = int(settings.get("max_new_tokens", 32))
    records = mmmu.ask_and_score(docs, lambda requests: answerer(requests, max_new_tokens=max_new_tokens))
    return accuracy_result(benchmark, records, backend="builtin", out_dir=out_dir, details={"data": str(path)})

"""The evals plugin: registers the MMMU, lm-eval and VLMEvalKit evaluators with vila2.

Loaded on every ``vila2`` start, so it imports only light modules; each evaluator imports its
back end when it runs.
"""

from __future__ import annotations

from typing import Any

import vila2
from vila2_evals import builtin, lmeval_backend, vlmeval_backend


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    register(vila2.Evaluator(
        "mmmu", run=builtin.run, benchmarks=("mmmu",), backend="builtin",
        description="MMMU from a local Parquet file (--data, or the world's); lm-eval's MMMU parser",
    ))
    register(vila2.Evaluator(
        "lm-eval", run=lmeval_backend.run, benchmarks=None, backend="lm-eval",
        description="lm_eval.simple_evaluate: mmmu (hub or --data Parquet) or any lm-eval task",
    ))
    register(vila2.Evaluator(
        "vlmeval", run=vlmeval_backend.run, benchmarks=None, backend="vlmeval",
        description="VLMEvalKit (child process): mmmu or an image MCQ TSV (--data), exact matching",
    ))

"""Built-in evaluator ``world``: the embedded world's VQA and caption benchmarks.

* ``vqa`` — exact-match ``accuracy`` on colour, shape, count and existence questions;
* ``caption`` — ``bleu4`` against the full description (headline), ``object_recall``,
  per-caption ``hallucination`` and corpus-level ``chair_i``.

See :mod:`vila2.world.scoring` for each metric. Settings: ``world`` (the world folder; the
benchmark data is ``<world>/bench/<benchmark>`` unless ``data`` is given), ``batch_size``,
``max_new_tokens``, and two that measure whether the model looks at the image:

* ``shuffled`` (default: on for ``vqa``, off for ``caption``, whose long answers would double
  the evaluation's cost): each question is also asked with another sample's image, giving
  ``accuracy_shuffled`` (``bleu4_shuffled``, ... and ``chair_i_shuffled`` for captions);
* ``answer_loss`` (default: as ``shuffled``; model folders only, a bare answer function has no
  loss): the reference answer's mean token loss with the right image (``answer_loss``) and with
  the shuffled one (``answer_loss_shuffled``); ``loss_gap`` = shuffled − right.

See :func:`vila2.evaluate.evaluate_conversations`.
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
#: benchmarks asked again with shuffled images unless ``settings["shuffled"]`` says otherwise
SHUFFLED_BY_DEFAULT = ("vqa",)


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
    shuffled = _flag(settings, "shuffled", benchmark in SHUFFLED_BY_DEFAULT)
    # a loss needs the model's weights: an answer function given in code has none
    loadable = isinstance(model, (str, os.PathLike, tuple))
    answer_loss = _flag(settings, "answer_loss", shuffled) and loadable
    result = evaluate_conversations(
        model, data, score, benchmark=benchmark, limit=limit, out_dir=out_dir,
        batch_size=int(settings.get("batch_size", 32)),
        max_new_tokens=int(settings.get("max_new_tokens", MAX_NEW_TOKENS[benchmark])),
        primary=PRIMARY[benchmark], shuffled=shuffled, answer_loss=answer_loss,
    )
    if benchmark == "caption":
        metrics = {**result.metrics, "chair_i": scoring.chair_i(result.metrics)}
        if shuffled:
            metrics["chair_i_shuffled"] = scoring.chair_i({
                "mentioned": result.metrics["mentioned_shuffled"],
                "hallucinated": result.metrics["hallucinated_shuffled"]})
        result = dataclasses.replace(result, metrics=metrics)
    return result


def _flag(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    """A yes/no setting; a recipe's ``"false"`` string means no, not ``bool("false")``."""
    from vila2.plugins import PluginError

    value = settings.get(key, default)
    if isinstance(value, str):
        if value.lower() not in {"true", "false", "yes", "no", "1", "0"}:
            raise PluginError(f"evaluator 'world': setting {key!r} must be true or false, got {value!r}")
        return value.lower() in {"true", "yes", "1"}
    return bool(value)


@vila2.hookimpl
def register_evaluators(register: Any) -> None:
    register(vila2.Evaluator(
        name="world", run=run, benchmarks=BENCHMARKS, backend="builtin",
        description="The embedded world's VQA (exact match) and caption (BLEU-4, object recall, "
                    "CHAIR-style hallucination) benchmarks; VQA is also asked with shuffled images "
                    "(accuracy_shuffled, loss_gap) to show whether answers use the image.",
        settings={"batch_size": 32},
    ))

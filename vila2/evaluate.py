"""Score a model on a question–answer benchmark stored as a vila2 dataset.

A benchmark dataset has a ``conversations`` layer whose first human turn is the question and
whose next gpt turn is the reference answer (the embedded world's ``bench/*`` folders, or any
dataset in that shape); an optional ``truth`` layer travels with each sample to the scorer.
Evaluators call :func:`evaluate_conversations` with their own ``score`` function::

    result = evaluate_conversations("runs/r1/model", "world/bench/vqa", vqa_score, benchmark="vqa")
    result.score        # the headline metric, averaged over samples
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vila2.components import EvalResult

ScoreFn = Callable[[str, str, Mapping[str, Any]], Mapping[str, float]]
AnswerFn = Callable[[Sequence[Any], Sequence[str]], list[str]]
QUESTION_LAYER = "conversations"
TRUTH_LAYER = "truth"


def question_and_reference(text: str | None, where: str) -> tuple[str, str]:
    """The first human turn (without the ``<image>`` placeholder) and the gpt turn after it."""
    if text is None:
        raise ValueError(f"{where}: no conversation (the row is not kept)")
    try:
        turns = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: conversation is not JSON ({exc})") from None
    for i, turn in enumerate(turns if isinstance(turns, list) else []):
        if isinstance(turn, dict) and turn.get("from") == "human":
            answer = turns[i + 1] if i + 1 < len(turns) else None
            if not isinstance(answer, dict) or answer.get("from") != "gpt":
                raise ValueError(f"{where}: the first human turn has no gpt answer after it")
            return str(turn.get("value", "")).replace("<image>", "").strip(), str(answer.get("value", ""))
    raise ValueError(f"{where}: no human turn in the conversation")


def _answerer(model: Any, batch_size: int, max_new_tokens: int) -> AnswerFn:
    if isinstance(model, (str, os.PathLike, tuple)):
        from vila2.models.generation import Generator

        return Generator(model, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if callable(model):
        return model
    raise TypeError(f"model must be a model folder, a (model, processor) pair or a callable, got {model!r}")


def _chunks(samples: Iterator[dict[str, Any]], size: int, limit: int | None) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for taken, sample in enumerate(samples):
        if limit is not None and taken >= limit:
            break
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def evaluate_conversations(
    model: str | os.PathLike[str] | tuple[Any, Any] | AnswerFn,
    data: str | os.PathLike[str],
    score: ScoreFn,
    *,
    benchmark: str,
    limit: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    primary: str | None = None,
) -> EvalResult:
    """Ask every sample's question, score each answer, and average the scores.

    ``model`` is a model folder (or a loaded ``(model, processor)`` pair) answered greedily by
    :class:`vila2.models.generation.Generator`, or any ``fn(images, prompts) -> answers``.
    ``score(prediction, reference, sample)`` returns metrics for one answer; ``sample`` is the
    store's record with the ``truth`` layer when the dataset has one. ``primary`` names the
    headline metric (default: the first one ``score`` returns). With ``out_dir``, every sample's
    question, reference, prediction and metrics go to ``out_dir/<benchmark>.jsonl``.
    """
    from tqdm.auto import tqdm

    from vila2.data import Dataset

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    ds = Dataset.open(data)
    layers = ds.layers()
    if QUESTION_LAYER not in layers:
        raise ValueError(f"benchmark {benchmark!r}: {data} has no {QUESTION_LAYER!r} layer "
                         f"(layers: {', '.join(layers) or 'none'})")
    wanted = [QUESTION_LAYER] + ([TRUTH_LAYER] if TRUTH_LAYER in layers else [])
    total = ds.num_samples if limit is None else min(limit, ds.num_samples)
    if total == 0:
        raise ValueError(f"benchmark {benchmark!r}: {data} holds no samples")

    answer = _answerer(model, batch_size, max_new_tokens)
    samples_path = Path(out_dir) / f"{benchmark}.jsonl" if out_dir is not None else None
    lines: list[str] = []
    sums: dict[str, float] = {}
    n = 0
    with tqdm(total=total, desc=f"eval {benchmark}", unit="q", disable=None) as progress:
        for chunk in _chunks(ds.iter_samples(layers=wanted), batch_size, limit):
            asked = [question_and_reference(s[QUESTION_LAYER], f"{data} sample {s['id']!r}") for s in chunk]
            predictions = answer([ds.load_image(s) for s in chunk], [q for q, _ in asked])
            if len(predictions) != len(chunk):
                raise ValueError(f"the model returned {len(predictions)} answers for {len(chunk)} questions")
            for sample, (question, reference), prediction in zip(chunk, asked, predictions, strict=True):
                try:
                    metrics = {k: float(v) for k, v in score(prediction, reference, sample).items()}
                except Exception as exc:
                    raise ValueError(f"benchmark {benchmark!r} sample {sample['id']!r}: scoring failed: "
                                     f"{exc!r}") from exc
                if n and set(metrics) != set(sums):
                    raise ValueError(f"benchmark {benchmark!r} sample {sample['id']!r}: the scorer "
                                     f"returned {sorted(metrics)}, earlier samples {sorted(sums)}")
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
                n += 1
                if samples_path is not None:
                    lines.append(json.dumps({"id": sample["id"], "question": question, "reference": reference,
                                             "prediction": prediction, "metrics": metrics}))
            progress.update(len(chunk))

    means = {key: value / n for key, value in sums.items()}
    primary = primary or next(iter(means))
    if primary not in means:
        raise ValueError(f"benchmark {benchmark!r}: primary metric {primary!r} is not among {sorted(means)}")
    if samples_path is not None:
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = samples_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(samples_path)
    return EvalResult(
        benchmark=benchmark, metrics=means, primary=primary, n=n, backend="builtin",
        samples_path=str(samples_path) if samples_path is not None else None,
        details={"data": str(data), "model": str(model) if isinstance(model, (str, os.PathLike)) else None},
    )


def benchmark_data(evaluator: str, benchmark: str, data: str | Path | None,
                   settings: Mapping[str, Any]) -> str:
    """``data``, or by default the embedded world's ``<settings["world"]>/bench/<benchmark>``."""
    from vila2.plugins import PluginError

    if data is not None:
        return str(data)
    if not settings.get("world"):
        raise PluginError(f"evaluator {evaluator!r}: benchmark {benchmark!r} needs its data; it needs "
                          "data= (a benchmark dataset, `--data`) or the setting 'world' (a folder "
                          "written by `vila2 world`, `--world`)")
    return str(Path(settings["world"]) / "bench" / benchmark)

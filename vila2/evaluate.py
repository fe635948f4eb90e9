"""Score a model on a question–answer benchmark stored as a vila2 dataset.

A benchmark dataset has a ``conversations`` layer whose first human turn is the question and
whose next gpt turn is the reference answer (the embedded world's ``bench/*`` folders, or any
dataset in that shape); an optional ``truth`` layer travels with each sample to the scorer.
Evaluators call :func:`evaluate_conversations` with their own ``score`` function::

    result = evaluate_conversations("runs/r1/model", "world/bench/vqa", vqa_score, benchmark="vqa")
    result.score        # the headline metric, averaged over samples

Whether a model looks at the image at all: with ``shuffled=True`` every question is also asked
with another sample's image (metrics ``<name>_shuffled``), and with ``answer_loss=True`` the
reference answer's loss is measured with the right image (``answer_loss``) and, when shuffled,
with the other image (``answer_loss_shuffled``; ``loss_gap`` is the difference). A model that
ignores its image scores the same either way.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


def _chunks(samples: Iterable[Any], size: int, limit: int | None) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for taken, sample in enumerate(samples):
        if limit is not None and taken >= limit:
            break
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def other_images(samples: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each sample paired with another whose image differs: the latest earlier such sample (the
    first samples, before two different images were seen, take the first different one after).

    Deterministic and streaming; a different image rather than merely another sample, because
    real benchmarks often ask several questions about one image in a row.
    """
    pending: list[dict[str, Any]] = []  # the first samples, all of one image, still unpaired
    latest: dict[str, Any] | None = None  # the latest sample
    before: dict[str, Any] | None = None  # the latest sample whose image differs from latest's
    for sample in samples:
        other = latest if latest is not None and latest["image"] != sample["image"] else before
        if latest is None or latest["image"] != sample["image"]:
            before = latest
        latest = sample
        if other is None:
            pending.append(sample)
            continue
        for waiting in pending:
            yield waiting, sample
        pending = []
        yield sample, other
    if pending:
        raise ValueError("shuffled images need at least two different images among the samples")


class AnswerLoss:
    """Mean loss per answer token of a reference answer given an image and a question.

    The same loss training minimises (:class:`vila2.training.collate.ExampleEncoder`: the chat
    template, loss on the answer tokens only), on a loaded ``model`` and ``processor``.
    """

    def __init__(self, model: Any, processor: Any, batch_size: int = 32, max_length: int = 4096) -> None:
        from vila2.training.collate import ExampleEncoder

        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.encoder = ExampleEncoder(processor, max_length)
        tokenizer = getattr(processor, "tokenizer", processor)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, images: Sequence[bytes], questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        """One loss per ``(encoded image, question, reference answer)``, in order."""
        import torch
        import torch.nn.functional as F

        from vila2.training.collate import IGNORE_INDEX, collate

        examples = [
            self.encoder({"id": str(i), "image": image, "conversations": [
                {"from": "human", "value": question}, {"from": "gpt", "value": answer}]})
            for i, (image, question, answer) in enumerate(zip(images, questions, answers, strict=True))
        ]
        losses: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(examples), self.batch_size):
                batch = collate(examples[start:start + self.batch_size], self.pad_token_id)
                labels = batch.pop("labels").to(self.model.device)
                inputs = {k: v.to(self.model.device) for k, v in batch.items()}
                pixels = inputs.get("pixel_values")
                if pixels is not None and pixels.is_floating_point():
                    inputs["pixel_values"] = pixels.to(self.model.dtype)
                logits = self.model(**inputs).logits[:, :-1].float()
                target = labels[:, 1:]  # token t is predicted from the tokens before it
                nll = F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
                mask = target != IGNORE_INDEX
                per_sample = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
                losses += [float(x) for x in per_sample]
        return losses


def _loss_of(answer: Any, model: Any, batch_size: int) -> AnswerLoss:
    """An :class:`AnswerLoss` on the model ``answer`` generates with (loaded once for both)."""
    loaded = getattr(answer, "model", None), getattr(answer, "processor", None)
    if loaded[0] is None or loaded[1] is None:
        raise ValueError(f"answer loss needs a model folder or a (model, processor) pair, got {model!r}")
    return AnswerLoss(*loaded, batch_size=batch_size)


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
    shuffled: bool = False,
    answer_loss: bool = False,
) -> EvalResult:
    """Ask every sample's question, score each answer, and average the scores.

    ``model`` is a model folder (or a loaded ``(model, processor)`` pair) answered greedily by
    :class:`vila2.models.generation.Generator`, or any ``fn(images, prompts) -> answers``.
    ``score(prediction, reference, sample)`` returns metrics for one answer; ``sample`` is the
    store's record with the ``truth`` layer when the dataset has one. ``primary`` names the
    headline metric (default: the first one ``score`` returns). With ``out_dir``, every sample's
    question, reference, prediction and metrics go to ``out_dir/<benchmark>.jsonl``.

    ``shuffled``: every question is asked a second time with another sample's image
    (:func:`other_images`); each metric gets a ``<name>_shuffled`` twin, scored against the
    asked sample's own reference, and each JSONL line a ``shuffled`` record (``image_of``,
    ``prediction``, ``metrics``). ``answer_loss``: the reference answer's mean token loss
    (:class:`AnswerLoss`; a model folder or pair only) as ``answer_loss``, with shuffled images
    too as ``answer_loss_shuffled`` and ``loss_gap`` (shuffled minus right: how much the image
    helps predict the answer).

    Where the question layer's rows carry a question kind (``meta["kind"]``, as the embedded
    world's benchmarks do: ``color``, ``where``, ``box``...), every metric is also averaged per
    kind into ``details["by_kind"]`` (``{kind: {"n": ..., metric: mean}}``) and each JSONL line
    names its kind: a headline number that moves tells which questions moved it.
    """
    from vila2.data import Dataset
    from vila2.progress import progress_bar

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
    loss = _loss_of(answer, model, batch_size) if answer_loss else None
    samples_path = Path(out_dir) / f"{benchmark}.jsonl" if out_dir is not None else None
    lines: list[str] = []
    sums: dict[str, float] = {}
    extra: dict[str, float] = {}  # the shuffled twins and the losses, summed over samples
    n = 0
    kinds = question_kinds(ds)
    by_kind: dict[str, dict[str, float]] = {}  # kind -> metric sums, "n" included

    def scored(prediction: str, reference: str, sample: dict[str, Any]) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in score(prediction, reference, sample).items()}
        except Exception as exc:
            raise ValueError(f"benchmark {benchmark!r} sample {sample['id']!r}: scoring failed: "
                             f"{exc!r}") from exc

    def answered(images: list[Any], questions: list[str]) -> list[str]:
        predictions = answer(images, questions)
        if len(predictions) != len(images):
            raise ValueError(f"the model returned {len(predictions)} answers for {len(images)} questions")
        return predictions

    samples: Iterator[dict[str, Any]] = ds.iter_samples(layers=wanted)
    if limit is not None:
        samples = itertools.islice(samples, limit)
    # with shuffled images each sample travels with the sample whose image it is also asked with
    pairs = other_images(samples) if shuffled else ((s, None) for s in samples)
    with progress_bar(total=total, desc=f"eval {benchmark}", unit="q", disable=None) as progress:
        for chunk_pairs in _chunks(pairs, batch_size, None):
            chunk = [s for s, _ in chunk_pairs]
            others = [o for _, o in chunk_pairs]
            asked = [question_and_reference(s[QUESTION_LAYER], f"{data} sample {s['id']!r}") for s in chunk]
            questions, references = [q for q, _ in asked], [r for _, r in asked]
            predictions = answered([ds.load_image(s) for s in chunk], questions)
            swapped = answered([ds.load_image(o) for o in others], questions) if shuffled else None
            losses = loss([s["image"] for s in chunk], questions, references) if loss else None
            losses_swapped = (loss([o["image"] for o in others], questions, references)
                              if loss and shuffled else None)
            for j, (sample, (question, reference), prediction) in enumerate(zip(chunk, asked, predictions, strict=True)):
                metrics = scored(prediction, reference, sample)
                if n and set(metrics) != set(sums):
                    raise ValueError(f"benchmark {benchmark!r} sample {sample['id']!r}: the scorer "
                                     f"returned {sorted(metrics)}, earlier samples {sorted(sums)}")
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
                line: dict[str, Any] = {"id": sample["id"], "question": question, "reference": reference,
                                        "prediction": prediction, "metrics": metrics}
                per_sample: dict[str, float] = {}
                if swapped is not None:
                    twin = scored(swapped[j], reference, sample)
                    per_sample.update({f"{k}_shuffled": v for k, v in twin.items()})
                    line["shuffled"] = {"image_of": others[j]["id"], "prediction": swapped[j], "metrics": twin}
                if losses is not None:
                    per_sample["answer_loss"] = line["answer_loss"] = losses[j]
                if losses_swapped is not None and losses is not None:
                    per_sample["answer_loss_shuffled"] = line["answer_loss_shuffled"] = losses_swapped[j]
                    per_sample["loss_gap"] = losses_swapped[j] - losses[j]
                for key, value in per_sample.items():
                    extra[key] = extra.get(key, 0.0) + value
                kind = kinds.get(sample["id"])
                if kind is not None:
                    line["kind"] = kind
                    group = by_kind.setdefault(kind, {"n": 0.0})
                    group["n"] += 1
                    for key, value in [*metrics.items(), *per_sample.items()]:
                        group[key] = group.get(key, 0.0) + value
                n += 1
                if samples_path is not None:
                    lines.append(json.dumps(line))
            progress.update(len(chunk))

    # the scorer's own metrics come first: the default primary metric is the first of them
    means = {key: value / n for key, value in [*sums.items(), *extra.items()]}
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
        details={"data": str(data), "model": str(model) if isinstance(model, (str, os.PathLike)) else None,
                 **({"shuffled": "each question also asked with another sample's image (the latest "
                                 "earlier one whose image differs)"} if shuffled else {}),
                 **({"by_kind": {kind: {"n": int(group["n"]),
                                        **{k: v / group["n"] for k, v in group.items() if k != "n"}}
                                 for kind, group in sorted(by_kind.items())}} if by_kind else {})},
    )


def question_kinds(ds: Any) -> dict[str, str]:
    """sample id -> question kind, from the question layer's ``meta["kind"]`` (empty when the
    rows carry none)."""
    kinds: dict[str, str] = {}
    for row in ds.layer(QUESTION_LAYER).iter_rows():
        meta = row.get("meta")
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if isinstance(kind, str) and kind:
            kinds[row["id"]] = kind
    return kinds


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

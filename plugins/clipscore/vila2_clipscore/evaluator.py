"""The ``clipscore`` evaluator: how well a model's detailed captions agree with their images.

``vila2 eval --model M --benchmark clipscore --world W --set clip=models/clip`` asks the model the
caption benchmark's question for every image (the world's ``bench/caption``, or ``--data``: any
dataset with a ``conversations`` layer), and scores each caption against its image with the
CLIP/SigLIP/open_clip folder ``clip`` (or ``$VILA2_CLIPSCORE_MODEL``). Metrics, averaged:

* ``clipscore`` (headline): mean cosine over the caption's sentences (long ones in windows);
* ``clipscore_min``: the worst sentence's cosine;
* ``clipscore_whole``: the usual whole-caption view, truncated at the text encoder's length;
* ``pieces``: sentences (and windows) per caption.

Captions are generated and scored a batch at a time (``batch_size`` images per generation call;
``clip_batch_size`` per CLIP call). Settings: ``clip``, ``world``, ``batch_size`` (32),
``max_new_tokens`` (160), ``clip_batch_size`` (64), ``device``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import vila2

BENCHMARK = "clipscore"
DATA = "caption"  # the world's benchmark folder whose question (and images) it uses
MAX_NEW_TOKENS = 160


class _Judge:
    """Answers a batch of images with the model, scores the whole batch with CLIP, and hands each
    sample's metrics back in order (``evaluate_conversations`` scores a batch's samples in order)."""

    def __init__(self, answer: Any, scorer: Any) -> None:
        self.answer, self.scorer = answer, scorer
        self.pending: deque[tuple[str, dict[str, float]]] = deque()

    def __call__(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        captions = list(self.answer(images, prompts))
        scores = self.scorer.score_captions(images, captions)
        whole = self.scorer.score_whole(images, captions)
        for caption, score, full in zip(captions, scores, whole, strict=True):
            self.pending.append((caption, {"clipscore": score.mean, "clipscore_min": score.min,
                                           "clipscore_whole": full, "pieces": float(len(score.pieces))}))
        return captions

    def score(self, prediction: str, reference: str, sample: Mapping[str, Any]) -> dict[str, float]:
        caption, metrics = self.pending.popleft()
        if caption != prediction:
            raise RuntimeError(f"sample {sample.get('id')!r}: scores came back out of order")
        return metrics


def run(
    model: Any,
    benchmark: str,
    *,
    data: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> vila2.EvalResult:
    """Caption the benchmark's images with ``model`` and score the captions with CLIP."""
    import dataclasses

    from vila2.errors import PluginError
    from vila2.evaluate import benchmark_data, evaluate_conversations
    from vila2_clipscore.filters import ENV_MODEL
    from vila2_clipscore.scorer import get_scorer

    settings = settings or {}
    if benchmark != BENCHMARK:
        raise PluginError(f"evaluator 'clipscore' scores the benchmark {BENCHMARK!r}, not {benchmark!r}")
    clip = settings.get("clip") or os.environ.get(ENV_MODEL)
    if not clip:
        raise PluginError(f"evaluator 'clipscore' needs a CLIP/SigLIP checkpoint folder: --set clip=DIR "
                          f"(or ${ENV_MODEL}); `vila2 clipscore train --world W --out DIR` trains one")
    folder = benchmark_data("clipscore", DATA, data, settings)
    batch_size = int(settings.get("batch_size", 32))
    max_new_tokens = int(settings.get("max_new_tokens", MAX_NEW_TOKENS))
    scorer = get_scorer(clip, device=settings.get("device"), batch_size=int(settings.get("clip_batch_size", 64)))
    if isinstance(model, (str, os.PathLike, tuple)):
        from vila2.models.generation import Generator

        answer: Any = Generator(model, batch_size=batch_size, max_new_tokens=max_new_tokens)
    elif callable(model):
        answer = model
    else:
        raise TypeError(f"model must be a model folder, a (model, processor) pair or a callable, got {model!r}")
    judge = _Judge(answer, scorer)
    result = evaluate_conversations(judge, folder, judge.score, benchmark=BENCHMARK, limit=limit,
                                    out_dir=out_dir, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                    primary="clipscore")
    details = {**result.details, "clip": str(clip), "model": str(model) if isinstance(model, (str, os.PathLike)) else None,
               "pooling": "clipscore: mean over sentences; clipscore_min: worst sentence"}
    return dataclasses.replace(result, backend="builtin", details=details)


EVALUATOR = vila2.Evaluator(
    name="clipscore", run=run, benchmarks=(BENCHMARK,), backend="builtin",
    description="CLIP image-caption agreement of a model's detailed captions, sentence by sentence "
                "(setting 'clip': a CLIP/SigLIP/open_clip folder).",
    settings={"batch_size": 32, "max_new_tokens": MAX_NEW_TOKENS, "clip": None, "clip_batch_size": 64},
)

__all__ = ["BENCHMARK", "EVALUATOR", "run"]

"""The held-out benchmarks: one question per image, from scenes no training set uses.

Question kinds rotate with the sample index, so every benchmark is balanced over its kinds
(a kind that cannot be asked of a scene falls through to the next one).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from vila2.captioning.prompts import LONG_PROMPTS
from vila2.world.captions import describe
from vila2.world.conversations import (
    GROUNDING_KINDS,
    OCR_KINDS,
    SPATIAL_KINDS,
    VQA_KINDS,
    Pair,
    grounding_question,
    ocr_question,
    spatial_question,
    vqa_question,
)
from vila2.world.scene import Scene


def caption_question(scene: Scene, rng: random.Random, kind: str) -> Pair:
    """The caption benchmark asks the first recaption prompt; the reference is the full description."""
    return LONG_PROMPTS[0], describe(scene)


@dataclass(frozen=True)
class Benchmark:
    """How one benchmark asks: its question function and kinds, and how its scenes look."""

    name: str
    ask: Callable[[Scene, random.Random, str], Pair | None]
    kinds: tuple[str, ...]
    word_rate: float = 0.3
    min_objects: int = 1


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("vqa", vqa_question, VQA_KINDS),
        Benchmark("caption", caption_question, ("describe",)),
        Benchmark("spatial", spatial_question, SPATIAL_KINDS, min_objects=2),
        Benchmark("grounding", grounding_question, GROUNDING_KINDS),
        Benchmark("ocr", ocr_question, OCR_KINDS, word_rate=1.0),
    )
}


def benchmark_pair(benchmark: Benchmark, scene: Scene, rng: random.Random, index: int) -> tuple[str, Pair]:
    """``(kind, (question, answer))`` for sample ``index`` of ``benchmark``."""
    kinds = benchmark.kinds
    for step in range(len(kinds)):
        kind = kinds[(index + step) % len(kinds)]
        pair = benchmark.ask(scene, rng, kind)
        if pair is not None:
            return kind, pair
    raise ValueError(f"benchmark {benchmark.name!r}: no question fits scene {scene.seed}")

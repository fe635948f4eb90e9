"""How big each part of the world is, by named size: the one table to edit."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class WorldSize:
    """Image counts per part of the world.

    ``seed_fraction`` of the pretraining images are repeated in ``sft/`` with a full
    description (the detailed-caption seed); ``sft`` more images carry general VQA, and
    ``sft_domain_fraction`` of those one short spatial, grounding or OCR question as well.
    ``bench`` is the number of questions of each held-out benchmark.
    """

    pretrain: int
    seed_fraction: float
    sft: int
    spatial: int
    grounding: int
    ocr: int
    bench: int
    mmmu: int
    sft_domain_fraction: float = 0.3

    @property
    def seed(self) -> int:
        """Number of pretraining images repeated with a full description in ``sft/``."""
        return max(1, math.ceil(self.seed_fraction * self.pretrain))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seed": self.seed}


SIZES: dict[str, WorldSize] = {
    # every test session builds this one: a few seconds
    "tiny": WorldSize(pretrain=300, seed_fraction=0.04, sft=120, spatial=80, grounding=80, ocr=80,
                      bench=40, mmmu=40),
    # what `vila2 demo` trains on; 1,000 questions per benchmark, so a 3-point change is outside
    # the 95% interval of a paired comparison
    "demo": WorldSize(pretrain=4000, seed_fraction=0.04, sft=1500, spatial=600, grounding=600,
                      ocr=600, bench=1000, mmmu=200),
    "default": WorldSize(pretrain=20000, seed_fraction=0.04, sft=6000, spatial=2000,
                         grounding=2000, ocr=2000, bench=500, mmmu=300),
}


def resolve_size(size: str | int) -> WorldSize:
    """A named size, or ``N`` pretraining images with the other parts scaled from ``default``."""
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"world size must be a positive number of images, got {size}")
        base = SIZES["default"]
        scale = size / base.pretrain

        def scaled(n: int, least: int) -> int:
            return max(least, round(n * scale))

        return replace(
            base, pretrain=size, sft=scaled(base.sft, 20), spatial=scaled(base.spatial, 20),
            grounding=scaled(base.grounding, 20), ocr=scaled(base.ocr, 20),
            bench=scaled(base.bench, 20), mmmu=scaled(base.mmmu, 20),
        )
    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r}: use {', '.join(SIZES)} or a number of images")
    return SIZES[size]

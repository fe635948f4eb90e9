"""The caption filters ``clipscore`` (mean over sentences) and ``clipscore_min`` (worst sentence).

In a recipe::

    self_augment:
      filters:
        - repeated_sentence
        - {name: clipscore_min, settings: {model: models/clip}}            # calibrated threshold
        - {name: clipscore, settings: {model: models/clip, min: 0.25}}     # or your own

Each scores a new caption against its image with the CLIP/SigLIP/open_clip folder ``model``
(or ``$VILA2_CLIPSCORE_MODEL``), piece by piece (:mod:`vila2_clipscore.segments`), and stores the
pooled cosine similarity in the caption layer; ``keep`` compares it with ``min`` (and ``max``).
Listing both filters costs one inference: the per-piece similarities are remembered for the
caption just scored. A new threshold needs no model: ``vila2.captioning.filters.rethreshold``.

``min`` left unset means the threshold stored with the model by ``vila2 clipscore train``
(``clipscore.json``: the best balanced accuracy between true descriptions and descriptions with
one wrong sentence, on held-out scenes); any other checkpoint needs ``min``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vila2.components import Filter

ENV_MODEL = "VILA2_CLIPSCORE_MODEL"
#: captions whose per-piece scores are remembered (both filters score the same caption in turn)
_RECENT = 256
_recent: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_recent_lock = threading.Lock()


def model_folder(settings: Mapping[str, Any], name: str) -> str:
    """The checkpoint a filter scores with: ``settings["model"]``, else ``$VILA2_CLIPSCORE_MODEL``."""
    from vila2.errors import FilterError

    model = settings.get("model") or os.environ.get(ENV_MODEL)
    if not model:
        raise FilterError(
            f"filter {name!r} needs a CLIP/SigLIP checkpoint folder: give it as the setting 'model' "
            f"(e.g. {{name: {name}, settings: {{model: models/clip}}}}) or in ${ENV_MODEL}; "
            "`vila2 clipscore train --world W --out DIR` trains one on the embedded world"
        )
    return str(model)


def caption_score(sample: Mapping[str, Any], text: str, settings: Mapping[str, Any]) -> Any:
    """The :class:`vila2_clipscore.scorer.CaptionScore` of ``text`` against ``sample["image"]``."""
    from vila2_clipscore.scorer import get_scorer

    model = model_folder(settings, "clipscore")
    key = (model, str(sample.get("id")), text)
    with _recent_lock:
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key]
    if "image" not in sample:
        raise ValueError(f"sample {sample.get('id')!r} has no image to score the caption against")
    scorer = get_scorer(model, device=settings.get("device"), batch_size=int(settings.get("batch_size") or 64))
    result = scorer.score_captions([sample["image"]], [text])[0]
    with _recent_lock:
        _recent[key] = result
        while len(_recent) > _RECENT:
            _recent.popitem(last=False)
    return result


def threshold(how: str, min: float | str | None, model: str | None) -> float | None:
    """``min`` as a number, or, when it is unset or ``"auto"``, the threshold stored with ``model``."""
    from vila2.errors import FilterError
    from vila2_clipscore.train import read_calibration

    if min is not None and min != "auto":
        return float(min)
    folder = model or os.environ.get(ENV_MODEL)
    record = read_calibration(folder) if folder else None
    if record is None:
        raise FilterError(
            f"filter 'clipscore{'' if how == 'mean' else '_' + how}' has no threshold: set 'min' (the "
            f"checkpoint {folder!r} was not trained by `vila2 clipscore train`, so it has no clipscore.json)"
        )
    return float(record["thresholds"][how])


def make_keep(how: str) -> Any:
    """``keep(score, min=None, max=None, model=None, **settings)`` for pooling ``how``."""

    def keep(score: float, min: float | str | None = None, max: float | None = None,
             model: str | None = None, **_: Any) -> bool:
        low = threshold(how, min, model)
        return (low is None or score >= low) and (max is None or score <= float(max))

    keep.__name__ = f"keep_{how}"
    return keep


@dataclass(frozen=True)
class ClipScoreFilter(Filter):
    """A filter whose scorer reads the recipe's settings (the checkpoint folder, device, batch)."""

    pooling: str = "mean"

    def apply(self, sample: Mapping[str, Any], text: str, **overrides: Any) -> tuple[str, float | None, bool]:
        assert self.keep is not None
        settings = {**self.settings, **overrides}
        value = caption_score(sample, text, settings).pooled(self.pooling)
        return text, value, bool(self.keep(value, **settings))


def _unused_score(sample: Mapping[str, Any], text: str) -> float:
    """Scores come from :meth:`ClipScoreFilter.apply`, which knows the recipe's settings."""
    raise RuntimeError("ClipScoreFilter scores through apply(sample, text, **settings)")


SETTINGS: dict[str, Any] = {"model": None, "min": None, "max": None, "device": None, "batch_size": 64}

FILTERS: tuple[Filter, ...] = (
    ClipScoreFilter(
        "clipscore", score=_unused_score, keep=make_keep("mean"), settings=SETTINGS, pooling="mean",
        description="CLIP image-caption agreement, sentence by sentence, mean over sentences "
                    "(setting 'model': a CLIP/SigLIP/open_clip folder); keep min <= score <= max.",
    ),
    ClipScoreFilter(
        "clipscore_min", score=_unused_score, keep=make_keep("min"), settings=SETTINGS, pooling="min",
        description="CLIP image-caption agreement of the caption's worst sentence: one wrong "
                    "sentence anywhere lowers it; keep min <= score <= max.",
    ),
)

__all__ = ["ENV_MODEL", "FILTERS", "ClipScoreFilter", "caption_score", "make_keep", "model_folder", "threshold"]

"""The built-in ``self`` captioner: the model being improved recaptions its own images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import vila2
from vila2.components import CaptionFn


def load_self(model: str | None, settings: Mapping[str, Any]) -> CaptionFn:
    """A :class:`vila2.models.generation.Generator` on ``model``; ``settings`` are its keyword arguments
    (``batch_size``, ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``, ``stop``,
    ``dtype``, ``device``, and any ``model.generate`` argument)."""
    if model is None:
        raise ValueError("captioner 'self' needs a model folder (--model)")
    from vila2.models.generation import Generator

    return Generator(model, **settings)


@vila2.hookimpl
def register_captioners(register: Any) -> None:
    register(vila2.Captioner(
        "self", load=load_self,
        description="The model itself recaptions the images (batched generation, greedy by default).",
    ))

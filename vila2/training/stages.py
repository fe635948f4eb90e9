"""Which parameters each training stage updates.

A VLM has three parts: the vision tower, the projector (connector) that maps image features into
the language model, and the language model. Parameter names tell them apart across
architectures (LLaVA, LLaVA-OneVision, Qwen2-VL/2.5-VL, Idefics3/SmolVLM, PaliGemma, Gemma 3...).

* ``align``: projector only — the new connector learns to speak the LLM's language;
* ``pretrain`` and ``sft``: projector + language model (the vision tower stays frozen unless
  ``train_vision`` is set).
"""

from __future__ import annotations

from typing import Any

STAGES = ("align", "pretrain", "sft")
# Checked in this order: Qwen2-VL's projector lives inside its vision module ("visual.merger").
_PROJECTOR = ("multi_modal_projector", "mm_projector", "connector", "visual.merger", "merger")
_VISION = ("vision_tower", "vision_model", "vision_encoder", "visual", "image_encoder")


def part_of(name: str) -> str:
    """``"projector"``, ``"vision"`` or ``"language"`` for a parameter name."""
    if any(key in name for key in _PROJECTOR):
        return "projector"
    if any(key in name for key in _VISION):
        return "vision"
    return "language"


def trained_parts(stage: str, train_vision: bool = False) -> set[str]:
    """The parts a stage updates."""
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; use one of {', '.join(STAGES)}")
    parts = {"projector"} if stage == "align" else {"projector", "language"}
    return parts | {"vision"} if train_vision else parts


def freeze_for_stage(model: Any, stage: str, train_vision: bool = False) -> dict[str, int]:
    """Set ``requires_grad`` for ``stage``; return the number of trainable parameters per part."""
    parts = trained_parts(stage, train_vision)
    counts = {"projector": 0, "vision": 0, "language": 0}
    for name, param in model.named_parameters():
        part = part_of(name)
        param.requires_grad_(part in parts)
        if part in parts:
            counts[part] += param.numel()
    if counts["projector"] == 0:
        raise ValueError(
            f"{type(model).__name__}: found no projector parameters (names containing one of "
            f"{', '.join(_PROJECTOR)}); stage {stage!r} cannot be set up for this architecture"
        )
    return counts


__all__ = ["STAGES", "freeze_for_stage", "part_of", "trained_parts"]

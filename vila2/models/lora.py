"""LoRA adapters (peft) for specialists: settings, target modules, wrapping.

By default LoRA adapts every attention and MLP projection of the *language model* (not the
vision tower, not the projector): one regex covers LLaVA, Qwen2-VL and Idefics3-style models,
whose decoders live under ``language_model`` or ``text_model``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LANGUAGE_LINEARS = r".*(language_model|text_model)\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class LoraSettings(BaseModel):
    """LoRA hyper-parameters; ``Specialist.lora`` and recipes use these names."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1)
    alpha: float = 32.0
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: str | list[str] = LANGUAGE_LINEARS
    modules_to_save: list[str] | None = None
    merge: bool = False


def apply_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` with fresh LoRA adapters; only adapter (and ``modules_to_save``) weights train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        modules_to_save=settings.modules_to_save,
        bias="none",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ValueError(
            f"LoRA target_modules {settings.target_modules!r} match no layer of {type(model).__name__}: {exc}"
        ) from exc


__all__ = ["LANGUAGE_LINEARS", "LoraSettings", "apply_lora"]

"""LoRA adapters (peft) for specialists: settings, target roles, wrapping.

A user names *what* to adapt by role — ``language`` (the decoder's attention and MLP
projections; the default), ``projector`` (the connector or merger between the vision tower and
the decoder) and ``vision`` (the vision tower's attention and MLP projections) — and
:func:`resolve_targets` turns the roles into the module names of the model's family (its
``config.model_type``), one regex that peft matches against full module names. A role the family
does not have as ``nn.Linear`` layers, or a family whose module names are unknown here, is a
:class:`LoraTargetError` naming the roles, never a LoRA on nothing.

The adapter folder records the roles in ``vila2_lora.json`` (``targets``, ``model_type`` and the
resolved ``target_modules``) next to peft's ``adapter_config.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vila2.errors import Vila2Error

ROLES = ("language", "projector", "vision")
Role = Literal["language", "projector", "vision"]
RECORD_FILE = "vila2_lora.json"

#: every decoder projection of the language model (LLaVA, Qwen-VL, Idefics3, Gemma, Mllama...),
#: whose decoders live under ``language_model`` or ``text_model``
LANGUAGE_LINEARS = r".*(language_model|text_model)\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

_SIGLIP = r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])"
_QWEN_VISION = r"visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc[12]|gate_proj|up_proj|down_proj|linear_fc[12]))"

#: model_type -> role -> regex of its ``nn.Linear`` module names (below any ``model.`` prefix);
#: ``None`` says the family has no linear layer in that role, with the reason in NO_LINEAR
FAMILY_MODULES: dict[str, dict[str, str | None]] = {
    "llava": {"projector": r"multi_modal_projector\.linear_[12]", "vision": rf"vision_tower\.{_SIGLIP}"},
    "llava_next": {"projector": r"multi_modal_projector\.linear_[12]", "vision": rf"vision_tower\.{_SIGLIP}"},
    "llava_onevision": {"projector": r"multi_modal_projector\.linear_[12]", "vision": rf"vision_tower\.{_SIGLIP}"},
    "qwen2_vl": {"projector": r"visual\.merger\.mlp\.[02]", "vision": _QWEN_VISION},
    "qwen2_5_vl": {"projector": r"visual\.merger\.mlp\.[02]", "vision": _QWEN_VISION},
    "qwen3_vl": {"projector": r"visual\.(merger|deepstack_merger_list\.\d+)\.linear_fc[12]", "vision": _QWEN_VISION},
    "idefics3": {"projector": r"connector\.modality_projection\.proj", "vision": rf"vision_model\.{_SIGLIP}"},
    "smolvlm": {"projector": r"connector\.modality_projection\.proj", "vision": rf"vision_model\.{_SIGLIP}"},
    "internvl": {
        "projector": r"multi_modal_projector\.linear_[12]",
        "vision": r"vision_tower\.encoder\.layer\.\d+\.(attention\.(q_proj|k_proj|v_proj|projection_layer)|mlp\.fc[12])",
    },
    "gemma3": {"projector": None, "vision": rf"vision_tower\.{_SIGLIP}"},
    "paligemma": {"projector": r"multi_modal_projector\.linear", "vision": rf"vision_tower\.{_SIGLIP}"},
    "mllama": {
        "projector": r"multi_modal_projector",
        "vision": r"vision_model\.(transformer|global_transformer)\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.fc[12])",
    },
    "mistral3": {
        "projector": r"multi_modal_projector\.(linear_[12]|patch_merger\.merging_layer)",
        "vision": r"vision_tower\.transformer\.layers\.\d+\.(attention\.[qkvo]_proj|feed_forward\.(gate|up|down)_proj)",
    },
}

#: why a family has no LoRA-able layer in a role
NO_LINEAR: dict[tuple[str, str], str] = {
    ("gemma3", "projector"): "Gemma 3's projector is a bare weight matrix (mm_input_projection_weight) and a "
                             "norm, not an nn.Linear; train it fully (stage 'align') instead",
}


class LoraTargetError(Vila2Error, ValueError):
    """LoRA target roles that are unknown, or that a model's family does not have."""


def parse_targets(value: str | Iterable[str]) -> list[str]:
    """``"language,projector"`` or a list -> the role names, checked, in the order given."""
    items = value.split(",") if isinstance(value, str) else list(value)
    roles = list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise LoraTargetError(f"LoRA targets {unknown or value!r}: choose among {', '.join(ROLES)} "
                              "(comma-separated, e.g. language,projector)")
    return roles


class LoraSettings(BaseModel):
    """LoRA hyper-parameters; ``Specialist.lora`` and recipes use these names.

    ``targets`` names the roles to adapt (``language``, ``projector``, ``vision``);
    ``target_modules``, when given, is a peft regex or list that replaces them.
    """

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1)
    alpha: float = 32.0
    dropout: float = Field(default=0.0, ge=0, lt=1)
    targets: list[Role] = Field(default_factory=lambda: ["language"], min_length=1)
    target_modules: str | list[str] | None = None
    modules_to_save: list[str] | None = None
    merge: bool = False

    @field_validator("targets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def model_type(model: Any) -> str:
    """The family (``config.model_type``) of a model, a peft wrapper included."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "") or type(model).__name__)


def _linear_names(model: Any) -> list[str]:
    import torch

    # exactly nn.Linear: a subclass such as MultiheadAttention's out_proj is used by weight only
    return [name for name, module in model.named_modules() if type(module) is torch.nn.Linear]


def role_patterns(family: str) -> dict[str, str | None]:
    """role -> regex of ``family``'s module names (``language`` is the same for every family);
    a role missing from the result is unknown for the family."""
    known = FAMILY_MODULES.get(family, {})
    patterns: dict[str, str | None] = {"language": LANGUAGE_LINEARS}
    for role in ("projector", "vision"):
        if role in known:
            pattern = known[role]
            patterns[role] = None if pattern is None else rf"(.*\.)?{pattern}"
    return patterns


def resolve_targets(model: Any, targets: Iterable[str] = ("language",)) -> str:
    """One peft ``target_modules`` regex for the roles ``targets`` of ``model``'s family.

    Raises :class:`LoraTargetError` naming every role it could not find: a family whose module
    names are unknown here (only ``language`` resolves, by the common decoder names), a role the
    family has no ``nn.Linear`` in, or a pattern that matches no layer of this model.
    """
    roles = parse_targets(targets)
    family = model_type(model)
    patterns = role_patterns(family)
    names = _linear_names(model)
    missing: list[str] = []
    found: list[str] = []
    for role in roles:
        if role not in patterns:
            missing.append(f"{role} (module names of family {family!r} are unknown to vila2.models.lora)")
            continue
        pattern = patterns[role]
        if pattern is None:
            missing.append(f"{role} ({NO_LINEAR.get((family, role), 'no nn.Linear layer')})")
            continue
        if not any(re.fullmatch(pattern, name) for name in names):
            missing.append(f"{role} (no nn.Linear layer of {type(model).__name__} matches {pattern!r})")
            continue
        found.append(pattern)
    if missing:
        raise LoraTargetError(f"LoRA targets {','.join(roles)} on {type(model).__name__} ({family}): cannot find "
                              + "; ".join(missing))
    return found[0] if len(found) == 1 else "|".join(f"(?:{p})" for p in found)


def targeted_modules(model: Any, target_modules: str | list[str]) -> list[str]:
    """The ``nn.Linear`` module names a peft ``target_modules`` value selects (regex: full match;
    list: exact name or dotted suffix, as peft matches them)."""
    names = _linear_names(model)
    if isinstance(target_modules, str):
        return [n for n in names if re.fullmatch(target_modules, n)]
    return [n for n in names if any(n == t or n.endswith("." + t) for t in target_modules)]


def apply_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` with fresh LoRA adapters; only adapter (and ``modules_to_save``) weights train.

    The wrapped model's ``save_pretrained`` also writes ``vila2_lora.json`` (the roles).
    """
    from peft import LoraConfig, get_peft_model

    family = model_type(model)
    target = settings.target_modules or resolve_targets(model, settings.targets)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target,
        modules_to_save=settings.modules_to_save,
        bias="none",
    )
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as exc:
        raise LoraTargetError(
            f"LoRA target_modules {target!r} match no layer of {type(model).__name__}: {exc}"
        ) from exc
    record = {"targets": None if settings.target_modules else list(settings.targets), "model_type": family,
              "target_modules": target}
    _record_on_save(wrapped, record)
    return wrapped


def _record_on_save(wrapped: Any, record: dict[str, Any]) -> None:
    """Make ``wrapped.save_pretrained(folder)`` also write ``record`` to ``folder/vila2_lora.json``."""
    save = wrapped.save_pretrained

    def save_pretrained(save_directory: str, *args: Any, **kwargs: Any) -> Any:
        result = save(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        if (folder / "adapter_config.json").is_file():
            (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        return result

    wrapped.save_pretrained = save_pretrained


def recorded_targets(folder: str | Path) -> dict[str, Any] | None:
    """What ``vila2_lora.json`` of an adapter folder records, or ``None`` without one."""
    file = Path(folder) / RECORD_FILE
    return json.loads(file.read_text()) if file.is_file() else None


__all__ = [
    "FAMILY_MODULES",
    "LANGUAGE_LINEARS",
    "ROLES",
    "LoraSettings",
    "LoraTargetError",
    "apply_lora",
    "parse_targets",
    "recorded_targets",
    "resolve_targets",
    "role_patterns",
    "targeted_modules",
]

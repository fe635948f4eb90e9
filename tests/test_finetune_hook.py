"""``finetune_specialist`` is firstresult: a plugin may take over some specialists and decline others,
which then fall through to the built-in LoRA answer."""

from __future__ import annotations

from pathlib import Path

import vila2
from vila2.models.checkpoint import is_adapter, load


def _specialist(name: str) -> vila2.Specialist:
    return vila2.Specialist(name, prepare_data=lambda source, world, out: out, prompts=("Describe.",),
                            lora={"r": 4, "alpha": 8})


class FullFinetune:
    """Answers only for the ``ocr`` specialist, as a full fine-tune plugin would."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @vila2.hookimpl(tryfirst=True)
    def finetune_specialist(self, specialist, base_model, data, out_dir, settings):
        self.calls.append(specialist.name)
        if specialist.name != "ocr":
            return None
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return f"{out_dir} (full fine-tune of {base_model})"


def test_first_answer_wins_and_declined_specialists_get_lora(fresh_host, plugin_registered, tiny_model,
                                                               tiny_world, tmp_path):
    plugin = FullFinetune()
    plugin_registered(plugin, name="full-finetune")
    hook = fresh_host.hook.finetune_specialist

    answer = hook(specialist=_specialist("ocr"), base_model=str(tiny_model), data=str(tiny_world / "ocr"),
                  out_dir=str(tmp_path / "ocr"), settings={})
    assert answer == f"{tmp_path / 'ocr'} (full fine-tune of {tiny_model})"

    adapter = hook(specialist=_specialist("spatial"), base_model=str(tiny_model),
                   data=str(tiny_world / "spatial"), out_dir=str(tmp_path / "spatial"),
                   settings={"max_steps": 2, "batch_size": 4})
    assert plugin.calls == ["ocr", "spatial"]
    assert Path(adapter) == tmp_path / "spatial" and is_adapter(adapter)  # the built-in LoRA answered
    model, _ = load(adapter, merge=True)
    assert model is not None

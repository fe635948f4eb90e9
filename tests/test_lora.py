"""LoRA specialists: the built-in finetune_specialist hook, PEFT-format adapters, merging, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vila2

SETTINGS = {"r": 4, "max_steps": 3, "batch_size": 4, "max_length": 160, "lr": 5e-3}


class SpatialPlugin:
    """A specialist that takes the embedded world's spatial set as its domain data."""

    @vila2.hookimpl
    def register_specialists(self, register):
        def prepare(source, world, out_dir):
            return source or str(Path(world) / "spatial")

        register(vila2.Specialist("spatial-test", prepare_data=prepare,
                                  prompts=("Describe the spatial relations.",), lora={"r": 2, "alpha": 8}))


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vila2.training.trainer import finetune_lora

    out = tmp_path_factory.mktemp("lora") / "spatial"
    return finetune_lora(tiny_model, tiny_world / "spatial", out, SETTINGS)


def _image_inputs(processor):
    from PIL import Image

    from vila2.models.checkpoint import chat_prompt

    return processor(images=[Image.new("RGB", (64, 64), "blue")],
                     text=[chat_prompt(processor, "Where is the circle?")], return_tensors="pt")


def test_adapter_is_peft_format_on_the_language_model(adapter: Path, tiny_model: Path) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    assert Path(config["base_model_name_or_path"]) == tiny_model.resolve()
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert weights and all("language_model" in k and "lora_" in k for k in weights)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())  # trained
    assert not (adapter / "model.safetensors").exists()
    # peft alone opens it, without vila2
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, str(adapter))
    assert isinstance(model, PeftModel)
    with torch.no_grad():
        assert torch.isfinite(model(**_image_inputs(_processor(adapter))).logits).all()


def _processor(folder: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def test_vila2_load_opens_adapters_and_merges(adapter: Path, tiny_model: Path) -> None:
    import torch

    from vila2.models.checkpoint import load

    with_adapter, processor = load(adapter)
    merged, _ = load(adapter, merge=True)
    base, _ = load(tiny_model)
    inputs = _image_inputs(processor)
    with torch.no_grad():
        a, b, c = (m(**inputs).logits for m in (with_adapter, merged, base))
        generated = with_adapter.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-5)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def test_merge_setting_saves_a_full_model(tiny_model: Path, tiny_world: Path, tmp_path: Path) -> None:
    import torch

    from vila2.models.checkpoint import is_adapter, load
    from vila2.training.trainer import finetune_lora

    out = finetune_lora(tiny_model, tiny_world / "spatial", tmp_path / "merged", {**SETTINGS, "merge": True})
    assert (out / "model.safetensors").is_file() and not is_adapter(out)
    assert is_adapter(out / "adapter")
    full, processor = load(out)
    from_adapter, _ = load(out / "adapter", merge=True)
    inputs = _image_inputs(processor)
    with torch.no_grad():
        assert torch.allclose(full(**inputs).logits, from_adapter(**inputs).logits, atol=1e-5)


def test_unknown_settings_are_named(tiny_model: Path, tiny_world: Path, tmp_path: Path) -> None:
    from vila2.training.trainer import TrainError, finetune_lora

    with pytest.raises(TrainError, match="rank: Extra inputs"):
        finetune_lora(tiny_model, tiny_world / "spatial", tmp_path / "x", {"rank": 4})


def test_builtin_hook_and_cli(tiny_model: Path, tiny_world: Path, tmp_path: Path, plugin_registered,
                              fresh_host, capsys: pytest.CaptureFixture[str]) -> None:
    from vila2.cli import main
    from vila2.models.checkpoint import is_adapter

    plugin_registered(SpatialPlugin(), name="spatial-test-plugin")
    specialist = fresh_host.get("specialist", "spatial-test")
    result = fresh_host.hook.finetune_specialist(
        specialist=specialist, base_model=str(tiny_model), data=str(tiny_world / "spatial"),
        out_dir=str(tmp_path / "hook"), settings={"max_steps": 1, "batch_size": 4, "max_length": 160})
    assert is_adapter(result)
    assert json.loads((Path(result) / "adapter_config.json").read_text())["r"] == 2  # the specialist's default

    main(["finetune", "spatial-test", "--model", str(tiny_model), "--out", str(tmp_path / "cli"),
          "--world", str(tiny_world), "--set", "max_steps=1", "--set", "batch_size=4", "--set", "max_length=160",
          "--set", "r=3"])
    assert "specialist spatial-test saved to" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "adapter_config.json").read_text())["r"] == 3
    with pytest.raises(SystemExit):
        main(["finetune", "spatail-test", "--model", str(tiny_model), "--out", str(tmp_path / "typo")])
    assert "Did you mean 'spatial-test'" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["llava-tiny", "qwen2vl-tiny", "idefics3-tiny"])
def test_default_targets_are_the_decoder_linears_of_every_architecture(preset: str, tmp_path: Path) -> None:
    from vila2.models.checkpoint import load
    from vila2.models.lora import LoraSettings, apply_lora
    from vila2.models.presets import build

    model, _ = load(build(preset, tmp_path / preset, texts=["a red circle left of a blue square"] * 4))
    wrapped = apply_lora(model, LoraSettings(r=2))
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[1] for n, _ in wrapped.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 7 * 2  # 2 layers x 7 linears x (A, B)


class _Family:
    """A stand-in model: a named family (``config.model_type``) with the given linear layers."""

    def __new__(cls, model_type: str, names: list[str]):
        import torch

        model = torch.nn.Module()
        for name in names:
            parent = model
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, torch.nn.Module())
                parent = getattr(parent, part)
            parent.add_module(leaf, torch.nn.Linear(4, 4))
        model.config = type("Config", (), {"model_type": model_type})()
        return model


def test_roles_resolve_to_each_familys_module_names(tiny_model: Path) -> None:
    import re

    from vila2.models.checkpoint import load
    from vila2.models.lora import LANGUAGE_LINEARS, resolve_targets, targeted_modules

    model, _ = load(tiny_model)
    assert resolve_targets(model) == LANGUAGE_LINEARS  # the default: the decoder only
    both = resolve_targets(model, ["language", "projector"])
    chosen = targeted_modules(model, both)
    assert {n for n in chosen if "multi_modal_projector" in n} == {
        "model.multi_modal_projector.linear_1", "model.multi_modal_projector.linear_2"}
    assert not any("vision_tower" in n for n in chosen)
    vision = targeted_modules(model, resolve_targets(model, "vision"))
    assert vision and all(n.startswith("model.vision_tower.encoder.") for n in vision)
    assert all(re.fullmatch(both, n) for n in chosen)


def test_a_family_without_a_role_or_with_unknown_names_is_an_error_naming_the_roles() -> None:
    from vila2.errors import Vila2Error
    from vila2.models.lora import LoraTargetError, parse_targets, resolve_targets

    decoder = ["model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.0.mlp.up_proj"]
    mystery = _Family("mystery_vl", [*decoder, "model.eye.blocks.0.fc", "model.bridge.proj"])
    assert resolve_targets(mystery, ["language"])  # the common decoder names still resolve
    with pytest.raises(LoraTargetError, match=r"mystery_vl.*projector \(module names of family 'mystery_vl' "
                                              r"are unknown.*vision \(module names") as caught:
        resolve_targets(mystery, ["language", "projector", "vision"])
    assert isinstance(caught.value, Vila2Error)
    gemma = _Family("gemma3", [*decoder, "model.vision_tower.encoder.layers.0.mlp.fc1"])
    with pytest.raises(LoraTargetError, match=r"projector \(Gemma 3's projector is a bare weight matrix"):
        resolve_targets(gemma, ["language", "projector"])
    assert resolve_targets(gemma, ["language", "vision"])
    no_decoder = _Family("llava", ["model.multi_modal_projector.linear_1"])
    with pytest.raises(LoraTargetError, match=r"language \(no nn.Linear layer of Module matches"):
        resolve_targets(no_decoder, ["language", "projector"])
    with pytest.raises(LoraTargetError, match="choose among language, projector, vision"):
        parse_targets("language,vison")


def test_cli_lora_targets_are_resolved_trained_and_recorded(tiny_model: Path, tiny_world: Path, tmp_path: Path,
                                                             plugin_registered, capsys) -> None:
    from safetensors.torch import load_file

    from vila2.cli import main
    from vila2.models.lora import recorded_targets

    plugin_registered(SpatialPlugin(), name="spatial-test-plugin")
    out = tmp_path / "roles"
    main(["finetune", "spatial-test", "--model", str(tiny_model), "--out", str(out), "--world", str(tiny_world),
          "--lora-targets", "language,projector", "--set", "max_steps=1", "--set", "batch_size=4",
          "--set", "max_length=160"])
    record = recorded_targets(out)
    assert record is not None and record["targets"] == ["language", "projector"] and record["model_type"] == "llava"
    keys = list(load_file(str(out / "adapter_model.safetensors")))
    assert any("multi_modal_projector" in k for k in keys) and any("language_model" in k for k in keys)
    assert not any("vision_tower" in k for k in keys)
    assert json.loads((out / "training" / "config.json").read_text())["lora"]["targets"] == ["language", "projector"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["finetune", "spatial-test", "--model", str(tiny_model), "--out", str(tmp_path / "bad"),
              "--world", str(tiny_world), "--lora-targets", "language,vison"])
    assert "choose among language, projector, vision" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before any data was prepared

"""vila2-vllm without vLLM: registration, settings, model preparation, choosing the best
candidate. Runs in the main environment (and in the vLLM one)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import vila2_vllm
from vila2_vllm import fixtures, prepare
from vila2_vllm.captioner import load_vllm, pick_best, request_seed, resolve_best_by
from vila2_vllm.settings import DOCS, VllmSettings

PLUGIN = Path(__file__).resolve().parents[1]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random llava-tiny (SigLIP tower + Llama), built once for this module."""
    return fixtures.build_preset("llava-tiny", tmp_path_factory.mktemp("models") / "llava-tiny")


def test_the_plugin_registers_the_vllm_captioner(fresh_host: Any, plugin_registered: Any) -> None:
    plugin_registered(vila2_vllm)
    captioner = fresh_host.get("captioner", "vllm")
    assert captioner.plugin and "vLLM" in captioner.description
    assert set(captioner.settings) <= set(DOCS)


def test_the_package_metadata() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    assert project["name"] == "vila2-vllm"
    assert project["entry-points"]["vila2"] == {"vila2_vllm": "vila2_vllm"}
    assert project["entry-points"]["torch.backends"] == {
        "vila2_vllm_torchvision": "vila2_vllm_torchvision:define_missing_ops"}
    readme = (PLUGIN / "README.md").read_text()
    missing = [name for name in DOCS if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document the settings {missing}"


@pytest.mark.parametrize(("settings", "message"), [
    ({"temprature": 0.5}, "did you mean 'temperature'"),
    ({"n": 4}, "needs do_sample"),
    ({"n": 4, "do_sample": True}, "needs best_by"),
    ({"best": "largest"}, "'max' or 'min'"),
    ({"lora": "yes"}, "'auto' or 'merge'"),
    ({"dtype": "float8"}, "setting 'dtype'"),
    ({"engine": {"trust_remote_code": True}}, "runs code"),
    ({"stop": [1, 2]}, "list of strings"),
    ({"min_new_tokens": 500, "max_new_tokens": 10}, "min_new_tokens"),
    ({"do_sample": True, "temperature": 0}, "temperature > 0"),
])
def test_bad_settings_are_refused_naming_the_setting(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VllmSettings.parse(settings)


def test_settings_become_sampling_parameters() -> None:
    greedy = VllmSettings.parse({"max_new_tokens": 20, "stop": "\n", "dtype": "bf16"})
    assert greedy.stop == ("\n",) and greedy.dtype == "bfloat16"
    assert greedy.sampling_kwargs() == {"n": 1, "max_tokens": 20, "min_tokens": 0, "repetition_penalty": 1.0,
                                        "stop": ["\n"], "skip_special_tokens": True, "temperature": 0.0}
    sampled = VllmSettings.parse({"do_sample": True, "temperature": 0.7, "top_p": 0.9, "n": 3,
                                  "best_by": {"name": "word_count", "min": 4}})
    assert sampled.sampling_kwargs() | {} == {"n": 3, "max_tokens": 128, "min_tokens": 0, "repetition_penalty": 1.0,
                                              "stop": None, "skip_special_tokens": True, "temperature": 0.7,
                                              "top_p": 0.9, "top_k": 0}


def test_the_best_candidate_is_kept_then_scored_then_first(fresh_host: Any) -> None:
    most = resolve_best_by("word_count")
    assert pick_best(["a b", "a b c", "a b c", "a"], most, {"id": None}) == 1  # ties: the first
    assert pick_best(["a b", "a b c", "a"], most, {"id": None}, best="min") == 2
    at_least_two = resolve_best_by({"name": "word_count", "min": 2})
    assert pick_best(["a", "a b c", "a b"], at_least_two, {"id": None}, best="min") == 2  # kept ones first
    with pytest.raises(Exception, match="no_such_filter"):
        resolve_best_by("no_such_filter")


def test_request_seeds_follow_the_image_and_prompt_not_the_batch() -> None:
    one, two = fixtures.images(2)
    assert request_seed(0, one, "p") == request_seed(0, one.copy(), "p")
    assert len({request_seed(0, one, "p"), request_seed(0, two, "p"), request_seed(0, one, "q"),
                request_seed(1, one, "p")}) == 4


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_the_captioner_says_how_to_get_it(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match=r"make_env\.sh"):
        load_vllm(str(tiny_model), {})
    with pytest.raises(ValueError, match="needs a model folder"):
        load_vllm(None, {})
    with pytest.raises(ValueError, match="did you mean"):  # settings are checked first
        load_vllm(str(tiny_model), {"max_new_token": 3})


# ----------------------------------------------------------------------------- model preparation
def _tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


def test_a_flat_siglip_tower_gets_vllms_names_with_the_same_bytes(tiny_model: Path, tmp_path: Path) -> None:
    before = _tensors(tiny_model)
    assert any(k.startswith("vision_tower.embeddings.") for k in before)  # how transformers 5 saves it
    prepared = prepare.prepare(str(tiny_model), cache_dir=tmp_path)
    folder = Path(prepared.path)
    assert folder.parent == tmp_path and prepared.processor == prepared.path and prepared.adapter is None
    assert any("vision_tower.vision_model" in note for note in prepared.notes)
    after = _tensors(folder)
    assert sorted(after) == sorted(prepare._FLAT_TOWER_KEY.sub(r"\1vision_model.", k) for k in before)
    assert all(k.startswith("vision_tower.vision_model.") for k in after if "vision_tower" in k)
    for name, tensor in before.items():
        renamed = name.replace("vision_tower.", "vision_tower.vision_model.", 1)
        assert after[renamed].equal(tensor)
    assert (folder / "config.json").read_text() == (tiny_model / "config.json").read_text()
    assert prepare.vision_rename(folder) is None  # nothing left to rename
    assert prepare.prepare(str(tiny_model), cache_dir=tmp_path).path == prepared.path  # cached


def test_sharded_checkpoints_rename_their_index_too(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": ["LlavaForConditionalGeneration"],
                                                 "vision_config": {"model_type": "clip_vision_model"}}))
    save_file({"vision_tower.encoder.w": torch.arange(6.0)}, str(src / "model-00001-of-00002.safetensors"))
    save_file({"language_model.model.w": torch.ones(3), "model.vision_tower.head.b": torch.zeros(2)},
              str(src / "model-00002-of-00002.safetensors"))
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
        "vision_tower.encoder.w": "model-00001-of-00002.safetensors",
        "language_model.model.w": "model-00002-of-00002.safetensors",
        "model.vision_tower.head.b": "model-00002-of-00002.safetensors"}}))
    rename = prepare.vision_rename(src)
    assert rename is not None
    out = tmp_path / "out"
    out.mkdir()
    assert prepare.write_renamed(src, out, rename) == 2
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert sorted(index) == ["language_model.model.w", "model.vision_tower.vision_model.head.b",
                             "vision_tower.vision_model.encoder.w"]
    assert _tensors(out)["vision_tower.vision_model.encoder.w"].equal(torch.arange(6.0))


def test_other_towers_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2VLForConditionalGeneration"],
                                                      "vision_config": {"model_type": "qwen2_vl"}}))
    assert prepare.vision_rename(tmp_path) is None
    prepared = prepare.prepare(str(tmp_path), cache_dir=tmp_path / "cache")
    assert prepared.path == str(tmp_path) and not prepared.notes


def test_adapters_are_served_as_lora_when_vllm_can_and_merged_otherwise(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from vila2.models.generation import Generator

    language = fixtures.make_adapter(tiny_model, tmp_path / "language")
    projector = fixtures.make_adapter(tiny_model, tmp_path / "projector",
                                      target_modules=r".*(language_model\..*\.q_proj|multi_modal_projector\.linear_1)")
    assert prepare.adapter_blockers(language) == []
    (reason,) = prepare.adapter_blockers(projector)
    assert "multi_modal_projector.linear_1" in reason and "language model only" in reason
    assert prepare.lora_rank(language) == 8

    served = prepare.prepare(str(language), cache_dir=tmp_path / "cache", supports_lora=lambda arch: True)
    assert served.adapter == str(language) and served.lora_rank == 8
    assert Path(served.path).parent == tmp_path / "cache"  # the base, renamed for vLLM
    assert prepare.prepare(str(language), cache_dir=tmp_path / "cache").adapter == str(language)

    with caplog.at_level(logging.WARNING, logger="vila2.vllm"):
        merged = prepare.prepare(str(language), cache_dir=tmp_path / "cache",
                                 supports_lora=lambda arch: False)
    assert merged.adapter is None and f"no LoRA support for {prepare.architecture(tiny_model)}" in caplog.text
    images, prompts = fixtures.images(3), fixtures.prompts(3)
    settings = {"max_new_tokens": 6, "min_new_tokens": 6}
    assert Generator(merged.path, **settings)(images, prompts) == Generator(str(language), **settings)(images, prompts)

    forced = prepare.prepare(str(projector), cache_dir=tmp_path / "cache", supports_lora=lambda arch: True)
    assert forced.adapter is None and any("merged the LoRA adapter" in n for n in forced.notes)
    asked = prepare.prepare(str(language), lora="merge", cache_dir=tmp_path / "cache2")
    assert asked.adapter is None and "the captioner setting lora is 'merge'" in asked.notes[0]


def test_the_torchvision_hook_never_breaks_torch() -> None:
    import vila2_vllm_torchvision as compat

    compat.define_missing_ops()
    assert isinstance(compat.STATUS, str) and not compat.STATUS.startswith("error")
    # loading the hook imports nothing but the standard library (torch may be half-initialised)
    source = Path(compat.__file__).read_text()
    assert "import vila2" not in source and "from vila2" not in source

"""The ``vllm`` captioner for real (vLLM's CPU build, tiny random models): greedy captions equal
the built-in engine's, stop strings and lengths, the best of n samples, LoRA adapters, and the
recaption engine on top."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from vila2_vllm import fixtures
from vila2_vllm.captioner import VllmCaptioner, load_vllm
from vila2_vllm.fixtures import release
from vila2_vllm.settings import VllmSettings

from vila2.models.generation import Generator

pytestmark = pytest.mark.timeout(900)

# Order matters here: vLLM's in-process engine keeps process-wide state (its parallel groups)
# that any engine tears down when it is collected. Tests that start and drop an engine of their
# own come first; then the tests that share the ``untied`` fixture's engine, which lives to the
# end of the session; the one that starts an engine after those comes last.

GREEDY = {"max_new_tokens": 12, "min_new_tokens": 12}

#: vila2's tiny presets that vLLM 0.32 (CPU) runs. Not here: gemma3-tiny and paligemma2-tiny
#: (vLLM's processors look up a "\n" token the tiny tokenizers do not have), mllama-tiny (vLLM's
#: Mllama support expects a processor method transformers 5.19 no longer has).
VLLM_PRESETS = ("llava-tiny", "qwen2vl-tiny", "idefics3-tiny", "qwen2.5vl-tiny", "qwen3vl-tiny", "internvl-tiny",
                "llava-onevision-tiny", "smolvlm-tiny", "mistral3-tiny")


def _preset_params() -> list[Any]:
    from vila2.models.presets import PRESETS

    return [pytest.param(name, marks=pytest.mark.skipif(name not in PRESETS, reason=f"vila2 has no preset {name}"))
            for name in VLLM_PRESETS]


def builtin(model: Path, images: list[Any], prompts: list[str], **settings: Any) -> list[str]:
    """The built-in ``self`` captioner's captions (vila2.models.generation.Generator)."""
    return Generator(str(model), **settings)(images, prompts)


def borrowing(untied: VllmCaptioner, model: Path, cache_dir: Path, **settings: Any) -> VllmCaptioner:
    """A captioner with other settings on the ``untied`` fixture's engine (no second engine)."""
    parsed = VllmSettings.parse({**settings, "cache_dir": str(cache_dir)})
    return VllmCaptioner(str(model), parsed, llm_factory=lambda **_: untied.llm)


@pytest.mark.parametrize("preset", _preset_params())
def test_greedy_captions_equal_the_builtin_engines_on_the_tiny_presets(
    preset: str, models: dict[str, Path], images: list[Any], prompts: list[str], cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model = models.get(preset) or fixtures.build_preset(preset, tmp_path_factory.mktemp("presets") / preset)
    expected = builtin(model, images, prompts, **GREEDY)
    captioner = load_vllm(str(model), {**GREEDY, "cache_dir": str(cache_dir)})
    try:
        assert captioner(images, prompts) == expected
        if preset == "llava-tiny":  # transformers 5 saves its SigLIP tower flat
            assert any("vision_tower.vision_model" in note for note in captioner.notes), captioner.notes
    finally:
        release(captioner)


def test_a_language_model_adapter_is_served_through_lora_request(
    models: dict[str, Path], images: list[Any], prompts: list[str], cache_dir: Path
) -> None:
    expected = builtin(models["adapter"], images, prompts, **GREEDY)  # the built-in engine merges it
    base = builtin(models["llava-untied"], images, prompts, **GREEDY)
    captioner = load_vllm(str(models["adapter"]), {**GREEDY, "cache_dir": str(cache_dir)})
    try:
        assert captioner.lora_request is not None
        assert captioner.prepared.adapter == str(models["adapter"])
        assert any("LoRARequest" in note for note in captioner.notes), captioner.notes
        got = captioner(images, prompts)
        assert got == expected
        assert got != base  # the adapter does change the captions
    finally:
        release(captioner)


def test_an_adapter_beyond_the_language_model_is_merged_first_and_logged(
    models: dict[str, Path], images: list[Any], prompts: list[str], cache_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = builtin(models["adapter-projector"], images, prompts, **GREEDY)
    with caplog.at_level(logging.WARNING, logger="vila2.vllm"):
        captioner = load_vllm(str(models["adapter-projector"]), {**GREEDY, "cache_dir": str(cache_dir)})
    try:
        assert captioner.lora_request is None
        assert "merged the LoRA adapter" in caplog.text and "multi_modal_projector" in caplog.text
        assert captioner(images, prompts) == expected
    finally:
        release(captioner)


def test_greedy_captions_equal_with_varied_tokens(
    untied: VllmCaptioner, models: dict[str, Path], images: list[Any], prompts: list[str]
) -> None:
    expected = builtin(models["llava-untied"], images, prompts, **GREEDY)
    got = untied(images, prompts)
    assert got == expected
    assert all(got) and len(set(got)) == len(got), got  # real text, a different caption per image


def test_stop_strings_and_lengths_match_the_builtin_engine(
    untied: VllmCaptioner, models: dict[str, Path], images: list[Any], prompts: list[str], cache_dir: Path
) -> None:
    full = untied(images, prompts)
    stop = next(c[3:5] for c in full if len(c) > 6 and c[3:5].strip())
    settings = {"max_new_tokens": 8, "stop": [stop]}
    expected = builtin(models["llava-untied"], images, prompts, **settings)
    got = borrowing(untied, models["llava-untied"], cache_dir, **settings)(images, prompts)
    assert got == expected
    assert all(stop not in text for text in got)
    assert any(len(a) < len(b) for a, b in zip(got, full, strict=True))


def test_the_best_of_n_samples_is_the_one_the_filter_scores_best(
    untied: VllmCaptioner, models: dict[str, Path], images: list[Any], prompts: list[str], cache_dir: Path
) -> None:
    sampled = {"max_new_tokens": 12, "do_sample": True, "temperature": 1.0, "n": 4, "seed": 3}
    most = borrowing(untied, models["llava-untied"], cache_dir, **sampled, best_by="word_count")
    candidates = most.generate(images, prompts)
    assert [len(c) for c in candidates] == [4] * len(images)
    assert any(len(set(c)) > 1 for c in candidates), candidates  # sampling varies
    chosen = most(images, prompts)
    for texts, caption in zip(candidates, chosen, strict=True):
        words = [len(t.split()) for t in texts]
        assert caption == texts[words.index(max(words))]
    # per-request seeds: the same images get the same captions however a call is split
    assert most(images[:2], prompts[:2]) + most(images[2:], prompts[2:]) == chosen

    fewest = borrowing(untied, models["llava-untied"], cache_dir, **sampled,
                       best_by={"name": "word_count", "min": 1}, best="min")
    for texts, caption in zip(candidates, fewest(images, prompts), strict=True):
        words = [len(t.split()) if t.split() else float("inf") for t in texts]  # kept ones first
        if any(w != float("inf") for w in words):
            assert caption == texts[words.index(min(words))]


def test_the_recaption_engine_runs_the_vllm_captioner(
    untied: VllmCaptioner, models: dict[str, Path], images: list[Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, plugin_registered: Any,
) -> None:
    import vila2_vllm
    import vllm

    from vila2.captioning.engine import caption_dataset
    from vila2.data import Dataset

    plugin_registered(vila2_vllm)
    monkeypatch.setattr(vllm, "LLM", lambda **_: untied.llm)  # the engine started once already
    ds = Dataset.create(tmp_path / "ds")
    with ds.writer(shard_size=4, source="test") as writer:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            writer.add(f"img{i}", buffer.getvalue(), *image.size)
    common: dict[str, Any] = {"model": str(models["llava-untied"]), "prompts": list(fixtures.PROMPTS),
                              "filters": ["word_count"], "max_new_tokens": 12, "progress": False,
                              "settings": {"min_new_tokens": 12}}
    caption_dataset(ds, layer="self", captioner="self", **common)
    summary = caption_dataset(ds, layer="vllm", captioner="vllm", **common)
    assert summary.complete and summary.captioned == len(images)
    assert ds.layer("vllm").texts() == ds.layer("self").texts()
    assert ds.layer("vllm").info["producer"].endswith(":vllm")


@pytest.mark.skipif(not os.environ.get("VILA2_VLLM_MAIN_REFERENCE"),
                    reason="VILA2_VLLM_MAIN_REFERENCE is set by test_vllm_env.py in the main environment")
def test_captions_equal_the_main_environments_builtin_engine(cache_dir: Path) -> None:
    """Same folder (built by the main environment's transformers), same captions as the main
    environment's built-in engine."""
    reference = json.loads(Path(os.environ["VILA2_VLLM_MAIN_REFERENCE"]).read_text())
    captioner = load_vllm(reference["model"], {**reference["settings"], "cache_dir": str(cache_dir)})
    try:
        n = len(reference["captions"])
        assert captioner(fixtures.images(n), fixtures.prompts(n)) == reference["captions"]
    finally:
        release(captioner)

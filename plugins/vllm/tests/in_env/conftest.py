"""Fixtures for the tests that run vLLM: tiny models (built once per session) and images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vila2_vllm import fixtures
from vila2_vllm.fixtures import release

# the settings the plugin itself applies on a CPU, set before anything imports vLLM
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared model folders of this session (not the user's cache)."""
    return tmp_path_factory.mktemp("vllm-cache")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three tiny presets, LLaVA with an untied random head, and two adapters on it."""
    root = tmp_path_factory.mktemp("models")
    built = {name: fixtures.build_preset(name, root / name) for name in ("llava-tiny", "qwen2vl-tiny", "idefics3-tiny")}
    built["llava-untied"] = fixtures.untie_head(built["llava-tiny"], root / "llava-untied")
    built["adapter"] = fixtures.make_adapter(built["llava-untied"], root / "adapter")
    built["adapter-projector"] = fixtures.make_adapter(
        built["llava-untied"], root / "adapter-projector",
        target_modules=r".*(language_model\..*\.(q_proj|v_proj)|multi_modal_projector\.linear_2)")
    return built


@pytest.fixture(scope="session")
def images() -> list[Any]:
    return fixtures.images(6)


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return fixtures.prompts(6)


@pytest.fixture(scope="session")
def untied(models: dict[str, Path], cache_dir: Path) -> Iterator[Any]:
    """One greedy captioner on ``llava-untied`` whose engine other tests borrow."""
    from vila2_vllm.captioner import load_vllm

    captioner = load_vllm(str(models["llava-untied"]), {"max_new_tokens": 12, "min_new_tokens": 12,
                                                         "cache_dir": str(cache_dir)})
    yield captioner
    release(captioner)

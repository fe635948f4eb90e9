"""From the main environment: build the vLLM environment (scripts/make_env.sh) and run the tests
that need vLLM in it, including one against captions the main environment's built-in engine
wrote for a model folder built here (this environment's transformers, not vLLM's)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vila2_vllm import fixtures

PLUGIN = Path(__file__).resolve().parents[1]
ROOT = PLUGIN.parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                    reason="this is the vLLM environment: tests/in_env run here directly")
def test_the_vllm_environment_passes_its_tests(tmp_path: Path) -> None:
    from vila2.models.generation import Generator

    venv = Path(os.environ.get("VILA2_VLLM_VENV") or PLUGIN / ".venv-vllm")
    env = {**os.environ, "VILA2_VLLM_VENV": str(venv)}
    built = subprocess.run(["bash", str(PLUGIN / "scripts" / "make_env.sh")], env=env, capture_output=True,
                           text=True, timeout=1500, check=False)
    if built.returncode != 0:
        pytest.skip(f"could not build the vLLM environment {venv} with scripts/make_env.sh "
                    f"(exit {built.returncode}):\n{_tail(built.stderr + built.stdout, 15)}")

    # the main environment's built-in engine on a folder the main environment's transformers wrote
    model = fixtures.untie_head(fixtures.build_preset("llava-tiny", tmp_path / "llava-tiny"), tmp_path / "untied")
    settings = {"max_new_tokens": 12, "min_new_tokens": 12}
    n = 6
    captions = Generator(str(model), **settings)(fixtures.images(n), fixtures.prompts(n))
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"model": str(model), "settings": settings, "captions": captions}))

    python = venv / "bin" / "python"
    run = subprocess.run(
        [str(python), "-m", "pytest", "-v", "-p", "no:cacheprovider", "-rs", str(PLUGIN / "tests")],
        cwd=ROOT, env={**env, "VILA2_VLLM_MAIN_REFERENCE": str(reference),
                       "VILA2_VLLM_CACHE": str(tmp_path / "cache")},
        capture_output=True, text=True, timeout=1500, check=False,
    )
    sys.stdout.write(_tail(run.stdout, 60) + "\n")
    assert run.returncode == 0, f"tests in {venv} failed:\n{_tail(run.stdout + run.stderr, 80)}"
    assert "test_captions_equal_the_main_environments_builtin_engine PASSED" in run.stdout, \
        "the comparison with the main environment's captions did not run"

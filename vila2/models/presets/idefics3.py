"""``idefics3-tiny``: Idefics3 — SigLIP-style tower + pixel-shuffle connector + Llama decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, llama_text, token_id

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}:"
    + content("<image>")
    + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
SPECIAL_TOKENS = ("<pad>", "<s>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>")
TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "<end_of_utterance>", "image": "<image>"}
SCALE = 2


def vision_kwargs(sizes: dict[str, int]) -> dict[str, int]:
    """The tower's sizes; pixel shuffle merges SCALE x SCALE patches, so patches are halved."""
    return {
        "hidden_size": sizes["vision_hidden_size"],
        "intermediate_size": sizes["vision_intermediate_size"],
        "num_hidden_layers": sizes["vision_layers"],
        "num_attention_heads": sizes["vision_heads"],
        "image_size": sizes["image_size"],
        "patch_size": max(1, sizes["patch_size"] // SCALE),
    }


def image_seq_len(sizes: dict[str, int]) -> int:
    """Image tokens per image after the pixel shuffle."""
    side = sizes["image_size"] // max(1, sizes["patch_size"] // SCALE)
    return (side * side) // (SCALE * SCALE)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """Idefics3Config + Idefics3Processor (no image splitting): 16 image tokens for 64x64."""
    from transformers import Idefics3Config, Idefics3ImageProcessor, Idefics3Processor
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**vision_kwargs(sizes)),
        text_config=llama_text(tok, sizes),
        image_token_id=token_id(tok, "<image>"),
        scale_factor=SCALE,
        tie_word_embeddings=True,
    )
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": sizes["image_size"]},
        max_image_size={"longest_edge": sizes["image_size"]},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=image_seq_len(sizes), chat_template=TEMPLATE)
    return config, processor


PRESET = Preset(
    name="idefics3-tiny",
    family="idefics3",
    description="Idefics3: SigLIP-style tower + pixel-shuffle connector + Llama decoder",
    special_tokens=SPECIAL_TOKENS,
    tokens=TOKENS,
    chat_template=TEMPLATE,
    make=make,
)

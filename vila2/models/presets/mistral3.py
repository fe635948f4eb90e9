"""``mistral3-tiny``: Mistral 3 (Pixtral tower) — 2D-RoPE ViT + patch merger + Mistral decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, text_sizes, token_id

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}"
    + content("") + "{{ eos_token }}{% else %}[INST]" + content("[IMG]") + "[/INST]{% endif %}{% endfor %}"
)
MERGE = 2


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """Mistral3Config + PixtralProcessor: a 64x64 image is 4 rows of 4 tokens, each row closed by
    ``[IMG_BREAK]`` (the last by ``[IMG_END]``)."""
    from transformers import (
        Mistral3Config,
        MistralConfig,
        PixtralImageProcessor,
        PixtralProcessor,
        PixtralVisionConfig,
    )

    patch = max(1, sizes["patch_size"] // MERGE)
    vision = PixtralVisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_layers"],
        num_attention_heads=sizes["vision_heads"],
        head_dim=sizes["vision_hidden_size"] // sizes["vision_heads"],
        image_size=sizes["image_size"],
        patch_size=patch,
    )
    text = MistralConfig(**text_sizes(tok, sizes), head_dim=sizes["hidden_size"] // sizes["num_heads"],
                         sliding_window=None, tie_word_embeddings=True)
    config = Mistral3Config(vision_config=vision, text_config=text, image_token_index=token_id(tok, "[IMG]"),
                            spatial_merge_size=MERGE, vision_feature_layer=-1, tie_word_embeddings=True)
    image_processor = PixtralImageProcessor(size={"longest_edge": sizes["image_size"]},
                                            patch_size={"height": patch, "width": patch})
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                                 spatial_merge_size=MERGE, chat_template=TEMPLATE)
    return config, processor


PRESET = Preset(
    name="mistral3-tiny",
    family="mistral3",
    description="Mistral 3: Pixtral ViT (2D RoPE) + patch merger + Mistral decoder",
    special_tokens=("<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"),
    tokens={"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "[IMG]", "image_break": "[IMG_BREAK]",
            "image_end": "[IMG_END]"},
    chat_template=TEMPLATE,
    make=make,
)

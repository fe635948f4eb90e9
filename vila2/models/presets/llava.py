"""``llava-tiny``: LLaVA-1.5 layout — SigLIP vision tower + MLP projector + Llama decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, llama_text, siglip_vision, token_id

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{% elif message['role'] == 'assistant' %}<|assistant|>"
    "{% else %}<|system|>{% endif %}" + content("<image>\n")
    + "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """LlavaConfig + LlavaProcessor: 16 image tokens for a 64x64 image."""
    from transformers import LlavaConfig, LlavaProcessor, SiglipImageProcessor

    side = sizes["image_size"] // sizes["patch_size"]
    config = LlavaConfig(
        vision_config=siglip_vision(sizes),
        text_config=llama_text(tok, sizes),
        image_token_index=token_id(tok, "<image>"),
        image_seq_length=side * side,
        # SigLIP has no CLS token: keep every patch, from the last layer
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    image_processor = SiglipImageProcessor(size={"height": sizes["image_size"], "width": sizes["image_size"]})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=sizes["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=TEMPLATE,
        image_token="<image>",
    )
    return config, processor


PRESET = Preset(
    name="llava-tiny",
    family="llava",
    description="LLaVA-1.5: SigLIP tower + MLP projector + Llama decoder",
    special_tokens=("<pad>", "<s>", "</s>", "<image>", "<|user|>", "<|assistant|>", "<|system|>"),
    tokens={"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "<image>"},
    chat_template=TEMPLATE,
    make=make,
)

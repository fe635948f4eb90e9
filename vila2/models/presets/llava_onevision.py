"""``llava-onevision-tiny``: LLaVA-OneVision — SigLIP tower, AnyRes tiling, MLP projector, Qwen2 decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import (
    CHATML_TOKENS,
    Preset,
    chatml,
    siglip_vision,
    text_sizes,
    token_id,
)

TEMPLATE = chatml("<image>\n")


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """LlavaOnevisionConfig + LlavaOnevisionProcessor: the base view plus AnyRes tiles on a grid of
    one or two tiles, with a newline token per row (36 image tokens for a 64x64 image)."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        Qwen2Config,
    )
    from transformers.models.llava_onevision.video_processing_llava_onevision import (
        LlavaOnevisionVideoProcessor,
    )

    side = sizes["image_size"]
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side]]
    config = LlavaOnevisionConfig(
        vision_config=siglip_vision(sizes),
        text_config=Qwen2Config(**text_sizes(tok, sizes), tie_word_embeddings=True),
        image_token_index=token_id(tok, "<image>"),
        video_token_index=token_id(tok, "<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=True,
    )
    size = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, crop_size=size, image_grid_pinpoints=pinpoints),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(side // sizes["patch_size"]) ** 2,
        vision_feature_select_strategy="full",
        chat_template=TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    return config, processor


PRESET = Preset(
    name="llava-onevision-tiny",
    family="llava_onevision",
    description="LLaVA-OneVision: SigLIP + AnyRes tiles + MLP projector + Qwen2 decoder",
    special_tokens=(*CHATML_TOKENS, "<image>", "<video>"),
    tokens={"pad": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|im_end|>", "image": "<image>",
            "video": "<video>"},
    chat_template=TEMPLATE,
    make=make,
)

"""``internvl-tiny``: InternVL3 — InternViT + pixel-shuffle MLP projector + Qwen2 decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import CHATML_TOKENS, Preset, chatml, text_sizes, token_id

TEMPLATE = chatml("<IMG_CONTEXT>\n")
SCALE = 2  # pixel shuffle with downsample_ratio 0.5 merges 2x2 patches


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """InternVLConfig + InternVLProcessor: a square image is one 64x64 tile of 16 image tokens; other
    shapes are cut into tiles plus a thumbnail, as InternVL does."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLProcessor,
        InternVLVideoProcessor,
        Qwen2Config,
    )
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    patch = max(1, sizes["patch_size"] // SCALE)
    side = sizes["image_size"] // patch
    vision = InternVLVisionConfig(
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_layers"],
        num_attention_heads=sizes["vision_heads"],
        image_size=[sizes["image_size"]] * 2,
        patch_size=[patch, patch],
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=Qwen2Config(**text_sizes(tok, sizes), tie_word_embeddings=True),
        image_token_id=token_id(tok, "<IMG_CONTEXT>"),
        image_seq_length=(side * side) // (SCALE * SCALE),
        downsample_ratio=1 / SCALE,
        tie_word_embeddings=True,
    )
    image_size = {"height": sizes["image_size"], "width": sizes["image_size"]}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=image_size),
        tokenizer=tok,
        video_processor=InternVLVideoProcessor(size=image_size),
        image_seq_length=(side * side) // (SCALE * SCALE),
        chat_template=TEMPLATE,
    )
    return config, processor


PRESET = Preset(
    name="internvl-tiny",
    family="internvl",
    description="InternVL3: InternViT + pixel-shuffle MLP projector + Qwen2 decoder",
    special_tokens=(*CHATML_TOKENS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
    tokens={"pad": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|im_end|>", "start_image": "<img>",
            "end_image": "</img>", "context_image": "<IMG_CONTEXT>", "video": "<video>"},
    chat_template=TEMPLATE,
    make=make,
)

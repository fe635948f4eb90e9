"""``qwen3vl-tiny``: Qwen3-VL — ViT with DeepStack mergers + Qwen3 decoder with interleaved M-RoPE."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, text_sizes
from vila2.models.presets.qwen2vl import (
    MERGE,
    SPECIAL_TOKENS,
    TEMPLATE,
    TOKENS,
    qwen_processors,
    vision_tokens,
)


def interleaved_mrope(sizes: dict[str, int]) -> list[int]:
    """Rotary pairs for (time, height, width) in Qwen3-VL's 24:20:20 proportion."""
    half = sizes["hidden_size"] // sizes["num_heads"] // 2
    height = width = (half - half * 3 // 8) // 2
    return [half - height - width, height, width]


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """Qwen3VLConfig + Qwen3VLProcessor: 16 image tokens for 64x64, DeepStack from the first block."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )
    from transformers.models.qwen3_vl.configuration_qwen3_vl import (
        Qwen3VLTextConfig,
        Qwen3VLVisionConfig,
    )

    patch = max(1, sizes["patch_size"] // MERGE)
    side = sizes["image_size"] // patch
    text = Qwen3VLTextConfig(
        **text_sizes(tok, sizes),
        head_dim=sizes["hidden_size"] // sizes["num_heads"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": interleaved_mrope(sizes), "mrope_interleaved": True},
    )
    vision = Qwen3VLVisionConfig(
        depth=sizes["vision_layers"],
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_heads=sizes["vision_heads"],
        out_hidden_size=sizes["hidden_size"],
        patch_size=patch,
        spatial_merge_size=MERGE,
        temporal_patch_size=2,
        num_position_embeddings=side * side,  # a learned grid, interpolated for other sizes
        deepstack_visual_indexes=[0],
    )
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **vision_tokens(tok))
    image_processor, video_processor = qwen_processors(sizes, patch, Qwen2VLImageProcessor, Qwen3VLVideoProcessor)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=TEMPLATE)
    return config, processor


PRESET = Preset(
    name="qwen3vl-tiny",
    family="qwen3_vl",
    description="Qwen3-VL: ViT + merger with DeepStack + Qwen3 decoder with interleaved M-RoPE",
    special_tokens=SPECIAL_TOKENS,
    tokens=TOKENS,
    chat_template=TEMPLATE,
    make=make,
)

"""``qwen2.5vl-tiny``: Qwen2.5-VL — windowed ViT (RMSNorm, SwiGLU) with a 2x2 merger + Qwen2 decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, text_sizes
from vila2.models.presets.qwen2vl import (
    MERGE,
    SPECIAL_TOKENS,
    TEMPLATE,
    TOKENS,
    mrope_section,
    qwen_processors,
    vision_tokens,
)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """Qwen2_5_VLConfig + Qwen2_5_VLProcessor: 16 image tokens for 64x64, 2x2-token attention windows."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import (
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLVisionConfig,
    )

    patch = max(1, sizes["patch_size"] // MERGE)
    text = Qwen2_5_VLTextConfig(
        **text_sizes(tok, sizes),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(sizes)},
    )
    vision = Qwen2_5_VLVisionConfig(
        depth=sizes["vision_layers"],
        hidden_size=sizes["vision_hidden_size"],
        intermediate_size=sizes["vision_intermediate_size"],
        num_heads=sizes["vision_heads"],
        out_hidden_size=sizes["hidden_size"],
        patch_size=patch,
        spatial_merge_size=MERGE,
        temporal_patch_size=2,
        # windows of 2x2 merged tokens; the last block attends over the whole image, as in 2.5-VL
        window_size=patch * MERGE * 2,
        fullatt_block_indexes=[sizes["vision_layers"] - 1],
    )
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **vision_tokens(tok))
    image_processor, video_processor = qwen_processors(sizes, patch, Qwen2VLImageProcessor, Qwen2VLVideoProcessor,
                                                       cap_pixels_per_frame=True)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                    chat_template=TEMPLATE)
    return config, processor


PRESET = Preset(
    name="qwen2.5vl-tiny",
    family="qwen2_5_vl",
    description="Qwen2.5-VL: windowed ViT + 2x2 merger + Qwen2 decoder with M-RoPE",
    special_tokens=SPECIAL_TOKENS,
    tokens=TOKENS,
    chat_template=TEMPLATE,
    make=make,
)

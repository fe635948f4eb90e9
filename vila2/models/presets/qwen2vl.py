"""``qwen2vl-tiny``: Qwen2-VL — window-free ViT with 2x2 patch merging + Qwen2 decoder with M-RoPE."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import CHATML_TOKENS, Preset, chatml, text_sizes, token_id

TEMPLATE = chatml("<|vision_start|><|image_pad|><|vision_end|>")
SPECIAL_TOKENS = (*CHATML_TOKENS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
TOKENS = {"pad": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|im_end|>", "image": "<|image_pad|>"}
MERGE = 2


def mrope_section(sizes: dict[str, int]) -> list[int]:
    """M-RoPE shares the rotary pairs between (time, height, width) like Qwen2-VL's 16:24:24."""
    half = sizes["hidden_size"] // sizes["num_heads"] // 2  # rotary pairs per head
    height = width = (half - half // 4) // 2
    return [half - height - width, height, width]


def vision_tokens(tok: Any) -> dict[str, int]:
    """The image/video/vision-start/end ids every Qwen-VL config takes."""
    return {
        "image_token_id": token_id(tok, "<|image_pad|>"),
        "video_token_id": token_id(tok, "<|video_pad|>"),
        "vision_start_token_id": token_id(tok, "<|vision_start|>"),
        "vision_end_token_id": token_id(tok, "<|vision_end|>"),
    }


def qwen_processors(sizes: dict[str, int], patch: int, image_cls: Any, video_cls: Any,
                    **video_extra: Any) -> tuple[Any, Any]:
    """A Qwen-VL image and video processor that resize to ``image_size`` squared pixels."""
    pixels = sizes["image_size"] ** 2
    common = {"size": {"shortest_edge": pixels, "longest_edge": pixels}, "patch_size": patch,
              "merge_size": MERGE, "temporal_patch_size": 2}
    return image_cls(**common), video_cls(**common, **video_extra)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """Qwen2VLConfig + Qwen2VLProcessor: 16 image tokens for a 64x64 image."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.models.qwen2_vl.configuration_qwen2_vl import (
        Qwen2VLTextConfig,
        Qwen2VLVisionConfig,
    )

    # patches are merged 2x2, so half the patch size gives the same token count as LLaVA
    patch = max(1, sizes["patch_size"] // MERGE)
    text = Qwen2VLTextConfig(
        **text_sizes(tok, sizes),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(sizes)},
    )
    vision = Qwen2VLVisionConfig(
        depth=sizes["vision_layers"],
        embed_dim=sizes["vision_hidden_size"],
        hidden_size=sizes["hidden_size"],
        num_heads=sizes["vision_heads"],
        mlp_ratio=max(1, sizes["vision_intermediate_size"] // sizes["vision_hidden_size"]),
        patch_size=patch,
        spatial_merge_size=MERGE,
        temporal_patch_size=2,
    )
    config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **vision_tokens(tok))
    # the processor requires a video processor; videos are not used, but keep it consistent
    image_processor, video_processor = qwen_processors(sizes, patch, Qwen2VLImageProcessor, Qwen2VLVideoProcessor,
                                                       cap_pixels_per_frame=True)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=TEMPLATE)
    return config, processor


PRESET = Preset(
    name="qwen2vl-tiny",
    family="qwen2_vl",
    description="Qwen2-VL: ViT with 2x2 patch merger + Qwen2 decoder with M-RoPE",
    special_tokens=SPECIAL_TOKENS,
    tokens=TOKENS,
    chat_template=TEMPLATE,
    make=make,
)

"""``smolvlm-tiny``: SmolVLM — SigLIP-style tower + pixel-shuffle connector + Llama (SmolLM2) decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, llama_text, token_id
from vila2.models.presets.idefics3 import SCALE, image_seq_len, vision_kwargs

TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    + content("<image>")
    + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """SmolVLMConfig + SmolVLMProcessor (no image splitting): 16 image tokens for 64x64."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )
    from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

    config = SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(**vision_kwargs(sizes)),
        text_config=llama_text(tok, sizes),
        image_token_id=token_id(tok, "<image>"),
        scale_factor=SCALE,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
    )
    edge = {"longest_edge": sizes["image_size"]}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=edge, max_image_size=edge, do_image_splitting=False),
        tokenizer=tok,
        video_processor=SmolVLMVideoProcessor(size=edge, max_image_size=edge),
        image_seq_len=image_seq_len(sizes),
        chat_template=TEMPLATE,
    )
    return config, processor


PRESET = Preset(
    name="smolvlm-tiny",
    family="smolvlm",
    description="SmolVLM: SigLIP-style tower + pixel-shuffle connector + SmolLM2 (Llama) decoder",
    special_tokens=("<pad>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                    "<global-img>"),
    tokens={"pad": "<pad>", "bos": "<|im_start|>", "eos": "<end_of_utterance>", "image": "<image>"},
    chat_template=TEMPLATE,
    make=make,
)

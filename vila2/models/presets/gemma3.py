"""``gemma3-tiny``: Gemma 3 — SigLIP tower + pooled projector + Gemma 3 decoder (sliding + global)."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, siglip_vision, text_sizes, token_id

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    + content("<start_of_image>")
    + "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """Gemma3Config + Gemma3Processor (no pan-and-scan): 16 image tokens for 64x64."""
    from transformers import Gemma3Config, Gemma3ImageProcessor, Gemma3Processor, Gemma3TextConfig

    side = sizes["image_size"] // sizes["patch_size"]
    text = Gemma3TextConfig(
        **text_sizes(tok, sizes),
        head_dim=sizes["hidden_size"] // sizes["num_heads"],
        query_pre_attn_scalar=sizes["hidden_size"] // sizes["num_heads"],
        sliding_window=64,
        # one local (sliding-window) layer, then a global one, as Gemma 3 alternates them (5:1)
        layer_types=["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(sizes["num_layers"])],
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=siglip_vision(sizes),
        mm_tokens_per_image=side * side,
        boi_token_index=token_id(tok, "<start_of_image>"),
        eoi_token_index=token_id(tok, "<end_of_image>"),
        image_token_index=token_id(tok, "<image_soft_token>"),
        tie_word_embeddings=True,
    )
    image_processor = Gemma3ImageProcessor(size={"height": sizes["image_size"], "width": sizes["image_size"]},
                                           do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tok, chat_template=TEMPLATE,
                                image_seq_length=side * side)
    return config, processor


PRESET = Preset(
    name="gemma3-tiny",
    family="gemma3",
    description="Gemma 3: SigLIP tower + pooled projector + Gemma 3 decoder",
    special_tokens=("<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                    "<end_of_image>", "<image_soft_token>"),
    tokens={"pad": "<pad>", "bos": "<bos>", "eos": "<end_of_turn>", "image": "<image_soft_token>",
            "boi": "<start_of_image>", "eoi": "<end_of_image>"},
    chat_template=TEMPLATE,
    make=make,
)

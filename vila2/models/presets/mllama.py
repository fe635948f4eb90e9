"""``mllama-tiny``: Llama 3.2 Vision — tiled ViT with gated global layers + cross-attention Llama decoder."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, text_sizes, token_id

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    + content("<|image|>")
    + "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% endif %}"
)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """MllamaConfig + MllamaProcessor: 64x64 tiles (up to 4), the image read by one
    cross-attention layer between the self-attention layers."""
    from transformers import MllamaConfig, MllamaImageProcessor, MllamaProcessor
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig

    hidden = sizes["vision_hidden_size"]
    vision = MllamaVisionConfig(
        hidden_size=hidden,
        intermediate_size=sizes["vision_intermediate_size"],
        num_hidden_layers=sizes["vision_layers"],
        num_global_layers=1,
        attention_heads=sizes["vision_heads"],
        image_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
        max_num_tiles=4,
        intermediate_layers_indices=[0],
        vision_output_dim=hidden * 2,  # last layer + one intermediate layer
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1], [1, 3], [3, 1], [1, 4], [2, 2], [4, 1]],
    )
    layers = sizes["num_layers"] + 1  # the self-attention layers and one cross-attention layer
    text = MllamaTextConfig(**{**text_sizes(tok, sizes), "num_hidden_layers": layers},
                            cross_attention_layers=[layers // 2], tie_word_embeddings=True)
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=token_id(tok, "<|image|>"),
                          tie_word_embeddings=True)
    size = {"height": sizes["image_size"], "width": sizes["image_size"]}
    processor = MllamaProcessor(image_processor=MllamaImageProcessor(size=size, max_image_tiles=4), tokenizer=tok,
                                chat_template=TEMPLATE)
    return config, processor


PRESET = Preset(
    name="mllama-tiny",
    family="mllama",
    description="Llama 3.2 Vision: tiled ViT + cross-attention Llama decoder",
    special_tokens=("<|finetune_right_pad_id|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                    "<|end_header_id|>", "<|image|>", "<|python_tag|>"),
    tokens={"pad": "<|finetune_right_pad_id|>", "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
            "image": "<|image|>"},
    chat_template=TEMPLATE,
    make=make,
)

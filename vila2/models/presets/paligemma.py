"""``paligemma2-tiny``: PaliGemma 2 — SigLIP tower + linear projector + Gemma 2 decoder (prefix-LM)."""

from __future__ import annotations

from typing import Any

from vila2.models.presets._base import Preset, content, siglip_vision, text_sizes, token_id

# PaliGemma's own layout: image tokens, BOS, the prompt, "\n"; the answer then ends with EOS
TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    + content("") + "{{ eos_token }}{% else %}" + content("<image>{{ bos_token }}") + "{{ '\\n' }}{% endif %}{% endfor %}"
)


def make(tok: Any, sizes: dict[str, int]) -> tuple[Any, Any]:
    """PaliGemmaConfig + PaliGemmaProcessor: 16 image tokens for 64x64.

    The processor adds PaliGemma's ``<locNNNN>``/``<segNNN>`` tokens to the tokenizer, so it is
    made before the config, whose vocabulary covers them.
    """
    from transformers import Gemma2Config, PaliGemmaConfig, PaliGemmaProcessor, SiglipImageProcessor

    side = sizes["image_size"] // sizes["patch_size"]
    image_processor = SiglipImageProcessor(size={"height": sizes["image_size"], "width": sizes["image_size"]})
    image_processor.image_seq_length = side * side
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok, chat_template=TEMPLATE)
    head_dim = sizes["hidden_size"] // sizes["num_heads"]
    text = Gemma2Config(**text_sizes(tok, sizes), head_dim=head_dim, query_pre_attn_scalar=head_dim,
                        sliding_window=64, hidden_activation="gelu_pytorch_tanh")
    config = PaliGemmaConfig(
        vision_config=siglip_vision(sizes, projection_dim=sizes["hidden_size"]),
        text_config=text,
        image_token_index=token_id(tok, "<image>"),
        projection_dim=sizes["hidden_size"],
        hidden_size=sizes["hidden_size"],
        tie_word_embeddings=True,
    )
    return config, processor


PRESET = Preset(
    name="paligemma2-tiny",
    family="paligemma",
    description="PaliGemma 2: SigLIP tower + linear projector + Gemma 2 decoder (prefix-LM)",
    special_tokens=("<pad>", "<bos>", "<eos>", "<image>"),
    tokens={"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "image": "<image>"},
    chat_template=TEMPLATE,
    make=make,
)
